"""``source.mirrors``: Git URLs a site fetches from for the bytes. The origin's ref decides
when it answers (a stale mirror never holds a site back, and the status says how far it lags);
when it does not, a mirror's newer tip stands in, verified like any commit: a mirror serving an
unsigned commit is refused exactly like the origin. Real ``git daemon`` on 127.0.0.1."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gitedge.agent.reconcile import Agent, Pass, PrintCluster
from gitedge.agent.steps.gitmirrors import MIRRORS_CURRENT
from gitedge.core.config import AgentConfig, load_site_file
from tests.agentkit import START, FleetRepo, fleet_files, served_fleet_repo
from tests.gitserver import git_daemon, tcp_proxy

NOW = datetime(2026, 1, 2, 2, tzinfo=UTC)
DOWN = "git://127.0.0.1:1"  # nothing listens: connection refused at once


def agent(tmp: Path, name: str, *, origin: str, mirrors: list[str]) -> Agent:
    cfg = tmp / f"{name}.yaml"
    listed = ", ".join(f"'{m}'" for m in mirrors)
    cfg.write_text(
        "apiVersion: gitedge.io/v1alpha1\nkind: AgentConfig\n"
        "cluster:\n  name: site-1\n  status: {k3sVersion: v1.27.16+k3s1, arches: [amd64]}\n"
        f"source: {{url: '{origin}', interval: 1h, mirrors: [{listed}]}}\n"
        f"trust: {{bootstrap: {tmp / 'allowed_signers'}}}\n"
        f"apply: {{mode: print}}\nstate: {{dir: {tmp / name}}}\n"
    )
    site = load_site_file(cfg.read_bytes(), path=str(cfg))
    assert isinstance(site, AgentConfig)
    return Agent(site, cluster=PrintCluster(config=site, out=lambda _: None))


def mirror_at(repo: FleetRepo, mirror: Path, commit: str) -> None:
    """``mirror`` (a bare repo) holds the origin's history up to ``commit`` as its main."""
    if not mirror.exists():
        subprocess.run(["git", "init", "-q", "--bare", str(mirror)], check=True, timeout=30)
    subprocess.run(
        ["git", "-C", str(mirror), "fetch", "-q", str(repo.path), f"+{commit}:refs/heads/main"],
        check=True,
        timeout=30,
    )


def condition(p: Pass, ctype: str) -> tuple[str, str, str]:
    c = next(c for c in p.conditions if c.type == ctype)
    return c.status, c.reason, c.message


@pytest.fixture
def repo(tmp_path: Path) -> FleetRepo:
    r = served_fleet_repo(tmp_path)
    r.commit(
        fleet_files(registry="127.0.0.1:1", releases=["v1.27.16+k3s1"], k3s="v1.27.16+k3s1",
                    os_image=None),
        at=START,
    )  # fmt: skip
    return r


def run(a: Agent) -> Pass:
    try:
        return a.reconcile(now=NOW)
    finally:
        a.close()


def test_a_stale_mirror_does_not_hold_the_site_and_its_lag_is_shown(
    tmp_path: Path, repo: FleetRepo
) -> None:
    old = str(repo.head)
    mirror_at(repo, tmp_path / "served" / "mirror.git", old)
    new = [repo.commit(), repo.commit()][-1]
    with git_daemon(tmp_path / "served") as url:
        p = run(agent(tmp_path, "s1", origin=f"{url}/fleet.git", mirrors=[f"{url}/mirror.git"]))
    assert p.tip == new and p.fetched == new
    status, reason, msg = condition(p, MIRRORS_CURRENT)
    assert (status, reason) == ("False", "Lagging")
    assert "mirror.git lags 2 commit(s) behind the origin" in msg, msg
    assert p.settled


def test_a_current_mirror_serves_the_bytes_and_the_origin_only_its_ref(
    tmp_path: Path, repo: FleetRepo
) -> None:
    for _ in range(30):
        repo.commit({f"files/{repo.n}.txt": "x" * 2000 + str(repo.n)})
    mirror_at(repo, tmp_path / "served" / "mirror.git", str(repo.head))
    with git_daemon(tmp_path / "served") as url:
        port = int(url.rsplit(":", 1)[1])
        with tcp_proxy(port) as origin, tcp_proxy(port) as mirror:
            p = run(
                agent(
                    tmp_path, "s1",
                    origin=f"git://127.0.0.1:{origin.port}/fleet.git",
                    mirrors=[f"git://127.0.0.1:{mirror.port}/mirror.git"],
                )
            )  # fmt: skip
    assert p.tip == str(repo.head)
    assert condition(p, MIRRORS_CURRENT)[0] == "True"
    assert origin.connections == 1 and mirror.connections == 1
    assert origin.bytes_down < 2048 < mirror.bytes_down, (origin.bytes_down, mirror.bytes_down)


def test_origin_down_a_newer_mirror_stands_in_a_stale_one_never_moves_back(
    tmp_path: Path, repo: FleetRepo
) -> None:
    first = str(repo.head)
    second = repo.commit()
    mirror_at(repo, tmp_path / "served" / "mirror.git", second)
    with git_daemon(tmp_path / "served") as url:
        p = run(agent(tmp_path, "s1", origin=f"{url}/fleet.git", mirrors=[]))
        assert p.tip == second
        mirror_at(repo, tmp_path / "served" / "old.git", first)
        third = repo.commit()
        mirror_at(repo, tmp_path / "served" / "mirror.git", third)
        mirrors = [f"{url}/old.git", f"{url}/mirror.git"]
        p = run(agent(tmp_path, "s1", origin=f"{DOWN}/fleet.git", mirrors=mirrors))
        assert p.tip == third and p.outcomes["sync"] == "ok"
        assert condition(p, "SourceReachable")[:2] == ("False", "FetchedFromMirror")
        assert "from mirror" in condition(p, "SourceReachable")[2]
        p = run(agent(tmp_path, "s1", origin=f"{DOWN}/fleet.git", mirrors=[f"{url}/old.git"]))
        assert p.tip == third and p.fetched == third  # the stale mirror does not move it back
        p = run(agent(tmp_path, "s1", origin=f"{DOWN}/fleet.git", mirrors=[f"{DOWN}/m.git"]))
        assert p.outcomes["sync"] == "retry" and p.tip == third  # nobody answered


def test_a_mirror_serving_an_unsigned_commit_is_refused_exactly_like_the_origin(
    tmp_path: Path, repo: FleetRepo
) -> None:
    good = str(repo.head)
    with git_daemon(tmp_path / "served") as url:
        for name in ("via-origin", "via-mirror"):
            assert run(agent(tmp_path, name, origin=f"{url}/fleet.git", mirrors=[])).tip == good
        unsigned = repo.commit(signed=False)
        mirror_at(repo, tmp_path / "served" / "mirror.git", unsigned)
        direct = run(agent(tmp_path, "via-origin", origin=f"{url}/fleet.git", mirrors=[]))
        mirrored = run(
            agent(tmp_path, "via-mirror", origin=f"{DOWN}/fleet.git",
                  mirrors=[f"{url}/mirror.git"])
        )  # fmt: skip
    assert direct.fetched == mirrored.fetched == unsigned
    assert direct.tip == mirrored.tip == good  # neither moved past the last verified commit
    assert direct.outcomes["verify"] == mirrored.outcomes["verify"] != "ok"
    assert direct.errors["verify"] == mirrored.errors["verify"]
    assert unsigned in direct.errors["verify"]
    assert condition(direct, "SourceVerified") == condition(mirrored, "SourceVerified")


def test_a_mirror_that_diverges_is_not_followed_while_the_origin_answers(
    tmp_path: Path, repo: FleetRepo
) -> None:
    good = str(repo.head)
    forged = repo.commit(signed=False)  # served by the mirror only
    mirror_at(repo, tmp_path / "served" / "mirror.git", forged)
    repo.set_main(good)
    with git_daemon(tmp_path / "served") as url:
        p = run(agent(tmp_path, "s1", origin=f"{url}/fleet.git", mirrors=[f"{url}/mirror.git"]))
    assert p.fetched == p.tip == good and p.outcomes["verify"] == "ok"
    status, _, msg = condition(p, MIRRORS_CURRENT)
    assert status == "False" and f"at {forged} is not in the origin's history" in msg, msg
