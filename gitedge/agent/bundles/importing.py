"""Importing offline bundles (``gitedge bundle import`` and the ``bundleDir`` inbox): the pass's
own steps over the bundle as the :class:`~gitedge.agent.sources.Source`
(``agent/bundles/create.py``'s docstring says what a bundle is and how it is made).

1. the file is read once for its digest, its index checked (format version, branch, the commit
   an incremental bundle needs), then extracted with every blob, the git bundle and every image
   checked (``open_bundle``): a tampered or unsafe bundle is refused here, before anything is
   recorded anywhere;
2. :class:`BundleSource` brings its git bundle into the mirror's fetched ref
   (``GitMirror.import_bundle``), and the verify step runs over (last verified, bundle tip]:
   trust policy, signatures, the rollback rule. A refused range puts the fetched ref back;
3. the plan step, then the mirror step restricted to the images the bundle holds, reading them
   from the bundle's layout (:class:`BundleImages`): the cache is filled and the mirrored state
   recorded exactly as an online pass does, so the next pass needs no network. That step
   (``agent/steps/mirrorimage.py``) records an image only after every blob of it in the cache hashed
   to its digest: a cache already holding other bytes under a digest the bundle brings is
   repaired from the bundle (a layout) or refused naming the blob (a registry).

**Inbox**: each pass first imports every ``*.tar`` in ``source.bundleDir`` not seen before (by
content digest, so a copy under another name is not imported twice). A refused bundle is
remembered, logged and reported in the ``BundleImported`` condition, and does not stop the pass;
a bundle that failed for a reason that may heal (the cache registry down) is tried again by the
next pass. Files are left where they are (a stick may be read-only); what was done with each is
in the state (``agent/bundles/inbox.py``, light enough for the scheduler to poll between passes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from gitedge.adapters.images.bundlefile import OpenedBundle, file_digest, open_bundle, read_index
from gitedge.adapters.images.mirroring import Location
from gitedge.adapters.state import BUNDLE_INBOX, State
from gitedge.agent.bundles import inbox
from gitedge.agent.passtypes import Context, ImageLocator, StepResult, Synced
from gitedge.agent.steps.mirror import mirror_step
from gitedge.agent.steps.plan import plan_step
from gitedge.agent.steps.verify import verify_step
from gitedge.core.delivery.bundlecontents import suc_images
from gitedge.core.images.refs import ImageRef
from gitedge.core.passrules import NeededImage
from gitedge.core.status.conditions import BUNDLE_IMPORTED, Condition
from gitedge.errors import (
    GitEdgeError,
    InvalidInput,
    Problem,
    SourceUnavailable,
    Stalled,
    scrub,
)

log = logging.getLogger("gitedge.agent")

__all__ = [
    "BundleImages",
    "BundleProgress",
    "BundleSource",
    "ImportResult",
    "InboxResult",
    "import_bundle",
    "import_inbox",
    "record_import",
]

T = TypeVar("T")


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


@dataclass(frozen=True)
class BundleImages:
    """An image the opened bundle holds is read from its OCI layout (by the digest its index
    names); any other upstream."""

    opened: OpenedBundle
    from_bundle: bool = True

    def location(self, ref: ImageRef) -> Location:
        held = self.opened.location(ref)
        return held if held is not None else ref


@dataclass(frozen=True)
class BundleSource:
    """An opened bundle as the pass's source: its commits, its images."""

    opened: OpenedBundle
    images: ImageLocator

    def fetch(self, ctx: Context) -> tuple[str, tuple[Condition, ...]]:
        src, index = ctx.config.source, self.opened.index
        fetched = ctx.git.import_bundle(
            bundle_file=self.opened.git_file,
            branch=src.branch,
            memory_bytes=src.limits.fetch_memory_bytes,
        )
        if fetched != index.tip:
            why = f"its git bundle has {src.branch} at {fetched}, its index says {index.tip}"
            raise _bad(self.opened.file, why)
        return fetched, ()


def _ran(result: StepResult[T]) -> T:
    """A step's output, or what stopped it."""
    if result.error is not None:
        raise result.error
    assert result.output is not None
    return result.output


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


def import_bundle(
    agent: Context,
    file: Path,
    *,
    now: datetime,
    digest: str | None = None,
    progress: ProgressFn | None = None,
    suc: bool = False,
) -> ImportResult:
    """Import one bundle through the pass's own steps (module docstring). Raises what the
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
    try:  # libgit2 cannot read some ids (SHA-256 in a SHA-1 repository)
        have_since = index.since is None or git.has_commit(index.since)
    except ValueError:
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
        source = BundleSource(opened, BundleImages(opened))
        old = git.fetched_tip(src.branch)
        try:
            fetched, _ = source.fetch(agent)
            verified = _ran(verify_step(agent, Synced(fetched), now=now))
        except GitEdgeError:
            git.set_fetched(src.branch, old)
            raise
        planned = _ran(plan_step(agent, verified.tip, now=now))
        needed = planned.needed
        if suc:
            needed += tuple(
                NeededImage("suc", str(r), r) for r in suc_images(kubectl=(), controller=True)
            )
            needed = tuple({n.key: n for n in needed}.values())
        held = tuple(n for n in needed if index.image(n.key) is not None)
        missing = tuple(n.key for n in needed if index.image(n.key) is None)
        done = mirror_step(agent, planned, images=source.images, now=now, needed=held)
        mirrored = _ran(done)
    for key, _, _ in mirrored.copied:
        report(BundleProgress("image", key, finished=True))
    return ImportResult(
        file,
        digest,
        src.branch,
        verified.tip,
        verified.new_commits,
        len(held),
        mirrored.copied,
        missing,
    )


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


def import_inbox(agent: Context, *, now: datetime) -> InboxResult:
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
            agent.state.put(BUNDLE_INBOX, doc)
            continue
        at = now.astimezone(UTC).isoformat()
        try:
            r = import_bundle(agent, f, now=now, digest=digest)
        except Stalled as e:
            text = scrub(str(e).replace("\n", "; "), limit=1000)
            log.error("bundle %s refused: %s", f, text)
            doc["seen"][digest] = {
                "file": path,
                "at": at,
                "result": "refused",
                "reason": type(e).__name__,
                "message": text,
            }
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
        agent.state.put(BUNDLE_INBOX, doc)
    present = {str(f) for f in files}
    doc["files"] = {k: v for k, v in doc["files"].items() if k in present}
    agent.state.put(BUNDLE_INBOX, doc)
    return result


def record_import(state: State, r: ImportResult, *, now: datetime) -> None:
    """Remember a bundle imported by ``gitedge bundle import``, so the inbox skips its copy."""
    doc = inbox.load(state)
    doc["seen"][r.digest] = {
        "file": str(r.file),
        "at": now.astimezone(UTC).isoformat(),
        "result": "imported",
        "tip": r.tip,
    }
    state.put(BUNDLE_INBOX, doc)
