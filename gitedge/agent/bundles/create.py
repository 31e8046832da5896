"""Offline bundles: ``gitedge bundle create``, ``gitedge bundle import``, and the ``bundleDir``
inbox the running agent watches.

**Create** (an operator's machine, online): fetch the fleet repo at ``rev`` into a scratch repo,
load the fleet at that commit, choose the images (``core/delivery/bundlecontents``: what the named
clusters' plans need, the whole K3s path included, or every target's with ``all``), copy each into
one OCI layout with the mirror engine (every digest verified, blobs stored once), add the git bundle
of (since, rev], and write the tar (``adapters/images/bundlefile``): temp file, then rename.

**Import** (the site, offline) and the ``bundleDir`` **inbox**: ``agent/bundles/importing.py``, the
pass's own steps over the bundle as the source.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from gitedge.adapters.git.bundle import stage_git, write_git_bundle
from gitedge.adapters.git.repo import GitRepo
from gitedge.adapters.images.blobcopy import Progress as MirrorProgress
from gitedge.adapters.images.bundlefile import file_digest, write_bundle
from gitedge.adapters.images.endpoints import endpoint_refs, first_served
from gitedge.adapters.images.mirroring import LayoutRef, Location, Mirror, MirrorResult
from gitedge.adapters.images.ocilayout import INDEX_MEDIA_TYPE, OciLayout
from gitedge.adapters.registry.hosts import Hosts
from gitedge.agent.bundles.importing import (
    BundleProgress,
    ProgressFn,
)
from gitedge.agent.steps.imagetrust import carry_signatures
from gitedge.agent.steps.mirrorimage import check_tag
from gitedge.core.config import AgentConfig, SiteFile
from gitedge.core.delivery.bundlecontents import bundle_images
from gitedge.core.delivery.bundleindex import GIT_NAME, LAYOUT_DIR, BundleImage, BundleIndex
from gitedge.core.fleet.model import load_fleet
from gitedge.core.images.manifests import Platform
from gitedge.core.images.refs import ImageRef
from gitedge.core.validation import site_facts
from gitedge.errors import (
    DigestMismatch,
    Transient,
    UsageError,
    scrub,
)

log = logging.getLogger("gitedge.agent")

__all__ = ["CreateResult", "create_bundle"]


# ---------------------------------------------------------------------------- create


@dataclass(frozen=True)
class CreateResult:
    out: Path
    size: int
    branch: str
    tip: str
    since: str | None
    images: tuple[BundleImage, ...]
    blobs: int
    copied_bytes: int
    # registry.endpoints: (image, the endpoint that served it) for each image read from a
    # registry that has endpoints, and why each endpoint passed over was skipped
    served: tuple[tuple[str, str], ...] = ()
    skipped: tuple[str, ...] = ()


def _common(values: Iterable[str], what: str) -> str | None:
    found = sorted(set(values))
    if len(found) > 1:
        raise UsageError(f"the AgentConfigs given disagree on {what} ({', '.join(found)})")
    return found[0] if found else None


def _branch_of(rev: str | None) -> str | None:
    """``rev`` when it names a branch (``main``, ``refs/heads/main``), not a commit or HEAD~1."""
    if rev is None or rev == "HEAD" or all(c in "0123456789abcdef" for c in rev):
        return None
    name = rev.removeprefix("refs/heads/")
    return name if re.fullmatch(r"[A-Za-z][A-Za-z0-9._/-]{0,199}", name) else None


def _layout_source(layouts: Path | None, ref: ImageRef) -> Location:
    """``<layouts>/<registry>/<repository>`` when that OCI layout holds the reference."""
    if layouts is None:
        return ref
    d = layouts / ref.registry / ref.repository
    reference = ref.tag or ref.digest
    if (
        reference
        and (d / "index.json").is_file()
        and OciLayout(path=d).manifest_digest(reference, what=str(ref)) is not None
    ):
        return LayoutRef(d, reference)
    return ref


def _empty_layout(layout: Path) -> None:
    """An OCI layout that holds no image (image-spec ``image-layout.md``: the marker and an
    empty ``index.json``), so a bundle that brings only commits has the same members."""
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_bytes(b'{"imageLayoutVersion":"1.0.0"}')
    index = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []}
    (layout / "index.json").write_bytes(json.dumps(index).encode() + b"\n")


def create_bundle(
    *,
    repo: str,
    out: Path,
    now: datetime,
    rev: str | None = None,
    since: str | None = None,
    branch: str | None = None,
    sites: Sequence[SiteFile] = (),
    all_targets: bool = False,
    platforms: Sequence[str] = (),
    layouts: Path | None = None,
    hosts: Hosts | None = None,
    endpoints: Mapping[str, Sequence[str]] | None = None,
    jobs: int = 4,
    progress: ProgressFn | None = None,
    timeout_s: float = 600.0,
    suc: bool = False,
    kubectl: Sequence[str] = (),
) -> CreateResult:
    """Write the bundle ``out`` (module docstring). ``sites`` are Cluster identities or
    AgentConfigs (whose ``source.branch``/``source.path`` are used when they agree);
    ``layouts`` is a directory of OCI layouts ``<registry>/<repository>`` preferred to the
    registries; ``platforms`` cuts indexes (never an image pinned by digest). ``endpoints``
    (an AgentConfig's ``registry.endpoints``) are read before each image's registry, as the
    agent's mirror step reads them: an endpoint serving wrong bytes is skipped for the next.
    ``kubectl``: the kubectl images the sites' SUC runs, besides the AgentConfigs'
    ``apply.kubectlImage``."""
    if not sites and not all_targets:
        raise UsageError("name the sites with --cluster FILE (repeatable), or use --all")
    try:
        plats = [Platform.parse(p) for p in platforms]
    except ValueError as e:
        raise UsageError(str(e)) from None
    configs = [s for s in sites if isinstance(s, AgentConfig)]
    branch = (
        branch
        or _common((c.source.branch for c in configs), "source.branch")
        or _branch_of(rev)
        or "main"
    )
    subdir = _common((c.source.path for c in configs), "source.path") or ""
    report = progress or (lambda _: None)
    out = out.absolute()
    if out.is_dir():
        raise UsageError(f"--out {out}: a directory; name the bundle file, e.g. {out}/fleet.tar")
    try:  # before anything is fetched: the bundle is written beside where it goes
        out.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.work-"))
    except OSError as e:
        raise UsageError(f"--out {out}: cannot write there: {e.strerror}") from None
    try:
        report(BundleProgress("fetch", repo))
        stage = stage_git(
            repo=repo,
            rev=rev or "HEAD",
            since=since,
            branch=branch,
            into=scratch / "repo.git",
            timeout_s=timeout_s,
        )
        snap = GitRepo(path=stage.path).tree_snapshot(stage.tip, subdir=subdir)
        fleet = load_fleet(snap, subdir=subdir, origin=f"{scrub(repo, limit=200)}@{stage.tip[:12]}")
        facts = [site_facts(s) for s in sites]
        kubectl = [*kubectl, *(c.apply.kubectl_image for c in configs if c.apply.kubectl_image)]
        refs = bundle_images(
            fleet, facts, all_targets=all_targets, now=now, kubectl=sorted(set(kubectl)), suc=suc
        )
        layout = scratch / LAYOUT_DIR
        images: list[BundleImage] = []
        copied = 0
        current = BundleProgress("image", "", 0, len(refs))

        def on_mirror(mp: MirrorProgress) -> None:
            report(replace(current, done_bytes=mp.done_bytes, total_bytes=mp.total_bytes))

        catalog = {e.digest for e in fleet.k3s_release_details().values() if e.digest}
        served: list[tuple[str, str]] = []
        skipped: list[str] = []
        with Mirror(hosts=hosts, jobs=jobs, progress=on_mirror) as mirror:
            for i, ref in enumerate(refs, 1):
                current = BundleProgress("image", str(ref), i, len(refs))
                source = _layout_source(layouts, ref)

                def attempt(src: Location, ref: ImageRef = ref) -> MirrorResult:
                    if ref.tag and ref.digest in catalog and isinstance(src, ImageRef):
                        check_tag(mirror, src)  # a K3sReleases digest: the tag must serve it
                    r = mirror.mirror(
                        src, LayoutRef(layout, str(ref)), platforms=() if ref.digest else plats
                    )
                    if ref.digest and r.source_digest != ref.digest:
                        raise DigestMismatch(
                            image=str(ref),
                            digest=ref.digest,
                            detail=f"{src} holds {r.source_digest}",
                        )
                    return r

                if isinstance(source, ImageRef) and (endpoints or {}).get(source.registry):
                    r, by, passed = first_served(endpoint_refs(source, endpoints or {}), attempt)
                    source = by
                    served.append((str(ref), by.registry))
                    skipped += passed
                else:
                    r = attempt(source)
                size = r.stats.bytes_total or next(
                    (x.size for x in images if x.digest == r.digest), 0
                )
                images.append(BundleImage(str(ref), r.digest, r.media_type, size))
                # its cosign signatures travel with it (agent/steps/imagetrust.py), for the site
                carry_signatures(
                    mirror,
                    ref=ref,
                    src_image=source,
                    layout=layout,
                    signed=r.source_digest,
                    cached=r.digest,
                    what=str(ref),
                )
                copied += r.stats.bytes_copied
                report(replace(current, done_bytes=size, total_bytes=size, finished=True))
        if not images:  # commits only (a trust rotation, a change no image follows)
            _empty_layout(layout)
        report(BundleProgress("git", f"{stage.branch} at {stage.tip}"))
        git_file = scratch / GIT_NAME
        write_git_bundle(stage, git_file, timeout_s=timeout_s)
        index = BundleIndex(
            created_at=now,
            repo=scrub(repo, limit=200),
            branch=stage.branch,
            tip=stage.tip,
            since=stage.since,
            path=subdir,
            git_digest=file_digest(git_file),
            git_size=git_file.stat().st_size,
            images=tuple(images),
            platforms=tuple(str(p) for p in plats),
            clusters=tuple(f.name for f in facts),
            all_images=all_targets,
        )

        def on_write(done: int, total: int) -> None:
            report(BundleProgress("write", str(out), 0, 0, done, total, done >= total))

        try:
            size = write_bundle(
                out, index=index, git_file=git_file, layout=layout, progress=on_write
            )
        except OSError as e:  # a full disk, a directory that appeared at --out meanwhile
            raise Transient(f"--out {out}: the bundle was not written: {e.strerror}") from None
        blobs = sum(1 for _ in (layout / "blobs").glob("*/*")) if layout.exists() else 0
        return CreateResult(
            out,
            size,
            stage.branch,
            stage.tip,
            stage.since,
            tuple(images),
            blobs,
            copied,
            tuple(served),
            tuple(skipped),
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
