"""The HTTP side of the registry client: requests with bounds, redirects, auth and retries.

Requests go through our own loop (oras-py's ``Registry.do_request`` retries every exception, a
404 included, with sleeps of 2 + 3^n seconds, sets no timeouts, and buffers what we must keep
byte for byte or stream: FACTS.md): retries with jittered backoff on connection errors, 5xx
and 429 (``Retry-After`` honoured; a wait longer than the policy allows becomes
:class:`~gitedge.errors.Waiting`), and errors sorted into the tree of ``errors.py``.

Bounds (``bounds.py``): every request is streamed and every body read with a cap, a stall
timeout and a minimum rate; redirects are followed here, at most :data:`MAX_REDIRECTS`, their
bodies unread and their ``Location`` checked; the ``Authorization`` header goes only to the
registry's own origin (scheme, host, port), never to a redirect target, an upload ``Location``
or a ``Link`` page elsewhere. Auth (``auth.py``): Basic, or a bearer token asked of the
challenge's realm by our own bounded request, credentials sent only where that module allows.

Per host (``registry.upstreamAuth.<host>`` and ``registry.cache`` of the agent config):
credentials are read from files when the client is made (``usernameFile``/``passwordFile``, or
``tokenFile`` for a static bearer token); ``caFile`` makes the client speak HTTPS verified
against that CA; plain HTTP is used for loopback hosts (as Docker does) and for hosts marked
``insecure``, unless a CA file or an ``https://`` cache URL says otherwise. Secrets never reach
exceptions: remote text goes through :func:`~gitedge.errors.scrub`.

Bearer tokens are kept per repository: a token is scoped to the repositories its challenge
named, and one token per host would flap between a source and a destination repository.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path
from typing import Any

from gitedge.adapters.localfiles import read_bounded
from gitedge.adapters.registry.auth import (
    Credentials,
    check_static_token,
    parse_challenge,
)
from gitedge.adapters.registry.bounds import (
    HeaderWatch,
    Pace,
    checked_url,
    discard,
    origin,
    read_capped,
    stop_header_watch,
    watched_adapter,
)
from gitedge.adapters.registry.hosts import HostConfig, Limits, RetryPolicy, is_loopback
from gitedge.adapters.registry.httpstack import requests, urllib3
from gitedge.errors import (
    RegistryAuthError,
    RegistryRefused,
    RegistryUnavailable,
    TooLarge,
    TooSlow,
    Waiting,
    register_secret,
    scrub,
)

CHUNK = 1024 * 1024
MAX_REDIRECTS = 5
MAX_ERROR_BYTES = 4096  # of an error body: enough for distribution's JSON errors
#: Errors that mean "the connection broke": the request (or the rest of a blob) is retried.
NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.HTTPError,
    OSError,
    TooSlow,
)
_REDIRECTS = (301, 302, 303, 307, 308)


class _Session(requests.Session):
    """A session whose every request has a timeout, is streamed (a body is read only with a
    cap, bounds.py) and follows no redirect by itself (RegistryClient._exchange does)."""

    timeout: tuple[float, float] = (10.0, 60.0)

    def request(  # type: ignore[override]
        self, method: str, url: str, *a: Any, **kw: Any
    ) -> requests.Response:
        kw.setdefault("timeout", self.timeout)
        kw["stream"] = True
        kw["allow_redirects"] = False
        return super().request(method, url, *a, **kw)

    def get_redirect_target(self, resp: requests.Response) -> None:
        """None: requests then never starts its redirect loop, which reads the redirect's whole
        body (``resp.content``) even with ``allow_redirects=False`` (to set ``Response.next``)."""
        return None


def _read_secret(path: Path, *, what: str, host: str) -> str:
    try:
        return read_bounded(path, limit=64 << 10).decode("utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or "not UTF-8 text"
        raise RegistryAuthError(f"registry {host}: cannot read {what} {path}: {reason}") from None


def _peek(r: requests.Response, limits: Limits) -> bytes:
    """At most MAX_ERROR_BYTES of a body, for a message: best effort, bounded in time."""
    out = b""
    try:
        pace = Pace(limits)
        while len(out) < MAX_ERROR_BYTES and (data := r.raw.read1(MAX_ERROR_BYTES)):
            pace.add(len(data))
            out += data
    except Exception:  # noqa: S110 - a message only
        pass
    return out[:MAX_ERROR_BYTES]


def _remote_text(r: requests.Response, limits: Limits) -> str:
    """The registry's error codes and messages (distribution's JSON), cut short and scrubbed."""
    body = _peek(r, limits)
    try:
        errors = json.loads(body).get("errors", [])
        text = "; ".join(f"{e.get('code', '')}: {e.get('message', '')}" for e in errors)
    except Exception:
        text = body.decode("utf-8", "replace")
    return scrub(f"{r.status_code} {r.reason or ''} {text}".strip(), limit=200)


def network_reason(e: BaseException) -> str:
    """The cause of a failed connection in a few words, from the innermost OS error under the
    layers of requests and urllib3 (whose own text cuts it off): refused, name not resolved,
    timed out, reset."""
    seen: set[int] = set()
    cur: BaseException | None = e
    inner: OSError | None = None
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and (cur.errno is not None or cur.strerror):
            inner = cur
        nested = getattr(cur, "reason", None)
        arg = cur.args[0] if cur.args and isinstance(cur.args[0], BaseException) else None
        cur = (
            (nested if isinstance(nested, BaseException) else arg)
            or cur.__cause__
            or cur.__context__
        )
    if isinstance(inner, socket.gaierror):
        return f"host name not resolved ({inner.strerror}): check the host name and DNS"
    if isinstance(inner, ConnectionRefusedError):
        return (
            "connection refused: nothing listens there (is the registry running, the port right?)"
        )
    if isinstance(inner, TimeoutError | socket.timeout):
        return "no answer in time (timed out): check the address and the network path"
    if inner is not None and inner.strerror:
        return scrub(inner.strerror, limit=200)
    if isinstance(e, requests.exceptions.Timeout):
        return "no answer in time (timed out): check the address and the network path"
    return scrub(" ".join(str(e).split()), limit=200)


class RegistryTransport:
    """One registry host: requests with auth, redirects, retries and bounds."""

    def __init__(
        self,
        *,
        host: str,
        config: HostConfig | None = None,
        retry: RetryPolicy | None = None,
        pool_size: int = 16,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.host = host
        cfg = config or HostConfig()
        self._side = {"cache": "the site's cache ", "upstream": "upstream "}.get(cfg.role, "")
        self.retry = retry or RetryPolicy()
        self.limits = self.retry.limits()
        self._sleep = sleep
        if cfg.scheme:
            scheme = cfg.scheme
        elif cfg.ca_file is not None:
            scheme = "https"
        else:
            scheme = "http" if (cfg.insecure or is_loopback(host)) else "https"
        self.base_url = checked_url(f"{scheme}://{host}", "/", what=f"registry {host}")[:-1]
        self._origin = origin(self.base_url)
        verify: bool | str = str(cfg.ca_file) if cfg.ca_file else True
        self._session = _Session()
        self._session.timeout = (self.retry.connect_timeout_s, self.retry.read_timeout_s)
        self._session.verify = verify
        self._session.trust_env = False  # no ~/.netrc credentials or proxies behind our back
        # No cookies: the registry API needs none, and a jar grows with every Set-Cookie a
        # hostile server sends (~6 MB of headers per answer, all sent back with each request)
        # and hands one origin's cookies to another port of the same host (a token realm).
        self._session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        self._session.headers["Accept-Encoding"] = "identity"  # bodies are read as sent
        adapter = watched_adapter(pool_size=pool_size)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        login: tuple[str, str] | None = None
        if cfg.username_file or cfg.password_file:
            if not (cfg.username_file and cfg.password_file):
                raise RegistryAuthError(
                    f"registry {host}: usernameFile and passwordFile go together"
                )
            login = (
                _read_secret(cfg.username_file, what="usernameFile", host=host),
                _read_secret(cfg.password_file, what="passwordFile", host=host),
            )
        self._creds = Credentials(
            host=host,
            base_url=self.base_url,
            login=login,
            insecure_hosts=cfg.insecure_hosts,
            limits=self.limits,
        )
        self._has_login = login is not None
        if login is not None:  # scrub() removes them from any remote text that echoes them
            register_secret(login[1])
            register_secret(self._creds.basic_header()["Authorization"].split(" ", 1)[1])
        self._static_token = (
            check_static_token(_read_secret(cfg.token_file, what="tokenFile", host=host), host=host)
            if cfg.token_file
            else None
        )
        if self._static_token is not None:
            register_secret(self._static_token)
        self._scheme_seen: str | None = None  # "basic" or "bearer", from the first challenge
        self._tokens: dict[str, str] = {}  # repository -> bearer token
        self._lock = threading.Lock()

    def close(self) -> None:
        self._session.close()
        stop_header_watch()  # no thread of ours outlives a closed client (sshworkers forks)

    # ------------------------------------------------------------------ requests, auth, retries

    def _auth_header(self, repo: str) -> dict[str, str]:
        if self._scheme_seen == "basic" and self._has_login:
            return self._creds.basic_header()
        token = self._tokens.get(repo) or self._static_token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _exchange(
        self,
        method: str,
        url: str,
        *,
        what: str,
        headers: dict[str, str],
        auth: dict[str, str],
        auth_origin: tuple[str, str, int] | None,
        **kw: Any,
    ) -> requests.Response:
        """One request and the redirects of a GET or HEAD, followed here (bodies unread,
        ``Location`` checked); ``auth`` is sent only to ``auth_origin``."""
        for _ in range(MAX_REDIRECTS + 1):
            sent = {**headers, **(auth if origin(url) == auth_origin else {})}
            with HeaderWatch(self.limits.stall_s, limits=self.limits) as watch:
                try:
                    r = self._session.request(method, url, headers=sent, **kw)
                except NETWORK_ERRORS:
                    if watch.fired:
                        raise TooSlow(
                            f"no complete answer within {self.limits.stall_s:.0f}s"
                        ) from None
                    raise
                except requests.RequestException as e:  # InvalidURL, InvalidHeader, ...
                    raise RegistryRefused(
                        f"{what}: request to {self.host} refused: {scrub(str(e), limit=200)}"
                    ) from None
                if watch.fired:  # cut mid-headers, what arrived may even parse: not an answer
                    r.close()
                    raise TooSlow(f"no complete answer within {self.limits.stall_s:.0f}s")
            if r.status_code not in _REDIRECTS or method not in ("GET", "HEAD"):
                return r
            location = r.headers.get("Location")
            r.close()
            if location is None:
                raise RegistryRefused(f"{what}: {self.host} answered {r.status_code} with no URL")
            url = checked_url(url, location, what=f"{what}: redirect from {self.host}")
        raise RegistryRefused(f"{what}: more than {MAX_REDIRECTS} redirects from {self.host}")

    def _token_fetch(
        self,
        url: str,
        params: dict[str, str],
        headers: dict[str, str],
        auth_origin: tuple[str, str, int] | None,
    ) -> requests.Response:
        auth = {"Authorization": headers.pop("Authorization")} if "Authorization" in headers else {}
        return self._exchange(
            "GET",
            url,
            what="token",
            headers=headers,
            auth=auth,
            auth_origin=auth_origin,
            params=params,
        )

    def _authenticate(self, challenge_text: str, *, repo: str, what: str) -> None:
        try:
            challenge = parse_challenge(challenge_text)
        except ValueError:
            challenge = None
        with self._lock:
            if challenge is not None and challenge.scheme == "basic":
                if not self._has_login:
                    raise RegistryAuthError(
                        f"{what}: registry {self.host} wants credentials "
                        f"(set registry.upstreamAuth.{self.host}.usernameFile/passwordFile)"
                    )
                self._scheme_seen = "basic"
                return
            if challenge is None or challenge.scheme != "bearer":
                raise RegistryAuthError(
                    f"{what}: registry {self.host} answered 401 with no usable challenge"
                )
            self._scheme_seen = "bearer"
            try:
                token = self._creds.token(challenge, what=what, fetch=self._token_fetch)
            except NETWORK_ERRORS as e:
                raise RegistryUnavailable(
                    f"{what}: token service of {self.host} unreachable: {scrub(str(e))}"
                ) from None
            register_secret(token)
            self._tokens[repo] = token

    def _send(
        self, method: str, url: str, *, repo: str, what: str, headers: dict[str, str], **kw: Any
    ) -> requests.Response:
        replayable = not isinstance(kw.get("data"), _SizedBody)
        r = self._exchange(
            method,
            url,
            what=what,
            headers=headers,
            auth=self._auth_header(repo),
            auth_origin=self._origin,
            **kw,
        )
        if r.status_code != 401:
            return r
        challenge = r.headers.get("WWW-Authenticate", "")
        elsewhere = origin(r.url) != self._origin
        discard(r, limits=self.limits)
        if elsewhere:  # a redirect target: our credentials are not for it
            raise RegistryAuthError(
                f"{what}: registry {self.host} redirected to {origin(r.url)[1]}, which wants "
                "credentials; ours go only to the registry itself"
            )
        self._authenticate(challenge, repo=repo, what=what)
        if not replayable:  # a token expired mid-copy: the caller retries the whole blob
            raise RegistryUnavailable(f"{what}: registry {self.host} asked for auth mid-upload")
        r = self._exchange(
            method,
            url,
            what=what,
            headers=headers,
            auth=self._auth_header(repo),
            auth_origin=self._origin,
            **kw,
        )
        if r.status_code == 401:
            discard(r, limits=self.limits)
            raise RegistryAuthError(
                f"{what}: registry {self.host} refused our credentials"
                if self._has_login or self._static_token
                else f"{what}: registry {self.host} wants credentials "
                f"(set registry.upstreamAuth.{self.host})"
            )
        return r

    def url(self, location: str, *, what: str) -> str:
        """A URL the registry gave (upload ``Location``, ``Link`` page), checked and absolute."""
        return checked_url(self.base_url + "/", location, what=f"{what}: URL from {self.host}")

    def call(
        self,
        method: str,
        url: str,
        *,
        repo: str,
        what: str,
        headers: dict[str, str] | None = None,
        retry: bool = True,
        **kw: Any,
    ) -> requests.Response:
        """One request, retried on drops, 5xx and 429 with backoff; 401 answered with auth.

        ``what`` names the image (and blob) for every error raised. Returns any other response,
        including 4xx, for the caller to interpret; a 403 becomes RegistryAuthError.
        """
        url = url if "://" in url else self.base_url + url
        attempts = self.retry.attempts if retry else 1
        last, retry_after = "", None
        for attempt in range(attempts):
            if attempt:
                self._sleep(max(self.retry.delay(attempt - 1), retry_after or 0.0))
            retry_after = None
            try:
                r = self._send(method, url, repo=repo, what=what, headers=headers or {}, **kw)
            except requests.exceptions.SSLError as e:
                raise RegistryUnavailable(
                    f"{what}: TLS with {self.host} failed (is caFile right?): {scrub(str(e))}"
                ) from None
            except NETWORK_ERRORS as e:
                last = network_reason(e)
                continue
            if r.status_code == 403:
                detail = _remote_text(r, self.limits)
                r.close()
                raise RegistryAuthError(f"{what}: registry {self.host} denied access: {detail}")
            if r.status_code == 429 or r.status_code >= 500:
                retry_after = _retry_after(r.headers.get("Retry-After"))
                last = _remote_text(r, self.limits)
                r.close()
                if retry_after is not None and retry_after > self.retry.max_retry_after_s:
                    raise Waiting(
                        f"{what}: registry {self.host} asks to wait {retry_after:.0f}s ({last})",
                        retry_after=retry_after,
                    )
                continue
            return r
        if last.startswith("429"):
            raise Waiting(
                f"{what}: registry {self.host} is rate limiting ({last})",
                retry_after=retry_after or self.retry.max_delay_s,
            )
        raise RegistryUnavailable(
            f"{what}: {self._side}registry {self.host} still failing after {attempts} "
            f"attempt(s): {last}"
        )

    def read(self, r: requests.Response, *, cap: int, what: str, thing: str) -> bytes:
        """A whole body (``thing`` names it: manifest, tag list...), capped; closes ``r``.

        Too large is RegistryRefused; too slow RegistryUnavailable (not retried: small answers
        that trickle are a broken or hostile server); a cut connection raises NETWORK_ERRORS."""
        try:
            return read_capped(r, cap=cap, limits=self.limits, what=f"{what}: {thing}")
        except TooLarge as e:
            raise RegistryRefused(
                f"{what}: {thing} from {self.host} is {e} (too large; the cap is {cap})"
            ) from None
        except TooSlow as e:
            raise RegistryUnavailable(f"{what}: {thing} from {self.host} too slow: {e}") from None
        finally:
            r.close()

    def refused(self, r: requests.Response, *, what: str) -> RegistryRefused:
        """The error for an unexpected answer, with the registry's own words (scrubbed)."""
        detail = _remote_text(r, self.limits)
        r.close()
        if (
            r.status_code == 400
            and self.base_url.startswith("http:")
            and "Docker-Distribution-Api-Version" not in r.headers
        ):  # what an HTTPS server answers to plain HTTP (Go: "HTTP request to an HTTPS server")
            return RegistryRefused(
                f"{what}: registry {self.host} refused plain HTTP ({detail}); if it speaks "
                "HTTPS, give its caFile (plain HTTP is only for loopback and insecure hosts)"
            )
        return RegistryRefused(f"{what}: registry {self.host} answered {detail}")


class _SizedBody:
    """An iterable request body with a length, so requests sends Content-Length, not chunked."""

    def __init__(self, chunks: Iterator[bytes], size: int) -> None:
        self._chunks = chunks
        self._size = size

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks


def sized_body(chunks: Iterator[bytes], size: int) -> _SizedBody:
    return _SizedBody(chunks, size)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from registries; fall back to our own backoff
