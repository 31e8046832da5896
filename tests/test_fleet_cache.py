"""``gitedge fleet status`` at fleet size (issue 19): reports read by a bounded pool and kept by
digest in a local cache, so a run fetches only the reports that changed since the last one.

Against a real ``docker-registry`` on 127.0.0.1 behind :func:`tests.registryserver.http_front`,
which records every request the CLI makes: that is how "fetched again" is counted (a report's
layer is fetched by ``GET /v2/<repo>/blobs/<digest>``; an unchanged site costs its manifest GET
only).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gitedge.adapters.registry.client import RegistryClient
from gitedge.adapters.reports.store import ReportRepository, push_report
from gitedge.cli import main
from gitedge.core.status.conditions import Condition
from gitedge.core.status.sitereport import SiteReport, Versions
from tests.registryserver import Front, RegistryServer, docker_registry, http_front, sha256

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
K3S = "v1.30.6+k3s1"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with docker_registry(tmp_path_factory.mktemp("fleet-cache")) as server:
        yield server


def report(name: str, *, minutes: int = 5, k3s: str = K3S) -> SiteReport:
    return SiteReport(
        cluster=name, time=NOW - timedelta(minutes=minutes), labels={"env": "prod"},
        k3s=Versions(K3S, k3s, "k3s-stable"), last_verified="cd" * 20, agent_version="0.1.0",
        conditions=(Condition("Ready", "True", "UpToDate", "", NOW - timedelta(days=1)),),
    )  # fmt: skip


def push(registry: RegistryServer, repo: str, *reports: SiteReport) -> None:
    client = RegistryClient(host=registry.host)
    try:
        for r in reports:
            push_report(client, ReportRepository(registry.host, repo), r)
    finally:
        client.close()


def status(
    front: Front, repo: str, cache: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[dict[str, dict[str, object]], list[str], list[str]]:
    """One ``fleet status -o json`` run: the sites by cluster, and the manifest and blob
    paths it GETs (only this run's)."""
    before = len(front.seen)
    capsys.readouterr()
    code = main(["fleet", "status", "--registry", f"{front.host}/{repo}", "--cache-dir",
                 str(cache), "--now", NOW.isoformat(), "-o", "json", *extra])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    seen = front.seen[before:]
    manifests = [p for m, p, _ in seen if m == "GET" and "/manifests/" in p]
    blobs = [p for m, p, _ in seen if m == "GET" and "/blobs/" in p]
    return {s["cluster"]: s for s in json.loads(out)["sites"]}, manifests, blobs


def layer_of(registry: RegistryServer, repo: str, tag: str) -> str:
    client = RegistryClient(host=registry.host)
    try:
        m = client.get_manifest(repo, tag, what=tag)
    finally:
        client.close()
    (layer,) = m.layers
    return layer.digest


def test_only_changed_reports_are_fetched_again(
    registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = "cache/sites"
    names = [f"site-{i:02d}" for i in range(8)]
    push(registry, repo, *(report(n) for n in names))
    cache = tmp_path / "cache"
    with http_front(registry.port) as front:
        # first run: every manifest and every report layer
        sites, manifests, blobs = status(front, repo, cache, capsys)
        assert sorted(sites) == names
        assert len(manifests) == 8 and len(blobs) == 8
        assert sorted(p.rsplit("/", 1)[1] for p in manifests) == names
        assert len(list(cache.glob("sha256-*.json"))) == 8

        # nothing changed: the manifests only, no report is fetched, the same answer
        again, manifests, blobs = status(front, repo, cache, capsys)
        assert again == sites and len(manifests) == 8 and blobs == []

        # site-03 reports again (newer time, a K3s step applied): that report alone is fetched
        push(registry, repo, report("site-03", minutes=1, k3s="v1.29.10+k3s1"))
        new_layer = layer_of(registry, repo, "site-03")
        third, manifests, blobs = status(front, repo, cache, capsys)
        assert len(manifests) == 8
        assert blobs == [f"/v2/{repo}/blobs/{new_layer}"]
        assert third["site-03"]["k3s"]["applied"] == "v1.29.10+k3s1"
        assert third["site-03"]["ageSeconds"] == 60
        assert {n: s for n, s in third.items() if n != "site-03"} == {
            n: s for n, s in sites.items() if n != "site-03"
        }
        # the replaced report's cache entry is gone: one file per site, the new one among them
        files = sorted(p.name for p in cache.glob("sha256-*.json"))
        assert len(files) == 8 and f"sha256-{new_layer.split(':')[1]}.json" in files

        # a cache entry whose bytes no longer hash to its name is not trusted: fetched again
        entry = cache / f"sha256-{new_layer.split(':')[1]}.json"
        entry.write_bytes(entry.read_bytes().replace(b"v1.29.10", b"v1.30.99"))
        fourth, manifests, blobs = status(front, repo, cache, capsys)
        assert blobs == [f"/v2/{repo}/blobs/{new_layer}"] and fourth == third
        assert sha256(entry.read_bytes()) == new_layer

        # a new site: its report alone; and with an empty cache dir, everything again
        push(registry, repo, report("site-99"))
        fifth, _, blobs = status(front, repo, cache, capsys)
        assert len(blobs) == 1 and sorted(fifth) == [*names, "site-99"]
        _, _, blobs = status(front, repo, tmp_path / "other-cache", capsys)
        assert len(blobs) == 9


def test_reports_are_read_concurrently_by_a_bounded_pool(
    registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = "cache/pool"
    push(registry, repo, *(report(f"pool-{i:02d}") for i in range(12)))
    # The front holds each blob GET until 3 are in flight together (at most 10 s): a reader
    # fetching one report at a time never gets there; one of 3 workers does, and never more.
    with http_front(registry.port, gate=3) as front:
        sites, _, blobs = status(front, repo, tmp_path / "c", capsys, "--jobs", "3")
    assert len(sites) == 12 and len(blobs) == 12
    assert front.max_blob_gets_in_flight == 3


def test_default_cache_dir_and_a_cache_that_cannot_be_written(
    registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    repo = "cache/default"
    push(registry, repo, report("only-one"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert main(["fleet", "status", "--registry", f"{registry.host}/{repo}"]) == 0
    where = tmp_path / "xdg/gitedge/fleet-status" / registry.host.replace(":", "_") / repo
    assert len(list(where.glob("sha256-*.json"))) == 1
    assert f"1 report(s) in {registry.host}/{repo}: 1 fetched" in capsys.readouterr().err
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    code = main(["fleet", "status", "--registry", f"{registry.host}/{repo}",
                 "--cache-dir", str(blocker / "cache")])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert f"report cache {blocker / 'cache'}" in err and "Traceback" not in err
