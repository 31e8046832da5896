"""Offline bundles (issue 7): ``gitedge bundle create`` / ``gitedge bundle import`` and the
``source.bundleDir`` inbox, with a real ``git daemon``, real ``docker-registry`` upstream and cache
on 127.0.0.1, and commits signed in process (byte-compatible with ``ssh-keygen -Y sign``) with a
key made by ssh-keygen; ``gitedge demo``'s fleet signed by ``git commit -S``.

Covers: the round trip (create from a served signed repo and images on a real upstream registry,
both then stopped; import into a site with its own state and its own cache registry; the next pass
plans and applies from it with no network, copying nothing); blobs stored once across images;
tampered bundles refused with nothing recorded (a flipped byte in a layer, an unsigned commit in
the range, an older and a rewritten history, a ``../`` member) and every other unsafe or malformed
tar (absolute path, links, devices, duplicates, unknown members, oversized index, unknown format
version, not a bundle, truncated); an incremental bundle refused on a site that lacks its base; a
bundle of the demo's fleet (``gitedge demo --keep``) imported into the demo's kind of cache; the
inbox (a dropped file imported by the next pass and never twice, a copy under another name
skipped, a bad one reported by condition and log without stopping the pass) and the scheduler's
poll that starts a pass for a dropped file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import pty
import shutil
import socket
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from gitedge.adapters.git.repo import FETCHED_PREFIX
from gitedge.adapters.git.worktree import read_tree
from gitedge.adapters.images.bundlefile import open_bundle, read_index
from gitedge.adapters.images.mirroring import Mirror
from gitedge.agent.bundles.create import create_bundle
from gitedge.agent.bundles.importing import import_bundle
from gitedge.agent.bundles.inbox import pending_bundles
from gitedge.agent.reconcile import Agent, Pass, PrintCluster
from gitedge.agent.scheduler import AgentLoop
from gitedge.core.config import AgentConfig, load_site_file
from gitedge.core.delivery.bundleindex import INDEX_NAME, BundleImage, BundleIndex
from gitedge.core.fleet.model import load_fleet
from gitedge.core.fleet.windows import window_state
from gitedge.core.status.conditions import BUNDLE_IMPORTED
from gitedge.errors import (
    DigestMismatch,
    InvalidImage,
    InvalidInput,
    RollbackRefused,
    SourceUnavailable,
    VerificationFailed,
)
from tests.agentkit import START, FleetRepo, fleet_files, push_image
from tests.gitserver import git_daemon
from tests.registryserver import LayoutImage, RegistryServer, docker_registry, make_layout, served
from tests.sigtools import SshKey, allowed_signers_line, make_ssh_key

RELEASES = ["v1.27.16+k3s1", "v1.28.15+k3s1", "v1.29.10+k3s1", "v1.30.6+k3s1"]
IN_WINDOW = datetime.fromtimestamp(START, UTC) + timedelta(days=1, hours=2)  # "nights" is open


def tag(version: str) -> str:
    return version.replace("+", "-")


def gitedge(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gitedge", *args], capture_output=True, text=True, timeout=timeout
    )


def write_site(
    d: Path,
    *,
    git_url: str,
    key: SshKey,
    k3s: str,
    cache: str | None = None,
    bundle_dir: Path | None = None,
    kubectl: str | None = None,
) -> Path:
    """A site's AgentConfig (print mode): its own state dir, its cache registry or none (then
    OCI layouts under the state dir), its bootstrap trust pinned to ``key``."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "allowed_signers").write_text(allowed_signers_line("release@fleet.example", key) + "\n")
    doc = {
        "apiVersion": "gitedge.io/v1alpha1",
        "kind": "AgentConfig",
        "cluster": {"name": "store-0042", "labels": {"env": "prod"},
                    "status": {"k3sVersion": k3s, "arches": ["amd64"]}},
        "source": {"url": git_url, "branch": "main", "interval": "10m"},
        "trust": {"bootstrap": str(d / "allowed_signers")},
        "apply": {"mode": "print", **({"kubectlImage": kubectl} if kubectl else {})},
        "state": {"dir": str(d / "state")},
    }  # fmt: skip
    if cache:
        doc["registry"] = {"cache": {"url": f"http://{cache}"}}
    if bundle_dir:
        doc["source"]["bundleDir"] = str(bundle_dir)  # type: ignore[index]
    cfg = d / "agent.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    return cfg


def agent_of(cfg: Path, printed: list[str] | None = None) -> Agent:
    site = load_site_file(cfg.read_bytes(), path=str(cfg))
    assert isinstance(site, AgentConfig)
    out = printed if printed is not None else []
    return Agent(site, cluster=PrintCluster(config=site, out=out.append))


def flip_byte(bundle: Path, member: str, at: int = 100) -> None:
    with tarfile.open(bundle) as t:
        offset = t.getmember(member).offset_data
    with bundle.open("r+b") as f:
        f.seek(offset + at)
        byte = f.read(1)
        f.seek(offset + at)
        f.write(bytes([byte[0] ^ 0xFF]))


def layer_of(img: LayoutImage) -> str:
    return max(img.blobs, key=lambda d: img.blobs[d])


def recorded(agent: Agent) -> tuple[str | None, dict[str, str], str | None]:
    """What a site has recorded: last verified commit, mirrored image -> digest, fetched ref."""
    last = agent.state.last_verified
    refs = agent.git.repo.references
    name = FETCHED_PREFIX + "main"
    return (
        last.commit if last else None,
        {k: m.digest for k, m in agent.state.mirrored().items()},
        str(refs[name].target) if name in refs else None,
    )


# ---------------------------------------------------------------------------- the round trip


def test_round_trip_into_a_site_whose_upstream_is_gone(tmp_path: Path) -> None:
    key = make_ssh_key(tmp_path / "keys", "ed25519", comment="release@fleet.example")
    served_dir = tmp_path / "served"
    fleet = FleetRepo(served_dir / "fleet.git", key)
    out = tmp_path / "stick" / "fleet.tar"
    with docker_registry(tmp_path / "cache") as site_cache, ExitStack() as upstream_side:
        upstream = upstream_side.enter_context(docker_registry(tmp_path / "upstream"))
        url = upstream_side.enter_context(git_daemon(served_dir))
        reg = upstream.host
        os_img = push_image(tmp_path, f"{reg}/edge/os:1.0")
        with Mirror() as m:  # the same image under a second name: its blobs are stored once
            m.mirror(f"oci:{os_img.path}:x", f"{reg}/edge/os-lab:1.0")
        k3s = {v: push_image(tmp_path, f"{reg}/rancher/k3s-upgrade:{tag(v)}") for v in RELEASES}
        kubectl = push_image(tmp_path, f"{reg}/rancher/kubectl:v1.30.3")  # SUC's (issue 15)
        files = fleet_files(registry=reg, releases=RELEASES, k3s=RELEASES[-1],
                            os_image=f"{reg}/edge/os:1.0@{os_img.digest}")  # fmt: skip
        files["lab.yaml"] = (
            "apiVersion: gitedge.io/v1alpha1\nkind: UpgradeTarget\nmetadata: {name: lab}\nspec:\n"
            "  clusterSelector: {matchLabels: {env: lab}}\n  priority: 5\n"
            f"  os: {{image: {reg}/edge/os-lab:1.0, upgrader: kairos}}\n"
        )
        fleet.commit(files, at=START)
        tip = fleet.commit(at=START + 60)
        cfg = write_site(tmp_path / "site", git_url=f"{url}/fleet.git", key=key,
                         k3s=RELEASES[0], cache=site_cache.host,
                         kubectl=f"{reg}/rancher/kubectl:v1.30.3")  # fmt: skip

        created = gitedge("bundle", "create", "--repo", f"{url}/fleet.git", "--cluster", str(cfg),
                          "--all", "--out", str(out))  # fmt: skip
        assert created.returncode == 0, created.stderr
        assert f"main at {tip}" in created.stdout and "7 image(s)" in created.stdout
        # not a terminal: one quiet line per image, no redrawn bar
        assert created.stderr.count("image ") == 7 and "\r" not in created.stderr
        # then the upstream side goes away entirely: registry and git server stopped
        upstream_side.close()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", upstream.port), timeout=2).close()

        # the bundle: index first, one git bundle, one layout whose blobs are stored once
        with tarfile.open(out) as t:
            names = t.getnames()
        assert names[0] == INDEX_NAME and names[1] == "fleet.bundle"
        index = read_index(out)
        assert index.tip == tip and index.since is None and index.branch == "main"
        refs = {i.ref: i.digest for i in index.images}
        assert refs[f"{reg}/edge/os-lab:1.0"] == refs[f"{reg}/edge/os:1.0@{os_img.digest}"]
        # --all: every step any older cluster could take, the oldest release included
        assert {refs[f"{reg}/rancher/k3s-upgrade:{tag(v)}"] for v in RELEASES} == {
            k3s[v].digest for v in RELEASES
        }
        blobs = [n for n in names if n.startswith("images/blobs/")]
        manifests = 3 * (len(k3s) + 2)  # an index and two platform manifests per image
        unique = sum(len(i.blobs) for i in (*k3s.values(), os_img, kubectl)) + manifests
        assert len(blobs) == len(set(blobs)) == unique  # os and os-lab share every blob

        # the site imports it (its own state, its own cache registry), with no upstream at all
        imported = gitedge("bundle", "import", str(out), "--config", str(cfg))
        assert imported.returncode == 0, imported.stderr
        needed = [f"{reg}/rancher/k3s-upgrade:{tag(v)}" for v in RELEASES[1:]]
        needed.append(f"{reg}/edge/os:1.0@{os_img.digest}")
        needed.append(f"{reg}/rancher/kubectl:v1.30.3")  # SUC's Jobs' (issue 15)
        assert [ln.split()[1] for ln in imported.stdout.splitlines()[:-1]] == needed
        assert f"verified 2 new commit(s), now at {tip}" in imported.stdout

        printed: list[str] = []
        agent = agent_of(cfg, printed)
        try:
            last, mirrored, _ = recorded(agent)
            assert last == tip and sorted(mirrored) == sorted(needed)
            for ref, digest in mirrored.items():
                repo = ref.split("/", 1)[1].split(":")[0]
                assert served(site_cache.host, repo, digest) == digest
            p = agent.reconcile(now=IN_WINDOW)
        finally:
            agent.close()
    # the git server is gone: sync fails soft; everything else works from the import
    assert p.outcomes["sync"] == "retry"
    assert {k: v for k, v in p.outcomes.items() if k != "sync"} == {
        "verify": "ok", "clock": "ok", "plan": "ok", "mirror": "ok", "apply": "ok"
    }  # fmt: skip
    assert p.tip == tip and p.mirror_complete and p.mirrored_now == []  # nothing to copy
    # status: every cached copy came from the bundle, not a registry endpoint
    assert {i["image"]: i["servedBy"] for i in p.status["mirror"]["images"]} == dict.fromkeys(
        needed, "bundle"
    )
    assert [a.name for a in p.actions] == ["gitedge-k3s-server", "gitedge-k3s-agent"]
    first = mirrored[needed[0]]
    image = p.actions[0].manifest["spec"]["upgrade"]["image"]  # type: ignore[index]
    assert image == f"{site_cache.host}/rancher/k3s-upgrade@{first}"
    assert printed and "v1.28.15+k3s1" in printed[0]


# ---------------------------------------------------------------------------- shared servers


@dataclass
class World:
    tmp: Path
    key: SshKey
    url: str
    upstream: RegistryServer
    os_img: LayoutImage

    @property
    def reg(self) -> str:
        return self.upstream.host

    def repo(self, name: str) -> FleetRepo:
        return FleetRepo(self.tmp / "served" / f"{name}.git", self.key)

    def files(self) -> dict[str, str]:
        return fleet_files(registry=self.reg, releases=RELEASES, k3s=RELEASES[-1],
                           os_image=f"{self.reg}/edge/os:1.0")  # fmt: skip

    @property
    def kubectl(self) -> str:
        return f"{self.reg}/rancher/kubectl:v1.30.3"

    def site(self, d: Path, *, bundle_dir: Path | None = None) -> Path:
        """A site on K3s v1.29.10 (its plan needs v1.30.6, the OS image, SUC's kubectl), layout
        cache."""
        return write_site(d, git_url=f"{self.url}/absent.git", key=self.key, k3s=RELEASES[2],
                          bundle_dir=bundle_dir, kubectl=self.kubectl)  # fmt: skip

    def bundle(self, name: str, out: Path, *, rev: str, since: str | None = None) -> Path:
        """``gitedge bundle create --cluster`` for a cluster like the site's (K3s v1.29.10)."""
        cluster = load_site_file(
            b"apiVersion: gitedge.io/v1alpha1\nkind: Cluster\n"
            b"metadata: {name: store-0042, labels: {env: prod}}\n"
            b"status: {k3sVersion: v1.29.10+k3s1, arches: [amd64]}\n",
            path="cluster.yaml",
        )
        create_bundle(repo=f"{self.url}/{name}.git", out=out, now=datetime.now(UTC), rev=rev,
                      since=since, sites=[cluster], kubectl=[self.kubectl])  # fmt: skip
        return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("bundles")
    key = make_ssh_key(tmp / "keys", "ed25519", comment="release@fleet.example")
    (tmp / "served").mkdir()
    with docker_registry(tmp / "upstream") as upstream, git_daemon(tmp / "served") as url:
        for v in RELEASES[1:]:
            push_image(tmp, f"{upstream.host}/rancher/k3s-upgrade:{tag(v)}")
        os_img = push_image(tmp, f"{upstream.host}/edge/os:1.0")
        push_image(tmp, f"{upstream.host}/rancher/kubectl:v1.30.3")  # SUC's (issue 15)
        yield World(tmp, key, url, upstream, os_img)


# ---------------------------------------------------------------------------- tampered bundles


def test_flipped_byte_in_a_layer_is_refused_naming_image_and_digest(
    world: World, tmp_path: Path
) -> None:
    fleet = world.repo("flip")
    tip = fleet.commit(world.files(), at=START)
    out = world.bundle("flip", tmp_path / "b.tar", rev=tip)
    layer = layer_of(world.os_img)
    flip_byte(out, f"images/blobs/sha256/{layer.split(':')[1]}")
    agent = agent_of(world.site(tmp_path / "site"))
    try:
        with pytest.raises(DigestMismatch) as e:
            import_bundle(agent, out, now=IN_WINDOW)
        text = str(e.value)
        assert f"image {world.reg}/edge/os:1.0" in text and layer in text and str(out) in text
        assert recorded(agent) == (None, {}, None)
    finally:
        agent.close()
    state = tmp_path / "site" / "state"
    assert not (state / "cache").exists()  # not one image written
    assert list((state / "bundles").iterdir()) == []  # the extraction is gone


def test_unsigned_commit_in_the_range_is_refused_nothing_recorded(
    world: World, tmp_path: Path
) -> None:
    fleet = world.repo("unsigned")
    c1 = fleet.commit(world.files(), at=START)
    c2 = fleet.commit(at=START + 60, signed=False)
    c3 = fleet.commit(at=START + 120)
    agent = agent_of(world.site(tmp_path / "site"))
    try:
        r = import_bundle(
            agent, world.bundle("unsigned", tmp_path / "1.tar", rev=c1), now=IN_WINDOW
        )
        assert r.tip == c1 and r.new_commits == 1 and len(r.copied) == 3  # k3s, OS, kubectl
        before = recorded(agent)
        assert before[0] == c1 and before[2] == c1
        with pytest.raises(VerificationFailed) as e:
            import_bundle(
                agent, world.bundle("unsigned", tmp_path / "3.tar", rev=c3), now=IN_WINDOW
            )
        assert e.value.commit == c2 and e.value.reason == "unsigned"
        assert recorded(agent) == before  # last verified, mirrored, fetched ref: as they were
        assert c2 not in agent.verified and c3 not in agent.verified
    finally:
        agent.close()


def test_older_and_rewritten_histories_are_rollback_refused(world: World, tmp_path: Path) -> None:
    fleet = world.repo("rollback")
    c1 = fleet.commit(world.files(), at=START)
    c2 = fleet.commit(at=START + 60)
    older = world.bundle("rollback", tmp_path / "older.tar", rev=c1)
    agent = agent_of(world.site(tmp_path / "site"))
    try:
        import_bundle(agent, world.bundle("rollback", tmp_path / "2.tar", rev=c2), now=IN_WINDOW)
        before = recorded(agent)
        assert before[0] == c2
        with pytest.raises(RollbackRefused) as e:
            import_bundle(agent, older, now=IN_WINDOW)
        assert e.value.offered == c1 and e.value.last_verified == c2
        assert recorded(agent) == before
        fork = fleet.commit(at=START + 120, parent=c1)  # a signed rewrite of history after c1
        rewritten = world.bundle("rollback", tmp_path / "fork.tar", rev=fork)
        with pytest.raises(RollbackRefused):
            import_bundle(agent, rewritten, now=IN_WINDOW)
        assert recorded(agent) == before
    finally:
        agent.close()


def test_incremental_bundle_needs_its_base(world: World, tmp_path: Path) -> None:
    fleet = world.repo("incremental")
    c1 = fleet.commit(world.files(), at=START)
    c2 = fleet.commit(at=START + 60)
    inc = world.bundle("incremental", tmp_path / "inc.tar", rev=c2, since=c1)
    assert read_index(inc).since == c1
    agent = agent_of(world.site(tmp_path / "site"))
    try:
        with pytest.raises(SourceUnavailable, match=f"holds only the commits after {c1}"):
            import_bundle(agent, inc, now=IN_WINDOW)
        assert recorded(agent) == (None, {}, None)
        import_bundle(agent, world.bundle("incremental", tmp_path / "1.tar", rev=c1), now=IN_WINDOW)
        r = import_bundle(agent, inc, now=IN_WINDOW)
        assert r.tip == c2 and r.new_commits == 1 and r.copied == ()  # images already cached
    finally:
        agent.close()


def _index(**changes: object) -> bytes:
    index = BundleIndex(
        created_at=datetime(2026, 1, 1, tzinfo=UTC), repo="r", branch="main", tip="a" * 40,
        since=None, path="", git_digest="sha256:" + "0" * 64, git_size=0,
        images=(BundleImage("docker.io/rancher/k3s-upgrade:v1", "sha256:" + "1" * 64,
                            "application/vnd.oci.image.index.v1+json", 1),),
    )  # fmt: skip
    doc = json.loads(index.to_json())
    doc.update(changes)
    return json.dumps(doc).encode()


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w") as t:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            t.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


BLOB = "images/blobs/sha256/" + "1" * 64
UNSAFE = {
    "parent": ([(_member("../evil"), b"x")], "'../evil' has an unsafe path"),
    "absolute": ([(_member("/tmp/evil"), b"x")], "'/tmp/evil' has an unsafe path"),
    "symlink": ([(_member(BLOB, tarfile.SYMTYPE, "/etc/passwd"), b"")], "is a link"),
    "hardlink": ([(_member(BLOB, tarfile.LNKTYPE, INDEX_NAME), b"")], "is a link"),
    "device": ([(_member("images/dev", tarfile.CHRTYPE), b"")], "is a device"),
    "fifo": ([(_member("images/pipe", tarfile.FIFOTYPE), b"")], "is a device or pipe"),
    "duplicate": ([(_member("fleet.bundle"), b"a"), (_member("fleet.bundle"), b"b")],
                  "appears twice"),
    "unknown": ([(_member("images/notes.txt"), b"x")], "unexpected member 'images/notes.txt'"),
    "newline": ([(_member(BLOB + "\n"), b"x")], f"unexpected member {BLOB + chr(10)!r}"),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(UNSAFE))
def test_unsafe_members_refuse_the_whole_bundle(tmp_path: Path, kind: str) -> None:
    members, message = UNSAFE[kind]
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    bundle = _tar(work / "x.tar", [(_member(INDEX_NAME), _index()), *members])
    with pytest.raises(InvalidInput) as e:
        open_bundle(bundle, scratch=work / "scratch")
    assert f"bundle {bundle}" in str(e.value) and message in str(e.value)
    assert list((work / "scratch").iterdir()) == []
    assert not (work / "evil").exists() and not (work / "scratch" / "evil").exists()


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([(_member(INDEX_NAME), b" " * (1 << 20) + b"{}")], "over the 1 MiB limit"),
        ([(_member(INDEX_NAME), _index(version=99))], "format version 99 is not supported"),
        ([(_member(INDEX_NAME), _index(format="x"))], "not a gitedge bundle index"),
        ([(_member("fleet.bundle"), b""), (_member(INDEX_NAME), _index())],
         "does not start with gitedge-bundle.json"),
        ([(_member(INDEX_NAME), _index())], "fleet.bundle is missing"),
        ([(_member(INDEX_NAME), _index(git={"file": "fleet.bundle", "size": float("inf"),
                                            "digest": "sha256:" + "0" * 64}))], "malformed"),
    ],
    ids=["oversized-index", "unknown-version", "not-an-index", "index-not-first", "no-git",
         "infinite-size"],
)  # fmt: skip
def test_malformed_bundles_are_refused(
    tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes]], message: str
) -> None:
    bundle = _tar(tmp_path / "x.tar", members)
    with pytest.raises(InvalidInput, match=message):
        open_bundle(bundle, scratch=tmp_path / "scratch")
    assert list((tmp_path / "scratch").iterdir()) == []


def test_truncated_and_parent_path_bundles_through_the_cli(world: World, tmp_path: Path) -> None:
    fleet = world.repo("cli")
    tip = fleet.commit(world.files(), at=START)
    good = world.bundle("cli", tmp_path / "good.tar", rev=tip)
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    evil = _tar(tmp_path / "evil.tar", [(_member(INDEX_NAME), _index(source={
        "repo": "r", "branch": "main", "tip": tip, "since": None, "path": ""})),
        (_member("../evil"), b"x")])  # fmt: skip
    cfg = world.site(tmp_path / "site")
    for bundle, message in ((truncated, "truncated"), (evil, "'../evil' has an unsafe path")):
        proc = gitedge("bundle", "import", str(bundle), "--config", str(cfg))
        assert proc.returncode == 1, proc.stderr
        assert f"bundle {bundle}" in proc.stdout and message in proc.stdout
    assert not (tmp_path / "evil").exists()
    agent = agent_of(cfg)
    try:
        assert recorded(agent) == (None, {}, None)
    finally:
        agent.close()
    usage = gitedge("bundle", "create", "--repo", str(tmp_path), "--out", str(tmp_path / "o.tar"))
    assert usage.returncode == 2 and "--cluster" in usage.stderr
    assert not (tmp_path / "o.tar").exists()


def test_create_progress_on_a_terminal_and_no_half_file_on_failure(
    world: World, tmp_path: Path
) -> None:
    fleet = world.repo("create")
    files = world.files()
    tip = fleet.commit(files, at=START)
    out = tmp_path / "out" / "b.tar"
    args = [sys.executable, "-m", "gitedge", "bundle", "create", "--repo",
            f"{world.url}/create.git", "--rev", tip, "--cluster", str(world.site(tmp_path / "s")),
            "--out", str(out)]  # fmt: skip
    # on a terminal: one line redrawn with \r, the image count and bytes
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=secondary, timeout=120)
        os.close(secondary)
        shown = b""
        with contextlib.suppress(OSError):
            while chunk := os.read(primary, 65536):
                shown += chunk
    finally:
        os.close(primary)
    assert proc.returncode == 0, shown
    assert b"\rimage 1/3 " in shown and b"\rimage 3/3 " in shown and b"KiB" in shown
    assert out.is_file()
    # an image missing upstream: the create fails naming it, and leaves nothing behind
    files["targets.yaml"] = files["targets.yaml"].replace("edge/os:1.0", "edge/os:9.9")
    tip = fleet.commit(files, at=START + 60)
    out.unlink()
    args[args.index("--rev") + 1] = tip
    failed = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1 and f"{world.reg}/edge/os:9.9 not found" in failed.stderr
    assert list(out.parent.iterdir()) == []


# ---------------------------------------------------------------------------- the demo's fleet


def test_a_bundle_of_the_demo_fleet_imports_into_the_demo_cache(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    proc = gitedge("demo", "--keep", str(demo))
    assert proc.returncode == 0, proc.stdout[-2000:]
    out = tmp_path / "stick.tar"
    # HEAD is the demo's unsigned commit: bring the one before it, every image of every target
    created = gitedge("bundle", "create", "--repo", str(demo / "fleet"), "--rev", "HEAD~1",
                      "--all", "--layouts", str(demo / "upstream"), "--out", str(out))  # fmt: skip
    assert created.returncode == 0, created.stderr
    # a new site like the demo's: the same config, its own state (OCI layouts as cache), offline
    doc = yaml.safe_load((demo / "site" / "agent.yaml").read_text())
    doc["state"]["dir"] = str(tmp_path / "state")
    doc["source"] = {"url": str(tmp_path / "no-repo"), "branch": "main"}
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    imported = gitedge("bundle", "import", str(out), "--config", str(cfg))
    assert imported.returncode == 0, imported.stderr
    cached = [ln.split()[1] for ln in imported.stdout.splitlines() if ln.startswith("cached ")]
    # the example's catalog pins each upgrade image (spec.releases digests): cached by digest
    assert [c.split("@sha256:")[0] for c in cached[:2]] == [
        "docker.io/rancher/k3s-upgrade:v1.29.10-k3s1", "docker.io/rancher/k3s-upgrade:v1.30.6-k3s1"
    ] and all("@sha256:" in c for c in cached[:2])  # fmt: skip
    assert cached[2].startswith("registry.example.com/edge/os:1.4.2@sha256:")
    layout = tmp_path / "state" / "cache" / "docker.io" / "rancher" / "k3s-upgrade"
    tags = {m["annotations"]["org.opencontainers.image.ref.name"]
            for m in json.loads((layout / "index.json").read_text())["manifests"]}  # fmt: skip
    assert tags == {"v1.29.10-k3s1", "v1.30.6-k3s1"}
    # and the site plans and applies (prints) from it with no source reachable
    fleet = load_fleet(read_tree(str(demo / "fleet")))
    state = window_state(fleet.windows["store-nights"].spec, datetime.now(UTC) + timedelta(days=1))
    assert state.next_open is not None
    agent = agent_of(cfg)
    try:
        p = agent.reconcile(now=state.next_open + timedelta(minutes=30))
    finally:
        agent.close()
    assert p.outcomes["sync"] == "retry" and p.outcomes["mirror"] == "ok", p.errors
    assert p.mirrored_now == [] and [a.name for a in p.actions][:1] == ["gitedge-k3s-server"]


def test_a_suc_bundle_brings_a_new_sites_suc_and_its_kubectl(tmp_path: Path) -> None:
    """Issue 15: ``bundle create --suc`` carries SUC's controller image and kubectl image (every
    bundle with a step carries the kubectl); ``bundle import --suc-manifests`` caches both and
    writes SUC's pinned CRD and controller manifest, whose images are those just cached."""
    demo = tmp_path / "demo"
    assert gitedge("demo", "--keep", str(demo)).returncode == 0
    controller = demo / "upstream/docker.io/rancher/system-upgrade-controller"
    make_layout(controller, tag="v0.20.1", layer_sizes=(20_000,))
    out = tmp_path / "stick.tar"
    created = gitedge("bundle", "create", "--repo", str(demo / "fleet"), "--rev", "HEAD~1",
                      "--all", "--suc", "--layouts", str(demo / "upstream"), "--out", str(out))  # fmt: skip
    assert created.returncode == 0, created.stderr
    held = {i.ref for i in read_index(out).images}
    assert {"docker.io/rancher/system-upgrade-controller:v0.20.1",
            "docker.io/rancher/kubectl:v1.30.3"} <= held  # fmt: skip
    doc = yaml.safe_load((demo / "site" / "agent.yaml").read_text())
    doc["state"]["dir"] = str(tmp_path / "state")
    doc["source"] = {"url": str(tmp_path / "no-repo"), "branch": "main"}
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    suc = tmp_path / "suc"
    imported = gitedge(
        "bundle", "import", str(out), "--config", str(cfg), "--suc-manifests", str(suc)
    )
    assert imported.returncode == 0, imported.stderr
    cached = {ln.split()[1] for ln in imported.stdout.splitlines() if ln.startswith("cached ")}
    assert {"docker.io/rancher/system-upgrade-controller:v0.20.1",
            "docker.io/rancher/kubectl:v1.30.3"} <= cached  # fmt: skip
    vendored = Path(__file__).resolve().parent.parent / "gitedge/data/suc/v0.20.1"
    for name in ("crd.yaml", "system-upgrade-controller.yaml"):
        assert (suc / name).read_bytes() == (vendored / name).read_bytes()
    assert f"kubectl apply -f {suc / 'crd.yaml'}" in imported.stdout
    docs = list(yaml.safe_load_all((suc / "system-upgrade-controller.yaml").read_text()))
    dep = next(d for d in docs if d and d["kind"] == "Deployment")
    env = next(d for d in docs if d and d["kind"] == "ConfigMap")["data"]
    images = {dep["spec"]["template"]["spec"]["containers"][0]["image"],
              env["SYSTEM_UPGRADE_JOB_KUBECTL_IMAGE"]}  # fmt: skip
    assert {f"docker.io/{i}" for i in images} <= cached
    crd = yaml.safe_load((suc / "crd.yaml").read_text())
    assert crd["metadata"]["name"] == "plans.upgrade.cattle.io"


# ---------------------------------------------------------------------------- the inbox


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_bundle_dir_is_imported_by_the_next_pass_once(world: World, tmp_path: Path) -> None:
    fleet = world.repo("inbox")
    c1 = fleet.commit(world.files(), at=START)
    c2 = fleet.commit(at=START + 60)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    cfg = world.site(tmp_path / "site", bundle_dir=inbox)
    state_dir = tmp_path / "site" / "state"
    logs = _Lines()
    logging.getLogger("gitedge.agent").addHandler(logs)
    agent = agent_of(cfg)
    loop = AgentLoop(agent, clock=lambda: IN_WINDOW)

    def run(hours: int) -> Pass:
        return agent.reconcile(now=IN_WINDOW + timedelta(hours=hours))

    def bundle_condition(p: Pass) -> tuple[str, str, str]:
        c = next(c for c in p.conditions if c.type == BUNDLE_IMPORTED)
        return c.status, c.reason, c.message

    def scheduled() -> datetime | None:
        job = loop.scheduler.get_job("sync")
        return None if job is None else job.trigger.run_date  # type: ignore[no-any-return]

    try:
        loop._poll_bundles()
        assert scheduled() is None  # nothing dropped: no pass started
        # a technician drops a bundle: the poll starts a pass, the pass imports it
        world.bundle("inbox", inbox / ".a.tar", rev=c1).rename(inbox / "a.tar")
        assert pending_bundles(bundle_dir=str(inbox), state_dir=state_dir) == [inbox / "a.tar"]
        loop._poll_bundles()
        assert scheduled() == IN_WINDOW
        p = run(0)
        # the source is unreachable: the bundle stands in for the fetch (issue 18, item 10)
        assert p.outcomes == {"sync": "bundle", **dict.fromkeys(
            ("verify", "clock", "plan", "mirror", "apply"), "ok")}, p.errors  # fmt: skip
        assert p.tip == c1 and p.mirror_complete and len(p.mirrored_now) == 3
        status, _, message = bundle_condition(p)
        assert status == "True" and message.startswith("a.tar: verified 1 new commit(s)")
        assert pending_bundles(bundle_dir=str(inbox), state_dir=state_dir) == []
        loop.scheduler.remove_job("sync")
        loop._poll_bundles()
        assert scheduled() is None
        seen = agent.state.get_doc("bundles")["seen"]
        assert [v["result"] for v in seen.values()] == ["imported"]

        # the next passes: not imported again, nor a copy under another name
        shutil.copy(inbox / "a.tar", inbox / "copy.tar")
        p = run(1)
        assert p.outcomes["sync"] == "retry" and p.tip == c1  # offline, nothing new
        assert agent.state.get_doc("bundles")["seen"] == seen
        assert not [ln for ln in logs.lines if ln.startswith("imported bundle")][1:]

        # a bad bundle: reported (condition and log naming the file), the pass goes on
        bad = world.bundle("inbox", tmp_path / "bad.tar", rev=c2, since=c1)
        flip_byte(bad, f"images/blobs/sha256/{layer_of(world.os_img).split(':')[1]}")
        shutil.copy(bad, inbox / "bad.tar")
        p = run(2)
        status, reason, message = bundle_condition(p)
        assert (status, reason) == ("False", "DigestMismatch") and str(inbox / "bad.tar") in message
        assert [ln for ln in logs.lines if ln.startswith(f"bundle {inbox / 'bad.tar'} refused")]
        assert p.outcomes["verify"] == "ok" and p.outcomes["apply"] == "ok" and p.tip == c1
        refused = len(logs.lines)
        run(3)  # remembered: not tried again
        assert not [ln for ln in logs.lines[refused:] if "bad.tar" in ln]

        # a good incremental bundle after it: imported on top
        world.bundle("inbox", inbox / "c.tar", rev=c2, since=c1)
        p = run(4)
        assert p.tip == c2 and bundle_condition(p)[0] == "True"
        assert agent.state.last_verified is not None and agent.state.last_verified.commit == c2
    finally:
        logging.getLogger("gitedge.agent").removeHandler(logs)
        agent.close()


@pytest.mark.parametrize("since", ["a" * 64, "a" * 40 + "\n"], ids=["sha256-id", "newline"])
def test_a_base_commit_this_repository_cannot_name_is_refused_the_pass_goes_on(
    tmp_path: Path, since: str
) -> None:
    """An incremental bundle whose index names its base as an id libgit2 refuses here (a
    SHA-256 id in a SHA-1 mirror, a trailing newline) is refused like any bad bundle; it must
    not end the pass (every pass while it sits in bundleDir)."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _tar(inbox / "x.tar", [(_member(INDEX_NAME), _index(source={
        "repo": "r", "branch": "main", "tip": "b" * 40, "since": since, "path": ""}))])  # fmt: skip
    key = make_ssh_key(tmp_path, "ed25519")
    cfg = write_site(tmp_path / "site", git_url=str(tmp_path / "gone.git"), key=key,
                     k3s="v1.30.4+k3s1", bundle_dir=inbox)  # fmt: skip
    agent = agent_of(cfg)
    try:
        p = agent.reconcile(now=IN_WINDOW)
    finally:
        agent.close()
    c = next(c for c in p.conditions if c.type == BUNDLE_IMPORTED)
    assert (c.status, c.reason) == ("False", "InvalidInput") and str(inbox / "x.tar") in c.message
    # a trailing newline is not a commit id at all (the index is refused as malformed)
    assert ("base commit" in c.message) if since == "a" * 64 else ("not a commit id" in c.message)


def test_deeply_nested_json_is_refused_not_a_recursion_error(tmp_path: Path) -> None:
    """JSON nested deeper than the interpreter recurses (an index, a manifest blob that hashes
    to its name) is a bad bundle, refused like any other; RecursionError would end the pass."""
    bundle = _tar(tmp_path / "deep-index.tar", [(_member(INDEX_NAME), b"[" * 100_000)])
    with pytest.raises(InvalidInput, match="not JSON"):
        read_index(bundle)
    manifest = b'{"schemaVersion": 2, "layers": ' + b"[" * 100_000
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    image = {"ref": "docker.io/rancher/k3s-upgrade:v1", "digest": digest, "size": len(manifest),
             "mediaType": "application/vnd.oci.image.manifest.v1+json"}  # fmt: skip
    git = {"file": "fleet.bundle", "size": 0, "digest": "sha256:" + hashlib.sha256().hexdigest()}
    bundle = _tar(tmp_path / "deep-manifest.tar", [
        (_member(INDEX_NAME), _index(images=[image], git=git)), (_member("fleet.bundle"), b""),
        (_member("images/blobs/" + digest.replace(":", "/")), manifest)])  # fmt: skip
    with pytest.raises(InvalidImage, match="not JSON"):
        open_bundle(bundle, scratch=tmp_path / "scratch")
    assert list((tmp_path / "scratch").iterdir()) == []
