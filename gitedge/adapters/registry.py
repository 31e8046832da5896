"""An OCI distribution client: raw manifests, streamed blobs, resumable reads, verified uploads.

Auth is oras-py's (``oras.auth``: its basic backend and its bearer-token backend, which asks the
realm of a ``WWW-Authenticate: Bearer`` challenge for a token with the challenge's scope). We
do not use ``oras.provider.Registry`` for requests: its ``do_request`` retries every exception
(a 404 included) with sleeps of 2 + 3^n seconds, sets no timeouts, and its manifest and upload
calls parse or buffer what we must keep byte for byte or stream (FACTS.md). So requests go
through our own loop: bounded timeouts, retries with jittered backoff on connection errors, 5xx
and 429 (``Retry-After`` honoured; a wait longer than the policy allows becomes
:class:`~gitedge.errors.Waiting`), and errors sorted into the tree of ``errors.py``.

Per host (``registry.upstreamAuth.<host>`` and ``registry.cache`` of the agent config):
credentials are read from files when the client is made (``usernameFile``/``passwordFile``, or
``tokenFile`` for a static bearer token); ``caFile`` makes the client speak HTTPS verified
against that CA; plain HTTP is used for loopback hosts (as Docker does) and for hosts marked
``insecure``, unless a CA file or an ``https://`` cache URL says otherwise. Secrets never reach
exceptions: remote text goes through :func:`~gitedge.errors.scrub`.

Bearer tokens are kept per repository: a token is scoped to the repositories its challenge
named, and oras's backend keeps a single token, which would flap between a source and a
destination repository on one host.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urljoin

from gitedge.adapters.localfiles import read_bounded
from gitedge.adapters.registryhosts import HostConfig, RetryPolicy, is_loopback
from gitedge.core.ocimanifest import (
    ACCEPT,
    MAX_MANIFEST_BYTES,
    Manifest,
    digest_of,
    is_digest,
    parse_manifest,
)
from gitedge.errors import (
    DigestMismatch,
    ImageNotFound,
    RegistryAuthError,
    RegistryRefused,
    RegistryUnavailable,
    Waiting,
    scrub,
)


def _load_requests_without_charset_detection() -> None:
    """Load requests, when nothing has yet, without a character-detection module.

    requests picks one at import (chardet, else charset_normalizer) for the ``Response.text``
    of bodies that declare no charset. This client never decodes a body that way (manifests
    and blobs stay bytes, error bodies are JSON read from ``r.raw``), and charset_normalizer 3
    walks every codec on import: ~50 ms CPU, a sixth of a ``gitedge mirror`` no-op run.
    requests runs without one (``apparent_encoding`` None, ``text`` decoded as UTF-8), after a
    warning we silence. Others may still import charset_normalizer later.
    """
    if "requests" in sys.modules or "charset_normalizer" in sys.modules:
        return
    sys.modules["charset_normalizer"] = None  # type: ignore[assignment]  # import fails
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Unable to find acceptable character detection")
            import requests  # noqa: F401
    finally:
        del sys.modules["charset_normalizer"]


_load_requests_without_charset_detection()

import requests  # noqa: E402
import urllib3  # noqa: E402

if TYPE_CHECKING:
    from oras.auth.base import AuthBackend

logging.getLogger("oras").addHandler(logging.NullHandler())  # oras logs; only cli/ prints

CHUNK = 1024 * 1024
#: Errors that mean "the connection broke": the request (or the rest of a blob) is retried.
NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.HTTPError,
    OSError,
)


class _Session(requests.Session):
    """A session whose every request (oras's token requests too) has a timeout."""

    timeout: tuple[float, float] = (10.0, 60.0)

    def request(  # type: ignore[override]
        self, method: str, url: str, *a: Any, **kw: Any
    ) -> requests.Response:
        kw.setdefault("timeout", self.timeout)
        return super().request(method, url, *a, **kw)


def _read_secret(path: Path, *, what: str, host: str) -> str:
    try:
        return read_bounded(path, limit=64 << 10).decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise RegistryAuthError(f"registry {host}: {what} {path} is not UTF-8") from None
    except OSError as e:
        raise RegistryAuthError(
            f"registry {host}: cannot read {what} {path}: {e.strerror}"
        ) from None


def _remote_text(r: requests.Response) -> str:
    """The registry's error codes and messages (distribution's JSON), cut short and scrubbed."""
    body = r.__dict__.get("_content")  # already read (not a streamed response)
    if not isinstance(body, bytes):
        try:
            body = r.raw.read(4096, decode_content=True) if r.raw is not None else b""
        except Exception:  # best effort, for a message only
            body = b""
    body = body[:4096]
    text = ""
    try:
        errors = json.loads(body).get("errors", [])
        text = "; ".join(f"{e.get('code', '')}: {e.get('message', '')}" for e in errors)
    except (ValueError, AttributeError):
        text = body.decode("utf-8", "replace")
    return scrub(f"{r.status_code} {r.reason or ''} {text}".strip(), limit=200)


class RegistryClient:
    """One registry host: requests with auth, retries and timeouts; the distribution API calls."""

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
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        if cfg.scheme:
            scheme = cfg.scheme
        elif cfg.ca_file is not None:
            scheme = "https"
        else:
            scheme = "http" if (cfg.insecure or is_loopback(host)) else "https"
        self.base_url = f"{scheme}://{host}"
        verify: bool | str = str(cfg.ca_file) if cfg.ca_file else True
        self._session = _Session()
        self._session.timeout = (self.retry.connect_timeout_s, self.retry.read_timeout_s)
        self._session.verify = verify
        self._session.trust_env = False  # no ~/.netrc credentials or proxies behind our back
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._login: tuple[str, str] | None = None
        if cfg.username_file or cfg.password_file:
            if not (cfg.username_file and cfg.password_file):
                raise RegistryAuthError(
                    f"registry {host}: usernameFile and passwordFile go together"
                )
            self._login = (
                _read_secret(cfg.username_file, what="usernameFile", host=host),
                _read_secret(cfg.password_file, what="passwordFile", host=host),
            )
        self._has_login = self._login is not None
        self._oras: tuple[AuthBackend, AuthBackend] | None = None  # basic, bearer: at a 401
        self._static_token = (
            _read_secret(cfg.token_file, what="tokenFile", host=host) if cfg.token_file else None
        )
        self._scheme_seen: str | None = None  # "basic" or "bearer", from the first challenge
        self._tokens: dict[str, str] = {}  # repository -> bearer token
        self._lock = threading.Lock()

    def close(self) -> None:
        self._session.close()

    # ------------------------------------------------------------------ requests, auth, retries

    def _backends(self) -> tuple[AuthBackend, AuthBackend]:
        """oras's basic and bearer-token backends, made at the first 401 challenge: a client of
        an anonymous registry (a site's cache, often) never loads oras (~15 ms of a CLI run)."""
        if self._oras is None:
            import oras.auth

            insecure, verify = self.base_url.startswith("http:"), self._session.verify
            basic, bearer = (
                oras.auth.get_auth_backend(kind, self._session, insecure, tls_verify=verify)
                for kind in ("basic", "token")
            )
            if self._login is not None:
                basic.set_basic_auth(*self._login)
                bearer.set_basic_auth(*self._login)
            self._oras = (basic, bearer)
        return self._oras

    def _auth_header(self, repo: str) -> dict[str, str]:
        if self._scheme_seen == "basic" and self._has_login:
            return dict(self._backends()[0].get_auth_header())
        token = self._tokens.get(repo) or self._static_token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _authenticate(self, r: requests.Response, *, repo: str, what: str) -> None:
        challenge = r.headers.get("WWW-Authenticate", "")
        scheme = challenge.split(" ", 1)[0].lower()
        with self._lock:
            if scheme == "basic":
                if not self._has_login:
                    raise RegistryAuthError(
                        f"{what}: registry {self.host} wants credentials "
                        f"(set registry.upstreamAuth.{self.host}.usernameFile/passwordFile)"
                    )
                self._backends()
                self._scheme_seen = "basic"
                return
            if scheme != "bearer":
                raise RegistryAuthError(
                    f"{what}: registry {self.host} answered 401 with no usable challenge"
                )
            self._scheme_seen = "bearer"
            bearer = self._backends()[1]
            bearer.token = None
            try:
                _, changed = bearer.authenticate_request(r, {}, refresh=True)
            except NETWORK_ERRORS as e:
                raise RegistryUnavailable(
                    f"{what}: token service of {self.host} unreachable: {scrub(str(e))}"
                ) from None
            if not changed or not bearer.token:
                raise RegistryAuthError(
                    f"{what}: the token service of {self.host} refused to issue a token"
                    + (" for our credentials" if self._has_login else " (no credentials set)")
                )
            self._tokens[repo] = str(bearer.token)

    def _send(
        self, method: str, url: str, *, repo: str, what: str, headers: dict[str, str], **kw: Any
    ) -> requests.Response:
        replayable = not isinstance(kw.get("data"), _SizedBody)
        r = self._session.request(method, url, headers={**headers, **self._auth_header(repo)}, **kw)
        if r.status_code != 401:
            return r
        r.close()
        self._authenticate(r, repo=repo, what=what)
        if not replayable:  # a token expired mid-copy: the caller retries the whole blob
            raise RegistryUnavailable(f"{what}: registry {self.host} asked for auth mid-upload")
        r = self._session.request(method, url, headers={**headers, **self._auth_header(repo)}, **kw)
        if r.status_code == 401:
            r.close()
            raise RegistryAuthError(
                f"{what}: registry {self.host} refused our credentials"
                if self._has_login or self._static_token
                else f"{what}: registry {self.host} wants credentials "
                f"(set registry.upstreamAuth.{self.host})"
            )
        return r

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
                last = scrub(str(e), limit=200)
                continue
            if r.status_code == 403:
                detail = _remote_text(r)
                r.close()
                raise RegistryAuthError(f"{what}: registry {self.host} denied access: {detail}")
            if r.status_code == 429 or r.status_code >= 500:
                retry_after = _retry_after(r.headers.get("Retry-After"))
                last = _remote_text(r)
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
            f"{what}: registry {self.host} still failing after {attempts} attempt(s): {last}"
        )

    def refused(self, r: requests.Response, *, what: str) -> RegistryRefused:
        """The error for an unexpected answer, with the registry's own words (scrubbed)."""
        detail = _remote_text(r)
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

    # ------------------------------------------------------------------ distribution API

    def get_manifest(self, repo: str, reference: str, *, what: str) -> Manifest:
        """The manifest's exact bytes, verified: by digest they must hash to it; by tag they
        must hash to the ``Docker-Content-Digest`` the registry announces (when it does).

        A connection cut while the body is read is retried like any dropped request."""
        last = ""
        for attempt in range(self.retry.attempts):
            if attempt:
                self._sleep(self.retry.delay(attempt - 1))
            r = self.call(
                "GET", f"/v2/{repo}/manifests/{reference}", repo=repo, what=what,
                headers={"Accept": ACCEPT}, stream=True,
            )  # fmt: skip
            if r.status_code == 404:
                detail = _remote_text(r)
                r.close()
                raise ImageNotFound(f"image {what} not found in {self.host} ({detail})")
            if r.status_code != 200:
                raise self.refused(r, what=what)
            try:
                data = r.raw.read(MAX_MANIFEST_BYTES + 1, decode_content=True)
            except NETWORK_ERRORS as e:
                last = scrub(str(e), limit=200)
                continue
            finally:
                r.close()
            return self._verified_manifest(r, data, reference, what=what)
        raise RegistryUnavailable(
            f"{what}: manifest read from {self.host} cut {self.retry.attempts} time(s): {last}"
        )

    def _verified_manifest(
        self, r: requests.Response, data: bytes, reference: str, *, what: str
    ) -> Manifest:
        announced = r.headers.get("Docker-Content-Digest")
        expected = reference if ":" in reference else announced
        if expected is not None and not is_digest(expected):
            raise DigestMismatch(
                image=what, digest=scrub(expected, limit=80), detail="not a sha256/sha512 digest"
            )
        digest = digest_of(data, algorithm=expected.split(":", 1)[0] if expected else "sha256")
        if expected and digest != expected:
            raise DigestMismatch(
                image=what, digest=expected, detail=f"manifest bytes hash to {digest}"
            )
        return parse_manifest(
            data, digest=digest, content_type=r.headers.get("Content-Type"), where=f"image {what}"
        )

    def manifest_digest(self, repo: str, reference: str, *, what: str) -> str | None:
        """HEAD a manifest: its digest, or None when the registry does not have it."""
        r = self.call(
            "HEAD", f"/v2/{repo}/manifests/{reference}", repo=repo, what=what,
            headers={"Accept": ACCEPT},
        )  # fmt: skip
        r.close()
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise self.refused(r, what=what)
        return r.headers.get("Docker-Content-Digest") or (reference if ":" in reference else None)

    def put_manifest(self, repo: str, reference: str, manifest: Manifest, *, what: str) -> None:
        """PUT the exact bytes under their own media type; the registry must agree on the digest."""
        r = self.call(
            "PUT", f"/v2/{repo}/manifests/{reference}", repo=repo, what=what,
            headers={"Content-Type": manifest.media_type}, data=manifest.data,
        )  # fmt: skip
        if r.status_code not in (200, 201):
            raise self.refused(r, what=f"{what}: PUT manifest {manifest.digest}")
        got = r.headers.get("Docker-Content-Digest")
        r.close()
        if got and got != manifest.digest:
            raise RegistryRefused(
                f"{what}: registry {self.host} stored manifest {manifest.digest} as {got}"
            )

    def list_tags(
        self, repo: str, *, what: str, page: int = 1000, limit: int = 100_000
    ) -> list[str]:
        """Every tag of ``repo`` (``GET /v2/<name>/tags/list?n=``, following ``Link: rel=next``
        pages); a repository the registry does not know has none. At most ``limit`` tags."""
        url: str | None = f"/v2/{repo}/tags/list?{urlencode({'n': page})}"
        tags: list[str] = []
        seen: set[str] = set()
        while url is not None:
            seen.add(url)
            r = self.call("GET", url, repo=repo, what=what, stream=True)
            if r.status_code == 404 and not tags:
                r.close()
                return []
            if r.status_code != 200:
                raise self.refused(r, what=f"{what}: list tags")
            try:
                body = r.raw.read(MAX_MANIFEST_BYTES + 1, decode_content=True)
            except NETWORK_ERRORS as e:
                raise RegistryUnavailable(f"{what}: tag list cut short: {scrub(str(e))}") from None
            finally:
                r.close()
            try:
                got = json.loads(body).get("tags") or []
            except (ValueError, AttributeError):
                got = None
            if len(body) > MAX_MANIFEST_BYTES or not isinstance(got, list):
                raise RegistryRefused(f"{what}: registry {self.host} sent a malformed tag list")
            tags += [t for t in got if isinstance(t, str)]
            if len(tags) > limit:
                raise RegistryRefused(f"{what}: more than {limit} tags in {self.host}/{repo}")
            nxt = r.links.get("next", {}).get("url")
            url = urljoin(self.base_url + "/", nxt) if nxt else None
            if url in seen:  # a registry paging in a circle
                raise RegistryRefused(f"{what}: registry {self.host} repeats a tag list page")
        return tags

    def blob_size(self, repo: str, digest: str, *, what: str) -> int | None:
        """HEAD a blob: its size, or None when the registry does not have it."""
        r = self.call("HEAD", f"/v2/{repo}/blobs/{digest}", repo=repo, what=what)
        r.close()
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise self.refused(r, what=what)
        return int(r.headers.get("Content-Length") or -1)

    def read_blob(
        self, repo: str, digest: str, *, offset: int, what: str
    ) -> tuple[int, Iterator[bytes]]:
        """Stream a blob from ``offset`` (an HTTP Range request when > 0).

        Returns where the stream really starts (0 when the registry ignored the Range) and an
        iterator of chunks; a connection that breaks mid-stream raises one of NETWORK_ERRORS
        from the iterator, so the caller can resume from what it has.
        """
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        r = self.call(
            "GET", f"/v2/{repo}/blobs/{digest}", repo=repo, what=what, headers=headers, stream=True
        )
        start = 0
        if r.status_code == 404:
            r.close()
            raise ImageNotFound(f"image {what}: blob {digest} not found in {self.host}")
        if r.status_code == 416:
            r.close()
            raise DigestMismatch(
                image=what, digest=digest, detail=f"blob ends before byte {offset} (truncated)"
            )
        if r.status_code == 206:
            crange = r.headers.get("Content-Range", "")
            if not crange.startswith(f"bytes {offset}-"):
                r.close()
                raise RegistryRefused(f"{what}: {self.host} answered Range with {crange!r}")
            start = offset
        elif r.status_code != 200:
            raise self.refused(r, what=f"{what}: blob {digest}")

        def chunks() -> Iterator[bytes]:
            try:
                yield from r.raw.stream(CHUNK, decode_content=False)
            finally:
                r.close()

        return start, chunks()

    def start_upload(
        self, repo: str, *, what: str, mount: tuple[str, str] | None = None
    ) -> str | None:
        """Open an upload session and return its URL; with ``mount=(digest, from_repo)`` try a
        cross-repository mount first, returning None when the registry mounted the blob."""
        query = "?" + urlencode({"mount": mount[0], "from": mount[1]}) if mount else ""
        r = self.call("POST", f"/v2/{repo}/blobs/uploads/{query}", repo=repo, what=what)
        r.close()
        if r.status_code == 201 and mount:
            return None
        if r.status_code != 202 or not r.headers.get("Location"):
            raise self.refused(r, what=f"{what}: start upload")
        return urljoin(self.base_url + "/", r.headers["Location"])

    def patch_upload(self, location: str, body: _SizedBody, *, repo: str, what: str) -> str:
        """Send the blob's bytes in one streamed PATCH (not retried: the body is a stream)."""
        r = self.call(
            "PATCH", location, repo=repo, what=what, retry=False, data=body,
            headers={"Content-Type": "application/octet-stream"},
        )  # fmt: skip
        r.close()
        if r.status_code != 202:
            raise self.refused(r, what=f"{what}: upload")
        return urljoin(self.base_url + "/", r.headers.get("Location") or location)

    def finish_upload(self, location: str, digest: str, *, repo: str, what: str) -> None:
        """Commit the upload under ``digest`` (the registry checks it again)."""
        sep = "&" if "?" in location else "?"
        r = self.call(
            "PUT", f"{location}{sep}{urlencode({'digest': digest})}", repo=repo, what=what,
            headers={"Content-Length": "0"},
        )  # fmt: skip
        r.close()
        if r.status_code not in (201, 204):
            raise self.refused(r, what=f"{what}: commit blob {digest}")

    def cancel_upload(self, location: str, *, repo: str) -> None:
        """Drop an upload session, best effort (registries purge stale ones anyway)."""
        with contextlib.suppress(Exception):  # cleanup must not mask the real error
            self._send("DELETE", location, repo=repo, what="cancel", headers={}).close()


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
