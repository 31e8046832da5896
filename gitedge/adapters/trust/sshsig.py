"""The SSHSIG wire format (openssh PROTOCOL.sshsig), and ed25519 checks against the embedded key.

This module is light on purpose (hashlib, binascii and, when present, PyNaCl): it is what the
verify workers of :mod:`gitedge.adapters.trust.sshworkers` import, so that they can start before the
heavy modules load. :mod:`gitedge.adapters.trust.commitsigs` builds trust decisions on top of it.

:func:`embedded_ed25519` answers a narrower question than a trust check: does an SSHSIG made by
an ``ssh-ed25519`` key verify under the public key written *inside the signature*? The answer
depends only on the signature and payload bytes, so it can be computed anywhere, ahead of time.
A keyring that trusts exactly that key blob reaches the same verdict (same key bytes, same signed
data, same libsodium call); trust itself (which key, which namespace, when) is decided elsewhere.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from gitedge.errors import Malformed

_ffi: Any = None
_sodium: Any = None
try:  # libsodium verifies ed25519 ~1.7x faster than OpenSSL via cryptography
    from nacl import _sodium as _nacl_cffi  # type: ignore[attr-defined]

    _ffi, _sodium = _nacl_cffi.ffi, _nacl_cffi.lib
except ImportError:  # pragma: no cover - PyNaCl is a dependency
    pass

HAVE_SODIUM = _sodium is not None
BEGIN = b"-----BEGIN SSH SIGNATURE-----"
END = b"-----END SSH SIGNATURE-----"
_ED25519_BLOB_HEAD = b"\0\0\0\x0bssh-ed25519\0\0\0\x20"  # string "ssh-ed25519", uint32 32

__all__ = [
    "BEGIN",
    "END",
    "HAVE_SODIUM",
    "Malformed",
    "Reader",
    "dearmor",
    "embedded_ed25519",
    "parse_sshsig",
    "sodium_verify",
    "ssh_fingerprint",
    "ssh_string",
]


class Reader:
    """SSH wire-format reader (RFC 4251 ``uint32``, ``string``, ``mpint``)."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def string(self) -> bytes:
        start = self.pos + 4
        end = start + int.from_bytes(self.data[self.pos : start], "big")
        if start > len(self.data) or end > len(self.data):
            raise Malformed("truncated")
        self.pos = end
        return self.data[start:end]

    def text(self) -> str:
        try:
            return self.string().decode()
        except UnicodeDecodeError:
            raise Malformed("a name is not UTF-8") from None

    def mpint(self) -> int:
        b = self.string()
        if b and b[0] & 0x80:
            raise Malformed("negative integer")
        return int.from_bytes(b, "big")

    def end(self) -> None:
        if self.pos != len(self.data):
            raise Malformed("trailing data")


def ssh_string(b: bytes) -> bytes:
    """RFC 4251 ``string``: uint32 length, then the bytes."""
    return len(b).to_bytes(4, "big") + b


def ssh_fingerprint(blob: bytes) -> str:
    """``SHA256:...`` fingerprint of a public-key blob, as ``ssh-keygen -l`` prints it."""
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def dearmor(signature: bytes) -> bytes:
    """The SSHSIG blob inside ``-----BEGIN SSH SIGNATURE-----`` armor."""
    s = signature.strip()
    if not s.endswith(END):
        raise Malformed("armor has no END line (truncated?)")
    body = b"".join(s[len(BEGIN) : -len(END)].split())
    try:
        return binascii.a2b_base64(body, strict_mode=True)
    except binascii.Error:
        raise Malformed("armor is not valid base64") from None


_Fields = tuple[bytes, bytes, bytes, bytes, bytes, bytes]
_HEADS: dict[bytes, _Fields] = {}  # see parse_sshsig
_MAX_HEADS = 256


def parse_sshsig(b: bytes) -> _Fields:
    """Split an SSHSIG blob. Returns (public key blob, namespace+reserved+hash_alg as encoded,
    namespace, hash_alg, sig_alg, sig).

    Speed: the signatures one key makes in one namespace differ only in their last 64 bytes, the
    ed25519 signature itself. Once a blob has parsed with its inner signature exactly there, every
    length and field but that signature lies in the bytes before it; so a blob with the same
    leading bytes (hence the same length) parses to the same fields, with its own last 64 bytes
    as the signature. Those fields are remembered by the leading bytes (for a few hundred keys)."""
    head = b[:-64]
    known = _HEADS.get(head)
    if known is not None:
        return known[0], known[1], known[2], known[3], known[4], b[-64:]
    fields = _split_sshsig(b)
    if len(fields[5]) == 64 and len(_HEADS) < _MAX_HEADS:
        _HEADS[head] = fields
    return fields


def _split_sshsig(b: bytes) -> _Fields:
    """:func:`parse_sshsig` without the memo (plain slicing, unrolled, no reader object)."""
    n = len(b)
    if n < 10:
        raise Malformed("truncated")
    if b[:6] != b"SSHSIG":
        raise Malformed("wrong magic")
    if b[6:10] != b"\0\0\0\1":
        raise Malformed(f"unsupported SSHSIG version {int.from_bytes(b[6:10], 'big')}")
    u32 = int.from_bytes
    # publickey, namespace, reserved, hash_algorithm, signature: each ends at e0..e4
    e0 = 14 + u32(b[10:14], "big")
    if e0 > n:
        raise Malformed("truncated")
    e1 = e0 + 4 + u32(b[e0 : e0 + 4], "big")
    if e1 > n:
        raise Malformed("truncated")
    e2 = e1 + 4 + u32(b[e1 : e1 + 4], "big")
    if e2 > n:
        raise Malformed("truncated")
    e3 = e2 + 4 + u32(b[e2 : e2 + 4], "big")
    if e3 > n:
        raise Malformed("truncated")
    e4 = e3 + 4 + u32(b[e3 : e3 + 4], "big")
    if e4 > n:
        raise Malformed("truncated")
    if e4 != n:
        raise Malformed("trailing data")
    inner = b[e3 + 4 : e4]
    mid = 4 + u32(inner[:4], "big")
    end = mid + 4 + u32(inner[mid : mid + 4], "big")
    if len(inner) < 4 or mid + 4 > len(inner) or end != len(inner):
        raise Malformed("malformed inner signature")
    return b[14:e0], b[e0:e3], b[e0 + 4 : e1], b[e2 + 4 : e3], inner[4:mid], inner[mid + 4 :]


def signed_data(middle: bytes, hash_alg: bytes, payload: bytes) -> bytes:
    """What the inner signature covers: "SSHSIG", namespace, reserved and hash algorithm as the
    signature encodes them, then H(payload). ``hash_alg`` is ``sha256`` or ``sha512``."""
    digest = (hashlib.sha512 if hash_alg == b"sha512" else hashlib.sha256)(payload).digest()
    return b"SSHSIG" + middle + ssh_string(digest)


def sodium_verify(raw_key: bytes, data: bytes, sig: bytes) -> bool:
    """libsodium's ed25519 verification (``crypto_sign_open``) of a 64-byte ``sig`` over
    ``data`` by the 32-byte ``raw_key``."""
    assert _sodium is not None and _ffi is not None and len(raw_key) == 32
    # Speed: PyNaCl's public crypto_sign_open allocates an output buffer and copies the message
    # out on every call (~10% of a verification here). libsodium's own function, reached through
    # PyNaCl's cffi module, skips both when the output pointers are NULL.
    signed = sig + data
    return bool(_sodium.crypto_sign_open(_ffi.NULL, _ffi.NULL, signed, len(signed), raw_key) == 0)


def embedded_ed25519(signature: bytes, payload: bytes) -> bool | None:
    """Whether an armored SSHSIG by an ``ssh-ed25519`` key verifies over ``payload`` under the
    key it embeds: True or False. None when this is not such a signature (another key type, a
    malformed one, a hash other than sha256/sha512) or libsodium is missing: the keyring's own
    path then decides, with its own words for what is wrong."""
    if not HAVE_SODIUM:
        return None
    try:
        blob, middle, _ns, hash_alg, sig_alg, sig = parse_sshsig(dearmor(signature))
    except Malformed:
        return None
    if (
        len(blob) != 51
        or not blob.startswith(_ED25519_BLOB_HEAD)
        or sig_alg != b"ssh-ed25519"
        or len(sig) != 64
        or hash_alg not in (b"sha256", b"sha512")
    ):
        return None
    return sodium_verify(blob[19:], signed_data(middle, hash_alg, payload), sig)
