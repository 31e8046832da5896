"""Operator mistakes, one row each (issue 18): fleet YAML, AgentConfig, command-line arguments and
unreachable hosts on 127.0.0.1. Each row runs the real command and checks its exit code, that no
traceback shows, that the message names the thing (file:line, field, host, path...) and that it
gives the specific hint that leads to the fix."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.agentkit import trust_yaml
from tests.sigtools import make_ssh_key

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "fleet-repo"
CLUSTER = ROOT / "examples" / "clusters" / "store-berlin-0042.yaml"


@dataclass(frozen=True)
class Mistake:
    id: str
    argv: Callable[[Path], list[str]]  # builds the files in tmp, returns the command's arguments
    code: int  # exit code: 1 the input is wrong, 2 the command line is
    names: str  # the thing the message must name
    hint: str  # what it must say to do


def fleet(
    *edits: tuple[str, str, str], add: dict[str, str] | None = None
) -> Callable[[Path], list[str]]:
    """``gitedge validate`` of the example fleet repo with ``edits`` (file, old, new) made."""

    def build(tmp: Path) -> list[str]:
        repo = tmp / "fleet"
        shutil.copytree(EXAMPLE, repo)
        for name, old, new in edits:
            text = (repo / name).read_text()
            assert old in text, (name, old)
            (repo / name).write_text(text.replace(old, new, 1))
        for name, text in (add or {}).items():
            (repo / name).write_text(text)
        return ["validate", str(repo)]

    return build


def without(name: str) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        args = fleet()(tmp)
        (tmp / "fleet" / name).unlink()
        return args

    return build


BASE_CONFIG = (
    "apiVersion: gitedge.io/v1alpha1\nkind: AgentConfig\ncluster: {name: site-1}\n"
    'source: {url: "SOURCE"}\ntrust: {bootstrap: TRUST}\nstate: {dir: STATE}\n'
    "apply: {mode: print}\n"
)


def write_config(tmp: Path, text: str, *, source: str = "git://127.0.0.1:1/fleet.git") -> Path:
    key = make_ssh_key(tmp / "keys", "ed25519", comment="release@fleet.example")
    (tmp / "trust.yaml").write_text(trust_yaml(key))
    path = tmp / "agent.yaml"
    path.write_text(
        text.replace("SOURCE", source)
        .replace("TRUST", str(tmp / "trust.yaml"))
        .replace("STATE", str(tmp / "state"))
    )
    return path


def config(old: str, new: str, *, command: str = "status") -> Callable[[Path], list[str]]:
    """An AgentConfig with one mistake, read by ``gitedge status`` (or ``plan``)."""

    def build(tmp: Path) -> list[str]:
        assert old in BASE_CONFIG, old
        path = write_config(tmp, BASE_CONFIG.replace(old, new, 1))
        if command == "plan":
            return ["plan", "--repo", str(EXAMPLE), "--cluster", str(path)]
        return ["status", "--config", str(path)]

    return build


def run_once(source: str, *, extra: str = "") -> Callable[[Path], list[str]]:
    """One pass of ``gitedge run --once`` of a site whose source is ``source``."""

    def build(tmp: Path) -> list[str]:
        path = write_config(tmp, BASE_CONFIG + extra, source=source)
        return ["run", "--once", "--config", str(path), "--log-format", "json"]

    return build


def args(*argv: str) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        return [a.replace("TMP", str(tmp)) for a in argv]

    return build


def with_config(*argv: str, cache: str = "http://127.0.0.1:1") -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        path = write_config(tmp, BASE_CONFIG + f'registry: {{cache: {{url: "{cache}"}}}}\n')
        return [a.replace("TMP", str(tmp)).replace("CONFIG", str(path)) for a in argv]

    return build


def with_repo(*argv: str) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        path = write_config(tmp, BASE_CONFIG)
        return [a.replace("CONFIG", str(path)).replace("REPO", str(EXAMPLE)) for a in argv]

    return build


A_TARGET = (
    "apiVersion: gitedge.io/v1alpha1\nkind: UpgradeTarget\nmetadata: {name: extra}\nspec:\n"
    "  clusterSelector: {}\n  os: {image: OS, upgrader: kairos}\n"
)

MISTAKES = [
    # ------------------------------------------------------------------ fleet YAML
    Mistake("time-zone", fleet(("windows.yaml", "Europe/Berlin", "Europe/Berlinn")), 1,
            "windows.yaml:10: MaintenanceWindow/store-nights: spec.timeZone",
            "is not an IANA time zone name such as 'Europe/Berlin' or 'UTC'"),
    Mistake("window-of-a-broken-window", fleet(("windows.yaml", "Europe/Berlin", "Berlin")), 1,
            "window 'store-nights' is invalid itself (see", "fix it there"),
    Mistake("operator-case", fleet(("groups.yaml", "operator: DoesNotExist", "operator: exists")),
            1, "groups.yaml:20: ClusterGroup/wind-farms: spec.selector.matchExpressions[0]",
            "Input should be 'In', 'NotIn', 'Exists' or 'DoesNotExist'"),
    Mistake("group-of-a-broken-group",
            fleet(("groups.yaml", "operator: DoesNotExist", "operator: exists")), 1,
            "clusterGroup 'wind-farms' is invalid itself (see", "fix it there"),
    Mistake("catalog-version-form", fleet(("releases.yaml", "v1.27.16+k3s1", "1.27.16")), 1,
            "releases.yaml:12: K3sReleases/k3s-catalog: spec.releases[0].version",
            "expected the form v1.30.6+k3s1"),
    Mistake("k3s-of-a-broken-catalog", fleet(("releases.yaml", "v1.27.16+k3s1", "1.27.16")), 1,
            "sets k3s, and the K3sReleases catalog is invalid itself", "fix it there"),
    Mistake("version-as-number",
            fleet(("targets/baseline.yaml", "version: v1.29.10+k3s1", "version: 1.31")), 1,
            "baseline.yaml:11: UpgradeTarget/fleet-baseline: spec.k3s.version",
            'YAML read 1.31 as a number: a K3s version is a full release in quotes'),
    Mistake("catalog-versions-as-numbers", fleet(("releases.yaml", "{version: v1.27.16+k3s1,", "{version: 1.30,")),
            1, "spec.releases[0].version", "YAML read 1.30 as a number"),
    Mistake("tab-indent", fleet(add={"tab.yaml": "kind: ClusterGroup\nmetadata:\n\tname: x\n"}),
            1, "tab.yaml:3: YAML syntax error", "replace the tab with spaces"),
    Mistake("window-typo", fleet(("targets/stores.yaml", "window: store-nights",
                                  "window: store-night")), 1,
            "window 'store-night' is not a MaintenanceWindow in this repo",
            "define it (kind: MaintenanceWindow, metadata.name: store-night) or correct the name"),
    Mistake("group-typo", fleet(("targets/stores.yaml", "clusterGroup: stores",
                                 "clusterGroup: store")), 1,
            "clusterGroup 'store' is not a ClusterGroup in this repo",
            "define it (kind: ClusterGroup, metadata.name: store)"),
    Mistake("version-not-in-catalog", fleet(("targets/baseline.yaml", "v1.29.10+k3s1",
                                             "v1.29.11+k3s1")), 1,
            "k3s version v1.29.11+k3s1 is not in the K3sReleases catalog",
            "add it to the catalog's versions, or pick a listed one"),
    Mistake("no-catalog", without("releases.yaml"), 1,
            "UpgradeTarget/fleet-baseline: sets k3s but the repo has no K3sReleases catalog",
            "add one listing v1.29.10+k3s1 and a release of every minor"),
    Mistake("field-typo", fleet(("targets/stores.yaml", "  window: store-nights",
                                 "  windw: store-nights")), 1,
            "UpgradeTarget/stores-stable: spec.windw: unknown field", "did you mean 'window'?"),
    Mistake("nested-field-typo", fleet(("targets/stores.yaml", "    upgrader: kairos\n  k3s",
                                        "    upgrade: kairos\n  k3s")), 1,
            "spec.os.upgrade: unknown field", "did you mean 'upgrader'?"),
    Mistake("api-version", fleet(("groups.yaml", "gitedge.io/v1alpha1", "gitedge.io/v1")), 1,
            "groups.yaml:2", "apiVersion must be 'gitedge.io/v1alpha1', not 'gitedge.io/v1'"),
    Mistake("unknown-kind", fleet(("groups.yaml", "kind: ClusterGroup", "kind: Group")), 1,
            "unknown kind 'Group'", "expected one of TrustPolicy, ClusterGroup"),
    Mistake("duplicate-name", fleet(("groups.yaml", "name: wind-farms", "name: stores")), 1,
            "ClusterGroup 'stores' is already defined at", "groups.yaml:"),
    Mistake("cluster-in-fleet", fleet(add={"c.yaml": CLUSTER.read_text()}), 1,
            "kind Cluster belongs to a site's files", "give it to `gitedge validate --clusters`"),
    Mistake("bad-duration", fleet(("windows.yaml", "duration: 6h", "duration: 6 hours")), 1,
            "MaintenanceWindow/calm-evenings: spec.duration: invalid duration '6 hours'",
            "use Go syntax such as '90s', '15m' or '1h30m'"),
    Mistake("blackout-backwards", fleet(("windows.yaml", "{from: 2026-12-19, to: 2027-01-04}",
                                         "{from: 2027-01-04, to: 2026-12-19}")), 1,
            "spec.blackouts[0]", "blackout 'to' (2026-12-19) is before 'from' (2027-01-04)"),
    Mistake("label-value-space", fleet(("targets/stores.yaml", "values: [eu-west, eu-central]",
                                        "values: [eu west]")), 1,
            "label value 'eu west'", "must consist of alphanumerics, '-', '_' or '.'"),
    Mistake("image-with-scheme", fleet(add={"extra.yaml": A_TARGET.replace(
        "OS", "https://registry.example.com/os:1")}), 1,
            "extra.yaml", "write it without a scheme: host[:port]/repository[:tag]"),
    Mistake("trust-outside", fleet(add={"trust.yaml": "apiVersion: gitedge.io/v1alpha1\n"
                                        "kind: TrustPolicy\nmetadata: {name: x}\nspec:\n"
                                        "  signers:\n    - {name: a, key: 'ssh-ed25519 "
                                        "AAAAC3NzaC1lZDI1NTE5AAAAIFBZnwuop20oCKDoVoDZYJr0rPgEvPoy"
                                        "x1FcXiwbzY9P', roles: [release, admin]}\n"}), 1,
            "trust.yaml", "a TrustPolicy is only read from .gitedge/trust.yaml"),
    Mistake("wrong-directory", args("validate", str(ROOT / "docs")), 1,
            "docs: no fleet document found", "give the fleet repo's root directory"),
    # ------------------------------------------------------------------ AgentConfig
    Mistake("config-kind-typo", config("kind: AgentConfig", "kind: AgentConfg"), 1,
            "agent.yaml:1: expected kind Cluster or AgentConfig, not 'AgentConfg'",
            "did you mean 'AgentConfig'?"),
    Mistake("config-mode", config("mode: print", "mode: dry-run"), 1,
            "agent.yaml:7: AgentConfig: apply.mode", "Input should be 'suc' or 'print'"),
    Mistake("config-interval", config('url: "SOURCE"}', 'url: "SOURCE", interval: 5 minutes}'), 1,
            "AgentConfig: source.interval: invalid duration '5 minutes'",
            "use Go syntax such as '90s', '15m' or '1h30m'"),
    Mistake("config-field-typo", config("state: {dir:", "state: {dri:"), 1,
            "AgentConfig: state.dri: unknown field", "did you mean 'dir'?"),
    Mistake("config-cache-url", config("apply:", 'registry: {cache: {url: "cache host:5000"}}\n'
                                       "apply:"), 1,
            "registry.cache.url: invalid registry cache url 'cache host:5000'",
            "expected host[:port], optionally with http(s)://"),
    Mistake("config-k3s-number", config("{name: site-1}", "{name: site-1, status: "
                                        "{k3sVersion: 1.28}}", command="plan"), 1,
            "AgentConfig: cluster.status.k3sVersion",
            'a K3s version is a full release in quotes, e.g. "v1.31.2+k3s1"'),
    Mistake("config-label", config("{name: site-1}", '{name: site-1, labels: {env: "prod east"}}'),
            1, "cluster.labels: label value 'prod east'", "must consist of alphanumerics"),
    Mistake("config-api-version", config("gitedge.io/v1alpha1", "gitedge.io/v1"), 1,
            "agent.yaml:1", "apiVersion must be 'gitedge.io/v1alpha1'"),
    Mistake("source-plain-http", run_once("http://git.fleet.example/fleet.git"), 1,
            "source.url", "plain http is allowed only to a loopback address; use https"),
    Mistake("source-relative-path", run_once("fleet.git"), 1,
            "unsupported URL 'fleet.git'",
            "give https://, ssh://, git://, file:// or an absolute path"),
    Mistake("source-missing-path", run_once("/nonexistent/fleet.git"), 1,
            "/nonexistent/fleet.git does not exist",
            "check the path, or give an https://, ssh:// or git:// URL"),
    # ------------------------------------------------------------------ command-line arguments
    Mistake("now-not-a-time", args("plan", "--repo", str(EXAMPLE), "--cluster", str(CLUSTER),
                                   "--now", "yesterday"), 2,
            "--now 'yesterday'", "expected ISO 8601, e.g. 2026-11-23T01:30:00Z"),
    Mistake("now-without-zone", args("plan", "--repo", str(EXAMPLE), "--cluster", str(CLUSTER),
                                     "--now", "2026-11-23T01:30:00"), 2,
            "--now '2026-11-23T01:30:00'", "give a time zone"),
    Mistake("cluster-missing", args("plan", "--repo", str(EXAMPLE), "--cluster", "TMP/no.yaml"),
            2, "no.yaml", "No such file or directory"),
    Mistake("config-is-a-cluster", args("status", "--config", str(CLUSTER)), 2,
            f"--config {CLUSTER}", "expected an AgentConfig, not a Cluster identity"),
    Mistake("listen-no-port", with_repo("run", "--config", "CONFIG", "--listen", "localhost"), 2,
            "--listen 'localhost'", "expected HOST:PORT with a port 0-65535"),
    Mistake("now-without-once", with_repo("run", "--config", "CONFIG", "--now",
                                          "2026-11-23T01:30:00Z"), 2,
            "--now", "goes with --once"),
    Mistake("image-with-scheme-arg", args("mirror", "https://127.0.0.1:1/os:1", "oci:TMP/o"), 2,
            "'https://127.0.0.1:1/os:1'", "write it without a scheme"),
    Mistake("oci-without-dir", args("mirror", "oci:", "oci:TMP/o"), 2,
            "'oci:'", "oci: needs a directory"),
    Mistake("platform-form", args("mirror", "oci:TMP/l", "oci:TMP/o", "--platform", "linux"), 2,
            "platform 'linux'", "expected os/arch or os/arch/variant"),
    Mistake("stale-after", args("fleet", "status", "--registry", "127.0.0.1:1/r",
                                "--stale-after", "3days"), 2,
            "invalid duration '3days'", "use Go syntax such as '90s', '15m' or '1h30m'"),
    Mistake("selector-set-without-parens", args("fleet", "status", "--registry", "127.0.0.1:1/r",
                                                "-l", "env in prod"), 2,
            "selector 'env in prod'", "write env in (prod)"),
    Mistake("bundle-what", args("bundle", "create", "--repo", str(EXAMPLE), "--out", "TMP/b.tar"),
            2, "--cluster FILE", "or use --all"),
    Mistake("accept-without-state", with_repo("accept-history", "--config", "CONFIG", "--commit",
                                         "abc123"), 2,
            "no agent state in", "nothing to recover"),
    # ------------------------------------------------------------------ unreachable hosts
    Mistake("registry-refused", args("mirror", "127.0.0.1:1/edge/os:1", "oci:TMP/o"), 1,
            "registry 127.0.0.1:1 still failing after 5 attempt(s)",
            "connection refused: nothing listens there (is the registry running, the port right?)"),
    Mistake("cache-refused", with_config("mirror", "oci:TMP/none", "127.0.0.1:1/edge/os:1",
                                         "--config", "CONFIG"), 1,
            "oci:TMP/none", "not an OCI image layout"),
    Mistake("cache-side-named", with_config("mirror", "127.0.0.1:1/edge/os:1", "oci:TMP/o",
                                            "--config", "CONFIG"), 1,
            "the site's cache registry 127.0.0.1:1", "connection refused: nothing listens there"),
    Mistake("upstream-side-named", with_config("mirror", "127.0.0.1:2/edge/os:1", "oci:TMP/o",
                                               "--config", "CONFIG"), 1,
            "upstream registry 127.0.0.1:2", "connection refused: nothing listens there"),
    Mistake("report-registry-refused", args("fleet", "status", "--registry", "127.0.0.1:1/r"), 1,
            "127.0.0.1:1/r: registry 127.0.0.1:1", "connection refused: nothing listens there"),
    Mistake("git-refused", run_once("git://127.0.0.1:1/fleet.git"), 1,
            "fetch of branch 'main' from git://127.0.0.1:1/fleet.git failed", "refused"),
]  # fmt: skip


@pytest.fixture(scope="module")
def busy_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield int(s.getsockname()[1])


def test_there_are_at_least_40_distinct_mistakes() -> None:
    assert len(MISTAKES) >= 40
    assert len({m.id for m in MISTAKES}) == len(MISTAKES)


@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda m: m.id)
def test_the_message_names_the_thing_and_says_what_to_do(mistake: Mistake, tmp_path: Path) -> None:
    argv = mistake.argv(tmp_path)
    r = subprocess.run([sys.executable, "-m", "gitedge", *argv], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "NO_COLOR": "1"})  # fmt: skip
    out = (r.stdout + r.stderr).replace(str(tmp_path), "TMP")
    assert r.returncode == mistake.code, (r.returncode, out)
    assert "Traceback" not in out, out
    assert mistake.names in out, (mistake.names, out)
    assert mistake.hint in out, (mistake.hint, out)


def test_a_busy_listen_port_names_the_port_and_what_to_do(busy_port: int, tmp_path: Path) -> None:
    path = write_config(tmp_path, BASE_CONFIG)
    listen = f"127.0.0.1:{busy_port}"
    r = subprocess.run([sys.executable, "-m", "gitedge", "run", "--config", str(path), "--listen",
                        listen], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"--listen {listen}: Address already in use" in r.stderr
    assert "another process listens there; stop it or pick a free port" in r.stderr


def test_plan_on_a_directory_with_no_fleet_document_says_so(tmp_path: Path) -> None:
    """A sibling of issue 18 item 6: ``plan`` printed 'no target selects this cluster'."""
    r = subprocess.run([sys.executable, "-m", "gitedge", "plan", "--repo", str(tmp_path),
                        "--cluster", str(CLUSTER)], capture_output=True, text=True,
                       timeout=120)  # fmt: skip
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"{tmp_path}: no fleet document found" in r.stdout
    assert "give the fleet repo's root directory" in r.stdout
