"""Offline bundles: ``gitedge bundle create``, ``gitedge bundle import``, and the ``bundleDir``
inbox the running agent watches.

**Create** (an operator's machine, online): fetch the fleet repo at ``rev`` into a scratch repo,
load the fleet at that commit, choose the images (``core/bundleplan``: what the named clusters'
plans need, the whole K3s path included, or every target's with ``all``), copy each into one
OCI layout with the mirror engine (every digest verified, blobs stored once), add the git bundle
of (since, rev], and write the tar (``adapters/bundlefile``): temp file, then rename.

**Import** (the site, offline) runs the agent's own steps with the bundle as the source, so there
is one verification path, the network fetch's:

1. the file is read once for its digest, its index checked (format version, branch, the commit
   an incremental bundle needs), then extracted with every blob, the git bundle and every image
   checked (``open_bundle``): a tampered or unsafe bundle is refused here, before anything is
   recorded anywhere;
2. its git bundle lands in the mirror's fetched ref (``GitMirror.import_bundle``), and the
   agent's verify step runs over (last verified, bundle tip]: trust policy, signatures, the
   rollback rule. A refused range puts the fetched ref back where it was;
3. the agent's plan step, then its mirror step restricted to the images the bundle holds, with
   the bundle's layout as the source (``Agent._source_location``): the cache is filled and the
   mirrored state recorded exactly as an online pass does, so the next pass needs no network.
   That step (``agent/caching.py``) records an image only after every blob of it in the cache
   hashed to its digest: a cache already holding other bytes under a digest the bundle brings
   is repaired from the bundle (a layout) or refused naming the blob (a registry).

**Inbox**: each pass first imports every ``*.tar`` in ``source.bundleDir`` not seen before (by
content digest, so a copy under another name is not imported twice). A refused bundle is
remembered, logged and reported in the ``BundleImported`` condition, and does not stop the pass;
a bundle that failed for a reason that may heal (the cache registry down) is tried again by the
next pass. Files are left where they are (a stick may be read-only); what was done with each is
in the state (``agent/inbox.py``, light enough for the scheduler to poll between passes).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import pygit2

from gitedge.adapters.blobcopy import Progress as MirrorProgress
from gitedge.adapters.bundlefile import file_digest, open_bundle, read_index, write_bundle
from gitedge.adapters.bundlegit import stage_git, write_git_bundle
from gitedge.adapters.endpoints import endpoint_refs, first_served
from gitedge.adapters.gitsource import FETCHED_PREFIX, GitRepo
from gitedge.adapters.mirroring import LayoutRef, Location, Mirror, MirrorResult
from gitedge.adapters.ocilayout import INDEX_MEDIA_TYPE, OciLayout
from gitedge.adapters.registryhosts import Hosts
from gitedge.adapters.state import State
from gitedge.agent import inbox
from gitedge.agent.caching import check_tag
from gitedge.agent.imagetrust import carry_signatures
from gitedge.agent.reconcile import Agent, Pass
from gitedge.core.agentrules import NeededImage
from gitedge.core.bundleindex import GIT_NAME, LAYOUT_DIR, BundleImage, BundleIndex
from gitedge.core.bundleplan import bundle_images, suc_images
from gitedge.core.conditions import BUNDLE_IMPORTED, Condition
from gitedge.core.config import AgentConfig, SiteFile
from gitedge.core.fleet import load_fleet
from gitedge.core.images import ImageRef
from gitedge.core.ocimanifest import Platform
from gitedge.core.validation import cluster_facts
from gitedge.errors import (
    DigestMismatch,
    GitEdgeError,
    InvalidInput,
    Problem,
    SourceUnavailable,
    Stalled,
    Transient,
    UsageError,
    scrub,
)

log = logging.getLogger("gitedge.agent")

__all__ = [
    "BUNDLE_IMPORTED",
    "BundleProgress",
    "CreateResult",
    "ImportResult",
    "InboxResult",
    "create_bundle",
    "import_bundle",
    "import_inbox",
    "record_import",
]


@dataclass(frozen=True)
class BundleProgress:
    """One progress report: ``phase`` is fetch | image | write (create) or read | image (import);
    for images, ``index`` of ``count`` and that image's bytes."""

    phase: str
    item: str
    index: int = 0
    count: int = 0
    done_bytes: int = 0
    total_bytes: int = 0
    finished: bool = False


ProgressFn = Callable[[BundleProgress], None]


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
        stage = stage_git(repo=repo, rev=rev or "HEAD", since=since, branch=branch,
                          into=scratch / "repo.git", timeout_s=timeout_s)  # fmt: skip
        snap = GitRepo(path=stage.path).tree_snapshot(stage.tip, subdir=subdir)
        fleet = load_fleet(snap, subdir=subdir, origin=f"{scrub(repo, limit=200)}@{stage.tip[:12]}")
        facts = [cluster_facts(s) for s in sites]
        kubectl = [*kubectl, *(c.apply.kubectl_image for c in configs if c.apply.kubectl_image)]
        refs = bundle_images(fleet, facts, all_targets=all_targets, now=now,
                             kubectl=sorted(set(kubectl)), suc=suc)  # fmt: skip
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
                            image=str(ref), digest=ref.digest,
                            detail=f"{src} holds {r.source_digest}",
                        )  # fmt: skip
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
                # its cosign signatures travel with it (agent/imagetrust.py), for the site
                carry_signatures(mirror, ref=ref, src_image=source,
                                 layout=layout, signed=r.source_digest, cached=r.digest,
                                 what=str(ref))  # fmt: skip
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
            size = write_bundle(out, index=index, git_file=git_file, layout=layout,
                                progress=on_write)  # fmt: skip
        except OSError as e:  # a full disk, a directory that appeared at --out meanwhile
            raise Transient(f"--out {out}: the bundle was not written: {e.strerror}") from None
        blobs = sum(1 for _ in (layout / "blobs").glob("*/*")) if layout.exists() else 0
        return CreateResult(out, size, stage.branch, stage.tip, stage.since, tuple(images),
                            blobs, copied, tuple(served), tuple(skipped))  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ---------------------------------------------------------------------------- import


@dataclass(frozen=True)
class ImportResult:
    file: Path
    digest: str
    branch: str
    tip: str
    new_commits: int
    needed: int  # images this site's plan needs that the bundle holds
    copied: tuple[tuple[str, str, int], ...]  # (image, cache digest, bytes copied)
    missing: tuple[str, ...]  # images the plan needs that the bundle does not hold

    def summary(self) -> str:
        n = len(self.copied)
        text = (
            f"{self.file.name}: verified {self.new_commits} new commit(s), now at {self.tip}; "
            f"{self.needed} image(s) of this site's plan from the bundle in the cache "
            f"({n} copied now)"
        )
        if self.missing:
            text += f"; not in the bundle: {', '.join(self.missing)}"
        return text


def _bad(file: Path, msg: str) -> InvalidInput:
    return InvalidInput([Problem(f"bundle {file}", 0, msg)], f"bundle {file} refused")


def _set_ref(repo: pygit2.Repository, name: str, target: pygit2.Oid | None) -> None:
    if target is None:
        if name in repo.references:
            repo.references.delete(name)
    else:
        repo.create_reference(name, target, force=True, message="gitedge: bundle refused")


def import_bundle(
    agent: Agent,
    file: Path,
    *,
    now: datetime,
    digest: str | None = None,
    progress: ProgressFn | None = None,
    suc: bool = False,
) -> ImportResult:
    """Import one bundle through the agent's own steps (module docstring). Raises what the
    steps raise; nothing is recorded for a bundle refused before or at verification. With
    ``suc``, SUC's own images the bundle holds (``bundle create --suc``) go to the cache too."""
    file = file.absolute()
    report = progress or (lambda _: None)
    digest = digest or file_digest(file)
    src = agent.config.source
    index = read_index(file)
    if index.branch != src.branch:
        raise _bad(
            file,
            f"it carries branch {index.branch!r}, this site tracks {src.branch!r} "
            f"(create it with --branch {src.branch})",
        )
    git = agent.git
    try:  # libgit2 raises for an id it cannot read (SHA-256 in a SHA-1 repository)
        have_since = index.since is None or git.repo.odb.exists(index.since)
    except (ValueError, pygit2.GitError):
        raise _bad(file, f"its base commit {index.since!r} is not a commit id here") from None
    if not have_since:
        raise SourceUnavailable(
            f"bundle {file}: it holds only the commits after {index.since} (--since), and this "
            "site does not have that commit yet: import the bundle that brings it first, or "
            "bring one made without --since"
        )

    def on_read(done: int, total: int) -> None:
        report(BundleProgress("read", str(file), 0, 0, done, total, done >= total))

    with open_bundle(file, scratch=agent.dir / "bundles", progress=on_read) as opened:
        if opened.index != index:  # what was checked above is what is imported
            raise _bad(file, "it changed while it was being imported")
        ref_name = FETCHED_PREFIX + src.branch
        refs = git.repo.references
        old = refs[ref_name].target if ref_name in refs else None
        p = Pass(now=now)
        try:
            p.fetched = git.import_bundle(
                bundle_file=opened.git_file,
                branch=src.branch,
                memory_bytes=src.limits.fetch_memory_bytes,
            )
            if p.fetched != index.tip:
                raise _bad(file, f"its git bundle has {src.branch} at {p.fetched}, its index "
                                 f"says {index.tip}")  # fmt: skip
            agent._verify(p)
        except GitEdgeError:
            _set_ref(git.repo, ref_name, old if isinstance(old, pygit2.Oid) else None)
            raise
        agent._plan(p)
        if suc:
            p.needed += tuple(NeededImage("suc", str(r), r)
                              for r in suc_images(kubectl=(), controller=True))  # fmt: skip
            p.needed = tuple({n.key: n for n in p.needed}.values())
        held = tuple(n for n in p.needed if index.image(n.key) is not None)
        missing = tuple(n.key for n in p.needed if index.image(n.key) is None)
        p.needed = held
        agent.importing = opened
        try:
            agent._mirror(p)
        finally:
            agent.importing = None
    assert p.tip is not None
    for key, _, _ in p.mirrored_now:
        report(BundleProgress("image", key, finished=True))
    return ImportResult(file, digest, src.branch, p.tip, p.new_commits, len(held),
                        tuple(p.mirrored_now), missing)  # fmt: skip


# ---------------------------------------------------------------------------- the inbox


@dataclass
class InboxResult:
    """What :func:`import_inbox` did this pass."""

    conditions: list[Condition] = field(default_factory=list)
    imported: list[ImportResult] = field(default_factory=list)

    @property
    def tip(self) -> str | None:
        """The tip of the last bundle imported (the fetch's stand-in while offline)."""
        return self.imported[-1].tip if self.imported else None

    @property
    def mirrored(self) -> list[tuple[str, str, int]]:
        """(image, cache digest, bytes copied) of every image the imports put in the cache."""
        return [c for r in self.imported for c in r.copied]


def import_inbox(agent: Agent, *, now: datetime) -> InboxResult:
    """Import every bundle in ``source.bundleDir`` not seen before, oldest first."""
    result = InboxResult()
    files = inbox.candidates(agent.config.source.bundle_dir)
    if not files:
        return result
    doc = inbox.load(agent.state)
    for f in files:
        if agent.stop.is_set():
            break
        path = str(f)
        try:
            stamp = inbox.stamp(f)
            known = doc["files"].get(path)
            same = isinstance(known, dict) and known.get("stamp") == stamp
            digest = str(known["digest"]) if same else file_digest(f)
        except OSError as e:
            log.warning("bundle %s cannot be read: %s", f, e.strerror)
            continue
        doc["files"][path] = {"stamp": stamp, "digest": digest}
        if digest in doc["seen"]:
            agent.state.put_doc(inbox.DOC, doc)
            continue
        at = now.astimezone(UTC).isoformat()
        try:
            r = import_bundle(agent, f, now=now, digest=digest)
        except Stalled as e:
            text = scrub(str(e).replace("\n", "; "), limit=1000)
            log.error("bundle %s refused: %s", f, text)
            doc["seen"][digest] = {"file": path, "at": at, "result": "refused",
                                   "reason": type(e).__name__, "message": text}  # fmt: skip
            result.conditions.append(
                Condition(BUNDLE_IMPORTED, "False", type(e).__name__, f"{f}: {text}")
            )
        except (GitEdgeError, OSError) as e:
            text = scrub(str(e).replace("\n", "; "), limit=1000)
            log.warning("bundle %s not imported, the next pass tries again: %s", f, text)
            result.conditions.append(
                Condition(BUNDLE_IMPORTED, "False", type(e).__name__, f"{f}: {text}")
            )
        else:
            doc["seen"][digest] = {"file": path, "at": at, "result": "imported", "tip": r.tip}
            log.info("imported bundle %s", r.summary())
            result.imported.append(r)
            result.conditions.append(Condition(BUNDLE_IMPORTED, "True", "Imported", r.summary()))
        agent.state.put_doc(inbox.DOC, doc)
    present = {str(f) for f in files}
    doc["files"] = {k: v for k, v in doc["files"].items() if k in present}
    agent.state.put_doc(inbox.DOC, doc)
    return result


def record_import(state: State, r: ImportResult, *, now: datetime) -> None:
    """Remember a bundle imported by ``gitedge bundle import``, so the inbox skips its copy."""
    doc = inbox.load(state)
    doc["seen"][r.digest] = {"file": str(r.file), "at": now.astimezone(UTC).isoformat(),
                             "result": "imported", "tip": r.tip}  # fmt: skip
    state.put_doc(inbox.DOC, doc)
