"""``gitedge pin [DIR] [--check] [--update] [--config AGENT.yaml]``: name every image by digest.

Each tag the fleet repo names (core/delivery/pinning.py finds them) is resolved against its registry
(adapters/registry/tags.py) and written back as ``repo:tag@sha256:...`` (a K3s catalog entry gets
``digest:``), spliced where the YAML parser found it: the rest of each file stays byte for byte.
A digest already there is kept unless ``--update``; ``--check`` writes nothing and exits 1 when
anything is unpinned, cannot be pinned, or a pinned tag now names another digest.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from gitedge.adapters.git.worktree import read_tree
from gitedge.adapters.registry.hosts import Hosts, RetryPolicy
from gitedge.adapters.registry.tags import TagResolver
from gitedge.cli.siteconfig import agent_config
from gitedge.core.delivery.pinning import (
    Edit,
    Reference,
    check_spliced,
    edits_by_file,
    pin_edit,
    references,
    splice,
    upgrade_images,
)
from gitedge.core.fleet.model import load_fleet
from gitedge.core.fleet.snapshot import resolve
from gitedge.core.images.refs import ImageRef
from gitedge.errors import DigestMismatch, GitEdgeError, InvalidFleetRepo, scrub

BOM = "\ufeff"
MOVE_HINT = (
    "listed under spec.versions, which holds no digest: move it to spec.releases as "
    "`- {{version: {v}}}` and run `gitedge pin` again"
)


def cmd_pin(args: argparse.Namespace) -> int:
    root = Path(args.dir)
    snapshot = read_tree(root)
    fleet = load_fleet(snapshot)
    hosts = Hosts.from_config(agent_config(args.config).registry) if args.config else Hosts()
    images = upgrade_images(fleet)
    texts: dict[str, str] = {}
    boms: dict[str, str] = {}
    pins: dict[str, dict[str, str]] = {}  # per file: image as written -> as pinned
    release_pins: dict[str, dict[str, str]] = {}  # per file: K3s version -> digest
    edits: list[Edit] = []
    problems: list[str] = []
    with TagResolver(hosts=hosts, retry=RetryPolicy(attempts=3, max_delay_s=2.0)) as resolver:
        for ref in references(fleet, upgrade_image=images[0]):
            shown = f"{args.dir.rstrip('/')}/{ref.where}"
            if ref.kind == "versions-only":
                version = ref.version
                problems.append(f"{shown}: K3s {version}: {MOVE_HINT.format(v=version)}")
                continue
            parsed = ImageRef.parse(ref.image)
            if parsed.tag is None or (ref.digest and not (args.check or args.update)):
                continue  # a bare digest has no tag to follow; a pin stays unless asked
            try:
                got = _resolve(resolver, ref, images)
            except GitEdgeError as e:
                problems.append(f"{shown}: image {ref.image}: {scrub(str(e), limit=300)}")
                continue
            if ref.digest == got:
                continue
            if ref.digest is not None and not args.update:
                problems.append(
                    f"{shown}: image {ref.image}: the tag moved: pinned {ref.digest}, the "
                    f"registry now serves {got} (`gitedge pin --update` takes it)"
                )
                continue
            if args.check:
                problems.append(f"{shown}: image {ref.image} is not pinned (the tag is at {got})")
                continue
            if ref.path not in texts:
                found = resolve(snapshot, ref.path)
                assert not isinstance(found, str)  # the loader read it
                # the parser's offsets do not count a BOM: splice after it, write it back
                text = found[1].decode("utf-8")
                texts[ref.path] = text.removeprefix(BOM)
                boms[ref.path] = text[: len(text) - len(texts[ref.path])]
            try:
                edits.append(pin_edit(texts[ref.path], ref, got))
            except GitEdgeError as e:
                problems.append(f"{shown}: image {ref.image}: {e}")
                continue
            if ref.kind == "image":
                pins.setdefault(ref.path, {})[ref.image] = f"{ref.image.split('@', 1)[0]}@{got}"
            elif ref.version is not None:
                release_pins.setdefault(ref.path, {})[ref.version] = got
            verb = "updated" if ref.digest else "pinned"
            print(f"{shown}: {verb} {ref.image.split('@', 1)[0]}@{got}")
    for path, file_edits in edits_by_file(edits).items():
        new = splice(texts[path], file_edits)
        try:
            check_spliced(
                texts[path],
                new,
                path=path,
                images=pins.get(path, {}),
                releases=release_pins.get(path, {}),
            )
        except InvalidFleetRepo as e:
            why = "; ".join(p.message for p in e.problems)
            problems.append(f"{args.dir.rstrip('/')}/{path}: not written: {why}")
            continue
        _write(root / path, (boms[path] + new).encode("utf-8"))
    for p in problems:
        print(p)
    if problems:
        word = "found" if args.check else "left"
        print(f"{len(problems)} image(s) {word} unpinned or moved")
        return 1
    return 0


def _resolve(resolver: TagResolver, ref: Reference, images: list[str]) -> str:
    """The digest of ``ref``'s tag; a K3s release must resolve to one digest in every upgrade
    image repository the fleet's targets use."""
    if ref.kind != "release":
        return resolver.digest(ImageRef.parse(ref.image))
    if len(images) == 1:  # the catalog's digest field is sha256 (core/fleet/model.py K3sRelease)
        return resolver.digest(ImageRef.parse(ref.image), sha256=True)
    tag = ref.image.rsplit(":", 1)[1]
    found = {ui: resolver.digest(ImageRef.parse(f"{ui}:{tag}"), sha256=True) for ui in images}
    if len(set(found.values())) > 1:
        raise DigestMismatch(
            image=tag,
            digest=found[images[0]],
            detail="the targets' upgrade images disagree: "
            + ", ".join(f"{ui} has {d}" for ui, d in found.items()),
        )
    return found[images[0]]


def _write(path: Path, data: bytes) -> None:
    """Replace the file (through a symlink, the file it names) in one rename, mode kept."""
    real = Path(os.path.realpath(path))
    fd, tmp = tempfile.mkstemp(dir=real.parent, prefix=f".{real.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        Path(tmp).chmod(real.stat().st_mode & 0o7777)
        Path(tmp).replace(real)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
