"""Fuzz-style: a hostile registry on 127.0.0.1 answers a mirror (either way) or a fleet report
read with drawn answers; whatever it sends, the outcome is a result or an error of the tree in
errors.py, and no message carries our password, our Basic credentials or a token.

Each example is a script: the first requests of the run get drawn answers (any status; raw
headers, malformed or not: WWW-Authenticate, Location, Content-Length, Content-Encoding, Link,
Docker-Content-Digest, Retry-After...; bodies of garbage bytes, garbage or deeply nested JSON,
manifests with wrong media types and huge sizes, endless bodies, the request's own
``Authorization`` echoed back), or a correct registry's answer; after the script, the correct
answers. So the drawn answers land anywhere: manifest, token, blob, upload, tag list.
"""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gitedge.adapters.images.mirroring import Mirror
from gitedge.adapters.registry.hosts import HostConfig, Hosts, RetryPolicy
from gitedge.adapters.reports.store import ReportRepository, read_reports
from gitedge.errors import GitEdgeError
from tests.hostileserver import Answer, Request, hostile_server
from tests.test_registry_bounds import OCI_MANIFEST, make_image, registry, sha

pytestmark = pytest.mark.timeout(600)

USER, PASSWORD = "fuzz-agent", "pw-Fz9q-never-shown"
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
TOKEN = "fuzz-issued-token-Tk7"
FUZZ = RetryPolicy(
    attempts=2, base_delay_s=0.0, max_delay_s=0.001, max_retry_after_s=0.0, read_timeout_s=2.0,
    rate_window_s=1.0, min_rate_bps=1000,
)  # fmt: skip
IMG = make_image(layer_size=50_000)

STATUSES = [200, 201, 202, 204, 206, 301, 302, 303, 307, 308, 400, 401, 403, 404, 405, 416,
            429, 500, 502, 503]  # fmt: skip
MEDIA = [OCI_MANIFEST, "application/vnd.oci.image.index.v1+json", "application/json",
         "application/vnd.docker.distribution.manifest.v1+prettyjws", "text/html", ""]  # fmt: skip
text = st.text(st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"),
               max_size=120)  # fmt: skip


def header_values(name: str) -> st.SearchStrategy[str]:
    realms = st.sampled_from(["/token", "http://[::1/t", "http://127.0.0.2:9/t", "", "ftp://x/t",
                              "https://127.0.0.1:1/t", "http://127.0.0.1:99999/t", "token"])  # fmt: skip
    special: dict[str, st.SearchStrategy[str]] = {
        "WWW-Authenticate": st.one_of(
            st.builds(
                lambda r, s: f'Bearer realm="{r}",service="{s}",scope="repository:x:pull"',
                realms,
                text,
            ),
            st.sampled_from(
                [
                    'Basic realm="r"',
                    "Bearer",
                    "Bearer realm=",
                    'Bearer realm="',
                    "Negotiate",
                    ",,,",
                    'Bearer realm="/token",realm="http://x"',
                ]
            ),
        ),
        "Location": st.sampled_from(
            [
                "http://[::1",
                "/v2/edge/os/manifests/1.0",
                "//",
                "http://",
                "http://127.0.0.1:1/x",
                "/v2/x/blobs/uploads/u?a=1",
                "::",
                "http://127.0.0.1:99999/",
            ]
        ),
        "Content-Length": st.sampled_from(
            ["-1", "abc", "99999999999999999999", "0", "1e3", "5", "4294967297", "10, 20"]
        ),
        "Content-Type": st.sampled_from(MEDIA),
        "Content-Encoding": st.sampled_from(["gzip", "deflate", "br", "identity", "gzip, gzip"]),
        "Docker-Content-Digest": st.sampled_from(
            [IMG.digest, "sha256:" + "0" * 64, "garbage", "sha256:xyz", "sha512:" + "f" * 128]
        ),
        "Retry-After": st.sampled_from(["0", "-5", "nan", "inf", "Wed, 21 Oct 2015 07:28:00 GMT"]),
        "Link": st.sampled_from(
            [
                '<http://[::1>; rel="next"',
                '</v2/x/tags/list?n=1>; rel="next"',
                "<>; rel=next",
                ";;;",
                '<//:0>; rel="next"',
            ]
        ),
        "Content-Range": st.sampled_from(["bytes 0-1/2", "bytes x", "bytes 10-5/1", ""]),
    }
    return st.one_of(special[name], text)


headers = st.lists(
    st.sampled_from(["WWW-Authenticate", "Location", "Content-Length", "Content-Type",
                     "Content-Encoding", "Docker-Content-Digest", "Retry-After", "Link",
                     "Content-Range"]).flatmap(lambda n: st.tuples(st.just(n), header_values(n))),
    max_size=5,
)  # fmt: skip

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)


def manifest_like(size: int, media: str) -> bytes:
    doc = json.loads(IMG.manifest)
    doc["mediaType"] = media
    doc["layers"][0]["size"] = size
    return json.dumps(doc).encode()


bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.integers(1, 200_000).map(lambda n: b"[" * n),
    st.builds(manifest_like, st.sampled_from([-1, 0, 10**18, 2**63]), st.sampled_from(MEDIA)),
    st.just(b'{"token": "' + b"A" * 300_000 + b'"}'),
    st.just(b"ECHO"),  # the request's Authorization header, sent back in an error body
)
answers = st.one_of(
    st.just(None),  # a correct registry's answer
    st.builds(
        lambda s, h, b, e: (s, tuple(h), b, e),
        st.sampled_from(STATUSES),
        headers,
        bodies,
        st.booleans(),
    ),
)


class Script:
    def __init__(self) -> None:
        self.steps: list[Any] = []
        self.n = 0

    def __call__(self, req: Request) -> Answer:
        i, self.n = self.n, self.n + 1
        step = self.steps[i] if i < len(self.steps) else None
        if step is None:
            return good(req)
        status, hdrs, body, endless = step
        if body == b"ECHO":
            seen = req.headers.get("Authorization", "none")
            body = json.dumps({"errors": [{"code": "DENIED", "message": seen}]}).encode() + (
                f" {seen}".encode()
            )
        return Answer(status, hdrs, body, endless=endless and bool(body))


def good(req: Request) -> Answer:
    """A registry that wants Basic credentials (so there is a secret to leak) and serves IMG,
    takes uploads, and lists one tag."""
    if req.headers.get("Authorization") not in (f"Basic {BASIC}", f"Bearer {TOKEN}"):
        return Answer(401, (("WWW-Authenticate", 'Basic realm="fuzz"'), ("Content-Length", "0")))
    path = req.path.split("?", 1)[0]
    if req.method == "POST":
        return Answer(202, (("Location", "/v2/upload/1"), ("Content-Length", "0")))
    if req.method == "PATCH":
        return Answer(202, (("Location", "/v2/upload/1"), ("Content-Length", "0")))
    if req.method == "PUT":
        return Answer(201, (("Content-Length", "0"),))
    if path.endswith("/tags/list"):
        body = b'{"tags": ["c1"]}'
        return Answer(200, (("Content-Length", str(len(body))),), body)
    if path.startswith("/token"):
        body = json.dumps({"token": TOKEN}).encode()
        return Answer(200, (("Content-Length", str(len(body))),), body)
    if req.method == "HEAD" and "/site/" in path:
        return Answer(404, (("Content-Length", "0"),))
    return registry(IMG)(req)


def check(error: BaseException) -> None:
    assert isinstance(error, GitEdgeError), repr(error)
    message = str(error)
    for secret in (PASSWORD, BASIC, TOKEN):
        assert secret not in message, message


@pytest.fixture(scope="module")
def layout() -> Any:
    with tempfile.TemporaryDirectory() as d, hostile_server(good) as reg:
        (Path(d) / "secrets").mkdir()
        creds = Path(d) / "secrets"
        (creds / "user").write_text(USER)
        (creds / "password").write_text(PASSWORD)
        hosts = Hosts({reg.host: HostConfig(username_file=creds / "user",
                                             password_file=creds / "password")})  # fmt: skip
        with Mirror(hosts=hosts, retry=FUZZ) as m:
            m.mirror(f"{reg.host}/edge/os:1.0", f"oci:{d}/img:1.0")
        yield Path(d), hosts


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(steps=st.lists(answers, min_size=1, max_size=8), target=st.sampled_from(
    ["pull", "push", "reports"]))  # fmt: skip
def test_any_registry_answer_gives_a_result_or_an_error_of_the_tree(
    layout: tuple[Path, Hosts], steps: list[Any], target: str
) -> None:
    base, _ = layout
    script = Script()
    script.steps = steps
    with hostile_server(script) as reg, tempfile.TemporaryDirectory() as out:
        secrets = base / "secrets"
        hosts = Hosts({reg.host: HostConfig(username_file=secrets / "user",
                                            password_file=secrets / "password")})  # fmt: skip
        outcome = "result"
        try:
            if target == "reports":
                read_reports(ReportRepository(reg.host, "fleet/status"), hosts=hosts, retry=FUZZ)
            else:
                with Mirror(hosts=hosts, retry=FUZZ) as m:
                    if target == "pull":
                        m.mirror(f"{reg.host}/edge/os:1.0", f"oci:{out}/o:1.0")
                    else:
                        m.mirror(f"oci:{base}/img:1.0", f"{reg.host}/site/os:1.0")
        except BaseException as e:  # what is asserted is its class
            check(e)
            outcome = type(e).__name__
        event(f"{target}: {outcome}")


def test_the_fuzz_image_is_what_the_good_registry_serves() -> None:
    assert sha(IMG.manifest) == IMG.digest and len(IMG.blobs) == 2
