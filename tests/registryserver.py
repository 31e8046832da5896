"""Real OCI registries on 127.0.0.1 for tests and benches, and test images made from random bytes.

- :func:`docker_registry` — Debian's ``docker-registry`` (CNCF distribution 2.8) with filesystem
  storage in a temp dir, optionally with htpasswd auth, a bearer-token service, or TLS;
- :func:`token_service` — a tiny token server issuing ES256 JWTs the registry trusts (x5c);
- :func:`http_front` — an HTTP front that answers some requests with errors (500, 429, ...)
  and forwards the rest to a real registry;
- :func:`make_layout` — an OCI image layout with random layers, configs, manifests and an index
  of several platforms (OCI or Docker media types), written streaming so big images stay cheap;
- :func:`skopeo` — the reference copier/inspector.

Every server is a context manager with a bounded start and a guaranteed stop.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import io
import json
import os
import secrets
import socket
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.gitserver import TlsFiles, _start, _stop, wait_for_port

REGISTRY_BIN = "/usr/bin/docker-registry"
SKOPEO_BIN = "/usr/bin/skopeo"

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"


# ---------------------------------------------------------------------------- registry


@dataclass
class RegistryServer:
    """A running registry: ``host`` is ``127.0.0.1:PORT``; ``root`` is its storage directory."""

    host: str
    port: int
    root: Path
    scheme: str

    def blob_file(self, digest: str) -> Path:
        """Where distribution's filesystem driver keeps a blob's bytes (to tamper with them)."""
        algo, hexpart = digest.split(":", 1)
        return self.root / "docker/registry/v2/blobs" / algo / hexpart[:2] / hexpart / "data"

    def has_blob_file(self, digest: str) -> bool:
        return self.blob_file(digest).exists()


def module_registry(name: str) -> Any:
    """A module-scoped pytest fixture: a plain :func:`docker_registry` shared by a test file."""
    import pytest

    @pytest.fixture(scope="module")
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
        with docker_registry(tmp_path_factory.mktemp(name)) as server:
            yield server

    return fixture


def htpasswd_line(user: str, password: str) -> str:
    """An htpasswd line with a bcrypt hash (what distribution's htpasswd auth accepts)."""
    import bcrypt

    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"


@contextlib.contextmanager
def docker_registry(
    directory: Path,
    *,
    htpasswd: tuple[str, str] | None = None,
    tls: TlsFiles | None = None,
    token: TokenService | None = None,
    proxy_remote: str | None = None,
) -> Iterator[RegistryServer]:
    """``docker-registry serve`` on 127.0.0.1:N, storage under ``directory``; with
    ``proxy_remote``, a pull-through cache of that registry (``proxy.remoteurl``)."""
    if not Path(REGISTRY_BIN).is_file():
        raise RuntimeError(f"{REGISTRY_BIN} missing: apt-get install docker-registry")
    directory.mkdir(parents=True, exist_ok=True)
    root = directory / "storage"
    config = directory / "config.yml"
    extra = ""
    if htpasswd is not None:
        (directory / "htpasswd").write_text(htpasswd_line(*htpasswd))
        extra += f"auth:\n  htpasswd:\n    realm: test-realm\n    path: {directory / 'htpasswd'}\n"
    if token is not None:
        extra += (
            f"auth:\n  token:\n    realm: {token.url}/token\n    service: {token.service}\n"
            f"    issuer: {token.issuer}\n    rootcertbundle: {token.cert_file}\n"
        )
    if proxy_remote is not None:
        extra += f"proxy:\n  remoteurl: {proxy_remote}\n"

    def cmd(port: int) -> list[str]:
        tls_cfg = (
            f"  tls:\n    certificate: {tls.cert_file}\n    key: {tls.key_file}\n" if tls else ""
        )
        config.write_text(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n"
            "  maintenance:\n    uploadpurging:\n      enabled: false\n"
            f"http:\n  addr: 127.0.0.1:{port}\n  secret: {secrets.token_hex(16)}\n"
            + tls_cfg
            + extra
        )
        return [REGISTRY_BIN, "serve", str(config)]

    proc, port = _start(cmd)
    # Drain stderr: distribution logs every 404 (each HEAD of a missing blob) at level error,
    # the lowest it has; 64 KiB of those would fill the pipe and hang every request after.
    drain = threading.Thread(target=_discard, args=(proc.stderr,), daemon=True)
    drain.start()
    try:
        yield RegistryServer(f"127.0.0.1:{port}", port, root, "https" if tls else "http")
    finally:
        _stop(proc)
        drain.join(timeout=5)


def _discard(stream: io.BufferedReader | None) -> None:
    with contextlib.suppress(OSError, ValueError):
        while stream is not None and stream.read(65536):
            pass


# ---------------------------------------------------------------------------- token service


@dataclass
class TokenService:
    """A running :func:`token_service`; ``scopes_asked`` records each token request's scopes."""

    url: str
    service: str
    issuer: str
    cert_file: Path
    scopes_asked: list[list[str]] = field(default_factory=list)
    refused: int = 0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@contextlib.contextmanager
def token_service(directory: Path, *, user: str, password: str) -> Iterator[TokenService]:
    """A Docker token server: basic auth in, an ES256 JWT out, for whatever scopes were asked.

    The JWT carries its certificate in ``x5c``; the registry trusts that self-signed certificate
    through ``rootcertbundle``."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gitedge test token signer")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file = directory / "token-signer.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    want = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    svc = TokenService("", "gitedge-test-registry", "gitedge-test-issuer", cert_file)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            if self.headers.get("Authorization") != want:
                svc.refused += 1
                body = b'{"details":"bad credentials"}'
                self.send_response(401)
            else:
                scopes = [s for v in query.get("scope", []) for s in v.split(" ")]
                svc.scopes_asked.append(scopes)
                access = []
                for s in scopes:
                    kind, _, rest = s.partition(":")
                    repo, _, actions = rest.rpartition(":")
                    access.append({"type": kind, "name": repo, "actions": actions.split(",")})
                t = int(time.time())
                header = {"typ": "JWT", "alg": "ES256", "x5c": [x5c]}
                claims = {
                    "iss": svc.issuer,
                    "sub": user,
                    "aud": query.get("service", [svc.service])[0],
                    "exp": t + 300,
                    "nbf": t - 30,
                    "iat": t,
                    "jti": secrets.token_hex(8),
                    "access": access,
                }
                signing_input = (
                    _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
                )
                r, s = decode_dss_signature(
                    key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
                )
                jwt = signing_input + "." + _b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
                body = json.dumps({"token": jwt, "expires_in": 300}).encode()
                self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with _threaded_server(Handler) as port:
        svc.url = f"http://127.0.0.1:{port}"
        yield svc


@contextlib.contextmanager
def _threaded_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    srv.block_on_close = False
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    port = int(srv.server_address[1])
    try:
        wait_for_port(port)
        yield port
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


# ---------------------------------------------------------------------------- failing HTTP front


@dataclass
class Front:
    """A running :func:`http_front`: its host, every request seen with the status given, and
    the most blob GETs it had in flight at once."""

    host: str
    seen: list[tuple[str, str, int]] = field(default_factory=list)
    blob_gets_in_flight: int = 0
    max_blob_gets_in_flight: int = 0
    cuts: int = 0

    def statuses(self, method: str, contains: str) -> list[int]:
        return [s for m, p, s in self.seen if m == method and contains in p]


#: ``fail(method, path, n)`` -> (status, extra headers) to answer instead of forwarding, or None;
#: ``n`` counts earlier requests with the same method and path (query stripped).
FailFn = Callable[[str, str, int], tuple[int, dict[str, str]] | None]

#: ``cut(method, path, n)`` -> how many body bytes to send before dropping the connection, or None.
CutFn = Callable[[str, str, int], int | None]

_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


@contextlib.contextmanager
def http_front(
    target_port: int,
    *,
    fail: FailFn | None = None,
    cut: CutFn | None = None,
    drop_headers: Sequence[str] = (),
    gate: int = 0,
) -> Iterator[Front]:
    """An HTTP/1.1 front on 127.0.0.1:N for a plain-HTTP registry on ``target_port``.

    Requests ``fail`` picks get its status (with a small distribution-style error body); the
    rest are forwarded with their Host header (so the registry's Location URLs point back at
    the front) and the answer streamed back, or cut after the number of body bytes ``cut``
    picks (the connection is then closed, as a dropped link would). ``drop_headers`` are removed from requests (drop
    ``Range`` to play a server that ignores it). With ``gate`` > 0 each blob GET waits (at most
    10 s) until ``gate`` blob GETs are in flight together: a client that fetches blobs one at a
    time crawls, and ``max_blob_gets_in_flight`` tells how parallel a client really was."""
    front = Front("")
    counts: dict[tuple[str, str], int] = {}
    lock = threading.Condition()
    dropped = {h.lower() for h in drop_headers}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = io.BytesIO()
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return out.getvalue()
                    out.write(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _handle(self) -> None:
            body = self._body()
            key = (self.command, self.path.split("?", 1)[0])
            with lock:
                n = counts.get(key, 0)
                counts[key] = n + 1
            failure = fail(self.command, self.path, n) if fail else None
            if failure is not None:
                status, headers = failure
                payload = b'{"errors":[{"code":"UNAVAILABLE","message":"injected by the test"}]}'
                front.seen.append((self.command, self.path, status))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
                return
            blob_get = self.command == "GET" and "/blobs/sha256:" in self.path
            if blob_get:
                with lock:
                    front.blob_gets_in_flight += 1
                    front.max_blob_gets_in_flight = max(
                        front.max_blob_gets_in_flight, front.blob_gets_in_flight
                    )
                    lock.notify_all()
                    lock.wait_for(lambda: front.max_blob_gets_in_flight >= gate, timeout=10)
            try:
                self._forward(body, cut(self.command, self.path, n) if cut else None)
            finally:
                if blob_get:
                    with lock:
                        front.blob_gets_in_flight -= 1

        def _forward(self, body: bytes, cut_at: int | None) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", target_port, timeout=30)
            try:
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in _HOP and k.lower() not in dropped
                }
                if body or self.command in ("PUT", "PATCH", "POST"):
                    headers["Content-Length"] = str(len(body))
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                front.seen.append((self.command, self.path, resp.status))
                self.send_response(resp.status)
                length = resp.getheader("Content-Length")
                data = None
                if length is None and self.command != "HEAD":
                    data = resp.read()
                    length = str(len(data))
                for k, v in resp.getheaders():
                    if k.lower() not in _HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                if length is not None:
                    self.send_header("Content-Length", length)
                self.end_headers()
                if self.command == "HEAD":
                    return
                if data is not None:
                    self.wfile.write(data)
                    return
                left = cut_at
                while chunk := resp.read(256 * 1024):
                    if left is not None and len(chunk) >= left:
                        self.wfile.write(chunk[:left])
                        self.wfile.flush()
                        front.cuts += 1
                        self.close_connection = True
                        with contextlib.suppress(OSError):
                            self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    self.wfile.write(chunk)
                    left = None if left is None else left - len(chunk)
            finally:
                conn.close()

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle  # noqa: N815

    with _threaded_server(Handler) as port:
        front.host = f"127.0.0.1:{port}"
        yield front


def fail_first(
    count: int, *, status: int = 500, where: str = "", method: str | None = None,
    headers: dict[str, str] | None = None,
) -> FailFn:  # fmt: skip
    """Fail the first ``count`` requests of each method+path containing ``where``."""

    def fail(m: str, path: str, n: int) -> tuple[int, dict[str, str]] | None:
        if where in path and (method is None or m == method) and n < count:
            return status, dict(headers or {})
        return None

    return fail


# ---------------------------------------------------------------------------- test images


@dataclass
class LayoutImage:
    """What :func:`make_layout` wrote: the top digest and per-platform manifest digests."""

    path: Path
    tag: str
    digest: str  # the index (or the single manifest)
    media_type: str
    manifests: dict[str, str]  # "os/arch" -> manifest digest
    blobs: dict[str, int]  # every blob digest -> size (configs and layers)

    @property
    def total_bytes(self) -> int:
        return sum(self.blobs.values())


class _Writer:
    """Writes a blob into a layout streaming, hashing as it goes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "blobs" / "sha256" / f".w-{secrets.token_hex(6)}"
        self.f = self.tmp.open("wb")
        self.h = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.f.write(data)
        self.h.update(data)
        self.size += len(data)

    def close(self) -> tuple[str, int]:
        self.f.close()
        digest = "sha256:" + self.h.hexdigest()
        self.tmp.replace(self.root / "blobs" / "sha256" / digest[7:])
        return digest, self.size


def _put(root: Path, data: bytes) -> tuple[str, int]:
    w = _Writer(root)
    w.write(data)
    return w.close()


def _random_tar_layer(root: Path, size: int, name: str) -> tuple[str, int]:
    """An uncompressed tar holding one file of ``size`` random bytes (a valid layer)."""
    w = _Writer(root)
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    w.write(info.tobuf(format=tarfile.PAX_FORMAT))
    left = size
    while left:
        n = min(left, 4 * 1024 * 1024)
        w.write(os.urandom(n))
        left -= n
    w.write(b"\0" * ((512 - size % 512) % 512) + b"\0" * 1024)
    return w.close()


def make_layout(
    path: Path,
    *,
    tag: str = "1.0",
    platforms: Sequence[str] = ("linux/amd64", "linux/arm64"),
    layer_sizes: Sequence[int] = (300_000, 700_000),
    shared_layer: int = 0,
    docker_types: bool = False,
    single: bool = False,
) -> LayoutImage:
    """An OCI layout at ``path`` holding one image (``single``) or an index of ``platforms``.

    Each platform gets its own random layers of ``layer_sizes`` bytes; ``shared_layer`` > 0 adds
    a layer common to all platforms (first in each manifest)."""
    (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    t_manifest, t_config, t_layer, t_index = (
        (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER, DOCKER_LIST)
        if docker_types
        else (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER, OCI_INDEX)
    )
    blobs: dict[str, int] = {}
    shared = _random_tar_layer(path, shared_layer, "shared.bin") if shared_layer else None
    children, manifests = [], {}
    for plat in platforms[:1] if single else platforms:
        os_, arch = plat.split("/")[:2]
        layers = [shared] if shared else []
        layers += [_random_tar_layer(path, n, f"{arch}-{i}.bin") for i, n in enumerate(layer_sizes)]
        config = {
            "architecture": arch,
            "os": os_,
            "config": {"Env": ["PATH=/usr/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [d for d, _ in layers]},
        }
        cfg = _put(path, json.dumps(config).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": t_manifest,
            "config": {"mediaType": t_config, "digest": cfg[0], "size": cfg[1]},
            "layers": [{"mediaType": t_layer, "digest": d, "size": n} for d, n in layers],
        }
        m = _put(path, json.dumps(manifest, indent=3).encode())
        blobs.update({cfg[0]: cfg[1], **dict(layers)})
        manifests[plat] = m[0]
        children.append(
            {"mediaType": t_manifest, "digest": m[0], "size": m[1],
             "platform": {"architecture": arch, "os": os_}}
        )  # fmt: skip
    if single:
        top = (children[0]["digest"], children[0]["size"], t_manifest)
    else:
        index = {"schemaVersion": 2, "mediaType": t_index, "manifests": children}
        d, n = _put(path, json.dumps(index, indent=3).encode())
        top = (d, n, t_index)
    (path / "index.json").write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": top[2],
                        "digest": top[0],
                        "size": top[1],
                        "annotations": {"org.opencontainers.image.ref.name": tag},
                    }
                ],
            }
        )
    )
    return LayoutImage(path, tag, str(top[0]), str(top[2]), manifests, blobs)


# ---------------------------------------------------------------------------- skopeo


def skopeo(*args: str, timeout: float = 120) -> bytes:
    """Run skopeo (bounded); raises with its stderr on failure."""
    if not Path(SKOPEO_BIN).is_file():
        raise RuntimeError(f"{SKOPEO_BIN} missing: apt-get install skopeo")
    proc = subprocess.run(
        [SKOPEO_BIN, *args], capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if proc.returncode != 0:
        raise RuntimeError(f"skopeo {' '.join(args)}: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


def skopeo_push(img: LayoutImage, ref: str, *flags: str) -> None:
    """Put a layout's image (all platforms, digests kept) into a registry with skopeo."""
    skopeo(
        "copy", "--all", "--preserve-digests", "--quiet", *(flags or ("--dest-tls-verify=false",)),
        f"oci:{img.path}:{img.tag}", f"docker://{ref}",
    )  # fmt: skip


def served(host: str, repo: str, reference: str) -> str | None:
    """The digest a plain-HTTP registry serves under ``repo:reference`` (a HEAD, by hand, so the
    check does not go through the client under test); None when it has nothing there."""
    conn = http.client.HTTPConnection(host, timeout=10)
    try:
        conn.request(
            "HEAD", f"/v2/{repo}/manifests/{reference}",
            headers={"Accept": f"{OCI_INDEX}, {DOCKER_LIST}, {OCI_MANIFEST}, {DOCKER_MANIFEST}"},
        )  # fmt: skip
        resp = conn.getresponse()
        resp.read()
    finally:
        conn.close()
    if resp.status == 404:
        return None
    if resp.status != 200:
        raise RuntimeError(f"HEAD {host}/{repo}:{reference}: {resp.status}")
    return resp.getheader("Docker-Content-Digest")


def skopeo_raw(ref: str, *flags: str) -> bytes:
    """``skopeo inspect --raw docker://ref`` (plain HTTP unless flags say otherwise)."""
    return skopeo("inspect", "--raw", *(flags or ("--tls-verify=false",)), f"docker://{ref}")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
