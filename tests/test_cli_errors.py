"""No traceback reaches a CLI user (issue 13): paths that are directories, files, missing or
unwritable are errors naming the path (exit 2, usage); an exception no command turned into an
error of the tree is one line asking for a report (exit 1), with ``GITEDGE_DEBUG=1`` to see the
traceback. The real CLI in a subprocess, except for the last line of defence, which needs a bug
to show itself: there a command is replaced in process by one that raises.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gitedge.cli import main
from gitedge.cli import repo as repo_commands
from tests.agentkit import START, FleetRepo
from tests.sigtools import make_ssh_key
from tests.test_bundle import write_site

UNWRITABLE = "/proc/gitedge-test/x"  # procfs: nothing can be created there, even by root


def gitedge(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gitedge", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def refused(r: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    for w in words:
        assert w in r.stderr, (w, r.stderr)


def test_bundle_paths_that_cannot_be_used(tmp_path: Path) -> None:
    key = make_ssh_key(tmp_path / "keys", "ed25519", comment="release@fleet.example")
    fleet = FleetRepo(tmp_path / "fleet.git", key)
    fleet.commit(at=START)
    repo = str(fleet.path)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    outdir = tmp_path / "out"
    outdir.mkdir()
    for out, why in (
        (str(outdir), "a directory"),
        (UNWRITABLE, "cannot write there"),
        (f"{a_file}/b.tar", "cannot write there"),
    ):
        r = gitedge("bundle", "create", "--repo", repo, "--all", "--out", out, "-q")
        refused(r, 2, "gitedge bundle create: ", f"--out {out}", why)
    assert list(outdir.iterdir()) == []  # nothing left behind
    cfg = write_site(tmp_path / "site", git_url="git://127.0.0.1:9/absent.git", key=key,
                     k3s="v1.27.16+k3s1")  # fmt: skip
    for path, why in ((outdir, "a directory"), (tmp_path / "absent.tar", "no such file")):
        r = gitedge("bundle", "import", str(path), "--config", str(cfg))
        refused(r, 2, "gitedge bundle import: ", str(path), why)
    assert not (tmp_path / "site" / "state").exists()  # refused before the agent opened it


def test_schema_write_to_a_file_or_a_bad_path(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    refused(gitedge("schema", "--write", str(a_file)), 2, f"--write {a_file}", "not a directory")
    refused(gitedge("schema", "--write", f"{a_file}/sub"), 2, f"{a_file}/sub", "Not a directory")
    refused(gitedge("schema", "--write", UNWRITABLE), 2, UNWRITABLE, "No such file")
    assert a_file.read_text() == "x"


def test_demo_keep_must_be_a_new_or_empty_directory(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    used = tmp_path / "used"
    (used / "keys").mkdir(parents=True)
    for keep, why in ((a_file, "not a directory"), (used, "not empty"),
                      (Path(UNWRITABLE), "No such file")):  # fmt: skip
        refused(gitedge("demo", "--keep", str(keep)), 2, f"gitedge demo: --keep {keep}", why)
    assert list((used / "keys").iterdir()) == []


def test_an_unexpected_exception_is_one_line_asking_for_a_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def buggy(args: object) -> int:
        raise KeyError("token=hunter2 at https://user:pw@example.com/x")

    monkeypatch.setattr(repo_commands, "cmd_schema", buggy)
    monkeypatch.delenv("GITEDGE_DEBUG", raising=False)
    assert main(["schema", "--write", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("gitedge schema: internal error (KeyError")
    assert "please report it" in err and "GITEDGE_DEBUG=1" in err
    assert "hunter2" not in err and "user:pw" not in err
    assert len(err.strip().splitlines()) == 1
    monkeypatch.setenv("GITEDGE_DEBUG", "1")
    with pytest.raises(KeyError):
        main(["schema", "--write", str(tmp_path)])


def test_an_os_error_no_command_caught_names_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def reads(args: object) -> int:
        return len((tmp_path / "gone.yaml").read_bytes())

    monkeypatch.setattr(repo_commands, "cmd_schema", reads)
    monkeypatch.delenv("GITEDGE_DEBUG", raising=False)
    assert main(["schema", "--write", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == f"gitedge schema: {tmp_path / 'gone.yaml'}: No such file or directory\n"


def test_run_listen_that_cannot_be_used(tmp_path: Path) -> None:
    key = make_ssh_key(tmp_path / "keys", "ed25519", comment="release@fleet.example")
    cfg = str(write_site(tmp_path / "site", git_url="git://127.0.0.1:9/absent.git", key=key,
                         k3s="v1.27.16+k3s1"))  # fmt: skip
    for listen in ("127.0.0.1:abc", "127.0.0.1:99999", "127.0.0.1"):
        r = gitedge("run", "--config", cfg, "--listen", listen)
        refused(r, 2, f"gitedge run: --listen {listen!r}: expected HOST:PORT")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        r = gitedge("run", "--config", cfg, "--listen", listen)
    refused(r, 2, f"gitedge run: --listen {listen}: Address already in use")
