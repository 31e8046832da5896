"""The catalog digest's tag check (agent/steps/mirrorimage.py ``check_tag``) against a registry that lies
in its ``Docker-Content-Digest`` header (atk16): the served digest is the hash of the bytes
served, held to the header when there is one, so a header naming the approved digest over other
bytes, or naming another algorithm over the approved bytes, is refused (DigestMismatch), never
taken as "the tag still names the approved image". A registry in front of a real docker-registry
on 127.0.0.1 rewrites the answer to ``GET /v2/<repo>/manifests/<tag>``."""

from __future__ import annotations

import hashlib
import http.client
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from gitedge.adapters.images.mirroring import Mirror
from gitedge.agent.steps.mirrorimage import check_tag
from gitedge.core.images.refs import ImageRef
from gitedge.errors import DigestMismatch
from tests.agentkit import push_image
from tests.cosigntools import client_for
from tests.registryserver import _threaded_server, docker_registry

Rewrite = Callable[[str, bytes, dict[str, str]], tuple[bytes, dict[str, str]]]


@contextmanager
def rewriting(port: int, tag: str, rewrite: Rewrite) -> Iterator[str]:
    """docker-registry at ``port``, with the answer for manifest ``tag`` passed through
    ``rewrite(method, body, headers)``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                conn.request(self.command, self.path,
                             headers={k: v for k, v in self.headers.items()
                                      if k.lower() in ("accept", "range")})  # fmt: skip
                r = conn.getresponse()
                body = r.read()
                keep = ("content-type", "docker-content-digest", "content-range")
                headers = {k: v for k, v in r.getheaders() if k.lower() in keep}
                if self.path.split("?")[0].endswith(f"/manifests/{tag}"):
                    body, headers = rewrite(self.command, body, headers)
                self.send_response(r.status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
            finally:
                conn.close()

        do_HEAD = do_GET  # noqa: N815 (http.server dispatches on the method name)

    with _threaded_server(Handler) as p:
        yield f"127.0.0.1:{p}"


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("lie", ["approved-header-over-moved-bytes", "sha512-header"])
def test_a_lying_digest_header_never_passes_the_tag_check(lie: str, tmp_path: Path) -> None:
    repo, tag = "rancher/k3s-upgrade", "v1.28.15-k3s1"
    with docker_registry(tmp_path / "up") as up:
        approved = push_image(tmp_path / "a", f"{up.host}/{repo}:{tag}").digest
        c = client_for(up.host)
        try:
            approved_bytes = c.get_manifest(repo, approved, what="t").data
        finally:
            c.close()
        moved = push_image(tmp_path / "b", f"{up.host}/{repo}:{tag}").digest  # the tag moves
        assert moved != approved

        def rewrite(method: str, body: bytes, headers: dict[str, str]) -> Any:
            if lie == "approved-header-over-moved-bytes":
                assert _sha256(body) == moved
                return body, {**headers, "Docker-Content-Digest": approved}
            # the approved bytes, announced under another algorithm
            return approved_bytes, {**headers, "Docker-Content-Digest":
                                    "sha512:" + hashlib.sha512(approved_bytes).hexdigest()}  # fmt: skip

        with rewriting(up.port, tag, rewrite) as host, Mirror() as m:
            ref = ImageRef(host, repo, tag=tag, digest=approved)
            with pytest.raises(DigestMismatch) as e:
                check_tag(m, ref)
    assert approved in str(e.value)
