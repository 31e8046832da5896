"""Real git servers on 127.0.0.1 for tests, plus helpers to make repos with the real git CLI.

Every server is a context manager with a bounded start-up (it raises ``ServerStartError`` rather
than wait forever) and a guaranteed cleanup (processes terminated then killed, sockets closed,
threads joined), so a failing test never leaves a listener behind:

- :func:`git_daemon` — ``git daemon`` serving ``git://127.0.0.1:N/<repo>``;
- :func:`http_git_server` — ``git http-backend`` (CGI) behind a threaded Python HTTP server,
  optionally with basic auth and optionally TLS with a test CA from :func:`make_tls_files`;
- :func:`sshd_server` — OpenSSH's ``sshd`` with a host key and authorized_keys in a temp dir
  (needs the Debian package ``openssh-server``; :func:`sshd_available` tells);
- :func:`tcp_proxy` — forwards to a server and cuts (or corrupts) the server's response after N
  bytes, per connection;
- :func:`silent_server` — accepts connections and never answers.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import gc
import gzip
import ipaddress
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

START_TIMEOUT_S = 10.0
SSHD = "/usr/sbin/sshd"


class ServerStartError(RuntimeError):
    """A test server did not come up in time."""


# ---------------------------------------------------------------------------- git CLI helpers


def git_env(home: Path) -> dict[str, str]:
    """An environment for the git CLI isolated from the machine: own HOME and global config."""
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / ".gitconfig"
    if not cfg.exists():
        cfg.write_text(
            "[user]\n\tname = Test Operator\n\temail = ops@fleet.example\n"
            '[init]\n\tdefaultBranch = main\n[protocol "file"]\n\tallow = always\n'
            "[gc]\n\tauto = 0\n"
        )
    keep = {k: os.environ[k] for k in ("PATH", "LANG", "TMPDIR") if k in os.environ}
    return {
        **keep,
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": str(cfg),
        "GIT_TERMINAL_PROMPT": "0",
        "LC_ALL": "C",
    }


def git(*args: str, cwd: Path, env: dict[str, str], input: bytes | None = None) -> str:
    """Run ``git`` (30 s at most) and return its stdout; raises with stderr on failure."""
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=env, input=input, capture_output=True, timeout=30
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode()


# ---------------------------------------------------------------------------- plumbing


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, *, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until 127.0.0.1:port accepts connections; fail if ``proc`` dies or time runs out."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise ServerStartError(f"server exited with {proc.returncode}: {err[-500:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise ServerStartError(f"nothing listens on 127.0.0.1:{port} after {START_TIMEOUT_S}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    for stream in (proc.stdout, proc.stderr, proc.stdin):
        if stream is not None:
            stream.close()


def _start(
    make_cmd: Any, *, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``make_cmd(port)`` on a free port and wait until it listens; three tries (another
    process may grab the port between the probe and the bind)."""
    for attempt in range(3):
        port = free_port()
        proc = subprocess.Popen(
            make_cmd(port),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for_port(port, proc=proc)
        except ServerStartError:
            _stop(proc)
            if attempt == 2:
                raise
            continue
        return proc, port
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------- git daemon


@contextlib.contextmanager
def git_daemon(base_path: Path) -> Iterator[str]:
    """``git daemon`` exporting every repo under ``base_path``; yields ``git://127.0.0.1:N``."""

    def cmd(port: int) -> list[str]:
        return [
            "git",
            "daemon",
            "--export-all",
            f"--base-path={base_path}",
            "--reuseaddr",
            "--informative-errors",
            "--listen=127.0.0.1",
            f"--port={port}",
            str(base_path),
        ]

    proc, port = _start(cmd, env=git_env(base_path.parent / ".daemon-home"))
    try:
        yield f"git://127.0.0.1:{port}"
    finally:
        _stop(proc)


# ---------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a test CA and a server certificate it signed (for 127.0.0.1, localhost)."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_tls_files(
    directory: Path, *, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
) -> TlsFiles:
    """Make a CA and a server certificate with ``cryptography``; write them as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gitedge test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


# ---------------------------------------------------------------------------- git http-backend


class _GitHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    project_root: Path
    credentials: tuple[str, str] | None
    tls: ssl.SSLContext | None
    requests_seen: list[tuple[str, str, dict[str, str]]]

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake happens here, in the worker thread, so a client that never
        # completes it cannot block the accept loop.
        if self.tls is not None:
            request.settimeout(10)
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError):
                return
        super().finish_request(request, client_address)


class _GitHTTPHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _GitHTTPServer
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            body = b"".join(chunks)
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding", "").lower() in ("gzip", "x-gzip"):
            body = gzip.decompress(body)
        return body

    def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "status"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _serve(self) -> None:
        srv = self.server
        srv.requests_seen.append((self.command, self.path, dict(self.headers.items())))
        body = self._body()
        if srv.credentials is not None:
            user, password = srv.credentials
            want = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            if self.headers.get("Authorization") != want:
                self._reply(401, [("WWW-Authenticate", 'Basic realm="git"')], b"auth required\n")
                return
        path, _, query = self.path.partition("?")
        env = {
            **git_env(srv.project_root.parent / ".http-home"),
            "GIT_PROJECT_ROOT": str(srv.project_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_USER": srv.credentials[0] if srv.credentials else "",
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        try:
            proc = subprocess.run(
                ["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60
            )
        except subprocess.TimeoutExpired:
            self._reply(504, [], b"http-backend timed out\n")
            return
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = proc.stdout.partition(b"\n\n")
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name.strip(), value.strip()))
        self._reply(status, headers, payload)


@dataclass
class HttpServer:
    """A running ``http_git_server``: its base URL and the requests it saw."""

    url: str
    port: int
    requests_seen: list[tuple[str, str, dict[str, str]]]


@contextlib.contextmanager
def http_git_server(
    project_root: Path,
    *,
    credentials: tuple[str, str] | None = None,
    tls: TlsFiles | None = None,
) -> Iterator[HttpServer]:
    """``git http-backend`` over HTTP(S) on 127.0.0.1; yields the base URL and a request log."""
    srv = _GitHTTPServer(("127.0.0.1", 0), _GitHTTPHandler)
    srv.project_root = project_root
    srv.credentials = credentials
    srv.requests_seen = []
    srv.tls = None
    if tls is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
        srv.tls = ctx
    port = int(srv.server_address[1])
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        wait_for_port(port)
        scheme = "https" if tls else "http"
        yield HttpServer(f"{scheme}://127.0.0.1:{port}", port, srv.requests_seen)
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


# ---------------------------------------------------------------------------- TCP proxy


@dataclass
class ProxyStats:
    """What a :func:`tcp_proxy` did: connections accepted, and how many it cut or corrupted."""

    port: int
    connections: int = 0
    cut: int = 0
    corrupted: int = 0
    bytes_down: int = 0  # server-to-client bytes delivered, over all connections


@contextlib.contextmanager
def tcp_proxy(
    target_port: int,
    *,
    cut_after: int | None = None,
    corrupt_at: int | None = None,
    rate: int | None = None,
) -> Iterator[ProxyStats]:
    """Forward 127.0.0.1:N to ``target_port``. Per connection, after ``cut_after`` bytes of the
    server's response the proxy closes both sides; the byte at offset ``corrupt_at`` of the
    server's response is inverted; ``rate`` (bytes/s) trickles the response. Yields live
    :class:`ProxyStats`."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    stats = ProxyStats(port=int(listener.getsockname()[1]))
    stop = threading.Event()
    count_lock = threading.Lock()
    open_socks: list[socket.socket] = []
    threads: list[threading.Thread] = []

    def close_pair(a: socket.socket, b: socket.socket) -> None:
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def upstream(client: socket.socket, server: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while not stop.is_set():
                data = client.recv(65536)
                if not data:
                    server.shutdown(socket.SHUT_WR)
                    return
                server.sendall(data)

    def downstream(client: socket.socket, server: socket.socket) -> None:
        sent = 0
        try:
            while not stop.is_set():
                data = server.recv(65536 if rate is None else 1024)
                if not data:
                    break
                if rate is not None:
                    time.sleep(len(data) / rate)
                if corrupt_at is not None and sent <= corrupt_at < sent + len(data):
                    i = corrupt_at - sent
                    data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
                    stats.corrupted += 1
                if cut_after is not None and sent + len(data) >= cut_after:
                    client.sendall(data[: cut_after - sent])
                    with count_lock:
                        stats.bytes_down += cut_after - sent
                    stats.cut += 1
                    break
                client.sendall(data)
                sent += len(data)
                with count_lock:
                    stats.bytes_down += len(data)
        except OSError:
            pass
        finally:
            close_pair(client, server)

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            stats.connections += 1
            try:
                server = socket.create_connection(("127.0.0.1", target_port), timeout=5)
            except OSError:
                client.close()
                continue
            client.settimeout(30)
            server.settimeout(30)
            open_socks.extend([client, server])
            for fn in (upstream, downstream):
                t = threading.Thread(target=fn, args=(client, server), daemon=True)
                threads.append(t)
                t.start()

    acceptor = threading.Thread(target=accept_loop, daemon=True)
    acceptor.start()
    try:
        yield stats
    finally:
        stop.set()
        acceptor.join(timeout=5)
        listener.close()
        for s in open_socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        for t in threads:
            t.join(timeout=5)


def wait_single_threaded(limit_s: float = 60.0) -> None:
    """Wait until this process runs no thread but the main one. The servers of earlier tests
    leave daemon threads that end by themselves once their sockets time out (tcp_proxy's
    per-connection threads, the API emulator's request threads); a test that forks worker
    processes needs them gone, as gitedge forks only from a single-threaded process."""
    deadline = time.monotonic() + limit_s
    collected = 0.0
    while threading.active_count() > 1 and time.monotonic() < deadline:
        if time.monotonic() - collected > 1.0:
            # a client dropped by an earlier test (a requests session, a kubernetes ApiClient
            # in a reference cycle) closes its keep-alive connection only when collected; until
            # then the server thread serving it waits, and a sleeping loop triggers no collection
            gc.collect()
            collected = time.monotonic()
        time.sleep(0.05)
    if threading.active_count() > 1:  # say which, for the assertion that follows
        alive = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
        print(f"wait_single_threaded: still running after {limit_s}s: {alive}")


# ---------------------------------------------------------------------------- silent server


@contextlib.contextmanager
def silent_server(accepted: threading.Event | None = None) -> Iterator[int]:
    """Accept TCP connections on 127.0.0.1:N and never send a byte; yields N. ``accepted`` is
    set at the first connection (the client is then surely waiting on it)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    stop = threading.Event()
    held: list[socket.socket] = []

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)
            if accepted is not None:
                accepted.set()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
        for conn in held:
            conn.close()


# ---------------------------------------------------------------------------- sshd


def sshd_available() -> bool:
    """Whether OpenSSH's server (Debian ``openssh-server``) and ``ssh-keygen`` are installed."""
    return Path(SSHD).is_file() and shutil.which("ssh-keygen") is not None


@dataclass(frozen=True)
class SshServer:
    """A running :func:`sshd_server`: whom to log in as, with which key, trusting which host key."""

    port: int
    user: str
    key_file: Path
    known_hosts_file: Path
    host_public_key: str

    def url(self, path: Path) -> str:
        """The ``ssh://`` URL of a repo at an absolute ``path`` on this machine."""
        return f"ssh://{self.user}@127.0.0.1:{self.port}{path}"


def ssh_keygen(path: Path, *, comment: str = "gitedge-test") -> Path:
    """A fresh unencrypted ed25519 key pair at ``path`` (and ``path``.pub)."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return path


@contextlib.contextmanager
def sshd_server(directory: Path) -> Iterator[SshServer]:
    """``sshd -D`` on 127.0.0.1:N with keys in ``directory``; the current user may log in with
    the yielded key. Root needs /run/sshd (the privilege-separation dir), created if missing."""
    if not sshd_available():
        raise ServerStartError("sshd is not installed (Debian package openssh-server)")
    directory.mkdir(parents=True, exist_ok=True)
    host_key = ssh_keygen(directory / "ssh_host_ed25519_key", comment="host")
    client_key = ssh_keygen(directory / "id_ed25519", comment="client")
    authorized = directory / "authorized_keys"
    authorized.write_text((directory / "id_ed25519.pub").read_text())
    host_pub = " ".join((directory / "ssh_host_ed25519_key.pub").read_text().split()[:2])
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    user = pwd.getpwuid(os.geteuid()).pw_name
    config = directory / "sshd_config"

    def cmd(port: int) -> list[str]:
        config.write_text(
            f"ListenAddress 127.0.0.1:{port}\n"
            f"HostKey {host_key}\n"
            f"AuthorizedKeysFile {authorized}\n"
            f"PidFile {directory / 'sshd.pid'}\n"
            "StrictModes no\nUsePAM no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
            "PermitRootLogin prohibit-password\nLogLevel ERROR\n"
            f"AllowUsers {user}\n"
        )
        return [SSHD, "-D", "-e", "-f", str(config)]

    proc, port = _start(cmd)
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    try:
        yield SshServer(port, user, client_key, known_hosts, host_pub)
    finally:
        _stop(proc)
