"""``gitedge pin``, the pure part: where the fleet repo names images, and the edits that pin them.

Every image reference the fleet names is found at the position the YAML parser reports for it:

- ``spec.os.image`` of each UpgradeTarget (a scalar: ``repo:tag`` or ``repo:tag@sha256:...``)
  and the ``image`` of each ``spec.os.via`` step;
- each ``spec.releases`` entry of a K3sReleases catalog: the K3s upgrade image
  ``<upgradeImage>:<version with + as ->`` whose index digest goes in the entry's ``digest``.

An edit replaces the reference inside the scalar's own text (so plain, single- and double-quoted
scalars keep their quoting), or adds ``digest: ...`` to a release entry after its last field (in
a flow mapping ``, digest: ...``; in a block mapping a new line at the entry's indentation, after
any comment on the last line). Nothing else of the file changes: comments, key order, quoting,
line ends. A version listed only under ``spec.versions`` (a bare list item) has no place for a
digest; it is reported, not moved (docs/fleet-repo.md says how to move it).
Pure: no I/O; the caller reads the files, resolves tags and writes the result.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import yaml

from gitedge.core.fleet.model import Fleet
from gitedge.core.fleet.versions import K3sVersion
from gitedge.core.fleet.yamldoc import parse_documents
from gitedge.core.images.refs import ImageRef
from gitedge.errors import InvalidFleetRepo, Problem

DEFAULT_UPGRADE_IMAGE = "rancher/k3s-upgrade"

__all__ = ["Edit", "Reference", "references", "splice", "upgrade_images"]


@dataclass(frozen=True)
class Reference:
    """One image the fleet names: where, what to resolve, and the digest already there."""

    kind: Literal["image", "release", "versions-only"]
    path: str
    line: int
    image: str  # as written (image) or built from the catalog (release, versions-only)
    digest: str | None
    node: yaml.Node | None = None  # image: the scalar; release: the entry mapping
    version: str | None = None  # a catalog entry's K3s version

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class Edit:
    path: str
    start: int
    end: int
    text: str


_MERGE = "tag:yaml.org,2002:merge"
_LINE_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")  # YAML 1.1's, as PyYAML reads them


def _child(node: yaml.Node, key: str, *, merged: bool = True) -> yaml.Node | None:
    """The value of ``key`` in a mapping node, as the loader sees it: an explicit key first,
    then (``merged``) the mappings of a ``<<`` merge key in order, as yamldoc merges them (a
    key written behind ``<<`` is a reference all the same; missing it left images unpinned)."""
    if not isinstance(node, yaml.MappingNode):
        return None
    sources: list[yaml.Node] = []
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.tag == _MERGE:
            sources += v.value if isinstance(v, yaml.SequenceNode) else [v]
        elif isinstance(k, yaml.ScalarNode) and k.value == key and isinstance(v, yaml.Node):
            return v
    for source in sources if merged else ():
        found = _child(source, key)
        if found is not None:
            return found
    return None


def _at(node: yaml.Node | None, *keys: str) -> yaml.Node | None:
    for key in keys:
        if node is None:
            return None
        node = _child(node, key)
    return node


def upgrade_images(fleet: Fleet) -> list[str]:
    """The upgrade image repositories the fleet's K3s targets use (the default when none)."""
    found = {t.spec.k3s.upgrade_image for t in fleet.targets.values() if t.spec.k3s is not None}
    return sorted(found) or [DEFAULT_UPGRADE_IMAGE]


def references(fleet: Fleet, *, upgrade_image: str) -> list[Reference]:
    """Every image reference of the fleet, in file order; ``upgrade_image`` builds the K3s
    upgrade image of each catalog version."""
    out: list[Reference] = []
    for (kind, _name), o in fleet.origins.items():
        if o.stream is None:
            continue
        doc = o.stream.node(o.index)
        if kind == "UpgradeTarget":
            nodes = [_at(doc, "spec", "os", "image")]
            via = _at(doc, "spec", "os", "via")
            if isinstance(via, yaml.SequenceNode):  # OS images on the way (os.via)
                nodes += [_child(step, "image") for step in via.value]
            for node in nodes:
                # an alias names the same scalar twice: one reference, one edit
                if isinstance(node, yaml.ScalarNode) and all(r.node is not node for r in out):
                    line, digest = node.start_mark.line + 1, ImageRef.parse(node.value).digest
                    out.append(Reference("image", o.path, line, node.value, digest, node))
        elif kind == "K3sReleases":
            out += _releases(doc, path=o.path, upgrade_image=upgrade_image)
    return sorted(out, key=lambda r: (r.path, r.line))


def _releases(doc: yaml.Node, *, path: str, upgrade_image: str) -> list[Reference]:
    out: list[Reference] = []
    versions = _at(doc, "spec", "versions")
    if isinstance(versions, yaml.SequenceNode):
        for item in versions.value:
            tag = K3sVersion.parse(item.value).image_tag
            line = item.start_mark.line + 1
            image = f"{upgrade_image}:{tag}"
            out.append(Reference("versions-only", path, line, image, None, version=item.value))
    releases = _at(doc, "spec", "releases")
    if isinstance(releases, yaml.SequenceNode):
        for entry in releases.value:
            version, digest = _child(entry, "version"), _child(entry, "digest")
            assert isinstance(version, yaml.ScalarNode)  # the model validated it
            tag = K3sVersion.parse(version.value).image_tag
            has = digest.value if isinstance(digest, yaml.ScalarNode) and digest.value else None
            line = entry.start_mark.line + 1
            image = f"{upgrade_image}:{tag}"
            out.append(Reference("release", path, line, image, has, entry, version.value))
    return out


def _refuse(path: str, node: yaml.Node, message: str) -> InvalidFleetRepo:
    return InvalidFleetRepo([Problem(path, node.start_mark.line + 1, message)])


def _replace_in(text: str, node: yaml.Node, old: str, new: str, path: str) -> Edit:
    start, end = node.start_mark.index, node.end_mark.index
    source = text[start:end]
    if not old or old not in source:  # an escape or a fold inside the scalar: not ours to rewrite
        raise _refuse(path, node, f"cannot find {old!r} as written: write it on one line, plain")
    at = source.rindex(old)  # the value comes after any tag or anchor in the node's span
    return Edit(path, start + at, start + at + len(old), new)


def pin_edit(text: str, ref: Reference, digest: str) -> Edit:
    """The edit that makes ``ref`` name ``digest`` in ``text`` (its file's decoded text)."""
    assert ref.node is not None
    if ref.kind == "image":
        new = f"{ref.image.split('@', 1)[0]}@{digest}"
        return _replace_in(text, ref.node, ref.image, new, ref.path)
    entry = ref.node
    # only the entry's own key is edited: one behind ``<<`` belongs to the mapping it merges
    # (another entry, maybe); an explicit key added here overrides it, as YAML merges
    existing = _child(entry, "digest", merged=False)
    if existing is not None:  # `digest: null` too; an empty `digest:` has nothing to replace
        return _replace_in(text, existing, getattr(existing, "value", ""), digest, ref.path)
    if not isinstance(entry, yaml.MappingNode) or not entry.value:
        raise _refuse(ref.path, entry, "a release entry must be a mapping")
    first_key, last_value = entry.value[0][0], entry.value[-1][1]
    at = last_value.end_mark.index
    # a block scalar ends past its line break(s): back to its last character, else the new
    # line went after the next line, into the next entry
    while at > last_value.start_mark.index and text[at - 1] in " \t\r\n\x85\u2028\u2029":
        at -= 1
    if entry.flow_style:
        return Edit(ref.path, at, at, f", digest: {digest}")
    # the end of that line, and its line break as written (\r\n, \n, a lone \r, NEL, LS, PS)
    eol = _LINE_BREAK.search(text, at)
    at, newline = (eol.start(), eol.group()) if eol else (len(text), "\n")
    indent = " " * first_key.start_mark.column
    return Edit(ref.path, at, at, f"{newline}{indent}digest: {digest}")


def splice(text: str, edits: Iterable[Edit]) -> str:
    """``text`` with each edit applied (edits must not overlap)."""
    out, pos = [], 0
    for e in sorted(edits, key=lambda e: e.start):
        if e.start < pos:
            raise ValueError(f"{e.path}: overlapping edits at {e.start}")
        out += [text[pos : e.start], e.text]
        pos = e.end
    out.append(text[pos:])
    return "".join(out)


def edits_by_file(edits: Iterable[Edit]) -> Mapping[str, list[Edit]]:
    out: dict[str, list[Edit]] = {}
    for e in edits:
        out.setdefault(e.path, []).append(e)
    return out


def check_spliced(
    before: str, after: str, *, path: str, images: Mapping[str, str], releases: Mapping[str, str]
) -> None:
    """Refuse a splice that changed anything but the references: ``after`` must parse to the
    documents of ``before`` where only an image scalar ``x`` became ``images[x]`` and only a
    release entry of version ``v`` gained or changed ``digest: releases[v]``. The splice
    works on text; this is the parser's word that it stayed inside what it meant to edit."""
    old, _ = parse_documents(before.encode("utf-8"), path=path)
    new, problems = parse_documents(after.encode("utf-8"), path=path)
    if problems or len(old) != len(new):
        why = problems[0].message if problems else "another number of documents"
        raise InvalidFleetRepo([Problem(path, 0, f"pinning would break the file: {why}")])
    for a, b in zip(old, new, strict=True):
        where = _first_change(a.value, b.value, images=images, releases=releases, at="")
        if where is not None:
            raise InvalidFleetRepo(
                [Problem(path, a.line, f"pinning would change more than the references: {where}")]
            )


def _first_change(
    a: object, b: object, *, images: Mapping[str, str], releases: Mapping[str, str], at: str
) -> str | None:
    """Where ``b`` differs from ``a`` beyond the allowed pins, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        pin = releases.get(a["version"]) if isinstance(a.get("version"), str) else None
        for key in a.keys() | b.keys():
            if key == "digest" and pin is not None and b.get(key) == pin:
                continue
            if key not in a or key not in b:
                return f"{at}.{key}"
            found = _first_change(
                a[key], b[key], images=images, releases=releases, at=f"{at}.{key}"
            )
            if found is not None:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return at
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = _first_change(x, y, images=images, releases=releases, at=f"{at}[{i}]")
            if found is not None:
                return found
        return None
    if a == b and type(a) is type(b):
        return None
    if isinstance(a, str) and isinstance(b, str) and images.get(a) == b:
        return None
    return at or "."
