"""Signature verification (gitedge.adapters.trust.commitsigs / openpgp) against the reference signers.

Covers, with every signature made by ssh-keygen, git commit -S or gpg:
- SSH: good commit signatures for ed25519, ecdsa p256/p384/p521 and rsa (git's rsa-sha2-512),
  and ``ssh-keygen -Y sign -O hashalg=sha256``; tampered payload -> bad-signature; unknown key ->
  unknown-key; ``-n file`` -> wrong-namespace; an allowed_signers ``namespaces=`` restriction;
  a flipped signature byte; key ids equal ``ssh-keygen -l`` fingerprints; for each of these
  ``ssh-keygen -Y verify`` reaches the same verdict. Hand-made blobs for what the tools will not
  make: SHA-1 ``ssh-rsa`` signatures (unsupported; ssh-keygen refuses too), FIDO ``sk-*`` keys and
  certificates (unsupported), an unknown hash; garbage, truncated, wrong magic/version, trailing
  data -> bad-signature without an exception. Ed25519 verdicts from libsodium (PyNaCl) and from
  OpenSSL (cryptography, the fallback) agree.
- OpenPGP (pysequoia): good gpg ed25519 and rsa3072 commit signatures with signer, fingerprint
  and signing time; a signing subkey; tampered payload; unknown key; a signature dated after the
  host clock (checked again by gpg); a key that expired after it signed; garbage; secret keys
  refused.
- Trust files: allowed_signers options, quoting, comments, valid-after/before formats (and
  ssh-keygen's verify-time agreeing with the bounds we read), errors as ``file:line``; a file of
  two OpenPGP keys named by primary user id; bad key blocks; Keyring.from_keys errors naming the
  signer, one key under two names, one key on two lines.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from gitedge.adapters.trust.allowedsigners import TrustedKey
from gitedge.adapters.trust.commitsigs import Keyring, load_allowed_signers, load_openpgp_keys
from gitedge.errors import TrustError
from tests.sigtools import (
    SSH_KINDS,
    GpgKey,
    SignedRepo,
    SshKey,
    allowed_signers_line,
    armor_sshsig,
    gpg_sign,
    make_gpg_key,
    make_ssh_key,
    public_blob,
    run,
    ssh_sign,
    ssh_verify,
    sshsig_blob,
    sshsig_sign_fast,
    sshsig_signed_data,
    stop_gpg,
    tool_env,
)

PAYLOAD = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor A <a@x> 1 +0000\n\nmsg\n"


@dataclass(frozen=True)
class SshSigned:
    key: SshKey
    signature: bytes
    payload: bytes


@pytest.fixture(scope="session")
def ssh_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SshKey]:
    d = tmp_path_factory.mktemp("sshkeys")
    return {kind: make_ssh_key(d, kind) for kind in SSH_KINDS}


@pytest.fixture(scope="session")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> SshKey:
    return make_ssh_key(tmp_path_factory.mktemp("stranger"), "ed25519")


@pytest.fixture(scope="session")
def ssh_commits(
    tmp_path_factory: pytest.TempPathFactory, ssh_keys: dict[str, SshKey]
) -> dict[str, SshSigned]:
    """One commit per key kind, signed by ``git commit -S`` with gpg.format=ssh."""
    repo = SignedRepo(tmp_path_factory.mktemp("sshrepo") / "repo")
    out = {}
    for kind, key in ssh_keys.items():
        sig, payload = repo.signature(repo.commit(f"signed by {kind}", signer=key))
        out[kind] = SshSigned(key, sig, payload)
    return out


@pytest.fixture(scope="session")
def ssh_ring(ssh_keys: dict[str, SshKey]) -> Keyring:
    return Keyring.from_keys(TrustedKey(f"{k}-signer", key.public) for k, key in ssh_keys.items())


def allowed(key: SshKey, principal: str = "signer", options: str = "") -> str:
    return allowed_signers_line(principal, key, options) + "\n"


def reference(
    key: SshKey, sig: bytes, data: bytes, *, namespace: str = "git", opts: str = ""
) -> bool:
    return ssh_verify(
        allowed_signers=allowed(key, options=opts),
        principal="signer",
        signature=sig,
        data=data,
        namespace=namespace,
        env=key.env,
    )


# ---------------------------------------------------------------------------- SSH


@pytest.mark.parametrize("kind", list(SSH_KINDS))
def test_ssh_commit_signature_is_good(
    kind: str, ssh_commits: dict[str, SshSigned], ssh_ring: Keyring
) -> None:
    c = ssh_commits[kind]
    check = ssh_ring.check(signature=c.signature, payload=c.payload)
    assert (check.outcome, check.signer, check.kind) == ("good", f"{kind}-signer", "ssh")
    assert check.key_id == c.key.fingerprint  # as ssh-keygen -l prints it
    assert check.signed_at is None and [k.name for k in check.keys] == [f"{kind}-signer"]
    if kind == "rsa":
        assert "rsa-sha2-512" in check.detail  # git's (ssh-keygen's) default for RSA
    assert reference(c.key, c.signature, c.payload)


@pytest.mark.parametrize("kind", list(SSH_KINDS))
def test_ssh_sha256_hash_algorithm(
    kind: str, ssh_keys: dict[str, SshKey], ssh_ring: Keyring
) -> None:
    key = ssh_keys[kind]
    sig = ssh_sign(key, PAYLOAD, hashalg="sha256")
    raw = base64.b64decode(b"".join(sig.splitlines()[1:-1]))
    assert b"\x00\x00\x00\x06sha256" in raw
    assert ssh_ring.check(signature=sig, payload=PAYLOAD).outcome == "good"
    assert reference(key, sig, PAYLOAD)


@pytest.mark.parametrize("kind", list(SSH_KINDS))
def test_ssh_tampered_payload_is_bad(
    kind: str, ssh_commits: dict[str, SshSigned], ssh_ring: Keyring
) -> None:
    c = ssh_commits[kind]
    tampered = c.payload.replace(b"signed by", b"signed bx")
    check = ssh_ring.check(signature=c.signature, payload=tampered)
    assert (check.outcome, check.signer) == ("bad-signature", f"{kind}-signer")
    assert not reference(c.key, c.signature, tampered)


@pytest.mark.parametrize("kind", list(SSH_KINDS))
def test_ssh_flipped_signature_byte_is_bad(
    kind: str, ssh_commits: dict[str, SshSigned], ssh_ring: Keyring
) -> None:
    c = ssh_commits[kind]
    raw = bytearray(base64.b64decode(b"".join(c.signature.splitlines()[1:-1])))
    raw[-5] ^= 0x01  # inside the signature value itself
    sig = armor_sshsig(bytes(raw))
    assert ssh_ring.check(signature=sig, payload=c.payload).outcome == "bad-signature"
    assert not reference(c.key, sig, c.payload)


def test_ed25519_libsodium_and_openssl_agree(
    ssh_keys: dict[str, SshKey], ssh_commits: dict[str, SshSigned], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ed25519 goes through PyNaCl (libsodium) when it is importable, else through
    cryptography (OpenSSL); both give the same verdicts."""
    from gitedge.adapters.trust import commitsigs as signatures
    from gitedge.adapters.trust import sshsig

    key, c = ssh_keys["ed25519"], ssh_commits["ed25519"]
    raw = bytearray(base64.b64decode(b"".join(c.signature.splitlines()[1:-1])))
    raw[-5] ^= 0x01
    cases = [
        (c.signature, c.payload),
        (c.signature, c.payload.replace(b"signed by", b"signed bx")),
        (armor_sshsig(bytes(raw)), c.payload),
        (sshsig_sign_fast(key, PAYLOAD), PAYLOAD),
    ]
    ring = Keyring.from_keys([TrustedKey("s", key.public)])
    sodium_calls: list[bytes] = []

    def spy(raw_key: bytes, data: bytes, sig: bytes) -> bool:
        sodium_calls.append(data)
        return sshsig.sodium_verify(raw_key, data, sig)

    monkeypatch.setattr(signatures, "sodium_verify", spy)
    verdicts = [[ring.check(signature=sig, payload=data) for sig, data in cases]]
    assert len(sodium_calls) == len(cases)
    monkeypatch.setattr(signatures, "HAVE_SODIUM", False)
    verdicts.append([ring.check(signature=sig, payload=data) for sig, data in cases])
    assert len(sodium_calls) == len(cases)  # the second round went through OpenSSL
    assert verdicts[0] == verdicts[1]
    assert [v.outcome for v in verdicts[0]] == ["good", "bad-signature", "bad-signature", "good"]
    # the verdict against the key inside the signature is the keyring's (workers compute it)
    assert [sshsig.embedded_ed25519(sig, data) for sig, data in cases] == [
        True,
        False,
        False,
        True,
    ]


def test_ssh_unknown_key(ssh_ring: Keyring, stranger: SshKey, ssh_keys: dict[str, SshKey]) -> None:
    sig = ssh_sign(stranger, PAYLOAD)
    check = ssh_ring.check(signature=sig, payload=PAYLOAD)
    assert (check.outcome, check.signer, check.key_id) == (
        "unknown-key",
        None,
        stranger.fingerprint,
    )
    assert not reference(ssh_keys["ed25519"], sig, PAYLOAD)  # not in its allowed_signers
    assert reference(stranger, sig, PAYLOAD)


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa384", "rsa"])
def test_ssh_wrong_namespace(kind: str, ssh_keys: dict[str, SshKey], ssh_ring: Keyring) -> None:
    key = ssh_keys[kind]
    sig = ssh_sign(key, PAYLOAD, namespace="file")
    check = ssh_ring.check(signature=sig, payload=PAYLOAD)
    assert check.outcome == "wrong-namespace" and "'file'" in check.detail
    assert not reference(key, sig, PAYLOAD, namespace="git")
    assert reference(key, sig, PAYLOAD, namespace="file")
    assert ssh_ring.check(signature=sig, payload=PAYLOAD, namespace="file").outcome == "good"


def test_ssh_namespaces_option_restricts_the_key(
    ssh_keys: dict[str, SshKey], ssh_commits: dict[str, SshSigned]
) -> None:
    key, c = ssh_keys["ed25519"], ssh_commits["ed25519"]
    for opts, expected in [
        ('namespaces="file,mail"', "wrong-namespace"),
        ('namespaces="fi*,g?t"', "good"),
        ('namespaces="*,!git"', "wrong-namespace"),
    ]:
        ring = Keyring.from_keys(load_allowed_signers(allowed(key, options=opts), source="as"))
        assert ring.check(signature=c.signature, payload=c.payload).outcome == expected, opts
        assert reference(key, c.signature, c.payload, opts=opts) == (expected == "good"), opts


def test_fast_signer_matches_the_reference(ssh_keys: dict[str, SshKey], ssh_ring: Keyring) -> None:
    key = ssh_keys["ed25519"]
    sig = sshsig_sign_fast(key, PAYLOAD)
    assert sig == ssh_sign(key, PAYLOAD)  # ed25519 is deterministic: byte-identical
    assert ssh_ring.check(signature=sig, payload=PAYLOAD).outcome == "good"


def test_ssh_rsa_sha1_signature_is_refused(ssh_keys: dict[str, SshKey], ssh_ring: Keyring) -> None:
    key = ssh_keys["rsa"]
    private = serialization.load_ssh_private_key(key.path.read_bytes(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    signed = sshsig_signed_data(namespace="git", hash_alg="sha512", data=PAYLOAD)
    sha1 = private.sign(signed, padding.PKCS1v15(), hashes.SHA1())
    sig = armor_sshsig(
        sshsig_blob(
            public_blob=public_blob(key),
            namespace="git",
            hash_alg="sha512",
            sig_alg="ssh-rsa",
            sig=sha1,
        )
    )
    check = ssh_ring.check(signature=sig, payload=PAYLOAD)
    assert check.outcome == "unsupported" and "SHA-1" in check.detail
    assert not reference(key, sig, PAYLOAD)  # OpenSSH refuses them too


def _blob(key_type: str, *fields: bytes) -> bytes:
    return b"".join(len(f).to_bytes(4, "big") + f for f in (key_type.encode(), *fields))


@pytest.mark.parametrize(
    "key_type, fields",
    [
        ("sk-ssh-ed25519@openssh.com", (b"\x01" * 32, b"ssh:")),
        ("sk-ecdsa-sha2-nistp256@openssh.com", (b"nistp256", b"\x04" + b"\x01" * 64, b"ssh:")),
        ("ssh-ed25519-cert-v01@openssh.com", (b"nonce", b"\x01" * 32)),
    ],
)
def test_fido_and_certificate_signatures_are_unsupported(
    key_type: str, fields: tuple[bytes, ...], ssh_ring: Keyring
) -> None:
    sig = armor_sshsig(
        sshsig_blob(
            public_blob=_blob(key_type, *fields),
            namespace="git",
            hash_alg="sha512",
            sig_alg=key_type,
            sig=b"\x00" * 64,
        )
    )
    check = ssh_ring.check(signature=sig, payload=PAYLOAD)
    assert check.outcome == "unsupported" and "unsupported key type" in check.detail


def test_trusted_fido_key_is_accepted_but_its_signatures_unsupported() -> None:
    blob = _blob("sk-ssh-ed25519@openssh.com", b"\x02" * 32, b"ssh:")
    text = f"sk-ssh-ed25519@openssh.com {base64.b64encode(blob).decode()} yubikey"
    ring = Keyring.from_keys([TrustedKey("fido", text)])
    sig = armor_sshsig(
        sshsig_blob(
            public_blob=blob,
            namespace="git",
            hash_alg="sha512",
            sig_alg="sk-ssh-ed25519@openssh.com",
            sig=b"\x00" * 64,
        )
    )
    check = ring.check(signature=sig, payload=PAYLOAD)
    assert (check.outcome, check.signer) == ("unsupported", "fido")


def test_unknown_hash_algorithm_is_unsupported(
    ssh_keys: dict[str, SshKey], ssh_ring: Keyring
) -> None:
    key = ssh_keys["ed25519"]
    sig = armor_sshsig(
        sshsig_blob(
            public_blob=public_blob(key),
            namespace="git",
            hash_alg="md5",
            sig_alg="ssh-ed25519",
            sig=b"\x00" * 64,
        )
    )
    assert ssh_ring.check(signature=sig, payload=PAYLOAD).outcome == "unsupported"


def _garbage(good: bytes, key: SshKey) -> dict[str, bytes]:
    raw = base64.b64decode(b"".join(good.splitlines()[1:-1]))
    lines = good.splitlines(keepends=True)
    return {
        "empty": b"",
        "text": b"hello world",
        "no-end-line": b"".join(lines[:-1]),
        "truncated-armor": b"".join(lines[:2]) + lines[-1],
        "truncated-blob": armor_sshsig(raw[: len(raw) // 2]),
        "not-base64": b"-----BEGIN SSH SIGNATURE-----\n!!!!\n-----END SSH SIGNATURE-----\n",
        "wrong-magic": armor_sshsig(b"SSHSIX" + raw[6:]),
        "wrong-version": armor_sshsig(raw[:6] + (2).to_bytes(4, "big") + raw[10:]),
        "trailing-data": armor_sshsig(raw + b"\x00"),
        "huge-length": armor_sshsig(raw[:10] + b"\xff\xff\xff\xff" + raw[14:]),
        "bad-inner": armor_sshsig(
            sshsig_blob(
                public_blob=public_blob(key),
                namespace="git",
                hash_alg="sha512",
                sig_alg="ssh-ed25519",
                sig=b"short",
            )
        ),
        "pgp-garbage": b"-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n",
        "binary": bytes(range(256)),
    }


def test_garbage_signatures_are_bad_not_exceptions(
    ssh_commits: dict[str, SshSigned], ssh_ring: Keyring
) -> None:
    c = ssh_commits["ed25519"]
    for name, sig in _garbage(c.signature, c.key).items():
        check = ssh_ring.check(signature=sig, payload=c.payload)
        assert check.outcome == "bad-signature", (name, check)
        assert check.detail and "Traceback" not in check.detail and len(check.detail) < 300
        assert not reference(c.key, sig, c.payload), name


# ---------------------------------------------------------------------------- OpenPGP


@pytest.fixture(scope="session")
def gpg_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, GpgKey]]:
    base = tmp_path_factory.mktemp("gpg")
    past = "20200101T000000"  # so that signatures may be dated before "now"
    keys = {
        "ed25519": make_gpg_key(base, "Alice <alice@example.com>", "ed25519", faked_time=past),
        "rsa": make_gpg_key(base, "Bob <bob@example.com>", "rsa3072"),
        "subkey": make_gpg_key(base, "Carol <carol@example.com>", signing_subkey=True),
        "stranger": make_gpg_key(base, "Mallory <mallory@example.com>"),
    }
    yield keys
    for key in keys.values():
        stop_gpg(key)


@pytest.fixture(scope="session")
def pgp_ring(gpg_keys: dict[str, GpgKey]) -> Keyring:
    return Keyring.from_keys(
        TrustedKey(name, k.public) for name, k in gpg_keys.items() if name != "stranger"
    )


@pytest.fixture(scope="session")
def gpg_commits(
    tmp_path_factory: pytest.TempPathFactory, gpg_keys: dict[str, GpgKey]
) -> dict[str, tuple[bytes, bytes]]:
    repo = SignedRepo(tmp_path_factory.mktemp("gpgrepo") / "repo")
    return {name: repo.signature(repo.commit(name, signer=k)) for name, k in gpg_keys.items()}


@pytest.mark.parametrize("name", ["ed25519", "rsa", "subkey"])
def test_openpgp_commit_signature_is_good(
    name: str,
    gpg_keys: dict[str, GpgKey],
    gpg_commits: dict[str, tuple[bytes, bytes]],
    pgp_ring: Keyring,
) -> None:
    sig, payload = gpg_commits[name]
    assert sig.startswith(b"-----BEGIN PGP SIGNATURE-----")
    check = pgp_ring.check(signature=sig, payload=payload)
    assert (check.outcome, check.signer, check.kind) == ("good", name, "openpgp")
    assert check.key_id == gpg_keys[name].fingerprint
    assert check.signed_at is not None
    assert abs(check.signed_at - datetime.now(UTC)) < timedelta(minutes=5)
    assert ("subkey" in check.detail) == (name == "subkey")
    assert [k.name for k in check.keys] == [name]


@pytest.mark.parametrize("name", ["ed25519", "rsa", "subkey"])
def test_openpgp_tampered_payload_is_bad(
    name: str, gpg_commits: dict[str, tuple[bytes, bytes]], pgp_ring: Keyring
) -> None:
    sig, payload = gpg_commits[name]
    check = pgp_ring.check(signature=sig, payload=payload + b"x")
    assert (check.outcome, check.signer, check.keys) == ("bad-signature", name, ())


def test_openpgp_unknown_key(
    gpg_keys: dict[str, GpgKey], gpg_commits: dict[str, tuple[bytes, bytes]], pgp_ring: Keyring
) -> None:
    sig, payload = gpg_commits["stranger"]
    check = pgp_ring.check(signature=sig, payload=payload)
    assert (check.outcome, check.signer) == ("unknown-key", None)
    assert check.key_id == gpg_keys["stranger"].fingerprint


def test_openpgp_signature_dated_after_the_host_clock(
    gpg_keys: dict[str, GpgKey], pgp_ring: Keyring
) -> None:
    # pysequoia refuses signatures from "the future"; an edge site's clock may lag: gpg re-checks
    future = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    sig = gpg_sign(gpg_keys["ed25519"], PAYLOAD, faked_time=future.strftime("%Y%m%dT%H%M%S!"))
    check = pgp_ring.check(signature=sig, payload=PAYLOAD)
    assert (check.outcome, check.signer, check.signed_at) == ("good", "ed25519", future)
    assert "clock" in check.detail
    bad = pgp_ring.check(signature=sig, payload=PAYLOAD + b"x")
    assert bad.outcome == "bad-signature" and "BADSIG" in bad.detail


def test_openpgp_key_expired_since_is_judged_at_signing_time(tmp_path: Path) -> None:
    key = make_gpg_key(
        tmp_path, "Eve <eve@example.com>", faked_time="20200101T000000", expires="1y"
    )
    try:
        sig = gpg_sign(key, PAYLOAD, faked_time="20200601T000000!")
    finally:
        stop_gpg(key)
    ring = Keyring.from_keys(load_openpgp_keys(key.public, source="eve.asc"))
    check = ring.check(signature=sig, payload=PAYLOAD)
    assert (check.outcome, check.signer) == ("good", "Eve <eve@example.com>")
    assert check.signed_at == datetime(
        2020, 6, 1, tzinfo=UTC
    )  # for core/trust/decision.py to judge


def test_openpgp_signature_checked_against_ssh_keyring_is_unknown(
    gpg_commits: dict[str, tuple[bytes, bytes]], ssh_ring: Keyring
) -> None:
    sig, payload = gpg_commits["ed25519"]
    assert ssh_ring.check(signature=sig, payload=payload).outcome == "unknown-key"


def test_openpgp_key_file_with_two_keys(
    tmp_path: Path, gpg_keys: dict[str, GpgKey], gpg_commits: dict[str, tuple[bytes, bytes]]
) -> None:
    text = "# release keys\n" + gpg_keys["ed25519"].public + "\n" + gpg_keys["rsa"].public
    keys = load_openpgp_keys(text, source="keys.asc")
    assert [k.name for k in keys] == ["Alice <alice@example.com>", "Bob <bob@example.com>"]
    ring = Keyring.from_keys(keys)
    for name, signer in [
        ("ed25519", "Alice <alice@example.com>"),
        ("rsa", "Bob <bob@example.com>"),
    ]:
        sig, payload = gpg_commits[name]
        check = ring.check(signature=sig, payload=payload)
        assert (check.outcome, check.signer) == ("good", signer)


def test_openpgp_name_is_the_primary_user_id(tmp_path: Path) -> None:
    key = make_gpg_key(tmp_path, "Dan <dan@example.com>")
    try:
        for args in (
            ["--quick-add-uid", key.fingerprint, "Dan Ops <ops@example.com>"],
            ["--quick-set-primary-uid", key.fingerprint, "Dan Ops <ops@example.com>"],
        ):
            run_gpg(key, *args)
        public = run_gpg(key, "--armor", "--export", key.fingerprint)
        (tk,) = load_openpgp_keys(public, source="dan.asc")
        assert tk.name == "Dan Ops <ops@example.com>"
    finally:
        stop_gpg(key)


def run_gpg(key: GpgKey, *args: str) -> str:
    return run(["gpg", "--batch", *args], env=key.env).stdout.decode()


def test_openpgp_key_file_errors(gpg_keys: dict[str, GpgKey]) -> None:
    good = gpg_keys["ed25519"].public
    broken = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----\n"
    with pytest.raises(TrustError, match=r"^k\.asc:\d+: not a valid OpenPGP public key"):
        load_openpgp_keys(good + "\n" + broken, source="k.asc")
    n = good.count("\n") + 2
    with pytest.raises(TrustError, match=rf"^k\.asc:{n}:"):
        load_openpgp_keys(good + "\n" + broken, source="k.asc")
    with pytest.raises(TrustError, match=r"k\.asc: no armored OpenPGP public key"):
        load_openpgp_keys("just text\n", source="k.asc")
    secret = "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nAAAA\n-----END PGP PRIVATE KEY BLOCK-----\n"
    with pytest.raises(TrustError, match=r"k\.asc:1: a secret key block"):
        load_openpgp_keys(secret, source="k.asc")
    rsa_key = gpg_keys["rsa"]
    exported = run_gpg(rsa_key, "--armor", "--export-secret-keys", rsa_key.fingerprint)
    disguised = exported.replace("PRIVATE KEY BLOCK", "PUBLIC KEY BLOCK")
    with pytest.raises(TrustError, match=r"k\.asc:1: holds secret key material"):
        load_openpgp_keys(disguised, source="k.asc")
    with pytest.raises(TrustError, match=r"signer 'x': unusable key: holds secret key material"):
        Keyring.from_keys([TrustedKey("x", disguised)])
    with pytest.raises(
        TrustError, match=r"signer 'two': .*expected one OpenPGP public key, found 2"
    ):
        Keyring.from_keys([TrustedKey("two", good + gpg_keys["rsa"].public)])


def test_pgp_garbage_is_bad(pgp_ring: Keyring) -> None:
    for sig in (
        b"-----BEGIN PGP SIGNATURE-----\n\n-----END PGP SIGNATURE-----\n",
        b"-----BEGIN PGP SIGNATURE-----\n\nwsBcBAABCAAQ\n=AAAA\n-----END PGP SIGNATURE-----\n",
        b"-----BEGIN PGP MESSAGE-----\n",
    ):
        check = pgp_ring.check(signature=sig, payload=PAYLOAD)
        assert (check.outcome, check.kind) == ("bad-signature", "openpgp"), check
        assert "Stack backtrace" not in check.detail


# ---------------------------------------------------------------------------- allowed_signers


def test_allowed_signers_parsing(ssh_keys: dict[str, SshKey]) -> None:
    ed, ec, rs = ssh_keys["ed25519"].public, ssh_keys["ecdsa256"].public, ssh_keys["rsa"].public
    text = f"""# fleet release signers

alice@example.com {ed}
"bob@example.com,robert@example.com" namespaces="git,file",valid-after="20260101" {ec}
  carol@example.com VALID-AFTER=202601021530Z,valid-before=20270630123045 {rs}
dave@example.com valid-before="20270101Z" {ed.split()[0]} {ed.split()[1]}
"""
    a, b, c, d = load_allowed_signers(text, source="allowed_signers")
    assert (a.name, a.key_text, a.namespaces, a.valid_after, a.valid_before) == (
        "alice@example.com",
        ed,
        None,
        None,
        None,
    )
    assert b.name == "bob@example.com,robert@example.com" and b.key_text == ec
    assert b.namespaces == ("git", "file")
    assert b.valid_after == datetime(2026, 1, 1, tzinfo=UTC)
    assert c.valid_after == datetime(2026, 1, 2, 15, 30, tzinfo=UTC)
    assert c.valid_before == datetime(2027, 6, 30, 12, 30, 45, tzinfo=UTC)
    assert d.valid_before == datetime(2027, 1, 1, tzinfo=UTC) and d.valid_after is None
    with pytest.raises(TrustError, match="same key"):
        Keyring.from_keys([a, b, c, d])  # alice and dave share a key
    ring = Keyring.from_keys([a, b, c])
    assert len(ring) == 3


@pytest.mark.parametrize(
    "line, message",
    [
        ("alice@x cert-authority {key}", "cert-authority is not supported"),
        ("alice@x nosuch=1 {key}", "unknown option 'nosuch'"),
        ("alice@x valid-after=2026 {key}", "bad time '2026'"),
        ("alice@x valid-after=20261399 {key}", "no such date"),
        ('alice@x valid-after="20270101",valid-before="20260101" {key}', "later than valid-before"),
        ('alice@x namespaces="git,namespaces="file" {key}', "unterminated quote|malformed options"),
        ("alice@x valid-after=20260101,valid-after=20260102 {key}", "given twice"),
        ('"alice@x {key}', "unterminated quote"),
        ("alice@x", "missing key|not an OpenSSH public key"),
        ("alice@x ssh-ed25519", "not an OpenSSH public key"),
        ("alice@x ssh-ed25519 AAAA!!!!", "malformed ssh-ed25519 key data"),
        ("alice@x ssh-dss AAAAB3NzaC1kc3MAAACBAP", "unsupported SSH key type|missing key"),
        ("alice@x ssh-rsa {ed_b64}", "not a ssh-rsa key"),
        ("alice@x namespaces {key}", "needs a value"),
    ],
)
def test_allowed_signers_errors_name_file_and_line(
    line: str, message: str, ssh_keys: dict[str, SshKey]
) -> None:
    key = ssh_keys["ed25519"].public
    text = f"# header\nok@x {key}\n\n" + line.format(key=key, ed_b64=key.split()[1]) + "\n"
    with pytest.raises(TrustError, match=rf"^trust/allowed_signers:4: .*(?:{message})"):
        load_allowed_signers(text, source="trust/allowed_signers")


def test_allowed_signers_weak_rsa_and_empty_file(tmp_path: Path) -> None:
    run(
        ["ssh-keygen", "-q", "-t", "rsa", "-b", "1024", "-N", "", "-f", str(tmp_path / "weak")],
        env=tool_env(tmp_path / "home"),
    )
    text = "w@x " + (tmp_path / "weak.pub").read_text()
    with pytest.raises(TrustError, match=r"^as:1: .*1024 bits"):
        load_allowed_signers(text, source="as")
    with pytest.raises(TrustError, match="no signers"):
        load_allowed_signers("# nothing\n\n", source="as")


@pytest.mark.parametrize(
    "verify_time, inside",
    [
        ("20251231235959", False),
        ("20260101000000", True),
        ("20260630", True),
        ("20270101000000", True),
        ("20270101000001", False),
    ],
)
def test_validity_bounds_read_as_ssh_keygen_applies_them(
    verify_time: str, inside: bool, ssh_commits: dict[str, SshSigned]
) -> None:
    c = ssh_commits["ed25519"]
    opts = 'valid-after="20260101Z",valid-before="20270101Z"'
    (tk,) = load_allowed_signers(allowed(c.key, options=opts), source="as")
    assert tk.valid_after is not None and tk.valid_before is not None
    t = datetime.strptime(verify_time.ljust(14, "0"), "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    assert (
        tk.valid_after <= t <= tk.valid_before
    ) == inside  # the rule core/trust/decision.py applies
    assert (
        ssh_verify(
            allowed_signers=allowed(c.key, options=opts),
            principal="signer",
            signature=c.signature,
            data=c.payload,
            verify_time=verify_time + "Z",
            env=c.key.env,
        )
        == inside
    )


# ---------------------------------------------------------------------------- Keyring


def test_from_keys_names_the_signer_whose_key_is_bad(ssh_keys: dict[str, SshKey]) -> None:
    good = TrustedKey("alice", ssh_keys["ed25519"].public)
    for text in ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBad", "nonsense", ""):
        with pytest.raises(TrustError, match=r"signer 'mallory': unusable key"):
            Keyring.from_keys([good, TrustedKey("mallory", text)])
    pgp = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----\n"
    with pytest.raises(TrustError, match=r"signer 'mallory': unusable key"):
        Keyring.from_keys([good, TrustedKey("mallory", pgp)])


def test_one_key_on_two_lines_of_one_signer(
    ssh_keys: dict[str, SshKey], ssh_commits: dict[str, SshSigned]
) -> None:
    key, c = ssh_keys["ed25519"], ssh_commits["ed25519"]
    text = allowed(key, "alice", 'namespaces="file",valid-before="20250101"') + allowed(
        key, "alice", 'valid-after="20250101"'
    )
    ring = Keyring.from_keys(load_allowed_signers(text, source="as"))
    check = ring.check(signature=c.signature, payload=c.payload)
    assert check.outcome == "good" and len(check.keys) == 1  # only the entry allowing "git"
    assert check.keys[0].valid_after == datetime(2025, 1, 1, tzinfo=UTC)
