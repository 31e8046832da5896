"""Registry auth: a 401 challenge parsed, a bearer token fetched, and where credentials may go.

The token request is ours (it was oras-py's, which read the realm's answer whole, followed
redirects with requests' unbounded reads, and sent our Basic credentials to whatever realm the
challenge named, over plain HTTP too). Now:

- The challenge (``WWW-Authenticate: Bearer realm="...",service="...",scope="..."``) is parsed
  by :func:`parse_challenge`; a header that does not parse is a RegistryAuthError, not a crash.
- **Credentials go only** to the registry host itself (same host name; over plain HTTP only when
  the registry is spoken to over plain HTTP already), to a realm over **https**, or to a realm
  host marked ``insecure`` in ``registry.upstreamAuth`` (``host[:port]: {insecure: true}``).
  Any other realm is refused with a RegistryAuthError naming the image and the realm's host.
  Without credentials, an anonymous token may be asked of any realm (nothing secret is sent).
- The token answer is read with a cap (:data:`MAX_TOKEN_BYTES`) and the minimum rate of
  ``httpbounds``; a token that could not be sent as a header value is refused.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from gitedge.adapters.registry.bounds import checked_url, origin, read_capped
from gitedge.adapters.registry.hosts import Limits
from gitedge.adapters.registry.httpstack import requests
from gitedge.errors import (
    RegistryAuthError,
    RegistryRefused,
    RegistryUnavailable,
    TooLarge,
    TooSlow,
    scrub,
)

MAX_TOKEN_BYTES = 256 * 1024  # Docker Hub's tokens are ~2 KiB; a JWT with many scopes, ~10 KiB
_TOKEN = re.compile(r"[\x21-\x7e]{1,65536}")  # visible ASCII: what a header value can carry
_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_.-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*,?')


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "basic", "bearer", ...
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge:
    """The first challenge of a ``WWW-Authenticate`` value; ValueError when there is none.

    Parameters that do not parse end the list (what follows may be a second challenge)."""
    text = header.strip()[:16384]
    scheme, _, rest = text.partition(" ")
    if not scheme or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]*", scheme):
        raise ValueError("no auth scheme")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if m is None or m.end() == pos:
            break
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params.setdefault(m.group(1).lower(), re.sub(r"\\(.)", r"\1", value or ""))
        pos = m.end()
    return Challenge(scheme.lower(), params)


#: ``fetch(url, params, headers, auth_origin)`` -> a streamed response (redirects followed, the
#: ``Authorization`` header only sent to ``auth_origin``); NETWORK_ERRORS as raised.
Fetch = Callable[
    [str, dict[str, str], dict[str, str], tuple[str, str, int] | None], requests.Response
]


class Credentials:
    """One registry host's login (or static token) and where it may be sent."""

    def __init__(
        self,
        *,
        host: str,
        base_url: str,
        login: tuple[str, str] | None,
        insecure_hosts: frozenset[str],
        limits: Limits,
    ) -> None:
        self.host, self.base_url, self.limits = host, base_url, limits
        self.origin = origin(base_url)
        self._basic = (
            "Basic " + base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode()
            if login
            else None
        )
        self._insecure = insecure_hosts

    @property
    def has_login(self) -> bool:
        return self._basic is not None

    def basic_header(self) -> dict[str, str]:
        return {"Authorization": self._basic} if self._basic else {}

    def may_receive(self, url: str) -> bool:
        """Whether our login may be sent to ``url`` (a token realm): see the module docstring."""
        scheme, host, _ = origin(url)
        if scheme == "https":
            return True
        if host == self.origin[1] and self.origin[0] == "http":
            return True
        netloc = (urlsplit(url).netloc.rsplit("@", 1)[-1]).lower()
        return netloc in self._insecure or host in self._insecure

    def token(self, challenge: Challenge, *, what: str, fetch: Fetch) -> str:
        """A bearer token for ``challenge`` from its realm; errors of the tree otherwise."""
        realm_text = challenge.params.get("realm", "")
        try:
            if not realm_text.strip():
                raise RegistryRefused("no realm")
            realm = checked_url(self.base_url + "/", realm_text, what=what)
        except RegistryRefused:
            raise RegistryAuthError(
                f"{what}: registry {self.host} names a malformed token realm "
                f"{scrub(realm_text, limit=80)!r}"
            ) from None
        realm_host = urlsplit(realm).netloc.rsplit("@", 1)[-1]
        headers = {"Accept": "application/json"}
        auth_origin = None
        if self._basic is not None:
            if not self.may_receive(realm):
                raise RegistryAuthError(
                    f"{what}: registry {self.host} sends us to {realm_host} over plain http for "
                    "a token; refused: credentials go only to the registry host itself, to an "
                    f"https realm, or to a host marked insecure (registry.upstreamAuth."
                    f"{realm_host}.insecure)"
                )
            headers.update(self.basic_header())
            auth_origin = origin(realm)
        service = f"token service {realm_host}" + (
            "" if realm_host == self.host else f" of {self.host}"
        )
        params = {k: challenge.params[k] for k in ("service", "scope") if challenge.params.get(k)}
        r = fetch(realm, params, headers, auth_origin)
        try:
            if r.status_code == 429 or r.status_code >= 500:
                raise RegistryUnavailable(f"{what}: {service} answered {r.status_code}")
            if r.status_code != 200:
                raise self._refused(what)
            try:
                body = read_capped(
                    r, cap=MAX_TOKEN_BYTES, limits=self.limits, what=f"{what}: token answer"
                )
            except TooLarge:
                raise RegistryAuthError(
                    f"{what}: {service} answered more than {MAX_TOKEN_BYTES} bytes (too large)"
                ) from None
            except TooSlow as e:
                raise RegistryUnavailable(f"{what}: {service} too slow: {e}") from None
        finally:
            r.close()
        try:
            doc = json.loads(body)
            token = (doc.get("token") or doc.get("access_token")) if isinstance(doc, dict) else None
        except (ValueError, RecursionError):
            token = None
        if not isinstance(token, str) or not token:
            raise self._refused(what)
        if not _TOKEN.fullmatch(token):
            raise RegistryAuthError(f"{what}: {service} issued a malformed token")
        return token

    def _refused(self, what: str) -> RegistryAuthError:
        return RegistryAuthError(
            f"{what}: the token service of {self.host} refused to issue a token"
            + (" for our credentials" if self.has_login else " (no credentials set)")
        )


def check_static_token(token: str, *, host: str) -> str:
    if not _TOKEN.fullmatch(token):
        raise RegistryAuthError(
            f"registry {host}: tokenFile holds characters an HTTP header cannot carry"
        )
    return token
