"""OpenSSH allowed_signers files (ssh-keygen(1), ALLOWED SIGNERS): text to :class:`TrustedKey`.

``valid-after`` and ``valid-before`` times without a trailing ``Z`` are local time for
ssh-keygen; an edge agent's time zone is arbitrary, so gitedge reads them as UTC. Both bounds are
inclusive, as in ssh-keygen. The keys themselves are parsed by the caller's ``check_key``
(:func:`gitedge.adapters.trust.commitsigs.load_allowed_signers` passes its SSH key parser).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from gitedge.errors import TrustError

__all__ = ["TrustedKey", "parse"]


@dataclass(frozen=True)
class TrustedKey:
    """A key as a trust file states it. ``key_text`` is an OpenSSH public key line
    (``ssh-ed25519 AAAA... comment``) or an armored OpenPGP public key. ``namespaces`` (SSH only)
    restricts what the key may sign (patterns as in allowed_signers); None allows any."""

    name: str
    key_text: str
    valid_after: datetime | None = None
    valid_before: datetime | None = None
    namespaces: tuple[str, ...] | None = None


_TIME = re.compile(r"(\d{8})(\d{4}(\d{2})?)?(Z?)")


def _parse_time(value: str) -> datetime:
    """``YYYYMMDD[HHMM[SS]][Z]`` read as UTC (see the module docstring)."""
    m = _TIME.fullmatch(value)
    if not m:
        raise ValueError(f"bad time {value[:40]!r}: expected YYYYMMDD[HHMM[SS]][Z]")
    digits = value.rstrip("Z").ljust(14, "0")
    try:
        return datetime.strptime(digits, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"bad time {value[:40]!r}: no such date") from None


def _token(s: str) -> tuple[str, str]:
    """Split off one whitespace-delimited token; double quotes (with ``\\"``) group spaces."""
    s = s.lstrip()
    i, quoted = 0, False
    while i < len(s):
        c = s[i]
        if c == "\\" and quoted:
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c in " \t" and not quoted:
            break
        i += 1
    if quoted:
        raise ValueError("unterminated quote")
    return s[:i], s[i:].lstrip()


def _dequote(v: str) -> str:
    if len(v) >= 2 and v[0] == v[-1] == '"':
        return v[1:-1].replace('\\"', '"')
    if '"' in v:
        raise ValueError(f"bad quoting in {v[:40]!r}")
    return v


_OPTION = re.compile(r'\s*([^,"=\s]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^,"]*))?\s*(?:,|$)')


def _parse_options(text: str) -> dict[str, str | None]:
    """``name[=value]`` pairs separated by commas; values may be double-quoted."""
    opts: dict[str, str | None] = {}
    pos = 0
    while pos < len(text):
        m = _OPTION.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"malformed options {text[:60]!r}")
        name = m.group(1).lower()
        if name in opts:
            raise ValueError(f"option {name!r} given twice")
        value = m.group(2)
        opts[name] = None if value is None else _dequote(value.strip())
        pos = m.end()
    return opts


def _line(line: str, check_key: Callable[[str], object]) -> TrustedKey:
    principals, rest = _token(line)
    principals = _dequote(principals)
    if not principals:
        raise ValueError("no principals")
    opts: dict[str, str | None] = {}
    first, after = _token(rest)
    if not re.match(r"(?:ssh|ecdsa|sk)-", first):  # not a key type: the options field
        if not after:
            raise ValueError(f"missing key (unknown key type or options {first[:60]!r})")
        opts, rest = _parse_options(first), after
    if "cert-authority" in opts:
        raise ValueError("cert-authority is not supported: list the signers' own keys")
    unknown = sorted(set(opts) - {"namespaces", "valid-after", "valid-before"})
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r}")
    for name, value in opts.items():
        if not value:
            raise ValueError(f"option {name!r} needs a value")
    check_key(rest)  # fail here, with the line number, rather than in Keyring
    after_t = _parse_time(opts["valid-after"] or "") if "valid-after" in opts else None
    before_t = _parse_time(opts["valid-before"] or "") if "valid-before" in opts else None
    if after_t and before_t and after_t > before_t:
        raise ValueError("valid-after is later than valid-before")
    ns = opts.get("namespaces")
    namespaces = tuple(n.strip() for n in ns.split(",") if n.strip()) if ns else None
    return TrustedKey(principals, rest.strip(), after_t, before_t, namespaces)


def parse(
    text: str, *, source: str, check_key: Callable[[str], object] = lambda _: None
) -> list[TrustedKey]:
    """Read an OpenSSH allowed_signers file: ``principals [options] keytype base64 [comment]``.

    One :class:`TrustedKey` per line, named by its principals field as written (unquoted).
    Options: ``namespaces="a,b"``, ``valid-after=`` / ``valid-before=`` (quotes optional here;
    ssh-keygen insists on them); ``cert-authority`` is refused.
    ``check_key`` parses the key text (raising ValueError). Raises :class:`TrustError` as
    ``source:line: reason``."""
    out: list[TrustedKey] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            out.append(_line(line, check_key))
        except ValueError as exc:
            raise TrustError(f"{source}:{lineno}: {exc}") from None
    if not out:
        raise TrustError(f"{source}: no signers in the allowed_signers file")
    return out
