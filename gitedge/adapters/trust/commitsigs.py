"""Commit-signature verification: SSHSIG (in-process, ``cryptography``) and OpenPGP (pysequoia).

The trust engine (``core/trust/decision.py``) builds one :class:`Keyring` from the signers of the
policy in force and calls :meth:`Keyring.check` once per commit with the commit's ``gpgsig`` header
and the signed payload. Every key is parsed once, when the keyring is built; SSH keys are looked up
by their raw public-key blob and OpenPGP keys by every (sub)key fingerprint and key id, so a check
is one dictionary look-up plus one signature verification, with no subprocess.

:meth:`Keyring.check` never raises on bad input: garbage, truncated or tampered signatures come
back as a :class:`SignatureCheck` whose ``outcome`` says what happened. Whether a key was valid at
the commit's time is the caller's decision, from ``valid_after``/``valid_before`` of the matching
:class:`TrustedKey` entries (``SignatureCheck.keys``).

SSH signatures follow openssh's PROTOCOL.sshsig: ``ssh-ed25519``, ``ecdsa-sha2-nistp256/384/521``
and RSA with ``rsa-sha2-256``/``rsa-sha2-512`` (SHA-1 ``ssh-rsa`` signatures are refused, as are
RSA keys under 2048 bits); hash ``sha256`` or ``sha512``. FIDO (``sk-*``) keys and SSH
certificates are out of scope and reported as ``unsupported``. Ed25519 signatures are verified by
libsodium (PyNaCl) when it is importable (~1.7x faster than OpenSSL); without it, by
``cryptography`` like the other key types. The SSHSIG wire format lives in
:mod:`gitedge.adapters.trust.sshsig`. A keyring can be handed verdicts computed ahead of time
(:meth:`Keyring.with_verdicts`, fed by :mod:`gitedge.adapters.trust.sshworkers`): for an ed25519
signature made by a trusted key, the verdict on the signature against the key it embeds is the
keyring's own verdict (same key bytes), so it replaces the libsodium call and nothing else.

Trust files: :func:`load_allowed_signers` reads OpenSSH allowed_signers (ssh-keygen(1), ALLOWED
SIGNERS) and :func:`load_openpgp_keys` a file of armored OpenPGP public keys. ``valid-after`` and
``valid-before`` times without a trailing ``Z`` are local time for ssh-keygen; an edge agent's
time zone is arbitrary, so gitedge reads them as UTC. Both bounds are inclusive, as in ssh-keygen.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from gitedge.adapters.trust import allowedsigners
from gitedge.adapters.trust.allowedsigners import TrustedKey
from gitedge.adapters.trust.sshsig import (
    BEGIN,
    HAVE_SODIUM,
    Reader,
    dearmor,
    parse_sshsig,
    signed_data,
    sodium_verify,
    ssh_fingerprint,
)
from gitedge.errors import Malformed, TrustError

if TYPE_CHECKING:
    from gitedge.adapters.trust import openpgp

# The import note: `cryptography` (ECDSA, RSA, and ed25519 without PyNaCl) and the OpenPGP module
# are imported where first needed (each such line says "lazy"): a keyring of ed25519 keys, the
# common case, uses neither, and `gitedge verify` starts its workers sooner without their import
# time.

Outcome = Literal["good", "unknown-key", "bad-signature", "wrong-namespace", "unsupported"]
Kind = Literal["ssh", "openpgp"]

__all__ = [
    "Keyring",
    "SignatureCheck",
    "load_allowed_signers",
    "load_openpgp_keys",
    "ssh_fingerprint",
]


@dataclass(frozen=True)
class SignatureCheck:
    """The verdict on one signature.

    ``signer`` is the :attr:`TrustedKey.name` when the key is known. ``key_id`` is the SSH key's
    ``SHA256:...`` fingerprint (as ssh-keygen prints it) or the OpenPGP primary fingerprint (the
    issuer's when unknown), "" when the signature is unreadable. ``kind`` is the format the
    signature claims (``ssh`` for unrecognisable input). ``signed_at`` is the OpenPGP signature's
    creation time (SSH signatures carry none). ``keys`` are the trusted entries for the signing
    key that allow the namespace: the caller accepts the commit if any is valid at its time."""

    outcome: Outcome
    signer: str | None
    key_id: str
    kind: Kind
    detail: str
    signed_at: datetime | None = None
    keys: tuple[TrustedKey, ...] = ()


# key type -> (curve name in the key, cryptography's curve class, hash class)
_CURVES: dict[str, tuple[str, str, str]] = {
    "ecdsa-sha2-nistp256": ("nistp256", "SECP256R1", "SHA256"),
    "ecdsa-sha2-nistp384": ("nistp384", "SECP384R1", "SHA384"),
    "ecdsa-sha2-nistp521": ("nistp521", "SECP521R1", "SHA512"),
}
_RSA_SIG_HASH = {"rsa-sha2-256": "SHA256", "rsa-sha2-512": "SHA512"}
_SK_TYPES = ("sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
_SSH_TYPES = ("ssh-ed25519", "ssh-rsa", *_CURVES, *_SK_TYPES)
_MIN_RSA_BITS = 2048


@dataclass(frozen=True, slots=True)
class _SshKey:
    key_type: str
    blob: bytes
    fingerprint: str
    # cryptography's public key; None for ed25519 while libsodium verifies (made when needed)
    # and for the key types we recognise but cannot verify (sk-*)
    public: Any
    raw_ed25519: bytes | None = None  # an ed25519 key's 32 bytes


def _unsupported_type(key_type: str) -> str | None:
    """Why signatures by this key type are out of scope, or None when they are supported."""
    if key_type.startswith("sk-"):
        return f"unsupported key type {key_type} (FIDO security keys are not supported)"
    if "-cert-v01@openssh.com" in key_type:
        return f"unsupported key type {key_type} (SSH certificates are not supported)"
    if key_type not in _SSH_TYPES:
        return f"unsupported key type {key_type}"
    return None


def _parse_ssh_public(text: str) -> _SshKey:
    """Parse ``keytype base64 [comment]``; ValueError with a short reason."""
    parts = text.split(None, 2)
    if len(parts) < 2:
        raise ValueError("not an OpenSSH public key (expected 'keytype base64 [comment]')")
    key_type, b64 = parts[0], parts[1]
    if key_type not in _SSH_TYPES:
        raise ValueError(f"unsupported SSH key type {key_type[:60]!r}")
    try:
        blob = base64.b64decode(b64, validate=True)
        r = Reader(blob)
        if r.text() != key_type:
            raise ValueError(f"the key data is not a {key_type} key")
        public: Any = None
        raw: bytes | None = None
        if key_type == "ssh-ed25519":
            raw = r.string()
            if len(raw) != 32:  # what cryptography checks (and says) of an ed25519 key
                raise ValueError("An Ed25519 public key is 32 bytes long")
            if not HAVE_SODIUM:
                public = _ed25519_public(raw)
        elif key_type in _CURVES:
            from cryptography.hazmat.primitives.asymmetric import ec  # lazy (import note)

            curve_name, curve, _ = _CURVES[key_type]
            if r.text() != curve_name:
                raise ValueError(f"curve does not match {key_type}")
            public = ec.EllipticCurvePublicKey.from_encoded_point(getattr(ec, curve)(), r.string())
        elif key_type == "ssh-rsa":
            from cryptography.hazmat.primitives.asymmetric import rsa  # lazy (import note)

            e, n = r.mpint(), r.mpint()
            public = rsa.RSAPublicNumbers(e, n).public_key()
            if public.key_size < _MIN_RSA_BITS:
                raise ValueError(f"RSA key of {public.key_size} bits; at least 2048 are needed")
        else:  # sk-*: ed25519 (pk, application) or ecdsa (curve, Q, application)
            if key_type.startswith("sk-ecdsa"):
                r.string()
            r.string()
            r.string()
        r.end()
    except (binascii.Error, Malformed) as exc:
        raise ValueError(f"malformed {key_type} key data ({exc})") from None
    except ValueError as exc:  # cryptography: invalid point, bad length, ...
        raise ValueError(f"invalid {key_type} key: {exc}") from None
    return _SshKey(key_type, blob, ssh_fingerprint(blob), public, raw)


def _ed25519_public(raw: bytes) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ed25519  # lazy (import note)

    return ed25519.Ed25519PublicKey.from_public_bytes(raw)


def _verify_ssh(key: _SshKey, sig_alg: str, sig: bytes, data: bytes) -> tuple[Outcome, str]:
    """Verify the inner signature; ("good", "") or an outcome with a reason."""
    kind = key.key_type
    if kind == "ssh-ed25519":
        if sig_alg != "ssh-ed25519" or len(sig) != 64:
            return "bad-signature", f"{sig_alg} signature does not fit an ed25519 key"
        if HAVE_SODIUM and key.raw_ed25519 is not None:
            return ("good", "") if sodium_verify(key.raw_ed25519, data, sig) else _BAD
    elif kind not in _CURVES and kind != "ssh-rsa":
        return "unsupported", _unsupported_type(kind) or "unsupported key"
    from cryptography.exceptions import InvalidSignature  # lazy (import note)
    from cryptography.hazmat.primitives import hashes  # lazy (import note)
    from cryptography.hazmat.primitives.asymmetric import ec, padding, utils  # lazy (import note)

    try:
        if kind == "ssh-ed25519":  # without PyNaCl
            (key.public or _ed25519_public(key.raw_ed25519 or b"")).verify(sig, data)
        elif kind in _CURVES:
            if sig_alg != kind:
                return "bad-signature", f"{sig_alg} signature does not fit a {kind} key"
            inner = Reader(sig)
            r, s = inner.mpint(), inner.mpint()
            inner.end()
            algo = getattr(hashes, _CURVES[kind][2])()
            key.public.verify(utils.encode_dss_signature(r, s), data, ec.ECDSA(algo))
        else:  # ssh-rsa
            if sig_alg == "ssh-rsa":
                return "unsupported", "ssh-rsa (SHA-1) signatures are not accepted"
            name = _RSA_SIG_HASH.get(sig_alg)
            width = (key.public.key_size + 7) // 8
            if name is None or len(sig) > width:
                return "bad-signature", f"{sig_alg} signature does not fit an RSA key"
            hash_algo = getattr(hashes, name)()
            key.public.verify(sig.rjust(width, b"\0"), data, padding.PKCS1v15(), hash_algo)
    except (InvalidSignature, Malformed, ValueError):
        return _BAD
    return "good", ""


_MISMATCH = "the signature does not match the signed data"
_BAD: tuple[Outcome, str] = ("bad-signature", _MISMATCH)


def _namespace_allowed(patterns: tuple[str, ...] | None, namespace: str) -> bool:
    """OpenSSH ``match_pattern_list``: ``*``/``?`` wildcards, ``!`` negates and wins."""
    if patterns is None:
        return True
    hit = False
    for p in patterns:
        negated = p.startswith("!")
        rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in p[negated:])
        if re.fullmatch(rx, namespace):
            if negated:
                return False
            hit = True
    return hit


@dataclass(frozen=True, slots=True)
class _SshEntry:
    key: _SshKey
    trusted: tuple[TrustedKey, ...]
    unrestricted: bool  # no entry limits the namespaces


class Verdicts(Protocol):
    """Verdicts computed ahead of time (``sshworkers.AheadChecks`` fits): for an armored SSHSIG
    and its payload, what :func:`sshsig.embedded_ed25519` says, or None when it was not
    computed (the keyring then verifies in-process)."""

    def get(self, signature: bytes, payload: bytes) -> bool | None: ...


class Keyring:
    """Trusted keys, parsed once and indexed for :meth:`check`."""

    def __init__(
        self,
        *,
        ssh: dict[bytes, _SshEntry],
        pgp: openpgp.PgpIndex | None,
        pgp_keys: dict[str, tuple[TrustedKey, ...]],
        verdicts: Verdicts | None = None,
    ) -> None:
        self._ssh = ssh
        self._pgp = pgp
        self._pgp_keys = pgp_keys
        self._verdicts = verdicts
        self._good: dict[tuple[bytes, str, str], SignatureCheck] = {}

    def with_verdicts(self, verdicts: Verdicts) -> Keyring:
        """This keyring, taking ed25519 verdicts from ``verdicts`` where they have one."""
        return Keyring(ssh=self._ssh, pgp=self._pgp, pgp_keys=self._pgp_keys, verdicts=verdicts)

    def __len__(self) -> int:
        """How many distinct keys the keyring holds."""
        return len(self._ssh) + len(self._pgp_keys)

    @classmethod
    def from_keys(cls, keys: Iterable[TrustedKey]) -> Keyring:
        """Parse every key. Raises :class:`TrustError` naming the signer whose key does not parse,
        or both signers when one key is given to two names (a key must identify one signer)."""
        ssh: dict[bytes, _SshEntry] = {}
        certs: dict[str, openpgp.PgpCert] = {}
        pgp_keys: dict[str, tuple[TrustedKey, ...]] = {}
        for tk in keys:
            try:
                if "-----BEGIN PGP" in tk.key_text:
                    from gitedge.adapters.trust import openpgp  # lazy (import note)

                    cert = openpgp.parse_cert(tk.key_text)
                    ident, sk = cert.fingerprint, None
                    known = pgp_keys.get(ident, ())
                else:
                    sk = _parse_ssh_public(tk.key_text)
                    ident, cert = sk.fingerprint, None
                    known = ssh[sk.blob].trusted if sk.blob in ssh else ()
            except ValueError as exc:
                raise TrustError(f"signer {tk.name!r}: unusable key: {exc}") from None
            if known and known[0].name != tk.name:
                raise TrustError(
                    f"signers {known[0].name!r} and {tk.name!r} have the same key {ident}; "
                    "a key must belong to one signer"
                )
            if sk is not None:
                both = (*known, tk)
                ssh[sk.blob] = _SshEntry(sk, both, all(k.namespaces is None for k in both))
            elif cert is not None:
                certs[ident] = cert
                pgp_keys[ident] = (*known, tk)
        index = None
        if certs:
            from gitedge.adapters.trust import openpgp  # lazy (import note)

            try:
                index = openpgp.PgpIndex(certs.values())
            except ValueError as exc:
                raise TrustError(f"OpenPGP keys clash: {exc}") from None
        return cls(ssh=ssh, pgp=index, pgp_keys=pgp_keys)

    def check(self, *, signature: bytes, payload: bytes, namespace: str = "git") -> SignatureCheck:
        """Verify ``signature`` (an armored SSHSIG or OpenPGP detached signature) over
        ``payload``. Never raises for bad input; see :class:`SignatureCheck`."""
        head = signature.lstrip()[:40]
        if head.startswith(BEGIN):
            return self._check_ssh(signature, payload, namespace)
        from gitedge.adapters.trust import openpgp  # lazy (import note)

        if head.startswith(openpgp.ARMOR_SIGNATURE):
            return self._check_openpgp(signature, payload)
        kind: Kind = "openpgp" if head.startswith(b"-----BEGIN PGP") else "ssh"
        return SignatureCheck(
            "bad-signature", None, "", kind, "not an armored SSH or OpenPGP signature"
        )

    def _check_ssh(self, signature: bytes, payload: bytes, namespace: str) -> SignatureCheck:
        try:
            blob, signed_middle, ns, hash_alg, sig_alg, sig = parse_sshsig(dearmor(signature))
            entry = self._ssh.get(blob)
            key_type = entry.key.key_type if entry else Reader(blob).text()
        except Malformed as exc:
            return _ssh_check("bad-signature", None, "", f"malformed SSH signature: {exc}")
        if entry is None:
            fpr = ssh_fingerprint(blob)
            why = _unsupported_type(key_type)
            if why:
                return _ssh_check("unsupported", None, fpr, why)
            return _ssh_check("unknown-key", None, fpr, f"no trusted key {fpr} ({key_type})")
        fpr, signer = entry.key.fingerprint, entry.trusted[0].name
        if hash_alg not in (b"sha256", b"sha512"):
            return _ssh_check("unsupported", signer, fpr, f"unsupported hash {hash_alg[:20]!r}")
        alg = sig_alg.decode(errors="replace")
        verdict = None
        if self._verdicts is not None and entry.key.raw_ed25519 is not None:
            verdict = self._verdicts.get(signature, payload)  # the embedded key is this key
        if verdict is None:
            signed = signed_data(signed_middle, hash_alg, payload)  # fields as the signer sent
            outcome, why = _verify_ssh(entry.key, alg, sig, signed)
        else:
            outcome, why = ("good", "") if verdict else ("bad-signature", _MISMATCH)
        if outcome != "good":
            return _ssh_check(outcome, signer, fpr, why)
        if ns != namespace.encode():
            got = ns[:60].decode(errors="replace")
            why = f"signed for namespace {got!r}, expected {namespace!r}"
            return _ssh_check("wrong-namespace", signer, fpr, why)
        allowed = entry.trusted
        if not entry.unrestricted:
            allowed = tuple(k for k in allowed if _namespace_allowed(k.namespaces, namespace))
        if not allowed:
            why = f"key of {signer!r} may not sign namespace {namespace!r}"
            return _ssh_check("wrong-namespace", signer, fpr, why)
        # a good verdict says the same for every signature of one key, algorithm and namespace:
        # one (immutable) object serves them all
        said = (blob, alg, namespace)
        good = self._good.get(said)
        if good is None:
            good = self._good[said] = _ssh_check(
                "good", signer, fpr, f"good {alg} signature", allowed
            )
        return good

    def _check_openpgp(self, signature: bytes, payload: bytes) -> SignatureCheck:
        from gitedge.adapters.trust import openpgp  # lazy (import note)

        if self._pgp is None:  # no OpenPGP key: the signature still names its issuer
            self._pgp = openpgp.PgpIndex(())
        v = self._pgp.verify(signature=signature, payload=payload, now=datetime.now(UTC))
        trusted = self._pgp_keys.get(v.cert.fingerprint, ()) if v.cert else ()
        signer = trusted[0].name if trusted else None
        keys = trusted if v.outcome == "good" else ()
        return SignatureCheck(v.outcome, signer, v.key_id, "openpgp", v.detail, v.signed_at, keys)


def _ssh_check(
    outcome: Outcome, signer: str | None, fpr: str, detail: str, keys: tuple[TrustedKey, ...] = ()
) -> SignatureCheck:
    return SignatureCheck(outcome, signer, fpr, "ssh", detail, None, keys)


# ---------------------------------------------------------------------------- trust files


def load_allowed_signers(text: str, *, source: str) -> list[TrustedKey]:
    """Read an OpenSSH allowed_signers file (:func:`gitedge.adapters.trust.allowedsigners.parse`),
    every key checked to parse here. Raises :class:`TrustError` as ``source:line: reason``."""
    return allowedsigners.parse(text, source=source, check_key=_parse_ssh_public)


def load_openpgp_keys(text: str, *, source: str) -> list[TrustedKey]:
    """Read a file of one or more armored OpenPGP public keys; each is named by its primary user
    id. Raises :class:`TrustError` as ``source:line: reason``."""
    from gitedge.adapters.trust import openpgp  # lazy (import note)

    return [TrustedKey(c.name, c.armored) for c in openpgp.read_certs(text, source=source)]
