"""Attacks on the bounded registry client (issue 13, "Bounded everything"), each one that broke
a claim before its fix: hostile servers on 127.0.0.1 (tests/hostileserver.py, and a raw socket
server here for what http.server cannot send: chunk framing and trailers).

Each test is bounded by the pytest timeout; before its fix each either hung (the timeout
failed it) or failed an assertion.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gitedge.adapters.images.mirroring import MAX_CHILD_MANIFEST_BYTES, Mirror
from gitedge.adapters.registry.client import RegistryClient
from gitedge.adapters.registry.hosts import Hosts
from gitedge.errors import GitEdgeError, InvalidImage, RegistryRefused, RegistryUnavailable
from tests.hostileserver import Answer, Request, hostile_server
from tests.test_registry_bounds import (
    BASIC,
    OCI_MANIFEST,
    QUICK,
    TOKEN,
    login,
    make_image,
    no_secret,
    registry,
    sha,
    token_answer,
)

pytestmark = pytest.mark.timeout(30)

INDEX = "application/vnd.oci.image.index.v1+json"


@contextlib.contextmanager
def raw_server(script: Callable[[threading.Event], Iterator[bytes]]) -> Iterator[str]:
    """Answers every connection (after reading its request head) with the bytes ``script``
    yields, as they come; stops writing when the client leaves or the server is stopped."""
    stop = threading.Event()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.1)

    def handle(conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 1 << 20:
                data = conn.recv(65536)
                if not data:
                    return
                head += data
            with contextlib.suppress(OSError):
                for part in script(stop):
                    if stop.is_set():
                        return
                    conn.sendall(part)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        sock.close()


CHUNKED = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"


def endless_trailer(stop: threading.Event) -> Iterator[bytes]:
    yield CHUNKED + b"2\r\n{}\r\n0\r\n"
    while not stop.is_set():  # trailer lines at full speed, never the blank line
        yield b"X-Pad: " + b"a" * 1000 + b"\r\n"


def trickled_chunk_line(stop: threading.Event) -> Iterator[bytes]:
    yield CHUNKED + b"1;ext="
    while not stop.wait(0.3):  # one byte of chunk extension every 0.3 s, up to 64 KiB of them
        yield b"a"


@pytest.mark.parametrize("script", [endless_trailer, trickled_chunk_line])
def test_chunk_framing_cannot_evade_the_caps_and_the_minimum_rate(
    script: Callable[[threading.Event], Iterator[bytes]],
) -> None:
    """Attack: a chunked body whose bytes are framing, not body. An endless trailer (fast) and a
    chunk-size line trickled a byte at a time (each within the stall timeout) never reached the
    body's cap or its Pace: the tag list read never ended. Now every byte on the wire is paced
    and the trailer has a line limit."""
    with raw_server(script) as host:
        client = RegistryClient(host=host, retry=QUICK)
        try:
            with pytest.raises(RegistryUnavailable) as e:
                client.list_tags("edge/os", what=f"{host}/edge/os")
        finally:
            client.close()
    assert f"{host}/edge/os" in str(e.value)
    assert ("trailer" if script is endless_trailer else "minimum rate") in str(e.value)


def _index_of(children: list[bytes], times: int) -> bytes:
    entries = [
        {"mediaType": OCI_MANIFEST, "digest": sha(c), "size": len(c),
         "platform": {"os": "linux", "architecture": f"arch{i}"}}
        for i, c in enumerate(children * times)
    ]  # fmt: skip
    return json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}).encode()


def _padded(base: bytes, pad: int, n: int) -> bytes:
    doc = json.loads(base)
    doc["annotations"] = {"pad": "x" * pad, "n": str(n)}
    return json.dumps(doc).encode()


def _index_registry(img_answer: Callable[[Request], Answer], index: bytes,
                    children: list[bytes]) -> Callable[[Request], Answer]:  # fmt: skip
    by_digest = {sha(c): c for c in children}

    def answer(req: Request) -> Answer:
        ref = req.path.split("?", 1)[0].rsplit("/", 1)[1]
        if "/manifests/" in req.path:
            data, kind = (by_digest[ref], OCI_MANIFEST) if ref in by_digest else (index, INDEX)
            headers = (("Content-Type", kind), ("Docker-Content-Digest", sha(data)),
                       ("Content-Length", str(len(data))))  # fmt: skip
            return Answer(200, headers, data)
        return img_answer(req)

    return answer


def test_an_index_naming_one_child_many_times_reads_and_writes_it_once(tmp_path: Path) -> None:
    """Attack: an index listing the same 1 MiB child 40 times. Each listing was read again and
    every copy held until written (an index naming a 4 MiB child 40 times: 211 MiB peak), and
    the child was PUT 40 times. Now each digest is read and written once."""
    img = make_image(1000)
    child = _padded(img.manifest, 1 << 20, 0)
    answer = _index_registry(registry(img), _index_of([child], 40), [child])
    sizes = {d: len(b) for d, b in img.blobs.items()}

    def sink(req: Request) -> Answer:  # a destination that has the blobs and takes manifests
        digest = req.path.rsplit("/", 1)[1]
        if req.method == "HEAD" and digest in sizes:
            return Answer(200, (("Content-Length", str(sizes[digest])),))
        return Answer(201 if req.method == "PUT" else 404, (("Content-Length", "0"),))

    with hostile_server(answer) as src, hostile_server(sink) as dst:
        with Mirror(retry=QUICK) as m:
            m.mirror(f"{src.host}/edge/os:1.0", f"oci:{tmp_path / 'out'}:1.0")
        assert len(src.seen("GET", f"/manifests/{sha(child)}")) == 1
        with Mirror(retry=QUICK) as m:
            m.mirror(f"oci:{tmp_path / 'out'}:1.0", f"{dst.host}/site/os:1.0")
        assert len(dst.seen("PUT", f"/manifests/{sha(child)}")) == 1


def test_an_index_whose_children_add_up_past_the_cap_is_refused(tmp_path: Path) -> None:
    """Attack: an index of distinct children, each under the 4 MiB manifest cap, that together
    are too many bytes to hold (they are all kept until written). Refused before reading past
    the cap."""
    img = make_image(1000)
    each = MAX_CHILD_MANIFEST_BYTES // 3
    children = [_padded(img.manifest, each, n) for n in range(4)]
    answer = _index_registry(registry(img), _index_of(children, 1), children)
    with hostile_server(answer) as src, Mirror(retry=QUICK) as m:
        with pytest.raises(InvalidImage) as e:
            m.mirror(f"{src.host}/edge/os:1.0", f"oci:{tmp_path / 'out'}:1.0")
        # two fit (each a bit over a third of the cap); the third is refused unread
        assert len([r for r in src.requests if "/manifests/sha256:" in r.path]) == 2
    assert "too large" in str(e.value) and f"{src.host}/edge/os:1.0" in str(e.value)


def test_tag_pages_that_never_end_are_refused() -> None:
    """Attack: ``fleet status`` lists tags; the registry answers empty pages, each with a
    ``Link`` to a new URL (the loop check catches only a page seen before): paging never ended.
    Now the pages are limited too."""
    count = iter(range(1 << 30))

    def answer(req: Request) -> Answer:
        body = b'{"tags": []}'
        link = f'</v2/r/tags/list?n=10&last=p{next(count)}>; rel="next"'
        return Answer(200, (("Content-Length", str(len(body))), ("Link", link)), body)

    with hostile_server(answer) as reg:
        client = RegistryClient(host=reg.host, retry=QUICK)
        try:
            with pytest.raises(RegistryRefused) as e:
                client.list_tags("r", what=f"{reg.host}/r", limit=500)
        finally:
            client.close()
        assert len(reg.requests) == 50
    assert "pages on" in str(e.value)


def test_no_cookie_is_kept_or_sent() -> None:
    """Attack: Set-Cookie on every answer. The session kept every cookie (a jar that grew with
    each answer, ~6 MB of headers each, all sent back with every later request, to any port of
    the same host: a token realm's too). Now no cookie is kept."""
    count = iter(range(1 << 30))

    def answer(req: Request) -> Answer:
        n = next(count)
        body = b'{"tags": ["t%d"]}' % n
        headers = [("Content-Length", str(len(body))), ("Set-Cookie", f"s{n}=v{n}; Path=/")]
        if n < 3:
            headers.append(("Link", f'</v2/r/tags/list?last=t{n}>; rel="next"'))
        return Answer(200, tuple(headers), body)

    with hostile_server(answer) as reg:
        client = RegistryClient(host=reg.host, retry=QUICK)
        try:
            assert client.list_tags("r", what="r") == ["t0", "t1", "t2", "t3"]
        finally:
            client.close()
        assert [r.headers.get("Cookie") for r in reg.requests] == [None] * 4


@pytest.mark.parametrize("via", ["realm", "redirect", "upload"])
def test_a_backslash_in_a_url_does_not_carry_credentials_to_another_host(
    tmp_path: Path, via: str
) -> None:
    """Attack: ``http://127.0.0.2:PORT\\@127.0.0.1:REG/...``. Python's urlsplit reads the host
    as 127.0.0.1 (the registry: credentials allowed), urllib3 connects to 127.0.0.2 (the
    backslash ends its authority). Named as a token realm, a redirect or an upload URL, it sent
    our Basic login to the other host over plain http. Now such a URL is malformed."""
    img = make_image()
    with hostile_server(token_answer, address="127.0.0.2") as other:
        serve = registry(img)
        reg_host: list[str] = []

        def sneaky(path: str) -> str:
            return f"http://{other.host}\\@{reg_host[0]}{path}"

        def answer(req: Request) -> Answer:
            auth = req.headers.get("Authorization")
            if via == "realm" and auth != f"Bearer {TOKEN}":
                realm = sneaky("/token").replace("\\", "\\\\")  # a quoted-string escape
                return Answer(401, (("WWW-Authenticate", f'Bearer realm="{realm}"'),
                                    ("Content-Length", "0")))  # fmt: skip
            if via != "realm" and auth != BASIC:
                return Answer(401, (("WWW-Authenticate", 'Basic realm="r"'),
                                    ("Content-Length", "0")))  # fmt: skip
            if via == "redirect" and req.method == "GET" and "/blobs/" in req.path:
                return Answer(307, (("Location", sneaky(req.path)), ("Content-Length", "0")))
            if via == "upload" and req.method == "HEAD" and "/site/" in req.path:
                return Answer(404, (("Content-Length", "0"),))
            if via == "upload" and req.method == "POST":
                return Answer(202, (("Location", sneaky("/upload/1")), ("Content-Length", "0")))
            return serve(req)

        with hostile_server(answer) as reg:
            reg_host.append(reg.host)
            hosts = Hosts({reg.host: login(tmp_path)})
            with Mirror(hosts=hosts, retry=QUICK) as m, pytest.raises(GitEdgeError) as e:
                if via == "upload":
                    layout = f"oci:{tmp_path / 'o'}:1.0"
                    with hostile_server(registry(img)) as plain, Mirror(retry=QUICK) as m2:
                        m2.mirror(f"{plain.host}/edge/os:1.0", layout)
                    m.mirror(layout, f"{reg.host}/site/os:1.0")
                else:
                    m.mirror(f"{reg.host}/edge/os:1.0", f"oci:{tmp_path / 'o'}:1.0")
    assert [
        r.headers.get("Authorization") for r in other.requests if "Authorization" in r.headers
    ] == []
    assert "malformed" in str(e.value)
    no_secret(str(e.value))


@pytest.mark.parametrize("status", [400, 403, 404, 500])
def test_a_registry_echoing_our_password_does_not_put_it_in_an_error(
    tmp_path: Path, status: int
) -> None:
    """Attack: an error body that repeats the password and the Basic header in plain words
    (no ``password=`` or ``Basic`` before them for a pattern to catch). The registry's words
    went into the error, so into logs and the status report. Now known secrets are scrubbed."""
    img_password = "pw-Hx3r-not-in-any-message"  # test_registry_bounds.PASSWORD
    body = json.dumps({"errors": [{"code": "DENIED", "message":
                      f"got {img_password} as {BASIC.split()[1]}, no"}]}).encode()  # fmt: skip

    def answer(req: Request) -> Answer:
        if req.headers.get("Authorization") != BASIC:
            return Answer(401, (("WWW-Authenticate", 'Basic realm="r"'), ("Content-Length", "0")))
        return Answer(status, (("Content-Length", str(len(body))),), body)

    with (
        hostile_server(answer) as reg,
        pytest.raises(GitEdgeError) as e,
        Mirror(hosts=Hosts({reg.host: login(tmp_path)}), retry=QUICK) as m,
    ):
        m.mirror(f"{reg.host}/edge/os:1.0", f"oci:{tmp_path / 'o'}:1.0")
    assert "DENIED: got *** as ***, no" in str(e.value)
    no_secret(str(e.value))


def test_response_headers_are_capped_in_bytes() -> None:
    """Attack: 95 headers of 64 KiB each (http.client's own limits: 100 lines, 64 KiB a line).
    The 6 MB of headers became ~65 MiB in the parsers of http.client, urllib3 and requests, per
    response, per connection (a mirror runs up to 16): 104 MiB peak for one. Now a response's
    headers are refused past MAX_HEADER_BYTES."""
    from gitedge.adapters.registry.bounds import MAX_HEADER_BYTES

    body = b'{"tags": ["a"]}'
    pads = tuple((f"X-Pad{i}", "v" * 65000) for i in range(95))
    assert sum(len(v) for _, v in pads) > MAX_HEADER_BYTES
    with hostile_server(lambda r: Answer(200, (("Content-Length", "15"), *pads), body)) as reg:
        client = RegistryClient(host=reg.host, retry=QUICK)
        try:
            with pytest.raises(RegistryUnavailable) as e:
                client.list_tags("r", what=f"{reg.host}/r")
            small = tuple(pads[:3])  # 195 KB of headers still pass
        finally:
            client.close()
    assert "headers larger than" in str(e.value)
    with hostile_server(lambda r: Answer(200, (("Content-Length", "15"), *small), body)) as reg:
        client = RegistryClient(host=reg.host, retry=QUICK)
        try:
            assert client.list_tags("r", what=f"{reg.host}/r") == ["a"]
        finally:
            client.close()
