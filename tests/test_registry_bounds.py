"""Registries that attack (issue 13): endless bodies, trickles, credentials sent elsewhere,
malformed headers. Each served by a hostile HTTP server on 127.0.0.x (tests/hostileserver.py),
each bounded in time; a clean error of the tree in errors.py, never a traceback or a secret.

The image the hostile registry serves is built here (config, one layer, a manifest): the
server answers ``GET/HEAD /v2/<repo>/manifests/<ref>`` and ``GET /v2/<repo>/blobs/<digest>``
(``Range`` honoured) as a registry would, unless a test's script says otherwise.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from gitedge.adapters.images.mirroring import Mirror
from gitedge.adapters.registry.client import RegistryClient
from gitedge.adapters.registry.hosts import HostConfig, Hosts, RetryPolicy
from gitedge.core.images.manifests import MAX_MANIFEST_BYTES
from gitedge.errors import (
    GitEdgeError,
    RegistryAuthError,
    RegistryRefused,
    RegistryUnavailable,
)
from tests.hostileserver import Answer, Request, hostile_server

pytestmark = pytest.mark.timeout(60)

USER, PASSWORD = "site-agent", "pw-Hx3r-not-in-any-message"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
TOKEN = "issued.token.for-the-registry"
#: Small bounds, so a trickle is told from a transfer in seconds (loose enough for a loaded machine).
QUICK = RetryPolicy(
    attempts=2, base_delay_s=0.01, max_delay_s=0.02, read_timeout_s=3.0, rate_window_s=2.0,
    min_rate_bps=2000, max_retry_after_s=0.0,
)  # fmt: skip
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Image:
    manifest: bytes
    blobs: dict[str, bytes]

    @property
    def digest(self) -> str:
        return sha(self.manifest)


def make_image(layer_size: int = 200_000) -> Image:
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {}}).encode()
    layer = os.urandom(layer_size)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha(layer), "size": len(layer)}],
    }).encode()  # fmt: skip
    return Image(manifest, {sha(config): config, sha(layer): layer})


def registry(img: Image) -> Callable[[Request], Answer]:
    """Answers as a plain anonymous registry serving ``img`` under any repository and tag."""

    def answer(req: Request) -> Answer:
        path = req.path.split("?", 1)[0]
        if "/manifests/" in path:
            digest = {"Docker-Content-Digest": img.digest}
            headers = (("Content-Type", OCI_MANIFEST), *digest.items(),
                       ("Content-Length", str(len(img.manifest))))  # fmt: skip
            return Answer(200, headers, img.manifest)
        if "/blobs/" in path and path.rsplit("/", 1)[1] in img.blobs:
            data = img.blobs[path.rsplit("/", 1)[1]]
            start = int(req.headers.get("Range", "bytes=0-")[6:].rstrip("-") or 0)
            status = 206 if start else 200
            headers = [("Content-Length", str(len(data) - start))]
            if start:
                headers.append(("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}"))
            return Answer(status, tuple(headers), data[start:])
        return Answer(404, (("Content-Length", "0"),))

    return answer


def login(tmp_path: Path, **kw: object) -> HostConfig:
    (tmp_path / "user").write_text(USER + "\n")
    (tmp_path / "password").write_text(PASSWORD + "\n")
    return HostConfig(
        username_file=tmp_path / "user",
        password_file=tmp_path / "password",
        **kw,  # type: ignore[arg-type]
    )


def no_secret(text: str) -> None:
    assert PASSWORD not in text and BASIC.split()[1] not in text and TOKEN not in text


def bearer_registry(img: Image, realm: str) -> Callable[[Request], Answer]:
    """``img`` behind a bearer challenge naming ``realm``; TOKEN opens it."""
    serve = registry(img)

    def answer(req: Request) -> Answer:
        if req.headers.get("Authorization") != f"Bearer {TOKEN}":
            challenge = f'Bearer realm="{realm}",service="hostile",scope="repository:edge/os:pull"'
            return Answer(401, (("WWW-Authenticate", challenge), ("Content-Length", "0")))
        return serve(req)

    return answer


def token_answer(req: Request) -> Answer:
    body = json.dumps({"token": TOKEN}).encode()
    return Answer(200, (("Content-Type", "application/json"), ("Content-Length", str(len(body)))),
                  body)  # fmt: skip


# ---------------------------------------------------------------------------- endless bodies


def test_endless_token_realm_body_is_refused_as_too_large(tmp_path: Path) -> None:
    """The issue's 11.8 GB: the realm's answer was read whole. Now at most MAX_TOKEN_BYTES."""
    from gitedge.adapters.registry.auth import MAX_TOKEN_BYTES

    img = make_image()
    endless = Answer(200, (("Content-Type", "application/json"),), b'{"token":"', endless=True)
    with hostile_server(lambda r: endless) as realm:
        with hostile_server(
            bearer_registry(img, f"http://{realm.host}/token"), address="127.0.0.1"
        ) as reg:
            hosts = Hosts({reg.host: login(tmp_path)})
            with Mirror(hosts=hosts, retry=QUICK) as m, pytest.raises(RegistryAuthError) as e:
                m.mirror(f"{reg.host}/edge/os:1.0", f"oci:{tmp_path / 'out'}:1.0")
        sent = realm.bytes_sent
    assert "too large" in str(e.value) and f"{reg.host}/edge/os:1.0" in str(e.value)
    assert str(MAX_TOKEN_BYTES) in str(e.value)
    no_secret(str(e.value))
    assert sent < 64 * 1024 * 1024  # it stopped sending because we stopped reading


@pytest.mark.parametrize("where", ["manifest", "error body", "redirect body", "gzip manifest"])
def test_endless_or_inflating_bodies_are_cut_at_their_cap(tmp_path: Path, where: str) -> None:
    img = make_image()
    serve = registry(img)
    bomb = gzip.compress(b" " * (MAX_MANIFEST_BYTES * 8))  # ~32 MiB of spaces in ~32 KiB

    def answer(req: Request) -> Answer:
        if "/manifests/" in req.path and req.method == "GET" and "/moved/" not in req.path:
            if where == "manifest":
                return Answer(200, (("Content-Type", OCI_MANIFEST),), b"{ ", endless=True)
            if where == "error body":
                return Answer(500, (("Content-Type", "application/json"),), b"[", endless=True)
            if where == "redirect body":
                return Answer(307, (("Location", req.path.replace("/v2/", "/v2/moved/")),),
                              b"redirected ", endless=True)  # fmt: skip
            return Answer(200, (("Content-Type", OCI_MANIFEST), ("Content-Encoding", "gzip"),
                                ("Content-Length", str(len(bomb)))), bomb)  # fmt: skip
        return serve(req)

    with hostile_server(answer) as reg, Mirror(retry=QUICK) as m:
        src, out = f"{reg.host}/edge/os:1.0", f"oci:{tmp_path / 'out'}:1.0"
        if where == "redirect body":  # the body is not read at all; the redirect is followed
            assert m.mirror(src, out).digest == img.digest
            return
        with pytest.raises(GitEdgeError) as e:
            m.mirror(src, out)
    assert f"{reg.host}/edge/os:1.0" in str(e.value)
    if where == "error body":
        assert isinstance(e.value, RegistryUnavailable) and "500" in str(e.value)
    else:
        assert isinstance(e.value, RegistryRefused) and "too large" in str(e.value)


# ---------------------------------------------------------------------------- credentials


def test_credentials_never_go_to_another_host_over_plain_http(tmp_path: Path) -> None:
    """The issue's case: 127.0.0.1 names a realm on 127.0.0.2 over http; our login stays home.
    Marked insecure in the config, that realm gets it; without a login, it is asked anonymously."""
    img = make_image()
    with hostile_server(token_answer, address="127.0.0.2") as realm:
        realm_url = f"http://{realm.host}/token"
        with hostile_server(bearer_registry(img, realm_url)) as reg:
            src, out = f"{reg.host}/edge/os:1.0", f"oci:{tmp_path / 'out'}:1.0"
            with (
                Mirror(hosts=Hosts({reg.host: login(tmp_path)}), retry=QUICK) as m,
                pytest.raises(RegistryAuthError) as e,
            ):
                m.mirror(src, out)
            assert realm.requests == []  # not even asked
            marked = Hosts({reg.host: login(tmp_path), realm.host: HostConfig(insecure=True)})
            with Mirror(hosts=marked, retry=QUICK) as m:
                assert m.mirror(src, out).digest == img.digest
            assert [r.headers.get("Authorization") for r in realm.requests] == [BASIC]
            with Mirror(retry=QUICK) as m:
                assert m.mirror(src, f"oci:{tmp_path / 'anon'}:1.0").digest == img.digest
            assert realm.requests[-1].headers.get("Authorization") is None
    msg = str(e.value)
    assert src in msg and realm.host in msg and "plain http" in msg and "insecure" in msg
    no_secret(msg)


def test_auth_stays_with_the_registry_across_redirects_and_upload_urls(tmp_path: Path) -> None:
    """A Basic-auth registry redirecting a blob to another host, and handing out an upload URL
    on another host: neither gets our Authorization header (requests strips it on redirects
    only, and our upload PATCH would have carried it)."""
    img = make_image()
    with hostile_server(registry(img), address="127.0.0.2") as other:
        serve = registry(img)

        def answer(req: Request) -> Answer:
            if req.headers.get("Authorization") != BASIC:
                return Answer(
                    401, (("WWW-Authenticate", 'Basic realm="r"'), ("Content-Length", "0"))
                )
            if req.method == "GET" and "/blobs/" in req.path:
                return Answer(307, (("Location", f"http://{other.host}{req.path}"),
                                    ("Content-Length", "0")))  # fmt: skip
            if req.method == "HEAD" and ("/blobs/" in req.path or "/site/" in req.path):
                return Answer(404, (("Content-Length", "0"),))
            if req.method == "POST":
                return Answer(202, (("Location", f"http://{other.host}/upload/1"),
                                    ("Content-Length", "0")))  # fmt: skip
            return serve(req)

        with hostile_server(answer) as reg:
            hosts = Hosts({reg.host: login(tmp_path)})
            with Mirror(hosts=hosts, retry=QUICK) as m:
                assert (
                    m.mirror(f"{reg.host}/edge/os:1.0", f"oci:{tmp_path / 'o'}:1.0").digest
                    == img.digest
                )
                with pytest.raises(GitEdgeError):  # the other host is no registry for uploads
                    m.mirror(f"oci:{tmp_path / 'o'}:1.0", f"{reg.host}/site/os:1.0")
    assert other.seen("GET", "/blobs/") and other.seen("PATCH", "/upload/1")
    assert all("Authorization" not in r.headers for r in other.requests)


def test_a_realm_may_get_credentials_over_https_or_on_the_registry_host_only() -> None:
    from gitedge.adapters.registry.auth import Credentials
    from gitedge.adapters.registry.bounds import checked_url
    from gitedge.adapters.registry.hosts import Limits

    def creds(base: str, insecure: frozenset[str] = frozenset()) -> Credentials:
        return Credentials(host="reg", base_url=checked_url(base, "/", what="t")[:-1],
                           login=(USER, PASSWORD), insecure_hosts=insecure, limits=Limits())  # fmt: skip

    plain, tls = creds("http://127.0.0.1:5000"), creds("https://reg.example")
    assert plain.may_receive("http://127.0.0.1:5001/token")  # same host, already plain http
    assert not plain.may_receive("http://127.0.0.2:5001/token")
    assert plain.may_receive("https://auth.example/token")
    assert not tls.may_receive("http://reg.example/token")  # no downgrade, same host or not
    assert (
        creds("https://reg.example", frozenset({"auth.lan:80"})).may_receive("http://auth.lan/t")
        is False
    )
    assert creds("https://reg.example", frozenset({"auth.lan"})).may_receive("http://auth.lan/t")


# ---------------------------------------------------------------------------- trickles


def test_trickled_manifest_and_headers_end_with_too_slow(tmp_path: Path) -> None:
    img = make_image()
    serve = registry(img)
    for headers in (False, True):

        def answer(req: Request, headers: bool = headers) -> Answer:
            if "/manifests/" in req.path:
                a = serve(req)
                return Answer(a.status, a.headers, a.body, trickle=0.2, trickle_headers=headers)
            return serve(req)

        with (
            hostile_server(answer) as reg,
            Mirror(retry=QUICK) as m,
            pytest.raises(RegistryUnavailable) as e,
        ):
            m.mirror(f"{reg.host}/edge/os:1.0", f"oci:{tmp_path / 'out'}:1.0")
        assert f"{reg.host}/edge/os:1.0" in str(e.value)
        assert ("within 3s" if headers else "too slow") in str(e.value)


def test_header_watch_is_one_thread_for_many_requests_and_still_cuts_late_headers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The response headers of every request are watched by one thread (httpbounds._Watchdog),
    not a thread started per request: a no-op mirror's dozen requests paid a thread start and a
    GIL hand-over each. Late headers are still cut, after many requests passed and in a forked
    child; the thread ends once idle, and at once when its client is closed (sshworkers
    forks only from a single-threaded process)."""
    img = make_image()
    serve = registry(img)
    late = threading.Event()

    def answer(req: Request) -> Answer:
        a = serve(req)
        if late.is_set() and "/manifests/" in req.path:
            return Answer(a.status, a.headers, a.body, trickle=0.2, trickle_headers=True)
        return a

    started: list[str] = []  # threads started by the requesting thread (not the server's)
    real_start = threading.Thread.start

    def counted_start(self: threading.Thread) -> None:
        if threading.current_thread() is threading.main_thread():
            started.append(self.name)
        real_start(self)

    with hostile_server(answer) as reg:
        client = RegistryClient(host=reg.host, retry=QUICK)
        try:
            monkeypatch.setattr(threading.Thread, "start", counted_start)
            for _ in range(4):
                assert client.get_manifest("edge/os", "1.0", what="t").digest == img.digest
                for digest, blob in img.blobs.items():
                    assert client.blob_size("edge/os", digest, what="t") == len(blob)
            monkeypatch.undo()
            assert len(started) <= 1, started
            late.set()
            pid = os.fork()
            if pid == 0:  # the child: its own watchdog (the parent's thread is not copied)
                code = 1
                try:
                    child = RegistryClient(host=reg.host, retry=QUICK)
                    child.get_manifest("edge/os", "1.0", what="t")
                except RegistryUnavailable as e:
                    code = 0 if "within 3s" in str(e) else 2
                finally:
                    os._exit(code)
            with pytest.raises(RegistryUnavailable, match="within 3s"):
                client.get_manifest("edge/os", "1.0", what="t")
            assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
            late.clear()
            for _ in range(200):  # bounded: idle, it ends within 2 * IDLE_S of the last request
                if not watching():
                    break
                threading.Event().wait(0.05)
            assert not watching()
            client.blob_size("edge/os", next(iter(img.blobs)), what="t")
            assert watching()
        finally:
            client.close()
    assert not watching()  # a closed client leaves no thread of ours (sshworkers forks)


def watching() -> bool:
    return any(t.name == "gitedge-header-watch" for t in threading.enumerate())


def test_trickled_blob_resumes_from_its_last_byte_then_gives_up_if_it_keeps_trickling(
    tmp_path: Path,
) -> None:
    """Too slow is not a wall-clock limit: the bytes received are kept and the rest asked for
    with Range; a source that trickles on every connection is given up after QUICK.attempts."""
    img = make_image(layer_size=300_000)
    layer = max(img.blobs, key=lambda d: len(img.blobs[d]))
    serve = registry(img)
    ranges: list[str] = []

    def answer(req: Request, always: bool) -> Answer:
        a = serve(req)
        if req.method == "GET" and layer in req.path:
            ranges.append(req.headers.get("Range", ""))
            if always or len(ranges) == 1:  # 100 kB at full speed, then a byte per 0.2 s
                fast = 100_000 if len(ranges) == 1 else 0  # later: a trickle from the start
                return Answer(a.status, a.headers, a.body, trickle=0.2, fast=fast)
        return a

    with hostile_server(lambda r: answer(r, False)) as reg, Mirror(retry=QUICK) as m:
        r = m.mirror(f"{reg.host}/edge/os:1.0", f"oci:{tmp_path / 'out'}:1.0")
    assert r.digest == img.digest and r.stats.resumes == 1
    assert r.stats.bytes_resent == 0  # the resume asked for the rest only
    assert ranges[0] == "" and int(ranges[1][6:-1]) >= 100_000
    ranges.clear()
    with (
        hostile_server(lambda r: answer(r, True)) as reg,
        Mirror(retry=QUICK) as m,
        pytest.raises(RegistryUnavailable, match="keeps breaking") as e,
    ):
        m.mirror(f"{reg.host}/edge/os:1.0", f"oci:{tmp_path / 'out2'}:1.0")
    assert layer in str(e.value) and "minimum rate" in str(e.value)
    assert 1 < len(ranges) <= 2 * QUICK.attempts  # resumed, but not forever


# ---------------------------------------------------------------------------- malformed headers


def _manifest_get(answer: Answer) -> Callable[[Request], Answer]:
    """The test image, but every manifest GET answered with ``answer``."""
    serve = registry(make_image())
    return lambda req: answer if req.method == "GET" and "/manifests/" in req.path else serve(req)


def _token_realm_answering(body: bytes) -> Callable[[Request], Answer]:
    def answer(req: Request) -> Answer:
        if req.path.startswith("/token"):
            return Answer(200, (("Content-Length", str(len(body))),), body)
        realm = f"http://{req.headers['Host']}/token"
        return Answer(401, (("WWW-Authenticate", f'Bearer realm="{realm}",service="s"'),
                            ("Content-Length", "0")))  # fmt: skip

    return answer


MALFORMED: dict[str, tuple[Callable[[Request], Answer], type[GitEdgeError], str]] = {
    "redirect to http://[::1": (
        _manifest_get(Answer(307, (("Location", "http://[::1"),))),
        RegistryRefused,
        "malformed URL",
    ),
    "redirect to a port out of range": (
        _manifest_get(Answer(302, (("Location", "http://127.0.0.1:99999/x"),))),
        RegistryRefused,
        "malformed URL",
    ),
    "redirect with no Location": (
        _manifest_get(Answer(301, (("Content-Length", "0"),))),
        RegistryRefused,
        "with no URL",
    ),
    "redirect loop": (
        _manifest_get(Answer(302, (("Location", "/v2/edge/os/manifests/1.0"),))),
        RegistryRefused,
        "redirects",
    ),
    "WWW-Authenticate garbage": (
        _manifest_get(Answer(401, (("WWW-Authenticate", '\x7f="=,,'),))),
        RegistryAuthError,
        "no usable challenge",
    ),
    "WWW-Authenticate Bearer without realm": (
        _manifest_get(Answer(401, (("WWW-Authenticate", "Bearer service=x"),))),
        RegistryAuthError,
        "malformed token realm",
    ),
    "WWW-Authenticate realm http://[::1": (
        _manifest_get(Answer(401, (("WWW-Authenticate", 'Bearer realm="http://[::1/t"'),))),
        RegistryAuthError,
        "malformed token realm",
    ),
    "token with a line break": (
        _token_realm_answering(b'{"token": "abc\\r\\nX-Injected: 1"}'),
        RegistryAuthError,
        "malformed token",
    ),
    "token answer not JSON": (
        _token_realm_answering(b"[" * 100_000),
        RegistryAuthError,
        "refused to issue",
    ),
    "error body with errors not a list": (
        _manifest_get(Answer(400, (("Content-Length", "13"),), b'{"errors": 5}')),
        RegistryRefused,
        "400",
    ),
    "Content-Length garbage on the manifest": (
        _manifest_get(Answer(200, (("Content-Length", "12x"),), b"{}")),
        GitEdgeError,
        "image",
    ),
    "manifest Content-Length larger than the cap": (
        _manifest_get(Answer(200, (("Content-Length", str(10**15)),), b"{}")),
        RegistryRefused,
        "too large",
    ),
    "unknown Content-Encoding": (
        _manifest_get(Answer(200, (("Content-Encoding", "br"),), b"{}")),
        RegistryRefused,
        "Content-Encoding",
    ),
    "gzip that does not inflate": (
        _manifest_get(Answer(200, (("Content-Encoding", "gzip"),), b"not gzip at all")),
        RegistryRefused,
        "inflate",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_answers_are_clear_errors(tmp_path: Path, case: str) -> None:
    answer, kind, words = MALFORMED[case]
    with hostile_server(answer) as reg, Mirror(retry=QUICK) as m, pytest.raises(kind) as e:
        m.mirror(f"{reg.host}/edge/os:1.0", f"oci:{tmp_path / 'out'}:1.0")
    assert words in str(e.value) and f"{reg.host}/edge/os:1.0" in str(e.value)


def test_malformed_upload_location_link_page_and_blob_length(tmp_path: Path) -> None:
    """The other URLs a registry hands out: an upload ``Location`` and a ``Link`` page; and a
    blob HEAD whose Content-Length is garbage (the blob is then copied again, no crash)."""
    img = make_image()
    serve = registry(img)

    def answer(req: Request) -> Answer:
        if req.method == "HEAD" and "/site/" in req.path:
            length = "x1" if "/blobs/" in req.path else "0"
            return Answer(200 if "/blobs/" in req.path else 404, (("Content-Length", length),))
        if req.method == "POST":
            return Answer(202, (("Location", "http://[::1"), ("Content-Length", "0")))
        if "/tags/list" in req.path:
            body = b'{"tags": ["a"]}'
            link = '<http://[::1>; rel="next"' if "bad" in req.path else '<//:x/y>; rel="next"'
            return Answer(200, (("Link", link), ("Content-Length", str(len(body)))), body)
        return serve(req)

    with hostile_server(answer) as reg, Mirror(retry=QUICK) as m:
        src = f"{reg.host}/edge/os:1.0"
        m.mirror(src, f"oci:{tmp_path / 'o'}:1.0")
        with pytest.raises(RegistryRefused, match="malformed URL") as upload:
            m.mirror(f"oci:{tmp_path / 'o'}:1.0", f"{reg.host}/site/os:1.0")
        client = RegistryClient(host=reg.host, retry=QUICK)
        try:
            assert client.blob_size("site/os", next(iter(img.blobs)), what="t") == -1
            for repo in ("bad/os", "worse/os"):
                with pytest.raises(RegistryRefused, match="malformed URL"):
                    client.list_tags(repo, what=f"{reg.host}/{repo}")
        finally:
            client.close()
    assert f"oci:{tmp_path / 'o'}:1.0" in str(upload.value) and reg.host in str(upload.value)


def test_challenge_parser_reads_quoted_and_bare_parameters() -> None:
    from gitedge.adapters.registry.auth import parse_challenge

    c = parse_challenge('Bearer realm="https://a/t?x=\\"1\\"",service=reg, scope="r:a:pull"')
    assert (c.scheme, c.params) == (
        "bearer",
        {"realm": 'https://a/t?x="1"', "service": "reg", "scope": "r:a:pull"},
    )
    with pytest.raises(ValueError):
        parse_challenge("")
