"""Bounds on every HTTP exchange with a registry: size caps, a stall timeout, a minimum rate.

A registry, a token realm, a report registry, or anyone on the path of plain HTTP may answer
with an endless body, trickle bytes, or send headers no parser expects. What holds:

- **Size caps.** A body is read only through :func:`read_capped` (at most ``cap`` bytes,
  checked against ``Content-Length`` before reading and counted while reading; a gzip or deflate
  body is inflated with the same cap, so a compression bomb stops at the cap) or streamed by
  :func:`iter_body` into a hash (blobs: the caller counts against the descriptor's size).
  Requests are never allowed to buffer a body themselves (``stream=True`` always, redirects
  followed by ``registry.py``, whose bodies are not read).
- **Stall timeout.** No byte for ``stall_s`` seconds fails the read (the socket timeout); the
  response headers must all arrive within ``stall_s`` of the request being sent (a watchdog
  shuts the socket down otherwise: a header trickled byte by byte never times a read out).
- **Minimum rate**, not a wall-clock limit: in every window of ``window_s`` seconds a body must
  bring at least ``min_rate`` bytes per second on average (:class:`Pace`). A 1 GiB layer over
  a satellite link may take hours, a manifest at one byte per 5 s fails after one window.
  Too slow raises :class:`TooSlow`, one of the network errors: a blob resumes from its last
  byte (``endpoints.VerifiedBlob``), so progress is kept.
- **Malformed URLs** (a redirect's ``Location``, an upload ``Location``, a ``Link`` page) are
  refused by :func:`checked_url` with a clear error instead of a traceback.
"""

from __future__ import annotations

import contextlib
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

from gitedge.adapters.httpstack import requests
from gitedge.adapters.registryhosts import Limits
from gitedge.errors import RegistryRefused, scrub

READ = 64 * 1024  # one read1(): at most what one recv brings


class TooSlow(Exception):
    """A body came slower than the minimum rate, or headers took longer than the stall timeout."""


class TooLarge(Exception):
    """A body is larger than its cap."""

    def __init__(self, *, cap: int, got: int | None) -> None:
        self.cap, self.got = cap, got
        super().__init__(f"more than {cap} bytes" + (f" (Content-Length {got})" if got else ""))


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
        ok = ok and not any(c in url for c in "\r\n\0 ")
    except ValueError:
        ok = False
    if not ok:
        raise RegistryRefused(f"{what}: malformed URL {scrub(location, limit=120)!r}")
    return url


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an absolute URL that went through :func:`checked_url`."""
    p = urlsplit(url)
    return p.scheme, (p.hostname or "").lower(), p.port or (443 if p.scheme == "https" else 80)


# ---------------------------------------------------------------------------- header watchdog

_local = threading.local()


class HeaderWatch:
    """Set by the caller around one request: how long its response headers may take."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
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


class _Conn(_Watched, HTTPConnection):
    pass


class _TlsConn(_Watched, HTTPSConnection):
    pass


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
    "Limits",
    "Pace",
    "TooLarge",
    "TooSlow",
    "checked_url",
    "content_length",
    "discard",
    "iter_body",
    "origin",
    "read_capped",
    "stop_header_watch",
    "watched_adapter",
]
