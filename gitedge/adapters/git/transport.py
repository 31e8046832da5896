"""How the git source reaches a server: URL checks, credentials read from files, host keys and
TLS as libgit2 verified them, libgit2's process-wide settings for one fetch, and a fetch without
tags or FETCH_HEAD.

Host keys (ssh). libgit2 1.9 (libssh2) checks the host key against ``.ssh/known_hosts`` in its
home directory and passes the verdict to the certificate callback; pygit2 alone would accept
any key, so our callback accepts exactly what libgit2 verified. ``SourceAuth.known_hosts_file``
becomes that home's known_hosts for the fetch (else ``$HOME/.ssh/known_hosts`` is used).
Verified: the presented key is listed for the host (``[host]:port`` when not 22; plain or
hashed names). Not honoured: ``@cert-authority`` and ``@revoked`` lines. TLS: OpenSSL checks
chain and host name; ``SourceAuth.ca_file`` is added to the process's trusted CAs.

Secrets are read from their files when a server asks; they never reach exceptions (remote text
goes through :func:`~gitedge.errors.scrub`, URLs lose their userinfo).
"""

from __future__ import annotations

import hashlib
import ipaddress
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pygit2
from pygit2.callbacks import git_fetch_options
from pygit2.enums import CredentialType
from pygit2.ffi import C, ffi
from pygit2.utils import StrArray

from gitedge.adapters.git import objects as gitobjects
from gitedge.adapters.localfiles import read_bounded, size_text
from gitedge.errors import InvalidInput, Problem, SourceUnavailable, scrub

MAX_SECRET_BYTES = 64 << 10
MAX_CA_BYTES = 1 << 20
MIN_RATE = 1024.0  # bytes/s a fetch must average over each stall window (as registry transfers)
MAX_PACK_BYTES = 256 << 20  # the default of source.limits.maxPackBytes
FETCH_MEMORY_BYTES = 64 << 20  # the default of source.limits.fetchMemoryBytes
_WAKE = signal.SIGURG  # ignored by default; a handler makes it interrupt libgit2's socket wait
_CA_LOADED: set[str] = set()


@dataclass(frozen=True)
class SourceAuth:
    """Where the secrets of a git source live; each is read only when a server asks for it."""

    ssh_key_file: Path | None = None
    known_hosts_file: Path | None = None
    username_file: Path | None = None
    password_file: Path | None = None
    ca_file: Path | None = None


def redact_url(url: str) -> str:
    """``url`` without userinfo secrets (``https://user:pw@host`` -> ``https://***@host``)."""
    return scrub(url, limit=200)


def check_branch(branch: str) -> None:
    if not branch or not pygit2.reference_is_valid_name(f"refs/heads/{branch}"):
        raise InvalidInput([Problem("source.branch", 0, f"{branch!r} is not a valid branch name")])


def check_url(url: str) -> str:
    """The transport of ``url``; plain http only to loopback, unknown schemes refused."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if "://" not in url:  # a local path, or scp-like user@host:path
        scheme = "file" if url.startswith("/") else "ssh" if ":" in url.split("/")[0] else ""
    if scheme == "http" and not _is_loopback(parts.hostname or ""):
        msg = "plain http is allowed only to a loopback address; use https"
        raise InvalidInput([Problem("source.url", 0, msg)])
    if scheme not in ("https", "http", "ssh", "git", "file"):
        msg = (
            f"unsupported URL {redact_url(url)!r}: give https://, ssh://, git://, file:// "
            "or an absolute path"
        )
        raise InvalidInput([Problem("source.url", 0, msg)])
    return scheme


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_secret(path: Path, what: str) -> str:
    try:
        return read_bounded(path, limit=MAX_SECRET_BYTES).decode("utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8"
        raise InvalidInput([Problem(str(path), 0, f"cannot read {what}: {reason}")]) from None


class Callbacks(pygit2.RemoteCallbacks):
    """Credentials from files (each offered once), certificates and host keys exactly as
    libgit2 verified them, the pack cap, and the pace of the transfer (:meth:`too_slow`).

    Pace, not a deadline: a 3 MB catch-up over a satellite link honestly takes minutes. In
    every window of ``stall_s`` seconds the pack must grow by ``min_rate`` bytes per second on
    average; before it starts (the ref advertisement, the negotiation), the server has one
    window. libgit2's own timeout only sees a read that gets no byte at all, and callbacks
    run only when data arrives, so a ref advertisement trickled at 2 bytes a second held a
    fetch (and so the agent's pass) for ever: :func:`paced` checks from another thread."""

    def __init__(
        self,
        *,
        auth: SourceAuth,
        shown: str,
        scheme: str,
        stall_s: float,
        max_pack_bytes: int,
        min_rate: float = MIN_RATE,
    ) -> None:
        super().__init__()
        self.auth, self.shown, self.scheme = auth, shown, scheme
        self.stall_s, self.min_rate = stall_s, min_rate
        self.max_pack_bytes = max_pack_bytes
        self.offered: set[CredentialType] = set()
        self.received = 0
        self.slow: str | None = None  # why the transfer was stopped for its pace
        self._window = (time.monotonic(), 0)  # its start, and the bytes received then

    def too_slow(self, now: float) -> str | None:
        """Why the transfer is too slow at ``now`` (None: it is not, or its window is open)."""
        started, base = self._window
        elapsed = now - started
        if elapsed < self.stall_s + 1:  # a silent server: libgit2's timeout speaks first
            return None
        got = self.received - base
        if got < self.min_rate * elapsed:
            return (
                f"{got} bytes in {elapsed:.0f}s, below the minimum rate of "
                f"{self.min_rate:.0f} B/s; fetch aborted"
            )
        self._window = (now, self.received)
        return None

    def credentials(
        self, url: str, username_from_url: str | None, allowed_types: CredentialType
    ) -> Any:
        auth = self.auth
        user = username_from_url or (
            _read_secret(auth.username_file, "source username") if auth.username_file else None
        )
        if allowed_types & CredentialType.USERNAME:
            return pygit2.Username(user or "git")
        for kind in (CredentialType.SSH_KEY, CredentialType.USERPASS_PLAINTEXT):
            if allowed_types & kind and kind in self.offered:
                raise SourceUnavailable(f"{self.shown}: authentication failed")
        if allowed_types & CredentialType.SSH_KEY and auth.ssh_key_file is not None:
            self.offered.add(CredentialType.SSH_KEY)
            # libssh2 reads the key file itself, unbounded (a FIFO would hang the fetch)
            _read_secret(auth.ssh_key_file, "source ssh key")
            return pygit2.Keypair(user or "git", None, str(auth.ssh_key_file), "")
        if allowed_types & CredentialType.USERPASS_PLAINTEXT and auth.password_file is not None:
            self.offered.add(CredentialType.USERPASS_PLAINTEXT)
            password = _read_secret(auth.password_file, "source password")
            return pygit2.UserPass(user or "git", password)
        raise SourceUnavailable(f"{self.shown}: the server asks for credentials; none are set")

    def certificate_check(self, certificate: None, valid: bool, host: bytes) -> bool:
        if not valid:
            what = "ssh host key" if self.scheme == "ssh" else "TLS certificate"
            name = host.decode("utf-8", "replace")
            raise SourceUnavailable(f"{self.shown}: {what} of {name} is not trusted")
        return True

    def transfer_progress(self, stats: Any) -> None:
        if self.slow is not None:
            raise SourceUnavailable(f"{self.shown}: {self.slow}")
        if stats is not None:
            self.received = stats.received_bytes
        if stats is not None and stats.received_bytes > self.max_pack_bytes:
            raise SourceUnavailable(
                f"{self.shown}: the pack is larger than {size_text(self.max_pack_bytes)} "
                "(source.limits.maxPackBytes); fetch aborted"
            )

    def sideband_progress(self, string: str) -> None:
        self.transfer_progress(None)


@contextmanager
def paced(callbacks: Callbacks, *, tick_s: float = 0.5) -> Iterator[None]:
    """While in the block (a fetch in this thread), another thread checks the transfer's pace
    and, once it is too slow, interrupts this thread's blocking socket wait with a signal
    until the fetch returns (libgit2 fails the read: "Interrupted system call"); the caller
    then finds the reason in ``callbacks.slow``. Only the main thread can take a Python
    signal handler: elsewhere only the callbacks check (when data arrives)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    target, done = threading.get_ident(), threading.Event()

    def watch() -> None:
        while not done.wait(tick_s):
            if callbacks.slow is None:
                callbacks.slow = callbacks.too_slow(time.monotonic())
            if callbacks.slow is not None:
                signal.pthread_kill(target, _WAKE)

    saved = signal.signal(_WAKE, lambda _sig, _frame: None)
    watcher = threading.Thread(target=watch, name="gitedge-fetch-pace", daemon=True)
    # the watcher starts with every signal blocked: a SIGTERM must still reach (and interrupt)
    # this thread's socket wait, not the watcher's sleep
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        watcher.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    try:
        yield
    finally:
        done.set()
        watcher.join()
        signal.signal(_WAKE, saved)


def fetch_no_tags(remote: pygit2.Remote, refspec: str, callbacks: Callbacks) -> None:
    """``Remote.fetch`` without tag following and without writing FETCH_HEAD entries (pygit2
    does not expose these two libgit2 fetch options)."""
    with git_fetch_options(callbacks) as payload:
        opts = payload.fetch_options
        opts.download_tags = C.GIT_REMOTE_DOWNLOAD_TAGS_NONE
        opts.update_fetchhead = 0
        with StrArray([refspec]) as arr:
            err = C.git_remote_fetch(remote._remote, arr.ptr, opts, ffi.NULL)
            payload.check_error(err)


@contextmanager
def libgit2_settings(*, scheme: str, auth: SourceAuth, timeout_s: float) -> Iterator[None]:
    """Process-wide libgit2 settings for one fetch: timeouts, trusted CA, known_hosts home."""
    settings = pygit2.settings
    ms = max(1, int(timeout_s * 1000))
    saved = (settings.server_connect_timeout, settings.server_timeout, settings.homedir)
    settings.server_connect_timeout = ms
    settings.server_timeout = ms
    home: str | None = None
    try:
        if auth.ca_file is not None and scheme == "https":
            _load_ca(auth.ca_file)
        if scheme == "ssh" and auth.known_hosts_file is not None:
            home = tempfile.mkdtemp(prefix="gitedge-ssh-")
            (Path(home) / ".ssh").mkdir()
            try:
                known = read_bounded(auth.known_hosts_file, limit=MAX_CA_BYTES)
                (Path(home) / ".ssh" / "known_hosts").write_bytes(known)
            except OSError as e:
                problem = Problem(str(auth.known_hosts_file), 0, f"cannot read: {e.strerror}")
                raise InvalidInput([problem]) from None
            settings.homedir = home
        yield
    finally:
        settings.server_connect_timeout, settings.server_timeout = saved[0], saved[1]
        if home is not None:
            if saved[2] is not None:
                settings.homedir = saved[2]
            shutil.rmtree(home, ignore_errors=True)


def _load_ca(ca_file: Path) -> None:
    """Add ``ca_file`` to libgit2's trusted CAs (OpenSSL adds; the system CAs stay trusted)."""
    try:
        key = hashlib.sha256(read_bounded(ca_file, limit=MAX_CA_BYTES)).hexdigest()
    except OSError as e:
        raise InvalidInput([Problem(str(ca_file), 0, f"cannot read: {e.strerror}")]) from None
    if key not in _CA_LOADED:
        pygit2.settings.set_ssl_cert_locations(str(ca_file), None)
        _CA_LOADED.add(key)


def fetch_branch(
    repo: pygit2.Repository,
    *,
    url: str,
    refspec: str,
    auth: SourceAuth,
    what: str,
    timeout_s: float,
    max_pack_bytes: int,
    memory_bytes: int,
    min_rate: float,
) -> None:
    """Fetch ``refspec`` of ``url`` into ``repo`` with libgit2, bounded as the module docstring
    says: a pack growing past ``max_pack_bytes`` is aborted, the fetch may allocate
    ``memory_bytes`` more than the process holds (:func:`gitobjects.memory_cap`), and each stall
    window of ``timeout_s`` must bring ``min_rate`` bytes a second (:class:`Callbacks`). Any
    failure raises SourceUnavailable naming ``what``. The caller holds the process-wide fetch
    lock (:func:`libgit2_settings` changes process-wide state)."""
    shown = redact_url(url)
    scheme = check_url(url)
    callbacks = Callbacks(
        auth=auth,
        shown=shown,
        scheme=scheme,
        stall_s=timeout_s,
        max_pack_bytes=max_pack_bytes,
        min_rate=min_rate,
    )
    with libgit2_settings(scheme=scheme, auth=auth, timeout_s=timeout_s):
        try:
            remote = repo.remotes.create_anonymous(url)
            with paced(callbacks), gitobjects.memory_cap(memory_bytes):  # its thread first
                fetch_no_tags(remote, refspec, callbacks)
        except SourceUnavailable:
            raise
        except (pygit2.GitError, KeyError, ValueError, OSError, MemoryError) as e:
            if callbacks.slow is not None and "timed out" not in str(e).lower():
                raise SourceUnavailable(f"{what} failed: {callbacks.slow}") from None
            late = "timed out" in str(e).lower()
            hint = f" (no answer within {timeout_s:g}s)" if late else ""
            if isinstance(e, MemoryError) or "out of memory" in str(e).lower():
                what_needs = (  # no pack byte yet: an endless ref advertisement
                    "an object in the pack needs more than {} of memory to index"
                    if callbacks.received
                    else "the server's ref advertisement took more than {} of memory"
                )
                need = what_needs.format(size_mib(memory_bytes))
                hint = f" ({need}: source.limits.fetchMemoryBytes)"
            raise SourceUnavailable(f"{what} failed: {scrub(str(e))}{hint}") from None


def size_mib(n: int) -> str:
    """``n`` bytes as a limit is named in messages: whole MiB from 1 MiB up."""
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n} bytes"
