"""Local files are read bounded, and only when they are regular files (issue 13).

``verify --trust /dev/zero`` passed a size check from ``stat`` (0 bytes) and then read without
end; a FIFO as any input file blocked ``open`` for ever; a FIFO named ``*.yaml`` in a fleet
working tree hung ``gitedge validate``. Each command runs as a real ``gitedge`` process with a
data limit (so that, before the fix, reading ``/dev/zero`` ended in MemoryError rather than in
the machine's memory) and a timeout (a hang fails the test instead of holding it).
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gitserver import git, git_env, http_git_server

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[1]
DATA_LIMIT = 1 << 30


def _limit_data() -> None:  # runs in the child, before exec
    resource.setrlimit(resource.RLIMIT_DATA, (DATA_LIMIT, DATA_LIMIT))


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        preexec_fn=_limit_data,
    )


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo.yaml"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize(
    ("command", "kind"),
    [
        ("verify --repo {repo} --trust /dev/zero", "a character device"),
        ("verify --repo {repo} --trust {fifo}", "a FIFO"),
        ("verify --repo {repo} --trust {tmp}", "a directory"),
        ("status --config /dev/zero", "a character device"),
        ("run --once --config {fifo}", "a FIFO"),
        ("plan --repo {fleet} --cluster /dev/zero", "a character device"),
        ("validate {fleet} --clusters {fifo}", "a FIFO"),
    ],
)
def test_a_file_argument_that_is_not_a_regular_file_is_refused(
    tmp_path: Path, fifo: Path, command: str, kind: str
) -> None:
    repo = tmp_path / "repo"
    git("init", "-q", str(repo), cwd=tmp_path, env=git_env(tmp_path / "home"))
    fleet = ROOT / "examples" / "fleet-repo"
    args = command.format(repo=repo, fifo=fifo, tmp=tmp_path, fleet=fleet).split()
    proc = run("-m", "gitedge", *args, cwd=tmp_path)
    assert proc.returncode in (1, 2), proc.stderr
    assert f"not a regular file ({kind})" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_trust_file_over_1_mib_is_refused_by_size(tmp_path: Path) -> None:
    big = tmp_path / "allowed_signers"
    big.write_bytes(b"# padding\n" * 120_000)
    proc = run("-m", "gitedge", "verify", "--repo", str(tmp_path), "--trust", str(big), cwd=ROOT)
    assert proc.returncode == 1
    assert f"{big}: cannot read trust file: larger than 1 MiB" in proc.stderr


def test_a_fifo_or_socket_in_the_fleet_tree_is_a_problem_not_a_hang(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    shutil.copytree(ROOT / "examples" / "fleet-repo", fleet)
    os.mkfifo(fleet / "evil.yaml")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(fleet / "listening.yml"))
        proc = run("-m", "gitedge", "validate", str(fleet), cwd=tmp_path)
    finally:
        sock.close()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert f"{fleet}/evil.yaml: not a regular file (a FIFO)" in out
    assert f"{fleet}/listening.yml: not a regular file (a socket)" in out
    assert "Traceback" not in out


_FETCH = """
import sys
from pathlib import Path
from gitedge.adapters.git.source import GitMirror
from gitedge.adapters.git.transport import SourceAuth
from gitedge.errors import InvalidInput
kind, path, url = sys.argv[1:]
Path("user").write_text("fleet")
auth = SourceAuth(**{kind: Path(path), "username_file": Path("user")})
try:
    GitMirror(mirror_dir=Path("mirror.git")).fetch(url=url, branch="main", auth=auth, timeout_s=10)
except InvalidInput as e:
    print(e)
    sys.exit(3)
"""


@pytest.mark.parametrize("kind", ["password_file", "ca_file"])
def test_git_secrets_and_ca_files_are_read_bounded(tmp_path: Path, fifo: Path, kind: str) -> None:
    env = git_env(tmp_path / "home")
    srv = tmp_path / "srv"
    git("init", "-q", "--bare", str(srv / "fleet.git"), cwd=tmp_path, env=env)
    with http_git_server(srv, credentials=("fleet", "pw")) as server:
        url = f"{server.url}/fleet.git"
        if kind == "ca_file":  # the CA is loaded for https only, before connecting
            url = url.replace("http://", "https://")
        for path, what in (("/dev/zero", "a character device"), (str(fifo), "a FIFO")):
            proc = run("-c", _FETCH, kind, path, url, cwd=tmp_path)
            assert proc.returncode == 3, proc.stdout + proc.stderr
            assert f"{path}: " in proc.stdout and f"not a regular file ({what})" in proc.stdout


def test_git_known_hosts_and_ssh_key_files_are_read_bounded(tmp_path: Path, fifo: Path) -> None:
    """The known_hosts file is read before connecting; the key when sshd asks for it (libssh2
    would read a FIFO or /dev/zero itself, without end)."""
    from tests.gitserver import sshd_server

    env = git_env(tmp_path / "home")
    bare = tmp_path / "srv" / "fleet.git"
    git("init", "-q", "--bare", str(bare), cwd=tmp_path, env=env)
    with sshd_server(tmp_path / "sshd") as ssh:
        url = ssh.url(bare)
        for path, what in (("/dev/zero", "a character device"), (str(fifo), "a FIFO")):
            for kind, good in (
                ("known_hosts_file", ("ssh_key_file", ssh.key_file)),
                ("ssh_key_file", ("known_hosts_file", ssh.known_hosts_file)),
            ):
                script = _FETCH.replace(
                    '"username_file": Path("user")', f"{good[0]!r}: Path({str(good[1])!r})"
                )
                proc = run("-c", script, kind, path, url, cwd=tmp_path)
                assert proc.returncode == 3, (kind, proc.stdout + proc.stderr)
                assert f"not a regular file ({what})" in proc.stdout


_REGISTRY = """
import sys
from pathlib import Path
from gitedge.adapters.registry.client import RegistryClient
from gitedge.adapters.registry.hosts import HostConfig
from gitedge.errors import RegistryAuthError
kind, path = sys.argv[1:]
Path("secret").write_text("fleet")
files = {"username_file": Path("secret"), "password_file": Path("secret"), kind: Path(path)}
try:
    RegistryClient(host="127.0.0.1:1", config=HostConfig(**files))
except RegistryAuthError as e:
    print(e)
    sys.exit(3)
"""


@pytest.mark.parametrize("kind", ["password_file", "token_file"])
def test_registry_secret_files_are_read_bounded(tmp_path: Path, fifo: Path, kind: str) -> None:
    for path, what in (("/dev/zero", "a character device"), (str(fifo), "a FIFO")):
        proc = run("-c", _REGISTRY, kind, path, cwd=tmp_path)
        assert proc.returncode == 3, proc.stdout + proc.stderr
        assert f"{path}: not a regular file ({what})" in proc.stdout
