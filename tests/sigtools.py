"""Keys, signatures and signed commits made by the REAL tools, for tests that verify signatures.

- :func:`make_ssh_key` — ``ssh-keygen -t ed25519 | ecdsa -b 256/384/521 | rsa -b 3072 -N ''``;
  :func:`ssh_sign` / :func:`ssh_verify` — ``ssh-keygen -Y sign`` / ``-Y verify`` (the reference
  signer and verifier); :func:`allowed_signers_line`.
- :func:`make_gpg_key` — ``gpg --quick-gen-key`` (ed25519 or rsa3072, optionally with a signing
  subkey) in its own short GNUPGHOME; :func:`gpg_sign` a detached armored signature, optionally with
  gpg's clock moved (``--faked-system-time``); :func:`stop_gpg` ends the agent gpg started.
- :class:`SignedRepo` — a git repo where :meth:`SignedRepo.commit` signs with ``git commit -S``
  (``gpg.format=ssh`` + ``user.signingkey=KEYFILE``, or ``gpg.program=gpg`` with GNUPGHOME set);
  :func:`commit_signature` returns ``(signature, payload)`` as pygit2's ``gpg_signature`` does.
- :func:`sshsig_sign_fast` — an in-process ed25519 SSHSIG signer for volume tests and benchmarks
  (thousands of signatures); tests check its output with ``ssh-keygen -Y verify``.

Every command runs in an isolated environment (:func:`tool_env`): HOME and GNUPGHOME in temp
dirs, ``GIT_CONFIG_NOSYSTEM=1``, an empty global git config, user name/email given per command.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pygit2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

TIMEOUT_S = 60
SSH_KINDS: dict[str, list[str]] = {
    "ed25519": ["-t", "ed25519"],
    "ecdsa256": ["-t", "ecdsa", "-b", "256"],
    "ecdsa384": ["-t", "ecdsa", "-b", "384"],
    "ecdsa521": ["-t", "ecdsa", "-b", "521"],
    "rsa": ["-t", "rsa", "-b", "3072"],
}


def tool_env(home: Path, *, gnupghome: Path | None = None) -> dict[str, str]:
    """An environment isolated from the machine: own HOME, no system or global git config."""
    home.mkdir(parents=True, exist_ok=True)
    empty = home / ".gitconfig-empty"
    empty.touch()
    env = {k: os.environ[k] for k in ("PATH", "TMPDIR") if k in os.environ}
    env.update(
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=str(empty),
        GIT_TERMINAL_PROMPT="0",
        LC_ALL="C",
        TZ="UTC",
    )
    if gnupghome is not None:
        env["GNUPGHOME"] = str(gnupghome)
    return env


def run(
    args: list[str],
    *,
    env: dict[str, str],
    cwd: Path | None = None,
    input: bytes | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run a tool with a time limit; on failure (if ``check``) raise with its stderr."""
    proc = subprocess.run(
        args, env=env, cwd=cwd, input=input, capture_output=True, timeout=TIMEOUT_S
    )
    if check and proc.returncode != 0:
        err = proc.stderr.decode(errors="replace")
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {err}")
    return proc


# ---------------------------------------------------------------------------- SSH


@dataclass(frozen=True)
class SshKey:
    """An unencrypted OpenSSH key pair made by ssh-keygen."""

    kind: str
    path: Path  # the private key; the public key is beside it as path.pub
    public: str  # "keytype base64 comment"
    fingerprint: str  # "SHA256:..." as ssh-keygen -l prints it
    env: dict[str, str]


def make_ssh_key(tmp_path: Path, kind: str, *, comment: str | None = None) -> SshKey:
    """A fresh key of ``kind`` (a key of :data:`SSH_KINDS`) under ``tmp_path``."""
    env = tool_env(tmp_path / "home")
    path = tmp_path / f"id_{kind}"
    n = 1
    while path.exists():
        n += 1
        path = tmp_path / f"id_{kind}_{n}"
    comment = comment or f"{kind}@test.example"
    run(["ssh-keygen", "-q", *SSH_KINDS[kind], "-N", "", "-C", comment, "-f", str(path)], env=env)
    public = path.with_name(path.name + ".pub").read_text().strip()
    listed = run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(path)], env=env).stdout.decode()
    return SshKey(kind, path, public, listed.split()[1], env)


def ssh_sign(
    key: SshKey, data: bytes, *, namespace: str = "git", hashalg: str | None = None
) -> bytes:
    """``ssh-keygen -Y sign`` over ``data``; the armored signature."""
    with tempfile.TemporaryDirectory() as d:
        msg = Path(d) / "msg"
        msg.write_bytes(data)
        opts = ["-O", f"hashalg={hashalg}"] if hashalg else []
        run(
            ["ssh-keygen", "-Y", "sign", "-f", str(key.path), "-n", namespace, *opts, str(msg)],
            env=key.env,
        )
        return msg.with_name("msg.sig").read_bytes()


def allowed_signers_line(principal: str, key: SshKey, options: str = "") -> str:
    """One allowed_signers line for ``key``."""
    return " ".join(x for x in (principal, options, key.public) if x)


def ssh_verify(
    *,
    allowed_signers: str,
    principal: str,
    signature: bytes,
    data: bytes,
    namespace: str = "git",
    verify_time: str | None = None,
    env: dict[str, str],
) -> bool:
    """The reference verdict: ``ssh-keygen -Y verify`` (``verify_time``: YYYYMMDD[HHMM[SS]])."""
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "allowed").write_text(allowed_signers)
        (Path(d) / "sig").write_bytes(signature)
        opts = ["-O", f"verify-time={verify_time}"] if verify_time else []
        proc = run(
            [
                "ssh-keygen",
                "-Y",
                "verify",
                "-f",
                f"{d}/allowed",
                "-I",
                principal,
                "-n",
                namespace,
                "-s",
                f"{d}/sig",
                *opts,
            ],
            env=env,
            input=data,
            check=False,
        )
        return proc.returncode == 0


def sshsig_blob(
    *,
    public_blob: bytes,
    namespace: str,
    hash_alg: str,
    sig_alg: str,
    sig: bytes,
    version: int = 1,
    magic: bytes = b"SSHSIG",
) -> bytes:
    """An SSHSIG blob (PROTOCOL.sshsig) from its parts, for hand-made edge cases."""
    inner = _s(sig_alg.encode()) + _s(sig)
    return (
        magic
        + version.to_bytes(4, "big")
        + _s(public_blob)
        + _s(namespace.encode())
        + _s(b"")
        + _s(hash_alg.encode())
        + _s(inner)
    )


def sshsig_signed_data(*, namespace: str, hash_alg: str, data: bytes) -> bytes:
    """What an SSHSIG signature actually signs."""
    digest = hashlib.new(hash_alg, data).digest()
    return b"SSHSIG" + _s(namespace.encode()) + _s(b"") + _s(hash_alg.encode()) + _s(digest)


def armor_sshsig(blob: bytes) -> bytes:
    """Armor an SSHSIG blob as ssh-keygen does (70-column base64)."""
    b64 = base64.b64encode(blob).decode()
    lines = [b64[i : i + 70] for i in range(0, len(b64), 70)]
    return (
        "-----BEGIN SSH SIGNATURE-----\n" + "\n".join(lines) + "\n-----END SSH SIGNATURE-----\n"
    ).encode()


def public_blob(key: SshKey) -> bytes:
    """The raw public-key blob of ``key``."""
    return base64.b64decode(key.public.split()[1])


def sshsig_sign_fast(key: SshKey, data: bytes, *, namespace: str = "git") -> bytes:
    """In-process ed25519 SSHSIG (sha512), byte-compatible with ``ssh-keygen -Y sign``.

    For volume tests only (10,000 signatures in a second); ``ssh_sign`` is the reference."""
    private = serialization.load_ssh_private_key(key.path.read_bytes(), password=None)
    assert isinstance(private, ed25519.Ed25519PrivateKey), "sshsig_sign_fast is ed25519 only"
    signed = sshsig_signed_data(namespace=namespace, hash_alg="sha512", data=data)
    blob = sshsig_blob(
        public_blob=public_blob(key),
        namespace=namespace,
        hash_alg="sha512",
        sig_alg="ssh-ed25519",
        sig=private.sign(signed),
    )
    return armor_sshsig(blob)


def _s(b: bytes) -> bytes:
    return len(b).to_bytes(4, "big") + b


# ---------------------------------------------------------------------------- OpenPGP


@dataclass(frozen=True)
class GpgKey:
    """A gpg key pair (no passphrase) in its own GNUPGHOME."""

    uid: str
    fingerprint: str  # primary key, upper-case hex
    home: Path  # GNUPGHOME
    public: str  # armored public key
    env: dict[str, str]


def make_gpg_key(
    base: Path,
    uid: str,
    algo: str = "ed25519",
    *,
    signing_subkey: bool = False,
    faked_time: str | None = None,
    expires: str = "never",
) -> GpgKey:
    """``gpg --quick-gen-key UID ALGO sign never`` in a fresh GNUPGHOME (short path: gpg's
    socket paths are limited). ``signing_subkey``: a certify-only primary plus an ed25519
    signing subkey. ``faked_time`` (``YYYYMMDDTHHMMSS``) dates the key; ``expires`` as gpg takes
    it (``never``, ``1y``, ...). Call :func:`stop_gpg` when done (gpg starts an agent)."""
    home = Path(tempfile.mkdtemp(prefix="gpg-", dir=base))
    home.chmod(0o700)
    env = tool_env(base / "home", gnupghome=home)
    fake = ["--faked-system-time", faked_time] if faked_time else []
    gpg = ["gpg", "--batch", "--passphrase", "", *fake]
    run(
        [*gpg, "--quick-gen-key", uid, algo, "cert" if signing_subkey else "sign", expires], env=env
    )
    colons = run(["gpg", "--with-colons", "--list-keys", uid], env=env).stdout.decode()
    fpr = next(line.split(":")[9] for line in colons.splitlines() if line.startswith("fpr:"))
    if signing_subkey:
        run([*gpg, "--quick-add-key", fpr, "ed25519", "sign", "never"], env=env)
    public = run(["gpg", "--armor", "--export", fpr], env=env).stdout.decode()
    return GpgKey(uid, fpr.upper(), home, public, env)


def gpg_sign(key: GpgKey, data: bytes, *, faked_time: str | None = None) -> bytes:
    """A detached armored signature by ``key`` over ``data`` (as git makes for commits)."""
    fake = ["--faked-system-time", faked_time] if faked_time else []
    args = ["gpg", "--batch", *fake, "-u", key.fingerprint, "--armor", "--detach-sign"]
    return run(args, env=key.env, input=data).stdout


def stop_gpg(key: GpgKey) -> None:
    """End the gpg-agent that gpg started for ``key``'s GNUPGHOME."""
    run(["gpgconf", "--kill", "all"], env=key.env, check=False)


# ---------------------------------------------------------------------------- git


class SignedRepo:
    """A git work tree whose commits are signed by the real ``git commit -S``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.env = tool_env(path.parent / f"{path.name}-home")
        self.git("init", "-q", "-b", "main")
        self._n = 0

    def git(self, *args: str, env: dict[str, str] | None = None) -> str:
        """Run git in the repo with the isolated environment (plus ``env``)."""
        ident = ["-c", "user.name=Test Operator", "-c", "user.email=ops@fleet.example"]
        full = {**self.env, **(env or {})}
        return run(["git", *ident, *args], env=full, cwd=self.path).stdout.decode().strip()

    def commit(
        self,
        message: str = "",
        *,
        signer: SshKey | GpgKey | None = None,
        files: dict[str, str | None] | None = None,
        date: str | None = None,
    ) -> str:
        """Commit a change, signed by ``signer`` (None: unsigned); the commit id. ``files`` maps
        paths to new content (None deletes); without it a small change to file.txt. ``date``
        sets author and committer dates (git's formats, e.g. ``2030-01-01T00:00:00Z``)."""
        self._n += 1
        for name, content in (files or {"file.txt": f"change {self._n}\n"}).items():
            path = self.path / name
            if content is None:
                self.git("rm", "-q", name)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            self.git("add", name)
        msg = ["-m", message or f"commit {self._n}"]
        self.git(
            *sign_args(signer), "commit", "-q", "--allow-empty", *msg, env=date_env(date, signer)
        )
        return self.git("rev-parse", "HEAD")

    def merge(
        self, branch: str, *, signer: SshKey | GpgKey | None = None, date: str | None = None
    ) -> str:
        """``git merge --no-ff BRANCH`` signed by ``signer``; the merge commit id."""
        self.git(
            *sign_args(signer),
            "merge",
            "-q",
            "--no-ff",
            "-m",
            f"merge {branch}",
            branch,
            env=date_env(date, signer),
        )
        return self.git("rev-parse", "HEAD")

    def signature(self, oid: str) -> tuple[bytes, bytes]:
        """``(signature, signed payload)`` of a signed commit."""
        return commit_signature(self.path, oid)


def sign_args(signer: SshKey | GpgKey | None) -> list[str]:
    """git ``-c`` options and ``-S`` (placed before the subcommand's own options) to sign with
    ``signer``; for merge/commit. The subcommand must follow these."""
    if signer is None:
        return ["-c", "commit.gpgsign=false"]
    if isinstance(signer, SshKey):
        return [
            "-c",
            "gpg.format=ssh",
            "-c",
            f"user.signingkey={signer.path}",
            "-c",
            "commit.gpgsign=true",
        ]
    return [
        "-c",
        "gpg.format=openpgp",
        "-c",
        "gpg.program=gpg",
        "-c",
        f"user.signingkey={signer.fingerprint}",
        "-c",
        "commit.gpgsign=true",
    ]


def date_env(date: str | None, signer: SshKey | GpgKey | None) -> dict[str, str]:
    env: dict[str, str] = {}
    if date:
        env |= {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    if isinstance(signer, GpgKey):
        env["GNUPGHOME"] = str(signer.home)
    return env


def commit_signature(repo_path: Path, oid: str) -> tuple[bytes, bytes]:
    """``(signature, payload)`` from pygit2's ``Commit.gpg_signature``; fails if unsigned."""
    sig, payload = pygit2.Repository(str(repo_path))[oid].gpg_signature
    assert sig is not None and payload is not None, f"commit {oid} is not signed"
    return bytes(sig), bytes(payload)
