"""``gitedge demo``: the whole story on this machine, with no services, in a few seconds.

In a temporary directory it builds:

- a **signed fleet repo** from ``examples/fleet-repo`` (a throwaway ed25519 key made with
  ``ssh-keygen``; commits signed by ``git commit -S`` with ``gpg.format=ssh``), whose trust
  policy names that key, and an ``allowed_signers`` file pinned as the site's bootstrap trust;
- an **upstream** played by OCI image layouts (small generated images, two platforms), which
  the site cannot reach: its images come on a technician's USB stick, as **offline bundles**
  (``gitedge bundle create --all --layouts``) dropped into the site's ``source.bundleDir``;
- the **local cache**: OCI layouts under the state directory (no registry is running);

then runs the real agent (``Agent.reconcile``, ``apply.mode: print``) for the site
``store-berlin-0042`` of ``examples/agent.yaml`` through: a first sync outside its window (the
stick's first bundle imported: verified, its images cached); an offline period during which the
operators commit (the source is unreachable: the agent keeps working from its last verified
commit); a second stick brought inside the window while still offline (the new range verified
from the bundle like a fetch, every image of the K3s path cached, the first step's SUC Plans
printed); and, back online, an unsigned commit, refused with the last verified commit kept.
``say`` gets every line to print.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from gitedge.adapters.git.worktree import read_tree
from gitedge.agent.bundles.create import create_bundle
from gitedge.agent.reconcile import Agent, Pass, PrintCluster
from gitedge.agent.steps.status import status_text
from gitedge.core.config import AgentConfig
from gitedge.core.delivery.sucimages import SUC_IMAGE, default_kubectl_image
from gitedge.core.fleet.model import load_fleet
from gitedge.core.fleet.windows import window_state
from gitedge.core.images.refs import ImageRef
from gitedge.core.rollout.sucplans import k3s_image_tag
from gitedge.core.status.conditions import BUNDLE_IMPORTED
from gitedge.errors import GitEdgeError, UsageError

Say = Callable[[str], None]
REF_NAME = "org.opencontainers.image.ref.name"
PLATFORMS = ("amd64", "arm64")

__all__ = ["run_demo"]


def _tool(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    exe = shutil.which(args[0])
    if exe is None:
        raise UsageError(f"the demo needs {args[0]!r} on PATH (apt-get install git openssh-client)")
    try:
        out = subprocess.run(
            [exe, *args[1:]],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            check=True,
        )
    except subprocess.CalledProcessError as e:
        raise GitEdgeError(f"{' '.join(args[:3])}: {e.stderr.strip()[:300]}") from None
    return out.stdout.strip()


class _Layouts:
    """Small generated images written as OCI layouts, one layout per repository, one tag each."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _blob(self, layout: Path, data: bytes) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = layout / "blobs" / "sha256" / digest[7:]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return {"digest": digest, "size": len(data)}

    def add(self, ref: ImageRef, tag: str) -> str:
        layout = self.root / ref.registry / ref.repository
        layout.mkdir(parents=True, exist_ok=True)
        (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        children = []
        for arch in PLATFORMS:
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                payload = f"{ref.repository}:{tag} for linux/{arch}\n".encode() * 512
                info = tarfile.TarInfo("etc/release")
                info.size, info.mtime = len(payload), 0
                tar.addfile(info, io.BytesIO(payload))
            layer = self._blob(layout, buf.getvalue())
            config = self._blob(
                layout,
                json.dumps(
                    {
                        "architecture": arch,
                        "os": "linux",
                        "config": {},
                        "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
                    }
                ).encode(),
            )
            manifest = {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer}],
            }
            m = self._blob(layout, json.dumps(manifest).encode())
            children.append(
                {
                    "mediaType": manifest["mediaType"],
                    **m,
                    "platform": {"architecture": arch, "os": "linux"},
                }
            )
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": children,
        }
        top = self._blob(layout, json.dumps(index).encode())
        index_file = layout / "index.json"
        entries = json.loads(index_file.read_text())["manifests"] if index_file.exists() else []
        entries.append({"mediaType": index["mediaType"], **top, "annotations": {REF_NAME: tag}})
        index_file.write_text(json.dumps({"schemaVersion": 2, "manifests": entries}))
        return str(top["digest"])


class _FleetRepo:
    """The operators' side: a git work tree whose commits are signed with the throwaway key."""

    def __init__(self, path: Path, key: Path, home: Path) -> None:
        self.path = path
        home.mkdir(parents=True, exist_ok=True)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "GIT_CONFIG_NOSYSTEM": "1",
        }
        self.git("init", "-q", "-b", "main")
        for k, v in (
            ("user.name", "Release Bot"),
            ("user.email", "release@fleet.example"),
            ("gpg.format", "ssh"),
            ("user.signingkey", str(key)),
            ("commit.gpgsign", "false"),
        ):
            self.git("config", k, v)

    def git(self, *args: str) -> str:
        return _tool("git", *args, cwd=self.path, env=self.env)

    def commit(self, message: str, *, signed: bool = True) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", *(["-S"] if signed else []), "-m", message)
        return self.git("rev-parse", "HEAD")


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    if old not in text:
        raise GitEdgeError(
            f"demo: {path.name} no longer holds {old!r}; update gitedge/agent/demo.py"
        )
    path.write_text(text.replace(old, new))


def _examples() -> Path:
    """The example fleet repo and agent config: the copy a wheel carries as package data
    (``gitedge/_examples``, copied from ``examples/`` by setup.py when the wheel is built), else
    the source checkout's ``examples/`` (a checkout or an editable install)."""
    package = Path(__file__).resolve().parents[1]
    candidates = (package / "_examples", package.parent / "examples")
    for d in candidates:
        if (d / "fleet-repo").is_dir() and (d / "agent.yaml").is_file():
            return d
    raise UsageError(
        f"the demo's example fleet is missing (looked in {candidates[0]} and {candidates[1]}): "
        "reinstall gitedge from its wheel"
    )


def run_demo(say: Say, *, keep: Path | None = None) -> int:
    """Run the story; 0 when every stage did what it should (the checks are the story's)."""
    examples = _examples()
    if keep is not None:
        try:
            keep.mkdir(parents=True, exist_ok=True)
            used = any(keep.iterdir())
        except OSError as e:
            why = "not a directory" if isinstance(e, FileExistsError) else e.strerror
            raise UsageError(f"--keep {keep}: {why}; give a new or empty directory") from None
        if used:
            raise UsageError(f"--keep {keep}: not empty; give a new or empty directory")
    with tempfile.TemporaryDirectory(prefix="gitedge-demo-") as tmp_name:
        tmp = keep or Path(tmp_name)
        return _story(tmp, say, examples)


def _story(tmp: Path, say: Say, examples: Path) -> int:
    say(f"gitedge demo: a store's agent, its fleet repo and its images, all in {tmp}\n")
    key = tmp / "keys" / "release"
    key.parent.mkdir(parents=True)
    _tool(
        "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "release@fleet.example", "-f", str(key)
    )
    public = key.with_suffix(".pub").read_text().strip()
    allowed = tmp / "site" / "allowed_signers"
    allowed.parent.mkdir(parents=True)
    allowed.write_text(f"release@fleet.example {public}\n")

    # --- the fleet repo: examples/fleet-repo, with a trust policy naming the throwaway key
    work = tmp / "fleet"
    shutil.copytree(examples / "fleet-repo", work)
    (work / ".gitedge" / "trust.yaml").write_text(
        "apiVersion: gitedge.io/v1alpha1\nkind: TrustPolicy\nmetadata: {name: fleet}\nspec:\n"
        f"  verify: all\n  signers:\n    - name: release-bot\n      key: {json.dumps(public)}\n"
        "      roles: [release, admin]\n"
    )
    # --- the "upstream": every image the examples name, as OCI layouts the site cannot reach
    upstream = tmp / "upstream"
    layouts = _Layouts(upstream)
    fleet = load_fleet(read_tree(str(work)))
    upgrade = ImageRef.parse("rancher/k3s-upgrade")
    details = fleet.k3s_release_details()
    for v in fleet.k3s_releases():
        digest = layouts.add(upgrade, k3s_image_tag(v.text))
        pinned = details[v].digest if v in details else None
        if pinned:  # the example pins digests: pin the generated images' instead
            _edit(work / "releases.yaml", pinned, digest)
    kubectl = ImageRef.parse(default_kubectl_image(SUC_IMAGE))  # SUC's Jobs cordon with it
    layouts.add(kubectl, kubectl.tag or "latest")
    stores = work / "targets" / "stores.yaml"
    for name, t in fleet.targets.items():
        if t.spec.os is not None:
            ref = ImageRef.parse(t.spec.os.image)
            digest = layouts.add(ref, ref.tag or "latest")
            path = work / fleet.origins[("UpgradeTarget", name)].path
            if ref.digest:  # the example pins a digest: pin the generated image's instead
                _edit(path, ref.digest, digest)
            for step in t.spec.os.via:  # an OS image carrying K3s of an intermediate minor
                via = ImageRef.parse(step.image)
                via_digest = layouts.add(via, via.tag or "latest")
                if via.digest:
                    _edit(path, via.digest, via_digest)
    # the fleet starts older than the example: stores on K3s v1.29.10, the OS not yet targeted
    _edit(stores, "    version: v1.30.6+k3s1", "    version: v1.29.10+k3s1")
    os_block = stores.read_text().split("  os:\n", 1)[1].split("  k3s:\n", 1)[0]
    _edit(stores, "  os:\n" + os_block, "")
    repo = _FleetRepo(work, key, tmp / "home")
    first = repo.commit("fleet: stores on K3s v1.29.10")
    say(f"fleet repo: {work} (commit {first[:12]} signed by a throwaway ssh-keygen key)")
    say(
        f"upstream:   OCI layouts of {len(list(upstream.glob('*/*/*')))} repositories at "
        f"{upstream}; the site has no route to them"
    )
    stick = tmp / "stick"
    stick.mkdir()
    _stick(work, upstream, stick / "fleet-1.tar", rev=first, since=None, say=say)

    # --- the site: examples/agent.yaml, pointed at the temp dirs, apply.mode print
    cfg_doc = yaml.safe_load((examples / "agent.yaml").read_text())
    cfg_doc["source"] = {
        "url": str(work),
        "branch": "main",
        "interval": "10m",
        "bundleDir": str(stick),
    }
    cfg_doc["trust"] = {"bootstrap": str(allowed)}
    cfg_doc["registry"] = {"platforms": "auto"}
    cfg_doc["apply"] = {"mode": "print"}
    cfg_doc["state"] = {"dir": str(tmp / "site" / "state")}
    config = AgentConfig.model_validate(cfg_doc)
    (tmp / "site" / "agent.yaml").write_text(yaml.safe_dump(cfg_doc, sort_keys=False))
    status = config.cluster.status
    say(
        f"site:       {config.cluster.name} running K3s {status.k3s_version} on "
        f"{', '.join(status.arches)}; cache: OCI layouts in {config.state.dir}/cache "
        "(no registry running); apply.mode: print\n"
    )

    window = fleet.windows["store-nights"].spec
    t0 = datetime.now(UTC)
    if window_state(window, t0).open:
        t0 = window_state(window, t0).closes_at or t0
        t0 += timedelta(minutes=5)
    ok = True

    # 1. first sync, outside the window; the first stick is in bundleDir
    say(
        f"[1] {t0:%Y-%m-%d %H:%M} UTC, first sync (outside the store-nights window); "
        "the stick is in the site's bundleDir"
    )
    p = _pass(config, t0, say, bundle="fleet-1.tar")
    ok &= p.outcomes.get("verify") == "ok" and p.mirror_complete and not p.actions
    ok &= _imported(p, "fleet-1.tar")
    say(
        "    -> the bundle verified like a fetch and its images cached; every image of the path "
        "is in the cache; the window is closed: nothing applied\n"
    )

    # 2. offline: the operators move on; the site cannot reach the repo
    offline_at = t0 + timedelta(days=3)
    hidden = tmp / "fleet-away"
    _edit(stores, "    version: v1.29.10+k3s1", "    version: v1.30.6+k3s1")
    _edit(stores, "  priority: 10\n", "  priority: 10\n  os:\n" + os_block)
    second = repo.commit("stores: K3s v1.30.6 and OS 1.4.2")
    work.rename(hidden)
    say(
        f"[2] {offline_at:%Y-%m-%d %H:%M} UTC, offline: the operators signed {second[:12]} "
        "(K3s v1.30.6, OS 1.4.2) but the site cannot reach the repo"
    )
    say(
        f"    (the demo cuts the link by moving the repo away to {hidden.name}/: the agent's "
        "fetch fails, as it would with the uplink down)"
    )
    p = _pass(config, offline_at, say)
    ok &= p.outcomes.get("sync") == "retry" and p.tip == first
    say(f"    -> fetch failed (retried with backoff); still working from {first[:12]}\n")

    # 3. still offline, inside the window: a technician brings the operators' new bundle
    state = window_state(window, offline_at + timedelta(days=1))
    when = (state.next_open or offline_at) + timedelta(minutes=30)
    say(
        f"[3] {when:%Y-%m-%d %H:%M} UTC, still offline, inside the store-nights window: a "
        "technician brings a stick"
    )
    _stick(hidden, upstream, stick / "fleet-2.tar", rev=second, since=first, say=say)
    p = _pass(config, when, say, bundle="fleet-2.tar")
    ok &= p.tip == second and p.mirror_complete and bool(p.actions)
    ok &= _imported(p, "fleet-2.tar")
    say(
        "    -> the new commit verified from the bundle exactly as a fetch would be, every image "
        "of the path cached first, then the SUC Plans of the first step printed above "
        "(apply.mode: print)\n"
    )

    # 4. back online, an unsigned commit: refused, the last verified commit kept
    hidden.rename(work)
    (work / "notes.txt").write_text("an unsigned change\n")
    bad = repo.commit("unsigned change", signed=False)
    later = when + timedelta(hours=1)
    say(
        f"[4] {later:%Y-%m-%d %H:%M} UTC, back online; someone pushed {bad[:12]} without a "
        "signature"
    )
    p = _pass(config, later, say, show_plans=False)
    ok &= p.outcomes.get("verify") == "stalled" and p.tip == second
    say(f"    -> refused ({p.errors.get('verify', '?')[:90]}); still on {second[:12]}\n")

    say("what the site reports (`gitedge status --config agent.yaml`):")
    say("  " + status_text(p.status).replace("\n", "\n  "))
    say(
        "\n"
        + (
            "demo ok: verified, mirrored and applied (printed) as the fleet asked"
            if ok
            else "demo FAILED: a stage did not do what it should"
        )
    )
    return 0 if ok else 1


def _stick(repo: Path, upstream: Path, out: Path, *, rev: str, since: str | None, say: Say) -> None:
    """``gitedge bundle create --repo REPO --rev REV [--since S] --all --layouts UPSTREAM``."""
    r = create_bundle(
        repo=str(repo),
        out=out,
        now=datetime.now(UTC),
        rev=rev,
        since=since,
        branch="main",
        all_targets=True,
        layouts=upstream,
    )
    what = f"the commits after {since[:12]}" if since else "the whole history"
    say(
        f"stick:      {out.name}: {what} up to {r.tip[:12]} and {len(r.images)} images "
        f"({r.blobs} blobs, {r.size >> 10} KiB): `gitedge bundle create --all`"
    )


def _imported(p: Pass, name: str) -> bool:
    c = next((c for c in p.conditions if c.type == BUNDLE_IMPORTED), None)
    return c is not None and c.status == "True" and c.message.startswith(name)


def _pass(
    config: AgentConfig, now: datetime, say: Say, *, show_plans: bool = True, bundle: str = ""
) -> Pass:
    printed: list[str] = []
    agent = Agent(config, cluster=PrintCluster(config=config, out=printed.append))
    try:
        p = agent.reconcile(now=now)
    finally:
        agent.close()
    steps = ", ".join(f"{k} {v}" for k, v in p.outcomes.items())
    say(f"    steps: {steps}")
    if bundle and _imported(p, bundle):
        msg = next(c.message for c in p.conditions if c.type == BUNDLE_IMPORTED)
        say(f"    bundle {msg}")
    if p.new_commits:
        say(f"    verified {p.new_commits} new commit(s), now at {p.tip}")
    if p.plan is not None and p.plan.k3s is not None:
        path = " -> ".join(p.plan.k3s.path) or "nothing to do"
        say(
            f"    plan: K3s {p.plan.k3s.version} via {path}"
            + (f"; OS {p.plan.os.image}" if p.plan.os else "")
        )
    for key, digest, size in p.mirrored_now:
        say(f"    mirrored {key} -> cache {digest[:19]}... ({size} bytes)")
    for line in printed if show_plans else ():
        say("    " + line.replace("\n", "\n    "))
    by = {c.type: c for c in p.conditions}
    ready = by.get("Ready")
    if ready is not None:
        say(f"    Ready={ready.status} ({ready.reason})")
    return p
