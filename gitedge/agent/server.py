"""``/healthz``, ``/readyz`` and Prometheus ``/metrics`` for the agent (standard library only).

Liveness says the process and its loop are alive (the loop ticked recently); readiness says the
agent can do its job (its last pass ended with a result: ``AgentLoop.readiness``). Metrics are a
small registry of gauges and counters, written in Prometheus text exposition format 0.0.4. Label
values come from the agent's own state (commit ids, versions, window names), never from secrets.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Metrics", "StatusServer"]

Labels = tuple[tuple[str, str], ...]

#: A request must arrive whole within this (a kubelet probe or a scrape sends it at once).
REQUEST_TIMEOUT_S = 10.0


@dataclass
class _Family:
    kind: str  # gauge | counter
    help: str
    values: dict[Labels, float] = field(default_factory=dict)


def _number(value: float) -> str:
    """Exact: a timestamp in seconds must not become 1.79e+09."""
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    """Thread-safe gauges and counters, rendered on demand."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._families: dict[str, _Family] = {}

    def _family(self, name: str, kind: str, help: str) -> _Family:
        fam = self._families.get(name)
        if fam is None:
            fam = self._families[name] = _Family(kind, help)
        return fam

    def set(
        self, name: str, value: float, *, help: str, labels: Mapping[str, str] | None = None
    ) -> None:
        key = tuple(sorted((labels or {}).items()))
        with self._lock:
            self._family(name, "gauge", help).values[key] = float(value)

    def replace(self, name: str, values: Mapping[Labels, float], *, help: str) -> None:
        """Set a whole labelled gauge at once (e.g. applied versions: old label sets vanish)."""
        with self._lock:
            fam = self._family(name, "gauge", help)
            fam.values = {k: float(v) for k, v in values.items()}

    def inc(
        self, name: str, amount: float = 1.0, *, help: str, labels: Mapping[str, str] | None = None
    ) -> None:
        key = tuple(sorted((labels or {}).items()))
        with self._lock:
            fam = self._family(name, "counter", help)
            fam.values[key] = fam.values.get(key, 0.0) + amount

    def get(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        key = tuple(sorted((labels or {}).items()))
        with self._lock:
            fam = self._families.get(name)
            return None if fam is None else fam.values.get(key)

    def dump(self) -> dict[str, Any]:
        """Every family as plain JSON (a pass process hands its metrics to the agent's)."""
        with self._lock:
            return {
                name: {
                    "kind": fam.kind,
                    "help": fam.help,
                    "values": [[[list(kv) for kv in k], v] for k, v in fam.values.items()],
                }
                for name, fam in self._families.items()
            }

    def absorb(self, dump: Mapping[str, Any]) -> None:
        """Take in a :meth:`dump` of one pass: a gauge family it holds replaces ours whole (a
        pass sets every label it knows, so labels that vanished go), counters are added."""
        with self._lock:
            for name, doc in dump.items():
                values = {
                    tuple((str(k), str(v)) for k, v in labels): float(value)
                    for labels, value in doc["values"]
                }
                fam = self._family(name, str(doc["kind"]), str(doc["help"]))
                if fam.kind == "counter":
                    for key, value in values.items():
                        fam.values[key] = fam.values.get(key, 0.0) + value
                else:
                    fam.values = values

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for name in sorted(self._families):
                fam = self._families[name]
                lines.append(f"# HELP {name} {fam.help}")
                lines.append(f"# TYPE {name} {fam.kind}")
                for labels, value in sorted(fam.values.items()):
                    text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                    num = _number(value)
                    lines.append(f"{name}{{{text}}} {num}" if text else f"{name} {num}")
        return "\n".join(lines) + "\n"


class StatusServer:
    """Serves the three endpoints on ``host:port`` from a daemon thread until :meth:`stop`."""

    def __init__(
        self,
        *,
        metrics: Metrics,
        ready: Callable[[], tuple[bool, str]],
        alive: Callable[[], tuple[bool, str]],
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            timeout = REQUEST_TIMEOUT_S  # a client that never sends holds no thread for ever

            def log_message(self, format: str, *args: Any) -> None:  # quiet: the agent logs
                return

            def handle_one_request(self) -> None:
                """The standard library's, without its lookup of ``"do_" + command``: a new
                string per request, which CPython's type attribute cache keeps (up to 4,096
                of them, ~230 KiB), so the agent's memory grew with every probe it answered."""
                try:
                    self.raw_requestline = self.rfile.readline(65537)
                    if len(self.raw_requestline) > 65536:
                        self.requestline = self.request_version = self.command = ""
                        self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                        return
                    if not self.raw_requestline:
                        self.close_connection = True
                        return
                    if not self.parse_request():
                        return
                    if self.command == "GET":
                        self.do_GET()
                    else:
                        self.send_error(HTTPStatus.NOT_IMPLEMENTED, "only GET")
                    self.wfile.flush()
                except TimeoutError:
                    self.close_connection = True

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, owner.metrics.render(), "text/plain; version=0.0.4")
                elif path in ("/healthz", "/readyz"):
                    ok, why = (owner.alive if path == "/healthz" else owner.ready)()
                    self._send(200 if ok else 503, (why or "ok") + "\n", "text/plain")
                else:
                    self._send(404, "not found\n", "text/plain")

            def _send(self, code: int, body: str, ctype: str) -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", f"{ctype}; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.metrics, self.ready, self.alive = metrics, ready, alive
        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="status-server", daemon=True
        )
        self.started = time.monotonic()

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> StatusServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
