"""The agent end to end: a real ``git daemon``, real ``docker-registry`` upstream and cache on
127.0.0.1, commits signed in process (byte-compatible with ``ssh-keygen -Y sign``) with a key made
by ssh-keygen. Covers: first sync; 400 simulated days offline while hundreds of commits and three
K3s minors pile up upstream, then one pass verifies the whole range and mirrors every image of
the path before printing the first step's Plans; an unsigned commit and a force-pushed older
history refused with the last verified commit kept; the untrusted clock; status free of secrets.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gitedge.adapters.registry.client import RegistryClient
from gitedge.agent.reconcile import Agent, Pass, PrintCluster
from gitedge.core.config import AgentConfig, load_site_file
from tests.agentkit import DAY, START, FleetRepo, Relay, fleet_files, push_image, relay
from tests.gitserver import git_daemon
from tests.registryserver import RegistryServer, docker_registry, skopeo_raw
from tests.sigtools import allowed_signers_line, make_ssh_key

OLD = ["v1.27.16+k3s1"]
NEW = ["v1.27.16+k3s1", "v1.28.15+k3s1", "v1.29.10+k3s1", "v1.30.6+k3s1"]


def at(days: float, hour: int = 2) -> datetime:
    """A simulated instant: ``days`` after 2026-01-01, at ``hour`` UTC (02:00: in the window)."""
    return datetime.fromtimestamp(START, UTC) + timedelta(days=days, hours=hour)


@dataclass
class Site:
    tmp: Path
    fleet: FleetRepo
    git: Relay
    upstream: RegistryServer
    up: Relay
    cache: RegistryServer
    config_path: Path
    printed: list[str]

    @property
    def registry(self) -> str:
        return f"127.0.0.1:{self.up.port}"

    @property
    def kubectl(self) -> str:
        """SUC's kubectl image (issue 15) as the AgentConfig names it: via the upstream relay."""
        return f"{self.registry}/rancher/kubectl:v1.30.3"

    def agent(self) -> Agent:
        site = load_site_file(self.config_path.read_bytes(), path=str(self.config_path))
        assert isinstance(site, AgentConfig)
        return Agent(site, cluster=PrintCluster(config=site, out=self.printed.append))

    def run(self, when: datetime) -> Pass:
        agent = self.agent()
        try:
            return agent.reconcile(now=when)
        finally:
            agent.close()


def write_config(
    tmp: Path, *, git_port: int, cache: str, k3s: str = "v1.27.16+k3s1", kubectl: str = ""
) -> Path:
    cfg = tmp / "agent.yaml"
    secret = tmp / "registry-password"
    secret.write_text("hunter2-very-secret\n")
    (tmp / "registry-user").write_text("site\n")
    cfg.write_text(
        "apiVersion: gitedge.io/v1alpha1\nkind: AgentConfig\n"
        "cluster:\n  name: store-0042\n  labels: {env: prod}\n"
        f"  status: {{k3sVersion: {k3s}, arches: [amd64]}}\n"
        f"source: {{url: 'git://127.0.0.1:{git_port}/fleet.git', branch: main, interval: 10m}}\n"
        f"trust: {{bootstrap: {tmp / 'allowed_signers'}}}\n"
        f"registry:\n  cache: {{url: 'http://{cache}'}}\n"
        f"  upstreamAuth:\n    elsewhere.example:\n      usernameFile: {tmp / 'registry-user'}\n"
        f"      passwordFile: {secret}\n"
        f"apply: {{mode: print, kubectlImage: '{kubectl}'}}\nstate: {{dir: {tmp / 'state'}}}\n"
    )
    return cfg


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    key = make_ssh_key(tmp_path / "keys", "ed25519", comment="release@fleet.example")
    (tmp_path / "allowed_signers").write_text(
        allowed_signers_line("release@fleet.example", key) + "\n"
    )
    served = tmp_path / "served"
    fleet = FleetRepo(served / "fleet.git", key)
    with (
        docker_registry(tmp_path / "upstream") as upstream,
        docker_registry(tmp_path / "cache") as cache,
        relay(upstream.port) as up,
        git_daemon(served) as url,
        relay(int(url.rsplit(":", 1)[1])) as git,
    ):
        # SUC's kubectl image (issue 15), on the upstream as the Jobs' other images are
        push_image(tmp_path, f"{upstream.host}/rancher/kubectl:v1.30.3")
        kubectl = f"127.0.0.1:{up.port}/rancher/kubectl:v1.30.3"
        cfg = write_config(tmp_path, git_port=git.port, cache=cache.host, kubectl=kubectl)
        s = Site(tmp_path, fleet, git, upstream, up, cache, cfg, [])
        yield s


def upstream_image(s: Site, repo_tag: str) -> str:
    """Push an image straight to the upstream registry (the operators' side of the link)."""
    img = push_image(s.tmp, f"{s.upstream.host}/{repo_tag}")
    return img.digest


def first_sync(s: Site) -> Pass:
    upstream_image(s, "edge/os:1.0")
    s.fleet.commit(
        fleet_files(
            registry=s.registry, releases=OLD, k3s=OLD[0], os_image=f"{s.registry}/edge/os:1.0"
        ),
        at=START,
    )
    return s.run(at(0, hour=12))


def conditions(p: Pass) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in p.conditions}


def test_first_sync_verifies_mirrors_and_reports(site: Site) -> None:
    p = first_sync(site)
    assert p.outcomes == {k: "ok" for k in ("sync", "verify", "clock", "plan", "mirror", "apply")}
    assert p.tip == str(site.fleet.head)
    c = conditions(p)
    assert c["SourceVerified"] == ("True", "Verified")
    assert c["Mirrored"][0] == "True"
    # outside the window (12:00 UTC) the OS step waits: nothing printed, Ready False
    assert c["WindowClosed"] == ("True", "OutsideWindow")
    assert c["Ready"][0] == "False"
    assert site.printed == []
    key = f"{site.registry}/edge/os:1.0"
    digest = next(i["digest"] for i in p.status["mirror"]["images"] if i["image"] == key)
    assert digest and json.loads(skopeo_raw(f"{site.cache.host}/edge/os@{digest}"))
    text = json.dumps(p.status)
    assert "hunter2" not in text and "registry-password" not in text


def test_offline_400_days_then_one_pass_catches_up(site: Site) -> None:
    first_sync(site)
    first_tip = str(site.fleet.head)
    # the uplink goes down and the git server stops; the fleet moves on for 400 days
    site.git.online = False
    site.up.online = False
    commits = 0
    for day in range(1, 400):
        if day % 100 == 0:  # a new K3s minor arrives every 100 days, its image upstream
            minor = NEW[day // 100]
            upstream_image(site, f"rancher/k3s-upgrade:{minor.replace('+', '-')}")
            releases = NEW[: day // 100 + 1]
            site.fleet.commit(
                fleet_files(
                    registry=site.registry,
                    releases=releases,
                    k3s=releases[-1],
                    os_image=f"{site.registry}/edge/os:1.0",
                ),
                at=START + day * DAY,
            )
        else:
            site.fleet.commit(at=START + day * DAY)
        commits += 1
    # a pass while offline: sync fails soft, the site keeps working from its last verified commit
    offline = site.run(at(200))
    assert offline.outcomes["sync"] == "retry"
    assert offline.outcomes["verify"] == "ok" and offline.tip == first_tip
    assert offline.outcomes["apply"] == "ok"
    assert conditions(offline)["SourceReachable"][0] == "False"
    # reconnect on day 400, inside the window: one pass does it all
    site.git.online = True
    site.up.online = True
    p = site.run(at(400))
    assert p.outcomes["sync"] == "ok" and p.outcomes["verify"] == "ok", p.errors
    assert p.new_commits == commits and p.tip == str(site.fleet.head)
    assert p.plan is not None and p.plan.k3s is not None
    assert list(p.plan.k3s.path) == NEW[1:]
    keys = [n.key for n in p.needed]
    k3s_keys = [f"{site.registry}/rancher/k3s-upgrade:{v.replace('+', '-')}" for v in NEW[1:]]
    kubectl = f"{site.registry}/rancher/kubectl:v1.30.3"  # SUC's Jobs' (issue 15)
    assert keys == [*k3s_keys, f"{site.registry}/edge/os:1.0", kubectl]  # OS, kubectl: day 0
    assert p.mirror_complete and [k for k, _, _ in p.mirrored_now] == k3s_keys
    client = RegistryClient(host=site.cache.host)
    try:
        for _, digest, _ in p.mirrored_now:
            assert client.manifest_digest("rancher/k3s-upgrade", digest, what="t") == digest
    finally:
        client.close()
    # the first step only, pinned by digest in the cache
    names = [a.name for a in p.actions]
    assert names == ["gitedge-k3s-server", "gitedge-k3s-agent"]
    first = p.mirrored_now[0][1]
    image = p.actions[0].manifest["spec"]["upgrade"]["image"]  # type: ignore[index]
    assert image == f"{site.cache.host}/rancher/k3s-upgrade@{first}"
    assert any("v1.28.15+k3s1" in out for out in site.printed)


def test_unsigned_commit_and_rollback_are_refused_last_verified_kept(site: Site) -> None:
    first_sync(site)
    good = str(site.fleet.head)
    second = site.fleet.commit(at=START + DAY)
    p = site.run(at(1, hour=12))
    assert p.tip == second
    # an unsigned commit on top: refused, the site stays on `second`
    bad = site.fleet.commit(at=START + 2 * DAY, signed=False)
    p = site.run(at(2, hour=12))
    assert p.outcomes["verify"] == "stalled"
    assert conditions(p)["SourceVerified"] == ("False", "VerificationFailed")
    assert bad in p.errors["verify"] and "unsigned" in p.errors["verify"]
    assert p.tip == second and p.outcomes["plan"] == "ok"  # still working from `second`
    agent = site.agent()
    try:
        last = agent.state.last_verified
        assert last is not None and last.commit == second
    finally:
        agent.close()
    # history force-pushed back to an older commit: RollbackRefused, `second` kept
    site.fleet.set_main(good)
    p = site.run(at(3, hour=12))
    assert p.outcomes["verify"] == "stalled"
    c = conditions(p)
    assert c["RollbackRefused"] == ("True", "RollbackRefused")
    assert c["Ready"] == ("False", "RollbackRefused")
    assert p.tip == second
    # a rewritten history (a signed fork of the old commit) is refused just the same
    site.fleet.commit(at=START + 4 * DAY, parent=site.fleet.head)
    p = site.run(at(4, hour=12))
    assert conditions(p)["RollbackRefused"][0] == "True" and p.tip == second


def test_clock_behind_newest_commit_closes_every_window(site: Site) -> None:
    first_sync(site)
    p = site.run(at(-30))  # the RTC reads a month before the commit it verified
    c = conditions(p)
    assert c["ClockUntrusted"] == ("True", "ClockUntrusted")
    assert c["Ready"] == ("False", "ClockUntrusted")
    assert p.actions == []


def test_print_mode_prints_each_plan_once_until_the_fleet_changes_it(site: Site) -> None:
    """Each pass is its own Agent (as each pass of ``gitedge run`` is its own process): what was
    printed is remembered in the state, and only a changed Plan is printed again."""
    first_sync(site)  # 12:00: outside the window, nothing printed
    upstream_image(site, "edge/os:2.0")
    p = site.run(at(1))
    assert [(a.verb, a.name) for a in p.actions] == [
        ("create", "gitedge-os-server"),
        ("create", "gitedge-os-agent"),
    ]
    assert "once gitedge-os-server is complete" in p.actions[1].reason
    assert len(site.printed) == 2 and "edge/os" in site.printed[0]
    again = site.run(at(1, hour=3))
    # still what it would apply
    assert [a.name for a in again.actions] == ["gitedge-os-server", "gitedge-os-agent"]
    assert len(site.printed) == 2  # the same Plans: not printed again
    site.fleet.commit(
        fleet_files(
            registry=site.registry,
            releases=OLD,
            k3s=OLD[0],
            os_image=f"{site.registry}/edge/os:2.0",
        ),
        at=START + DAY,
    )
    changed = site.run(at(1, hour=4))
    assert [a.name for a in changed.actions] == ["gitedge-os-server", "gitedge-os-agent"]
    assert len(site.printed) == 4 and "edge/os" in site.printed[2]
    assert site.printed[2] != site.printed[0]
