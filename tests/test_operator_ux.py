"""Operator experience (issue 18), from the user's side: the command, what it prints, its exit
code. Each test names the numbered item of the issue it shows."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.agentkit import START, FleetRepo, trust_yaml
from tests.sigtools import SshKey, make_ssh_key

ROOT = Path(__file__).resolve().parent.parent
REPO = ROOT / "examples" / "fleet-repo"


def gitedge(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gitedge", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def example_copy(tmp_path: Path) -> Path:
    repo = tmp_path / "fleet"
    shutil.copytree(REPO, repo)
    return repo


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (old, path)
    path.write_text(text.replace(old, new, 1))


def test_item2_dependents_of_a_broken_resource_point_at_it_and_come_after(tmp_path: Path) -> None:
    repo = example_copy(tmp_path)
    edit(repo / "windows.yaml", "Europe/Berlin", "Europe/Berlinn")
    edit(repo / "groups.yaml", "operator: DoesNotExist", "operator: doesNotExist")
    edit(repo / "releases.yaml", "v1.27.16+k3s1", "v1.27.16-k3s1x")
    r = gitedge("validate", str(repo))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = r.stdout.splitlines()
    causes = [i for i, line in enumerate(lines) if "is invalid itself" not in line]
    dependents = [i for i, line in enumerate(lines) if "is invalid itself" in line]
    assert len(causes) == 3 and dependents, lines
    assert max(causes) < min(dependents), "the causes are printed first"
    assert "windows.yaml:10: MaintenanceWindow/store-nights: spec.timeZone" in lines[2]
    text = r.stdout
    assert f"window 'store-nights' is invalid itself (see {repo}/windows.yaml:" in text
    assert f"clusterGroup 'wind-farms' is invalid itself (see {repo}/groups.yaml:" in text
    assert f"K3sReleases catalog is invalid itself (see {repo}/releases.yaml:" in text
    assert "is not a MaintenanceWindow" not in text and "has no K3sReleases" not in text


def test_item2_a_reference_to_nothing_says_what_to_define(tmp_path: Path) -> None:
    repo = example_copy(tmp_path)
    edit(repo / "targets" / "stores.yaml", "window: store-nights", "window: store-night")
    r = gitedge("validate", str(repo))
    assert r.returncode == 1
    assert (
        "window 'store-night' is not a MaintenanceWindow in this repo; define it "
        "(kind: MaintenanceWindow, metadata.name: store-night) or correct the name"
    ) in r.stdout


def test_item6_an_empty_or_wrong_directory_is_not_ok(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "notes.yaml").write_text("just: a mapping\n")
    (wrong / "README.md").write_text("hello\n")
    r = gitedge("validate", str(empty))
    assert r.returncode == 1, r.stdout
    assert f"{empty}: no fleet document found" in r.stdout
    assert "give the fleet repo's root directory" in r.stdout and "ok (" not in r.stdout
    r = gitedge("validate", str(wrong))
    assert r.returncode == 1 and "ok (" not in r.stdout
    # a repo holding only its TrustPolicy is a legitimate start
    trust_only = tmp_path / "trust-only"
    (trust_only / ".gitedge").mkdir(parents=True)
    key = make_ssh_key(tmp_path / "keys", "ed25519", comment="release@fleet.example")
    (trust_only / ".gitedge" / "trust.yaml").write_text(trust_yaml(key))
    r = gitedge("validate", str(trust_only))
    assert r.returncode == 0, r.stdout
    assert "ok (0 targets" in r.stdout


def test_item6_a_target_version_missing_from_the_catalog_is_a_problem(tmp_path: Path) -> None:
    repo = example_copy(tmp_path)
    edit(repo / "targets" / "baseline.yaml", "v1.29.10+k3s1", "v1.29.11+k3s1")
    r = gitedge("validate", str(repo))
    assert r.returncode == 1
    assert (
        f"{repo}/targets/baseline.yaml:11: UpgradeTarget/fleet-baseline: k3s version "
        f"v1.29.11+k3s1 is not in the K3sReleases catalog ({repo}/releases.yaml:4); add it"
    ) in r.stdout


def test_item3_a_number_where_a_version_belongs_and_a_tab_get_their_hints(tmp_path: Path) -> None:
    repo = example_copy(tmp_path)
    edit(repo / "targets" / "baseline.yaml", "version: v1.29.10+k3s1", "version: 1.31")
    edit(repo / "releases.yaml", "{version: v1.27.16+k3s1,", "{version: 1.30,")
    (repo / "tab.yaml").write_text(
        "apiVersion: gitedge.io/v1alpha1\nkind: ClusterGroup\nmetadata:\n\tname: x\n"
    )
    r = gitedge("validate", str(repo))
    assert r.returncode == 1
    hint = 'a K3s version is a full release in quotes, e.g. "v1.31.2+k3s1"'
    assert "baseline.yaml:11: UpgradeTarget/fleet-baseline: spec.k3s.version: " in r.stdout
    assert f"YAML read 1.31 as a number: {hint}" in r.stdout
    assert "releases.yaml:12: K3sReleases/k3s-catalog: spec.releases[0].version: " in r.stdout
    assert f"YAML read 1.30 as a number: {hint}" in r.stdout  # as written, not 1.3
    assert (
        "tab.yaml:4: YAML syntax error: found character that cannot start any token (a tab at "
        "column 1: YAML indents with spaces only; replace the tab with spaces)"
    ) in r.stdout


def agent_config(tmp_path: Path, *, source: str, cache: str = "http://127.0.0.1:1") -> Path:
    """An AgentConfig of a site that prints its Plans, trust pinned to a fresh key."""
    key = make_ssh_key(tmp_path / "keys", "ed25519", comment="release@fleet.example")
    (tmp_path / "trust.yaml").write_text(trust_yaml(key))
    path = tmp_path / "agent.yaml"
    path.write_text(
        "apiVersion: gitedge.io/v1alpha1\nkind: AgentConfig\n"
        "cluster: {name: site-1, status: {k3sVersion: v1.28.9+k3s1}}\n"
        f"source: {{url: {source!r}}}\ntrust: {{bootstrap: {str(tmp_path / 'trust.yaml')!r}}}\n"
        f"registry: {{cache: {{url: {cache!r}}}}}\n"
        f"state: {{dir: {str(tmp_path / 'state')!r}}}\napply: {{mode: print}}\n"
    )
    return path


def test_item4_a_refused_connection_says_why_and_which_side(tmp_path: Path) -> None:
    r = gitedge("mirror", "127.0.0.1:1/edge/os:1.0", f"oci:{tmp_path}/out")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "registry 127.0.0.1:1 still failing after 5 attempt(s): connection refused: " in (
        r.stderr
    )
    assert "nothing listens there (is the registry running, the port right?)" in r.stderr
    assert "HTTPConnectionPool" not in r.stderr and "…" not in r.stderr
    # with a config, the cache is named as the cache, any other host as upstream
    config = agent_config(tmp_path, source=str(tmp_path / "fleet.git"))
    r = gitedge("mirror", "127.0.0.1:1/edge/os:1.0", f"oci:{tmp_path}/o", "--config", str(config))
    assert "the site's cache registry 127.0.0.1:1 still failing" in r.stderr, r.stderr
    r = gitedge("mirror", "127.0.0.1:2/edge/os:1.0", f"oci:{tmp_path}/o", "--config", str(config))
    assert "upstream registry 127.0.0.1:2 still failing" in r.stderr, r.stderr


def test_item4_a_missing_local_source_says_so_with_or_without_file_scheme(tmp_path: Path) -> None:
    missing = tmp_path / "nope.git"
    for url in (str(missing), f"file://{missing}"):
        config = agent_config(tmp_path, source=url)
        r = gitedge("run", "--once", "--config", str(config), "--log-format", "json")
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert f"sync: fetch of branch 'main' from {url} failed: {missing} does not exist" in (
            r.stderr
        )
        assert "unsupported URL protocol" not in r.stderr


def test_item7_skopeo_docker_transport_is_accepted_and_other_schemes_get_a_hint(
    tmp_path: Path,
) -> None:
    r = gitedge("mirror", "docker://127.0.0.1:1/edge/os:1.0", f"oci:{tmp_path}/out")
    assert r.returncode == 1 and "bad registry host" not in r.stderr
    assert "gitedge mirror: 127.0.0.1:1/edge/os:1.0: registry 127.0.0.1:1" in r.stderr
    r = gitedge("mirror", "https://127.0.0.1:1/edge/os:1.0", f"oci:{tmp_path}/out")
    assert r.returncode == 2, r.stderr
    assert "write it without a scheme: host[:port]/repository[:tag]" in r.stderr


def _signed_history(tmp_path: Path) -> tuple[FleetRepo, SshKey, SshKey, str]:
    """A fleet repo whose trust rotated from ``old`` (the install-time bootstrap) to ``new``;
    the tip, signed by ``new``, is what the site verified last."""
    old = make_ssh_key(tmp_path / "old", "ed25519", comment="old@fleet.example")
    new = make_ssh_key(tmp_path / "new", "ed25519", comment="new@fleet.example")
    fleet = FleetRepo(tmp_path / "fleet.git", old)
    fleet.commit(at=START)
    fleet.commit({".gitedge/trust.yaml": trust_yaml(new)}, at=START + 60)  # old retires itself
    fleet.key = new
    tip = fleet.commit(at=START + 120)
    return fleet, old, new, tip


def _site(tmp_path: Path, fleet: FleetRepo, bootstrap: SshKey) -> Path:
    config = agent_config(tmp_path / "site", source=f"file://{fleet.path}")
    (tmp_path / "site" / "trust.yaml").write_text(trust_yaml(bootstrap))  # install-time trust
    return config


def _status(config: Path) -> str:
    r = gitedge("status", "--config", str(config))
    assert r.returncode == 0, r.stderr
    return r.stdout


NOW = "2026-12-01T12:00:00Z"


def test_item5_rollback_refused_says_what_to_do_once(tmp_path: Path) -> None:
    fleet, old, new, tip = _signed_history(tmp_path)
    config = _site(tmp_path, fleet, old)
    r = gitedge("run", "--once", "--now", NOW, "--config", str(config), "--log-format", "json")
    assert r.returncode == 0, r.stderr
    fleet.key = new
    rewritten = fleet.commit(at=START + 180, parent=None)  # a new root: history rewritten
    r = gitedge("run", "--once", "--now", NOW, "--config", str(config), "--log-format", "json")
    assert r.returncode == 1
    text = _status(config)
    assert "RollbackRefused: RollbackRefused" not in text
    line = next(x for x in text.splitlines() if x.split()[:2] == ["RollbackRefused", "True"])
    assert line.count("RollbackRefused") == 2 and line.count("does not descend") == 1, line
    assert f"{rewritten} does not descend from the last verified commit {tip}" in text
    assert f"commit a signed revert on top of {tip}" in text
    assert f"gitedge accept-history --config FILE --commit {rewritten}" in text
    r = gitedge("verify", "--repo", str(fleet.path), "--trust", str(tmp_path / "site/trust.yaml"),
                "--since", tip, "--rev", rewritten)  # fmt: skip
    assert r.returncode == 1 and r.stderr.count("RollbackRefused") == 1, r.stderr


def _refused_then_recovery(
    tmp_path: Path, rewrite: Callable[[FleetRepo, SshKey], str]
) -> tuple[Path, str, str, subprocess.CompletedProcess[str]]:
    fleet, old, _new, tip = _signed_history(tmp_path)
    config = _site(tmp_path, fleet, old)
    assert gitedge("run", "--once", "--now", NOW, "--config", str(config)).returncode == 0
    rewritten = rewrite(fleet, old)
    assert gitedge("run", "--once", "--now", NOW, "--config", str(config)).returncode == 1
    r = gitedge("accept-history", "--config", str(config), "--commit", rewritten)
    return config, tip, rewritten, r


def test_item5_recovery_refuses_a_history_signed_by_a_key_retired_before_the_last_verified(
    tmp_path: Path,
) -> None:
    def by_the_retired_key(fleet: FleetRepo, old: SshKey) -> str:
        fleet.key = old  # the install-time bootstrap would accept this history whole
        fleet.commit({".gitedge/trust.yaml": trust_yaml(old)}, at=START + 200, parent=None)
        return fleet.commit(at=START + 260)

    config, tip, _rewritten, r = _refused_then_recovery(tmp_path, by_the_retired_key)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "gitedge accept-history: commit " in r.stderr
    assert "unknown-key" in r.stderr or "not-admin" in r.stderr, r.stderr
    assert f"last verified commit: {tip} " in _status(config)
    r = gitedge("run", "--once", "--now", NOW, "--config", str(config))
    assert r.returncode == 1  # still refused: nothing moved


def test_item5_recovery_refuses_an_unsigned_commit(tmp_path: Path) -> None:
    def with_an_unsigned_commit(fleet: FleetRepo, old: SshKey) -> str:
        fleet.commit(at=START + 200, parent=None)  # signed by the key in force
        return fleet.commit(at=START + 260, signed=False)

    config, _tip, _rewritten, r = _refused_then_recovery(tmp_path, with_an_unsigned_commit)
    assert r.returncode == 1 and "unsigned" in r.stderr and "Traceback" not in r.stderr
    r = gitedge("run", "--once", "--now", NOW, "--config", str(config))
    assert r.returncode == 1


def test_item5_recovery_accepts_a_rewrite_signed_under_the_trust_in_force(tmp_path: Path) -> None:
    def signed_by_the_key_in_force(fleet: FleetRepo, old: SshKey) -> str:
        fleet.commit(at=START + 200, parent=None)
        return fleet.commit(at=START + 260)

    config, tip, rewritten, r = _refused_then_recovery(tmp_path, signed_by_the_key_in_force)
    assert r.returncode == 0, r.stderr
    assert f"accepted {rewritten}: 2 commit(s) verified from the root against the trust in " in (
        r.stdout
    )
    assert f"force at {tip}" in r.stdout
    r = gitedge("run", "--once", "--now", NOW, "--config", str(config))
    assert r.returncode == 0, r.stderr
    assert "SourceVerified" in _status(config) and rewritten in _status(config)
    # a wrong or short id is refused, not guessed
    r = gitedge("accept-history", "--config", str(config), "--commit", rewritten[:12])
    assert r.returncode == 2 and "give its full id" in r.stderr


def test_item8_readyz_is_the_agent_able_to_work_not_the_ready_condition(tmp_path: Path) -> None:
    from tests.test_agent_process import RunningAgent

    # an offline site (nothing listens at its source): Ready=False, and the agent is fine
    config = agent_config(tmp_path, source="git://127.0.0.1:1/fleet.git")
    agent = RunningAgent(config)
    try:
        agent.wait_log(lambda x: x.startswith("pass 1 (sync) done"))
        code, why = agent.get("/readyz")
        assert code == 200, why
        assert why.startswith("last pass finished (sync retry, verify retry"), why
        status = gitedge("status", "--config", str(config), "-o", "json")
        ready = [c for c in json.loads(status.stdout)["conditions"] if c["type"] == "Ready"]
        assert ready[0]["status"] == "False"
        # the state gone from under it: the agent cannot do its job (the next pass is an
        # interval away, backed off: nothing writes the state meanwhile)
        state = tmp_path / "state"
        state.rename(tmp_path / "state-moved")
        code, why = agent.get("/readyz")
        assert code == 503 and "state.sqlite3 cannot be read and written" in why, why
        (tmp_path / "state-moved").rename(state)
        assert agent.get("/readyz")[0] == 200
        assert agent.terminate() == 0
    finally:
        agent.close()


def test_item9_status_after_a_bundle_import_before_any_pass(tmp_path: Path) -> None:
    import yaml

    # sibling: `demo --keep` with a relative directory (it failed: the key path was relative)
    r = subprocess.run([sys.executable, "-m", "gitedge", "demo", "--keep", "demo"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:]
    demo, stick = tmp_path / "demo", tmp_path / "stick.tar"
    r = gitedge("bundle", "create", "--repo", str(demo / "fleet"), "--rev", "HEAD~1", "--all",
                "--layouts", str(demo / "upstream"), "--out", str(stick), "-q")  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = yaml.safe_load((demo / "site" / "agent.yaml").read_text())
    doc["state"]["dir"] = str(tmp_path / "state")
    doc["source"] = {"url": str(tmp_path / "no-repo"), "branch": "main"}
    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump(doc))
    r = gitedge("bundle", "import", str(stick), "--config", str(config))
    assert r.returncode == 0, r.stderr
    tip = r.stdout.split(" now at ", 1)[1].split(";", 1)[0]
    r = gitedge("status", "--config", str(config))
    assert r.returncode == 0, r.stderr
    assert "has not finished a pass" not in r.stdout + r.stderr
    assert r.stdout.startswith("no agent pass yet (plan, windows and conditions come with")
    assert f"last verified commit: {tip} (committed " in r.stdout
    # two K3s steps, the OS, and SUC's kubectl (the demo's upstream holds it; its Jobs run it)
    assert "mirror: 4 images verified in the cache" in r.stdout
    assert "  docker.io/rancher/kubectl:v1.30.3  sha256:" in r.stdout
    for fmt, load in (("json", json.loads), ("yaml", yaml.safe_load)):
        r = gitedge("status", "--config", str(config), "-o", fmt)
        assert r.returncode == 0, r.stderr
        got = load(r.stdout)
        assert got["passes"] == 0 and got["lastVerified"]["commit"] == tip
        assert len(got["mirrored"]) == 4
        assert "docker.io/rancher/kubectl:v1.30.3" in {m["image"] for m in got["mirrored"]}


def test_item10_the_demo_tells_its_offline_scenes_and_status_is_whole(tmp_path: Path) -> None:
    r = gitedge("demo", "--keep", str(tmp_path / "demo"))
    assert r.returncode == 0, r.stdout[-2000:]
    out = r.stdout + r.stderr
    assert "unsupported URL protocol" not in out
    scenes = out.split("\n[")
    offline = next(s for s in scenes if ", offline:" in s.splitlines()[0])
    still = next(s for s in scenes if "still offline" in s.splitlines()[0])
    assert "steps: sync retry," in offline
    assert "steps: sync bundle," in still and "sync ok" not in still
    clock = next(x for x in out.splitlines() if "ClockUntrusted" in x)
    assert "ClockSane: the clock reads " in clock and "not before the newest verified" in clock
    config = tmp_path / "demo" / "site" / "agent.yaml"
    doc = json.loads(gitedge("status", "--config", str(config), "-o", "json").stdout)
    assert any(w and w["open"] for w in doc["windows"].values())
    assert doc["nextWindow"] == doc["time"]  # a window is open: work may start now


def test_item11_one_timestamp_format_plurals_help_schema_and_yaml(tmp_path: Path) -> None:
    import yaml

    # plurals: a repo of one window, one group, one target, one release
    repo = tmp_path / "one"
    repo.mkdir()
    head = "apiVersion: gitedge.io/v1alpha1\n"
    (repo / "f.yaml").write_text(
        f"{head}kind: K3sReleases\nmetadata: {{name: c}}\nspec: {{releases: [{{version: v1.30.6+k3s1, "
        f"digest: sha256:{'ab' * 32}}}]}}\n"
        f"---\n{head}kind: MaintenanceWindow\nmetadata: {{name: w}}\n"
        'spec: {timeZone: UTC, days: [mon], start: "01:00", end: "02:00"}\n'
        f"---\n{head}kind: ClusterGroup\nmetadata: {{name: g}}\nspec: {{selector: {{}}}}\n"
        f"---\n{head}kind: UpgradeTarget\nmetadata: {{name: t}}\nspec:\n  clusterGroup: g\n"
        "  clusterSelector: {}\n  window: w\n  k3s: {version: v1.30.6+k3s1}\n"
    )
    r = gitedge("validate", str(repo))
    assert r.returncode == 0, r.stdout
    assert r.stdout.strip() == f"{repo}: ok (1 target, 1 window, 1 group, 1 K3s release)"
    # one timestamp format: a closed window's message ends in Z, as every status time
    r = gitedge("plan", "--repo", str(REPO), "--cluster",
                str(ROOT / "examples/clusters/store-berlin-0042.yaml"),
                "--now", "2026-11-24T12:00:00Z", "-o", "yaml")  # fmt: skip
    assert r.returncode == 0, r.stderr
    plan = yaml.safe_load(r.stdout)
    assert plan and "+00:00" not in r.stdout
    # every command's --help has a description and an example; -o is documented with yaml
    for command in (["validate"], ["plan"], ["verify"], ["schema"], ["mirror"], ["run"],
                    ["status"], ["fleet", "status"], ["bundle", "create"], ["bundle", "import"],
                    ["node-config"], ["accept-history"], ["demo"]):  # fmt: skip
        r = gitedge(*command, "--help")
        assert r.returncode == 0
        usage, description = r.stdout.split("\n\n")[:2]
        assert not description.startswith(("options:", "positional")), (command, r.stdout)
        assert "\nexample:\n  gitedge " + " ".join(command) in r.stdout, (command, r.stdout)
        if "-o text|json|yaml" in usage:
            flat = " ".join(r.stdout.split())
            assert "output format (default text; json and yaml hold the same fields)" in flat
    # schema to stdout
    r = gitedge("schema", "--kind", "UpgradeTarget")
    assert r.returncode == 0 and json.loads(r.stdout)["title"] == "UpgradeTarget"
    r = gitedge("schema", "--kind", "Nope")
    assert r.returncode == 2 and "one of trustpolicy, clustergroup" in r.stderr


def test_item11_progress_on_a_narrow_terminal_is_redrawn_not_repeated(tmp_path: Path) -> None:
    """The progress line of ``bundle create`` on a 40-column terminal: each redraw fits the
    width (a longer line wraps, and ``\\r`` redraws only its last row: the rest stayed, once per
    redraw)."""
    import fcntl
    import pty
    import struct
    import termios

    r = gitedge("demo", "--keep", str(tmp_path / "demo"))
    assert r.returncode == 0, r.stdout[-2000:]
    demo = tmp_path / "demo"
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 40, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gitedge", "bundle", "create", "--repo", str(demo / "fleet"),
         "--rev", "HEAD~1", "--all", "--layouts", str(demo / "upstream"),
         "--out", str(tmp_path / "a-long-name-for-a-bundle-on-a-usb-stick.tar")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=follower,
    )  # fmt: skip
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait(120) == 0
    shown = b"".join(chunks).decode()
    draws = [x for x in shown.replace("\r\n", "\n").replace("\r", "\n").split("\n") if x.strip()]
    assert draws and all(len(x) <= 39 for x in draws), [x for x in draws if len(x) > 39]


def _trust_with_retired(current: SshKey, retired: SshKey, *, until: int) -> str:
    """``current`` signs; ``retired`` stays listed with its window closed at ``until``."""
    from datetime import UTC, datetime

    before = datetime.fromtimestamp(until, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return trust_yaml(current).replace(
        "  verify: all\n",
        f"    - name: retired\n      key: {retired.public!r}\n"
        f"      roles: [release, admin]\n      validBefore: {before!r}\n  verify: all\n",
    )


def test_item5_recovery_refuses_a_backdated_root_signed_by_a_key_whose_window_closed(
    tmp_path: Path,
) -> None:
    """The trust at the last verified commit keeps ``old`` listed with validBefore: a normal
    pass can never use it again (the branch has commits dated after it). A rewritten history
    has no parent to date against: its root, backdated into the old window and signed by the
    retired key, must not get in (nor a rotation inside it back to that key)."""
    old = make_ssh_key(tmp_path / "old", "ed25519", comment="old@fleet.example")
    new = make_ssh_key(tmp_path / "new", "ed25519", comment="new@fleet.example")
    fleet = FleetRepo(tmp_path / "fleet.git", old)
    fleet.commit(at=START)
    rotated = _trust_with_retired(new, old, until=START + 90)
    fleet.commit({".gitedge/trust.yaml": rotated}, at=START + 60)  # old signs, then retires
    fleet.key = new
    tip = fleet.commit(at=START + 120)
    config = _site(tmp_path, fleet, old)
    assert gitedge("run", "--once", "--now", NOW, "--config", str(config)).returncode == 0
    # the attacker (git server, the retired key): a new root dated inside old's window
    fleet.key = old
    fleet.commit({".gitedge/trust.yaml": trust_yaml(old)}, at=START + 30, parent=None)
    rewritten = fleet.commit(at=START + 40)
    assert gitedge("run", "--once", "--now", NOW, "--config", str(config)).returncode == 1
    r = gitedge("accept-history", "--config", str(config), "--commit", rewritten)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stdout
    assert f"last verified commit: {tip} " in _status(config)
    # the same without a rotation: the root keeps the trust file, signed by the retired key
    fleet.files[".gitedge/trust.yaml"] = rotated
    fleet.commit(at=START + 30, parent=None)
    rewritten = fleet.commit(at=START + 40)
    assert gitedge("run", "--once", "--now", NOW, "--config", str(config)).returncode == 1
    r = gitedge("accept-history", "--config", str(config), "--commit", rewritten)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stdout
    assert f"last verified commit: {tip} " in _status(config)


def test_item5_recovery_refuses_a_history_that_drops_the_trust_file(tmp_path: Path) -> None:
    """Without a trust file at the new tip, the agent's next passes would fall back to the
    install-time bootstrap (old, retired since): the retired key would sign on top of it."""

    def without_a_trust_file(fleet: FleetRepo, old: SshKey) -> str:
        del fleet.files[".gitedge/trust.yaml"]
        fleet.commit(at=START + 200, parent=None)  # signed by the key in force
        return fleet.commit(at=START + 260)

    config, tip, _rewritten, r = _refused_then_recovery(tmp_path, without_a_trust_file)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stdout
    assert ".gitedge/trust.yaml" in r.stderr, r.stderr
    assert f"last verified commit: {tip} " in _status(config)


def test_item5_recovery_does_not_overwrite_a_last_verified_commit_that_moved_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TOCTOU: the agent's pass records a newer last verified commit (it fetched again: the
    old history went on) while accept-history verifies the rewrite against the trust at the
    commit it read first. The recovery must not overwrite that record: it was not verified
    against the trust now in force."""
    from datetime import UTC, datetime

    import gitedge.agent.recovery as recovery
    from gitedge.adapters.state import LastVerified, State
    from gitedge.cli.siteconfig import agent_config as load_config
    from gitedge.errors import StateError

    fleet, _old, _new, tip = _signed_history(tmp_path)
    config = _site(tmp_path, fleet, _old)
    assert gitedge("run", "--once", "--now", NOW, "--config", str(config)).returncode == 0
    fleet.commit(at=START + 200, parent=None)
    rewritten = fleet.commit(at=START + 260)
    assert gitedge("run", "--once", "--now", NOW, "--config", str(config)).returncode == 1
    state_dir = tmp_path / "site" / "state"
    moved = LastVerified(
        commit="f" * 40,
        committed_at=datetime(2026, 11, 30, tzinfo=UTC),
        verified_at=datetime(2026, 12, 1, tzinfo=UTC),
        policy_source="agent pass",
        policy_digest="sha256:" + "e" * 64,
    )
    real = recovery.verify_range

    def verify_while_the_agent_moves_on(*args: object, **kwargs: object) -> object:
        decision = real(*args, **kwargs)  # type: ignore[arg-type]
        other = State(state_dir)  # the agent's own connection, its pass done meanwhile
        other.record_verified(moved)
        other.close()
        return decision

    monkeypatch.setattr(recovery, "verify_range", verify_while_the_agent_moves_on)
    site = load_config(str(config))
    with pytest.raises(StateError, match=f"changed while .*{tip}"):
        recovery.accept_history(config=site, commit=rewritten, now=datetime.now(UTC))
    state = State(state_dir)
    try:
        last = state.last_verified
        assert last is not None and last.commit == moved.commit
    finally:
        state.close()


def test_item5_recovery_takes_only_the_fetched_tip_and_no_merged_in_bootstrap_root(
    tmp_path: Path,
) -> None:
    """Held attacks: --commit naming a commit of the new history that is not the fetched tip
    (a full id, on the branch) is refused; so is a rewrite whose merge brings in a root signed
    by the install-time bootstrap key, dated before that key was rotated out."""
    import pygit2

    from tests.sigtools import sshsig_sign_fast

    fleet, old, new, tip = _signed_history(tmp_path)
    config = _site(tmp_path, fleet, old)
    assert gitedge("run", "--once", "--now", NOW, "--config", str(config)).returncode == 0
    fleet.key = old  # the attacker's side root, in old's time
    side = fleet.commit({".gitedge/trust.yaml": trust_yaml(old)}, at=START + 10, parent=None)
    fleet.key = new  # the owners' rewrite, and their merge of the side root into it
    root = fleet.commit({".gitedge/trust.yaml": trust_yaml(new)}, at=START + 200, parent=None)
    who = pygit2.Signature("Release Bot", "release@fleet.example", START + 260, 0)
    parents = [pygit2.Oid(hex=root), pygit2.Oid(hex=side)]
    payload = fleet.repo.create_commit_string(who, who, "merge\n", fleet._tree(), parents)
    sig = sshsig_sign_fast(new, payload.encode()).decode()
    merged = fleet.repo.create_commit_with_signature(payload, sig)
    fleet.set_main(merged)
    assert gitedge("run", "--once", "--now", NOW, "--config", str(config)).returncode == 1
    r = gitedge("accept-history", "--config", str(config), "--commit", root)
    assert r.returncode == 2 and "is not the tip fetched" in r.stderr, r.stderr
    r = gitedge("accept-history", "--config", str(config), "--commit", str(merged))
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stdout
    assert "unknown-key" in r.stderr, r.stderr
    assert f"last verified commit: {tip} " in _status(config)


def test_item5_after_recovery_the_usual_rules_hold_on_top_of_the_new_tip(tmp_path: Path) -> None:
    """Held: once accepted, the new tip is an ordinary last verified commit. On top of it the
    install-time bootstrap key (retired) signs nothing in, a commit dated back past the new
    history is refused (date-before-parent), and the old history is a rollback again."""
    import pygit2

    fleet, old, new, tip = _signed_history(tmp_path)
    config = _site(tmp_path, fleet, old)
    assert gitedge("run", "--once", "--now", NOW, "--config", str(config)).returncode == 0
    fleet.commit(at=START + 200, parent=None)
    rewritten = fleet.commit(at=START + 2000)
    assert gitedge("run", "--once", "--now", NOW, "--config", str(config)).returncode == 1
    r = gitedge("accept-history", "--config", str(config), "--commit", rewritten)
    assert r.returncode == 0, r.stderr
    fleet.key = old
    fleet.commit(at=START + 2100)
    assert gitedge("run", "--once", "--now", NOW, "--config", str(config)).returncode == 1
    assert "unknown-key" in _status(config)
    fleet.key = new
    fleet.commit(at=START + 1000, parent=pygit2.Oid(hex=rewritten))  # dated back past it
    assert gitedge("run", "--once", "--now", NOW, "--config", str(config)).returncode == 1
    assert "date-before-parent" in _status(config), _status(config)
    fleet.set_main(tip)  # the history the site left: now a rollback
    assert gitedge("run", "--once", "--now", NOW, "--config", str(config)).returncode == 1
    assert f"does not descend from the last verified commit {rewritten}" in _status(config)
    assert f"last verified commit: {rewritten} " in _status(config)


def test_item5_recovery_knows_an_openpgp_key_by_its_fingerprint_not_its_armor(
    tmp_path: Path,
) -> None:
    """The keys still trusted are told by what they are: the rewrite's trust file exports the
    same OpenPGP key with another armor header; its signatures count (the armored text
    differed, so every commit after the root was refused as signed by an unknown key)."""
    import pygit2

    from tests.sigtools import gpg_sign, make_gpg_key, stop_gpg

    def pgp_trust(armored: str) -> str:
        block = "".join(f"        {line}\n" for line in armored.strip().splitlines())
        return (
            "apiVersion: gitedge.io/v1alpha1\nkind: TrustPolicy\nmetadata: {name: fleet}\n"
            "spec:\n  signers:\n    - name: release\n      roles: [release, admin]\n"
            f"      key: |\n{block}  verify: all\n  images: {{requireDigest: false}}\n"
        )

    pgp = make_gpg_key(tmp_path, "Release <release@fleet.example>")
    try:
        old = make_ssh_key(tmp_path / "old", "ed25519", comment="old@fleet.example")
        fleet = FleetRepo(tmp_path / "fleet.git", old)
        fleet.commit(at=START)
        fleet.commit({".gitedge/trust.yaml": pgp_trust(pgp.public)}, at=START + 60)

        def pgp_commit(files: dict[str, str], *, at: int, root: bool = False) -> str:
            fleet.files.update(files)
            who = pygit2.Signature("Release Bot", "release@fleet.example", at, 0)
            parents = [] if root else [fleet.head]
            payload = fleet.repo.create_commit_string(who, who, "c\n", fleet._tree(), parents)
            sig = gpg_sign(pgp, payload.encode()).decode()
            oid = fleet.repo.create_commit_with_signature(payload, sig)
            fleet.set_main(oid)
            return str(oid)

        tip = pgp_commit({"notes.txt": "a\n"}, at=START + 120)
        config = _site(tmp_path, fleet, old)
        assert gitedge("run", "--once", "--now", NOW, "--config", str(config)).returncode == 0
        rearmored = pgp.public.replace(
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n",
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\nComment: exported again\n",
        )
        assert rearmored != pgp.public
        pgp_commit({".gitedge/trust.yaml": pgp_trust(rearmored)}, at=START + 200, root=True)
        rewritten = pgp_commit({"notes.txt": "b\n"}, at=START + 260)
        assert gitedge("run", "--once", "--now", NOW, "--config", str(config)).returncode == 1
        r = gitedge("accept-history", "--config", str(config), "--commit", rewritten)
        assert r.returncode == 0, r.stderr
        assert f"force at {tip}" in r.stdout
    finally:
        stop_gpg(pgp)
