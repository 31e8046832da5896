"""Bounds on every HTTP exchange with a registry: size caps, a stall timeout, a minimum rate.

A registry, a token realm, a report registry, or anyone on the path of plain HTTP may answer
with an endless body, trickle bytes, or send headers no parser expects. What holds:

- **Size caps.** A body is read only through :func:`read_capped` (at most ``cap`` bytes,
  checked against ``Content-Length`` before reading and counted while reading; a gzip or deflate
  body is inflated with the same cap, so a compression bomb stops at the cap) or streamed by
  :func:`iter_body` into a hash (blobs: the caller counts against the descriptor's size).
  Requests are never allowed to buffer a body themselves (``stream=True`` always, redirects
  followed by ``client.py``, whose bodies are not read).
- **Stall timeout.** No byte for ``stall_s`` seconds fails the read (the socket timeout); the
  response headers must all arrive within ``stall_s`` of the request being sent (a watchdog
  shuts the socket down otherwise: a header trickled byte by byte never times a read out).
- **Minimum rate**, not a wall-clock limit: in every window of ``window_s`` seconds a body must
  bring at least ``min_rate`` bytes per second on average (:class:`Pace`). A 1 GiB layer over
  a satellite link may take hours, a manifest at one byte per 5 s fails after one window.
  Too slow raises :class:`TooSlow`, one of the network errors: a blob resumes from its last
  byte (``endpoints.VerifiedBlob``), so progress is kept.
- **The wire, not only the body.** Chunk-size lines, chunk extensions and trailers never
  reach a body reader, so a body's :class:`Pace` cannot see them: the response's socket reader
  (:class:`_MeteredResponse`) paces every byte received the same way (a chunk-size line
  trickled a byte a minute fails after one window, not after 64 KiB of minutes) and a chunked
  body's trailer is cut at :data:`MAX_TRAILER_LINES` lines (an endless trailer never ended a
  manifest read), its headers at :data:`MAX_HEADER_BYTES`.
- **Malformed URLs** (a redirect's ``Location``, an upload ``Location``, a ``Link`` page) are
  refused by :func:`checked_url` with a clear error instead of a traceback.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import os
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from gitedge.adapters.registry.hosts import Limits
from gitedge.adapters.registry.httpstack import requests
from gitedge.errors import RegistryRefused, TooLarge, TooSlow, scrub

READ = 64 * 1024  # one read1(): at most what one recv brings
MAX_TRAILER_LINES = 64  # after a chunked body; http.client reads any number, each up to 64 KiB
#: Of one response's status line and headers (1xx answers before it included). http.client
#: allows 100 lines of 64 KiB: 6.4 MB that its parsers, urllib3 and requests copy to ~65 MiB.
MAX_HEADER_BYTES = 256 * 1024


class Pace:
    """Counts a body's bytes in fixed windows; a window that ends below the rate raises TooSlow.

    Checked as bytes arrive; a read waits at most the stall timeout for one, so a too-slow body
    is noticed at most ``window_s + stall_s`` after its window began."""

    def __init__(self, limits: Limits, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits, self._clock = limits, clock
        self._start = clock()
        self._bytes = 0
        self.total = 0

    def add(self, n: int) -> None:
        self.total += n
        self._bytes += n
        now = self._clock()
        elapsed = now - self._start
        if elapsed < self.limits.window_s:
            return
        if self._bytes < self.limits.min_rate * elapsed:
            raise TooSlow(
                f"{self._bytes} bytes in {elapsed:.0f}s, below the minimum rate of "
                f"{self.limits.min_rate:.0f} B/s"
            )
        self._start, self._bytes = now, 0


def content_length(r: requests.Response) -> int | None:
    """The announced length, or None when absent or not a plain non-negative number."""
    value = r.headers.get("Content-Length", "").strip()
    return int(value) if value.isdigit() and len(value) < 20 else None


def _decoder(r: requests.Response, what: str) -> Any:
    encoding = r.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    raise RegistryRefused(f"{what}: unsupported Content-Encoding {scrub(encoding, limit=40)!r}")


def read_capped(r: requests.Response, *, cap: int, limits: Limits, what: str) -> bytes:
    """The whole body, at most ``cap`` bytes after decoding; TooLarge beyond, TooSlow when it
    trickles, RegistryRefused (naming ``what``) when its encoding is unknown or broken; network
    errors as raised. Closes nothing (the caller closes ``r``)."""
    announced = content_length(r)
    decoder = _decoder(r, what)
    if announced is not None and decoder is None and announced > cap:
        raise TooLarge(cap=cap, got=announced)
    pace = Pace(limits)
    out = bytearray()
    while True:
        data = r.raw.read1(READ, decode_content=False) if r.raw is not None else b""
        if not data:
            break
        pace.add(len(data))
        if decoder is not None:
            try:
                data = decoder.decompress(data, cap + 1 - len(out))
            except zlib.error:
                raise RegistryRefused(f"{what}: a compressed body that does not inflate") from None
        out += data
        if len(out) > cap:
            raise TooLarge(cap=cap, got=None)
    return bytes(out)


def discard(r: requests.Response, *, limits: Limits, upto: int = 64 * 1024) -> None:
    """Read and drop a small body so the connection can be reused; close it if the body is
    bigger, slow or broken. Never raises."""
    try:
        if content_length(r) == 0 or r.request.method == "HEAD":
            r.raw.read1(1, decode_content=False)  # at its end: urllib3 pools the connection
        elif (content_length(r) or upto + 1) <= upto:
            read_capped(r, cap=upto, limits=limits, what="")
    except Exception:  # noqa: S110 - only a connection to reuse or not
        pass
    r.close()


def iter_body(r: requests.Response, *, limits: Limits, pace: Pace | None = None) -> Iterator[bytes]:
    """The raw body (no Content-Encoding undone: blob bytes are what is hashed), as it comes;
    TooSlow when it trickles. ``r`` is closed at the end, on error, or when dropped."""
    pace = pace or Pace(limits)
    try:
        while data := r.raw.read1(1024 * 1024, decode_content=False):
            pace.add(len(data))
            yield data
    finally:
        r.close()


def checked_url(base: str, location: str, *, what: str) -> str:
    """``location`` (absolute or relative to ``base``) as an absolute http(s) URL with a host;
    RegistryRefused naming ``what`` when it is malformed."""
    try:
        url = urljoin(base, location.strip())
        parts = urlsplit(url)
        _ = parts.port  # ValueError on a port that is not a number in range
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        ok = ok and not any(c in url for c in "\r\n\0 \t\\")
        # The host we check must be the host urllib3 connects to: Python's urlsplit and
        # urllib3's parse_url read some URLs differently (``http://a\\@b/``: b for one, a for
        # the other), and credentials would follow the check to the other host.
        ok = ok and _connects_to(url) == (parts.hostname, parts.port)
    except (ValueError, LocationParseError):
        ok = False
    if not ok:
        raise RegistryRefused(f"{what}: malformed URL {scrub(location, limit=120)!r}")
    return url


def _connects_to(url: str) -> tuple[str | None, int | None]:
    """(host, port) as urllib3 reads ``url``, the host as urlsplit gives it (lower case, no
    IPv6 brackets)."""
    u = parse_url(url)
    host = (u.host or "").lower()
    return (host[1:-1] if host.startswith("[") else host) or None, u.port


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an absolute URL that went through :func:`checked_url`."""
    p = urlsplit(url)
    return p.scheme, (p.hostname or "").lower(), p.port or (443 if p.scheme == "https" else 80)


# ---------------------------------------------------------------------------- header watchdog

_local = threading.local()


class HeaderWatch:
    """Set by the caller around one request: how long its response headers may take."""

    def __init__(self, seconds: float, *, limits: Limits | None = None) -> None:
        self.seconds = seconds
        self.limits = limits  # the pace every byte of the response's wire must keep
        self.fired = False

    def __enter__(self) -> HeaderWatch:
        _local.watch = self
        return self

    def __exit__(self, *exc: object) -> None:
        _local.watch = None


class _Watchdog:
    """One daemon thread that shuts down the socket of every request whose response headers are
    late. (A timer thread per request cost every request a thread start and a GIL hand-over on
    its send: about a third of the CPU of a no-op ``gitedge mirror``'s requests.)

    ``arm`` registers an abort for a deadline, ``disarm`` removes it; an abort runs under the
    lock, so none runs after ``disarm`` returned. The thread looks every ``IDLE_S`` seconds (or
    at an earlier deadline) and ends at a look that finds nothing armed and no request since the
    previous look: it is gone within ``2 * IDLE_S`` of the last request, and at once when a client
    is closed (``stop_if_idle``), so a process that forks workers only when single-threaded
    (``sshworkers``) is soon single-threaded again."""

    IDLE_S = 0.25

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: dict[int, tuple[float, Callable[[], None]]] = {}
        self._count = 0
        self._busy = False  # a request was armed since the thread's last look
        self._wake_at = 0.0  # when the thread looks next (0: it is about to)
        self._thread: threading.Thread | None = None
        self._stop = False  # end at the next look if nothing is armed

    def arm(self, seconds: float, abort: Callable[[], None]) -> int:
        deadline = time.monotonic() + seconds
        with self._cond:
            self._count += 1
            self._due[self._count] = (deadline, abort)
            self._busy = True
            if self._thread is None:
                self._wake_at = 0.0
                self._thread = threading.Thread(
                    target=self._run, name="gitedge-header-watch", daemon=True
                )
                self._thread.start()
            elif deadline < self._wake_at:
                self._cond.notify()
            return self._count

    def disarm(self, token: int) -> None:
        with self._cond:
            self._due.pop(token, None)

    def stop_if_idle(self) -> None:
        """End the thread now, unless a request is under way (a client was closed: the process
        may fork next, or a caller count its threads). A later request starts it again."""
        with self._cond:
            thread = self._thread
            if thread is None or self._due:
                return
            self._stop = True
            self._cond.notify()
        thread.join(timeout=self.IDLE_S)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for token, (deadline, abort) in list(self._due.items()):
                    if deadline <= now:
                        del self._due[token]
                        abort()
                if not self._due and (self._stop or not self._busy):
                    self._thread, self._stop = None, False
                    return
                self._busy = self._stop = False
                self._wake_at = min([now + self.IDLE_S, *(d for d, _ in self._due.values())])
                self._cond.wait(self._wake_at - now)


_watchdog = _Watchdog()


def _new_watchdog_after_fork() -> None:
    global _watchdog  # the parent's thread and lock do not exist in a child
    _watchdog = _Watchdog()


os.register_at_fork(after_in_child=_new_watchdog_after_fork)


def stop_header_watch() -> None:
    """End the header-watch thread if no request is under way (see ``_Watchdog.stop_if_idle``)."""
    _watchdog.stop_if_idle()


class _Watched:
    """A urllib3 connection whose response headers must arrive within the thread's
    :class:`HeaderWatch`: else the socket is shut down, which ends the blocked read."""

    sock: Any

    def getresponse(self, *a: Any, **kw: Any) -> Any:
        watch: HeaderWatch | None = getattr(_local, "watch", None)
        sock = self.sock
        if watch is None or sock is None:
            return super().getresponse(*a, **kw)  # type: ignore[misc]

        def abort() -> None:
            watch.fired = True
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

        dog = _watchdog
        token = dog.arm(watch.seconds, abort)
        try:
            return super().getresponse(*a, **kw)  # type: ignore[misc]
        finally:
            dog.disarm(token)


class _MeteredSocket(io.RawIOBase):
    """The socket side of one response: every byte received counts in a :class:`Pace`, chunk
    framing and trailers included, so TooSlow is raised however the bytes are framed."""

    def __init__(self, raw: Any, limits: Limits) -> None:
        super().__init__()
        self._raw, self._limits = raw, limits
        self._pace: Pace | None = None  # the headers have their own bound (HeaderWatch)
        self._head = 0  # bytes received before the headers ended (a little body too, maybe)

    def start(self) -> None:
        self._pace = Pace(self._limits)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int | None:
        n: int | None = self._raw.readinto(b)
        if n and self._pace is not None:
            self._pace.add(n)
        elif n:
            self._head += n
            if self._head > MAX_HEADER_BYTES + READ:  # what a read may bring past the headers
                raise http.client.HTTPException(
                    f"response headers larger than {MAX_HEADER_BYTES} bytes"
                )
        return n

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._raw.close()
        super().close()


class _MeteredResponse(http.client.HTTPResponse):
    """http.client's response, its socket reader paced (when the request set a HeaderWatch
    with limits) and its trailer cut at MAX_TRAILER_LINES lines."""

    def __init__(self, sock: Any, *a: Any, **kw: Any) -> None:
        super().__init__(sock, *a, **kw)
        watch: HeaderWatch | None = getattr(_local, "watch", None)
        self._metered: _MeteredSocket | None = None
        if watch is not None and watch.limits is not None:
            self._metered = _MeteredSocket(self.fp.detach(), watch.limits)
            self.fp = io.BufferedReader(self._metered)

    def begin(self) -> None:
        super().begin()
        if self._metered is not None:  # the body's bytes, from the end of the headers on
            self._metered.start()

    def _read_and_discard_trailer(self) -> None:
        for _ in range(MAX_TRAILER_LINES):
            line = self.fp.readline(65537)
            if len(line) > 65536:
                raise http.client.LineTooLong("trailer line")
            if line in (b"\r\n", b"\n", b""):
                return
        raise http.client.HTTPException(f"more than {MAX_TRAILER_LINES} trailer lines")


class _Conn(_Watched, HTTPConnection):
    response_class = _MeteredResponse


class _TlsConn(_Watched, HTTPSConnection):
    response_class = _MeteredResponse


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Conn


class _TlsPool(HTTPSConnectionPool):
    ConnectionCls = _TlsConn


def watched_adapter(*, pool_size: int) -> requests.adapters.HTTPAdapter:
    """An adapter whose connections honour :class:`HeaderWatch`; it never retries by itself."""
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
    adapter.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TlsPool}
    return adapter


__all__ = [
    "HeaderWatch",
    "Pace",
    "checked_url",
    "content_length",
    "discard",
    "iter_body",
    "origin",
    "read_capped",
    "stop_header_watch",
    "watched_adapter",
]
