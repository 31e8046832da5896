"""OpenPGP side of commit-signature verification, in-process through pysequoia (Sequoia-PGP).

:mod:`gitedge.adapters.trust.commitsigs` is the public face; this module holds what is OpenPGP-only:

- :func:`read_certs` / :func:`parse_cert` turn armored public keys into :class:`PgpCert` (primary
  fingerprint, the name from the primary user id, and every (sub)key fingerprint and key id);
- :class:`PgpIndex` finds the certificate a detached signature was made by (issuer fingerprint,
  else issuer key id) and verifies it with ``pysequoia.verify``. Sequoia applies its standard
  policy: SHA-1 and other broken algorithms are refused, and the signing (sub)key must be bound,
  signing-capable, unexpired and unrevoked *at the signature's creation time*.

One gap is filled with ``gpg``: pysequoia verifies against the host clock and has no way to set the
reference time, so it refuses any signature dated after "now" (plus Sequoia's clock-skew
tolerance). Edge sites run for months without NTP and their clocks drift, so a genuine commit can
look "from the future". Only in that case, and only when Sequoia has refused, the signature is
checked again by ``gpg --verify`` in a throw-away GNUPGHOME holding just the signer's certificate,
with gpg's clock set to the signature's creation time (same rule as Sequoia: the key must be valid
when it signed). Without a ``gpg`` binary such a signature is reported as bad, saying why.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pysequoia
from pysequoia.packet import PacketPile, Tag

from gitedge.core.timefmt import iso_z
from gitedge.errors import TrustError

PgpOutcome = Literal["good", "unknown-key", "bad-signature"]

ARMOR_SIGNATURE = b"-----BEGIN PGP SIGNATURE-----"
_BLOCK = re.compile(
    r"-----BEGIN PGP (?P<kind>PUBLIC KEY BLOCK|PRIVATE KEY BLOCK)-----.*?"
    r"(?:-----END PGP (?P=kind)-----|\Z)",
    re.DOTALL,
)
_GPG_TIMEOUT_S = 30


def _first_line(exc: BaseException) -> str:
    """A native error's first line (pysequoia appends a Rust backtrace when RUST_BACKTRACE set)."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


@dataclass(frozen=True, slots=True)
class PgpCert:
    """One parsed OpenPGP certificate (public key)."""

    fingerprint: str  # primary key, upper-case hex as gpg prints it
    name: str  # the primary user id, or the fingerprint when it has none
    armored: str  # this certificate alone, ASCII-armored
    key_ids: tuple[str, ...]  # lower-case fingerprints and key ids of the primary and subkeys
    cert: pysequoia.Cert


def _from_sequoia(cert: pysequoia.Cert) -> PgpCert:
    ids: list[str] = []
    uid_flags: dict[str, bool] = {}
    current_uid: str | None = None
    for packet in PacketPile.from_bytes(bytes(cert)):
        tag = packet.tag
        if tag in (Tag.PublicKey, Tag.PublicSubkey):
            current_uid = None
            ids += [x.lower() for x in (packet.fingerprint, packet.key_id) if x]
        elif tag == Tag.UserID:
            current_uid = packet.user_id
        elif tag == Tag.Signature and current_uid is not None and packet.primary_userid:
            uid_flags[current_uid] = True
    user_ids = [str(u) for u in cert.user_ids]  # non-revoked ones only
    primary = next((u for u in user_ids if uid_flags.get(u)), user_ids[0] if user_ids else None)
    fpr = cert.fingerprint.upper()
    return PgpCert(
        fingerprint=fpr,
        name=primary or fpr,
        armored=str(cert),
        key_ids=tuple(dict.fromkeys(ids)),
        cert=cert,
    )


def _split(data: bytes) -> list[PgpCert]:
    """Every certificate in ``data``; ValueError with a short reason when it does not parse."""
    try:
        tags = [p.tag for p in PacketPile.from_bytes(data)] if data.strip() else []
        certs = pysequoia.Cert.split_bytes(data)
    except Exception as exc:  # pysequoia raises RuntimeError/ValueError with native text
        raise ValueError(f"not a valid OpenPGP public key: {_first_line(exc)}") from None
    if any(t in (Tag.SecretKey, Tag.SecretSubkey) for t in tags):  # Tag is not hashable
        raise ValueError("holds secret key material; give the public key only")
    return [_from_sequoia(c) for c in certs]


def parse_cert(text: str) -> PgpCert:
    """Exactly one armored OpenPGP public key (as in a TrustPolicy signer); ValueError else."""
    certs = _split(text.encode())
    if len(certs) != 1:
        raise ValueError(f"expected one OpenPGP public key, found {len(certs)}")
    return certs[0]


def read_certs(text: str, *, source: str) -> list[PgpCert]:
    """Every public key in a file of one or more armored key blocks.

    Raises :class:`TrustError` as ``source:line: reason`` (the line where the offending block
    begins) for a block that does not parse, a secret key, or a file without any key."""
    out: list[PgpCert] = []
    for m in _BLOCK.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        if m.group("kind") == "PRIVATE KEY BLOCK":
            raise TrustError(f"{source}:{line}: a secret key block; give public keys only")
        try:
            certs = _split(m.group(0).encode())
        except ValueError as exc:
            raise TrustError(f"{source}:{line}: {exc}") from None
        if not certs:
            raise TrustError(f"{source}:{line}: the key block holds no key")
        out += certs
    if not out:
        raise TrustError(f"{source}: no armored OpenPGP public key found")
    return out


@dataclass(frozen=True, slots=True)
class PgpVerdict:
    """What :meth:`PgpIndex.verify` found; ``cert`` is the matching certificate, if any."""

    outcome: PgpOutcome
    key_id: str
    detail: str
    signed_at: datetime | None
    cert: PgpCert | None = None


class PgpIndex:
    """Certificates indexed by every primary/subkey fingerprint and key id (lower-case hex)."""

    def __init__(self, certs: Iterable[PgpCert]) -> None:
        self._by_id: dict[str, PgpCert] = {}
        for c in certs:
            for kid in c.key_ids:
                other = self._by_id.setdefault(kid, c)
                if other.fingerprint != c.fingerprint:
                    raise ValueError(
                        f"key id {kid.upper()} belongs to both {other.fingerprint} and "
                        f"{c.fingerprint}"
                    )

    def __len__(self) -> int:
        return len({c.fingerprint for c in self._by_id.values()})

    def verify(self, *, signature: bytes, payload: bytes, now: datetime) -> PgpVerdict:
        """Verify an armored detached signature over ``payload``; never raises."""
        try:
            sig = pysequoia.Sig.from_bytes(signature)
        except Exception as exc:  # native parse error
            return PgpVerdict(
                "bad-signature", "", f"malformed OpenPGP signature: {_first_line(exc)}", None
            )
        created = sig.created
        issuer = sig.issuer_fingerprint or sig.issuer_key_id
        if not issuer:
            return PgpVerdict("bad-signature", "", "signature names no issuer key", created)
        cert = self._by_id.get(issuer.lower())
        if cert is None:
            return PgpVerdict(
                "unknown-key", issuer.upper(), f"no trusted key {issuer.upper()}", created
            )
        fpr = cert.fingerprint
        reason = "no valid signature"
        try:
            result = pysequoia.verify(bytes=payload, store=lambda _ids: [cert.cert], signature=sig)
            valid = result.valid_sigs
        except Exception as exc:  # "no valid signatures found", policy refusals, ...
            reason, valid = _first_line(exc), []
        if valid:
            signing_key = str(valid[0].signing_key).upper()
            via = "" if signing_key == fpr else f" (subkey {signing_key})"
            return PgpVerdict("good", fpr, f"good OpenPGP signature{via}", created, cert)
        if created is not None and created > now:
            late = f"signature dated after this host's clock ({iso_z(created)})"
            ok, why = _gpg_verify(cert, signature, payload, at=created)
            if ok:
                return PgpVerdict("good", fpr, f"good OpenPGP {late}; {why}", created, cert)
            reason = f"{late}: {why}"
        return PgpVerdict("bad-signature", fpr, _explain(cert, created, reason), created, cert)


def _explain(cert: PgpCert, created: datetime | None, reason: str) -> str:
    """Add what we can see about the certificate to Sequoia's terse refusal."""
    hints = []
    if cert.cert.is_revoked:
        hints.append("the key is revoked")
    expiry = cert.cert.expiration
    if expiry is not None and created is not None and created >= expiry:
        hints.append(f"the key expired {iso_z(expiry)}, before the signature was made")
    return "; ".join([reason, *hints])


def _gpg_verify(
    cert: PgpCert, signature: bytes, payload: bytes, *, at: datetime
) -> tuple[bool, str]:
    """Check one signature with ``gpg`` whose clock is set to ``at``; (ok, what gpg said)."""
    gpg = shutil.which("gpg")
    if gpg is None:
        return False, "pysequoia refuses such signatures and gpg is not installed to re-check"
    epoch = int(at.astimezone(UTC).timestamp())
    with tempfile.TemporaryDirectory(prefix="gitedge-gpg-") as home:
        env = {"GNUPGHOME": home, "PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C"}
        base = [gpg, "--batch", "--no-tty", "--no-autostart", "--ignore-time-conflict"]
        sig_file = Path(home) / "commit.sig"
        sig_file.write_bytes(signature)
        try:
            subprocess.run(
                [*base, "--import"],
                input=cert.armored.encode(),
                env=env,
                capture_output=True,
                timeout=_GPG_TIMEOUT_S,
                check=True,
            )
            proc = subprocess.run(
                [
                    *base,
                    "--status-fd",
                    "1",
                    "--trust-model",
                    "always",
                    "--faked-system-time",
                    f"{epoch}!",
                    "--verify",
                    str(sig_file),
                    "-",
                ],
                input=payload,
                env=env,
                capture_output=True,
                timeout=_GPG_TIMEOUT_S,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return False, f"gpg failed: {_first_line(exc)}"
    status = proc.stdout.decode(errors="replace").splitlines()
    good = any(s.startswith("[GNUPG:] GOODSIG ") for s in status)
    for parts in (line.split() for line in status):
        # VALIDSIG <fpr> <date> <ts> <expire> <ver> <reserved> <pkalgo> <hash> <class> <primary>
        if good and parts[:2] == ["[GNUPG:]", "VALIDSIG"] and parts[11:12] == [cert.fingerprint]:
            return True, "verified by gpg at the signature's time"
    words = [p.split()[1] for p in status if p.startswith("[GNUPG:] ") and len(p.split()) > 1]
    bad = [w for w in words if w in {"BADSIG", "EXPKEYSIG", "REVKEYSIG", "ERRSIG", "EXPSIG"}]
    return False, f"gpg says {', '.join(bad) or 'no valid signature'}"
