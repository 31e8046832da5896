"""A scripted, hostile HTTP server on 127.0.0.x: any status, raw headers, endless or trickled
bodies, for the bounds of adapters/registry/client.py (test_registry_bounds.py, test_registry_fuzz.py).

``hostile_server(answer)`` serves every request with ``answer(request)`` -> :class:`Answer`;
headers are written as given (malformed ones too), the connection is closed after each answer
(a broken ``Content-Length`` then cannot confuse the next one). ``Server.requests`` records what
came in (method, path, headers), so a test can tell whether credentials reached a host. Every
body writer stops when the client goes away or the server is stopped.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]


@dataclass(frozen=True)
class Answer:
    """One answer: ``endless`` repeats ``body`` forever; ``trickle`` > 0 sends one byte, then
    waits that many seconds, and so on (headers too with ``trickle_headers``), after the first
    ``fast`` body bytes went at full speed."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    endless: bool = False
    trickle: float = 0.0
    trickle_headers: bool = False
    reason: str = "Hostile"
    fast: int = 0


@dataclass
class Server:
    host: str  # 127.0.0.x:PORT
    port: int
    requests: list[Request] = field(default_factory=list)
    bytes_sent: int = 0

    def seen(self, method: str, contains: str = "") -> list[Request]:
        return [r for r in self.requests if r.method == method and contains in r.path]


AnswerFn = Callable[[Request], Answer]


@contextlib.contextmanager
def hostile_server(answer: AnswerFn, *, address: str = "127.0.0.1") -> Iterator[Server]:
    stop = threading.Event()
    server = Server("", 0)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _drain_request_body(self) -> None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return
                    self.rfile.read(size + 2)
            length = int(self.headers.get("Content-Length") or 0)
            while length > 0 and (chunk := self.rfile.read(min(length, 1 << 20))):
                length -= len(chunk)

        def _send(self, data: bytes, trickle: float) -> None:
            if trickle <= 0:
                self.wfile.write(data)
                with lock:
                    server.bytes_sent += len(data)
                return
            for i in range(len(data)):
                if stop.is_set():
                    raise ConnectionAbortedError
                self.wfile.write(data[i : i + 1])
                self.wfile.flush()
                with lock:
                    server.bytes_sent += 1
                stop.wait(trickle)

        def _handle(self) -> None:
            self._drain_request_body()
            req = Request(self.command, self.path, dict(self.headers.items()))
            server.requests.append(req)
            a = answer(req)
            self.close_connection = True
            head = io.BytesIO()
            head.write(f"HTTP/1.1 {a.status} {a.reason}\r\n".encode())
            for k, v in a.headers:
                head.write(f"{k}: {v}\r\n".encode("latin-1", "replace"))
            head.write(b"Connection: close\r\n\r\n")
            try:
                self._send(head.getvalue(), a.trickle if a.trickle_headers else 0.0)
                if self.command == "HEAD":
                    return
                if a.endless:
                    chunk = (a.body or b"x") * max(1, 65536 // max(1, len(a.body or b"x")))
                    while not stop.is_set():
                        self._send(chunk, a.trickle)
                else:
                    self._send(a.body[: a.fast], 0.0)
                    self._send(a.body[a.fast :], a.trickle)
                self.wfile.flush()
            except (OSError, ValueError):
                pass  # the client went away: what a hostile server hopes for

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle  # noqa: N815

    srv = ThreadingHTTPServer((address, 0), Handler)
    srv.daemon_threads = True
    srv.block_on_close = False
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    server.port = int(srv.server_address[1])
    server.host = f"{address}:{server.port}"
    try:
        yield server
    finally:
        stop.set()
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)
        time.sleep(0)  # writers see ``stop`` at their next chunk and end
