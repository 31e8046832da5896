"""A poll that finds nothing new is nearly free: the agent's parent asks the server for the
branch's ref (``git ls-remote``, protocol v2) and starts no pass child when the branch is where
the last pass fetched it and nothing else is due (``core/passrules.pass_due``). Requests are
counted at a real ``git daemon`` (through a counting TCP proxy) and a real ``git http-backend``.
The schedule's jitter and backoff are properties of a pure function (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pygit2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gitedge.adapters.git.refs import remote_tip
from gitedge.agent.passes import ChildPasses
from gitedge.agent.scheduler import AgentLoop
from gitedge.agent.server import Metrics
from gitedge.core.config import AgentConfig, load_site_file
from gitedge.core.passrules import (
    BACKOFF_BASE_S,
    BACKOFF_CAP_S,
    LastPass,
    next_delay,
    pass_due,
    poll_needs_pass,
)
from tests.agentkit import START, FleetRepo, fleet_files, served_fleet_repo
from tests.gitserver import git_daemon, http_git_server, sshd_server, tcp_proxy

NOW = datetime(2026, 1, 2, 2, tzinfo=UTC)  # inside the nightly window of fleet_files


def write_config(tmp: Path, *, url: str, auth: str = "", registry_ok: bool = True) -> AgentConfig:
    cfg = tmp / "agent.yaml"
    cfg.write_text(
        "apiVersion: gitedge.io/v1alpha1\nkind: AgentConfig\n"
        "cluster:\n  name: site-1\n  status: {k3sVersion: v1.27.16+k3s1, arches: [amd64]}\n"
        f"source: {{url: '{url}', interval: 1h{auth}}}\n"
        f"trust: {{bootstrap: {tmp / 'allowed_signers'}}}\n"
        f"apply: {{mode: print}}\nstate: {{dir: {tmp / 'state'}}}\n"
    )
    site = load_site_file(cfg.read_bytes(), path=str(cfg))
    assert isinstance(site, AgentConfig)
    return site


def settled_fleet(repo: FleetRepo) -> str:
    """A fleet whose only target is the version the site runs: nothing to mirror or apply."""
    return repo.commit(
        fleet_files(registry="127.0.0.1:1", releases=["v1.27.16+k3s1"], k3s="v1.27.16+k3s1",
                    os_image=None),
        at=START,
    )  # fmt: skip


def loop_for(tmp: Path, site: AgentConfig, **kw: float) -> tuple[AgentLoop, ChildPasses]:
    passes = ChildPasses(
        config=site, config_path=str(tmp / "agent.yaml"), metrics=Metrics(), **kw
    )  # fmt: skip
    return AgentLoop(passes, clock=lambda: NOW, rng=lambda: 0.5), passes


@pytest.fixture
def repo(tmp_path: Path) -> FleetRepo:
    return served_fleet_repo(tmp_path)


def test_unchanged_poll_over_git_runs_no_pass_and_fetches_no_pack(
    tmp_path: Path, repo: FleetRepo
) -> None:
    first = settled_fleet(repo)
    with git_daemon(tmp_path / "served") as url:
        port = int(url.rsplit(":", 1)[1])
        with tcp_proxy(port) as wire:
            site = write_config(tmp_path, url=f"git://127.0.0.1:{wire.port}/fleet.git")
            loop, passes = loop_for(tmp_path, site)
            loop._tick("sync")
            assert passes.started == 1 and passes.last is not None
            assert passes.last.settled and passes.last.fetched == first, passes.last
            before = (wire.connections, wire.bytes_down)
            loop._tick("sync")  # unchanged: one ref check, no child, no pack
            assert passes.started == 1
            assert wire.connections == before[0] + 1
            assert wire.bytes_down - before[1] <= 2048, wire.bytes_down - before[1]
            assert passes.metrics.get("gitedge_polls_without_pass_total") == 1
            assert loop.failures == 0
            second = repo.commit()  # a new commit: the next poll runs a pass
            loop._tick("sync")
            assert passes.started == 2 and passes.last.fetched == second
            assert passes.last.settled


def test_unchanged_poll_over_http_with_credentials_runs_no_pass(
    tmp_path: Path, repo: FleetRepo
) -> None:
    settled_fleet(repo)
    (tmp_path / "user").write_text("site\n")
    (tmp_path / "password").write_text("s3cret\n")
    auth = f", auth: {{usernameFile: {tmp_path / 'user'}, passwordFile: {tmp_path / 'password'}}}"
    with http_git_server(tmp_path / "served", credentials=("site", "s3cret")) as srv:
        site = write_config(tmp_path, url=f"{srv.url}/fleet.git", auth=auth)
        loop, passes = loop_for(tmp_path, site)
        loop._tick("sync")
        assert passes.started == 1 and passes.last is not None and passes.last.settled
        seen = len(srv.requests_seen)
        loop._tick("sync")
        assert passes.started == 1
        new = srv.requests_seen[seen:]
        authorized = [r for r in new if "Authorization" in r[2]]
        # the advertisement and one ls-refs command, authorized from the files
        assert [(m, p.split("?")[0]) for m, p, _ in authorized] == [
            ("GET", "/fleet.git/info/refs"),
            ("POST", "/fleet.git/git-upload-pack"),
        ]
        assert all(r[2].get("Git-Protocol") == "version=2" for r in authorized)


def test_a_pass_that_left_work_runs_again_at_each_poll(tmp_path: Path, repo: FleetRepo) -> None:
    """The branch is unchanged, but the last pass could not mirror (the registry is down):
    every poll runs a pass, the ref check is not even made."""
    repo.commit(
        fleet_files(registry="127.0.0.1:1", releases=["v1.27.16+k3s1", "v1.28.15+k3s1"],
                    k3s="v1.28.15+k3s1", os_image=None),
        at=START,
    )  # fmt: skip
    with git_daemon(tmp_path / "served") as url:
        port = int(url.rsplit(":", 1)[1])
        with tcp_proxy(port) as wire:
            site = write_config(tmp_path, url=f"git://127.0.0.1:{wire.port}/fleet.git")
            loop, passes = loop_for(tmp_path, site)
            loop._tick("sync")
            assert passes.last is not None and not passes.last.settled
            loop._tick("sync")
            assert passes.started == 2


def test_a_full_pass_is_due_after_full_every_s(tmp_path: Path, repo: FleetRepo) -> None:
    settled_fleet(repo)
    with git_daemon(tmp_path / "served") as url:
        site = write_config(tmp_path, url=f"{url}/fleet.git")
        loop, passes = loop_for(tmp_path, site, full_every_s=0.0)
        loop._tick("sync")
        loop._tick("sync")
        assert passes.started == 2 and passes.last is not None and passes.last.settled


def test_remote_tip_reads_the_branch_and_fails_soft(tmp_path: Path, repo: FleetRepo) -> None:
    head = settled_fleet(repo)
    with git_daemon(tmp_path / "served") as url:
        assert remote_tip(url=f"{url}/fleet.git", branch="main") == head
        assert remote_tip(url=f"{url}/fleet.git", branch="nope") is None
        assert remote_tip(url=f"{url}/absent.git", branch="main") is None
    assert remote_tip(url="git://127.0.0.1:1/fleet.git", branch="main", timeout_s=5) is None


# ---------------------------------------------------------------------------- pure rules

SETTLED = LastPass(fetched="a" * 40, settled=True, age_s=10.0)


def test_when_a_pass_is_still_needed() -> None:
    assert pass_due(last=None, bundles_pending=False) == "no pass has run yet"
    unsettled = LastPass(fetched="a" * 40, settled=False, age_s=1.0)
    assert pass_due(last=unsettled, bundles_pending=False) == "the last pass left work to do"
    no_fetch = LastPass(fetched=None, settled=True, age_s=1.0)
    assert pass_due(last=no_fetch, bundles_pending=False) is not None
    assert pass_due(last=SETTLED, bundles_pending=True) == "a bundle is waiting"
    assert pass_due(last=SETTLED, bundles_pending=False, full_every_s=10.0) is not None
    assert pass_due(last=SETTLED, bundles_pending=False, full_every_s=11.0) is None
    assert poll_needs_pass(last=SETTLED, remote_tip=None, due=None) == "the ref check failed"
    assert poll_needs_pass(last=SETTLED, remote_tip="b" * 40, due=None) is not None
    assert poll_needs_pass(last=SETTLED, remote_tip="a" * 40, due=None) is None
    assert poll_needs_pass(last=SETTLED, remote_tip="a" * 40, due="x") == "x"


@given(interval=st.floats(10, 86_400), u=st.floats(0, 1, exclude_max=True))
def test_online_polls_spread_within_ten_percent(interval: float, u: float) -> None:
    d = next_delay(interval_s=interval, failures=0, u=u)
    assert 0.9 * interval - 1e-6 <= d <= 1.1 * interval + 1e-6


@given(
    interval=st.floats(10, 86_400),
    failures=st.integers(1, 10_000),
    u=st.floats(0, 1, exclude_max=True),
)
def test_backoff_is_exponential_with_full_jitter(interval: float, failures: int, u: float) -> None:
    cap = max(BACKOFF_CAP_S, interval)
    ceiling = min(cap, BACKOFF_BASE_S * 2.0 ** min(failures - 1, 30))
    d = next_delay(interval_s=interval, failures=failures, u=u)
    assert 1.0 <= d <= ceiling
    assert d == max(1.0, ceiling * u)  # full jitter: uniform over [0, the backoff]
    assert next_delay(interval_s=interval, failures=failures + 1, u=u) >= d  # never shrinks


@given(failures=st.integers(1, 60), a=st.floats(0, 1, exclude_max=True))
def test_full_jitter_uses_the_whole_backoff(failures: int, a: float) -> None:
    """Two sites with the same failure count but other random numbers land apart in
    proportion: the lower half of the backoff is used as much as the upper half."""
    ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0 ** (failures - 1))
    low = next_delay(interval_s=300, failures=failures, u=a / 2)
    high = next_delay(interval_s=300, failures=failures, u=0.5 + a / 2)
    assert high - low == pytest.approx(ceiling / 2, abs=1.0)


def test_remote_tip_over_ssh_with_key_known_hosts_and_user_file(
    tmp_path: Path, repo: FleetRepo
) -> None:
    head = settled_fleet(repo)
    with sshd_server(tmp_path / "sshd") as ssh:
        (tmp_path / "user").write_text(ssh.user + "\n")
        url = ssh.url(repo.path).replace(f"{ssh.user}@", "")
        auth = {"ssh_key_file": str(ssh.key_file), "known_hosts_file": str(ssh.known_hosts_file)}
        assert (
            remote_tip(url=url, branch="main", username_file=str(tmp_path / "user"), **auth) == head
        )
        (tmp_path / "wrong_known_hosts").write_text("")
        auth["known_hosts_file"] = str(tmp_path / "wrong_known_hosts")
        assert (
            remote_tip(url=url, branch="main", username_file=str(tmp_path / "user"), **auth) is None
        )


def test_a_refused_commit_is_not_verified_again_until_the_branch_moves(
    tmp_path: Path, repo: FleetRepo
) -> None:
    good = settled_fleet(repo)
    with git_daemon(tmp_path / "served") as url:
        site = write_config(tmp_path, url=f"{url}/fleet.git")
        loop, passes = loop_for(tmp_path, site)
        loop._tick("sync")
        unsigned = repo.commit(signed=False)
        loop._tick("sync")
        assert passes.started == 2
        assert passes.last is not None and passes.last.outcomes["verify"] == "stalled"
        assert passes.last.tip == good and passes.last.fetched == unsigned
        assert passes.last.settled
        loop._tick("sync")  # the same refused tip: no pass, no backoff
        assert passes.started == 2 and loop.failures == 0
        fixed = repo.commit(
            parent=pygit2.Oid(hex=good)
        )  # the branch moves (a signed commit replaces it)
        loop._tick("sync")
        assert passes.started == 3 and passes.last.tip == fixed
