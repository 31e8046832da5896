"""Caps on the git objects gitedge reads, checked from the object's header before the object.

A commit, tag or tree is read whole by libgit2 (and a commit again by pygit2 when its message
or signature is taken), so a 100 MB commit with no valid signature would cost several hundred
MB of memory before it could be refused as ``unsigned``. Every commit and tree is therefore
sized first with ``odb.read_header`` (a loose object's first bytes, a packed object's entry
header or delta header: no inflation of the object) and refused over its cap:

- a commit or annotated tag over :data:`MAX_COMMIT_BYTES` (1 MiB; a signed commit is ~1 KB);
- a tree over :data:`MAX_TREE_BYTES` (4 MiB: ~80,000 entries in one directory);
- the commits of one range (what one verification takes in) and their distinct trust files
  over :data:`MAX_RANGE_BYTES` in all (32 MiB, ~30,000 signed commits;
  ``source.limits.maxRangeBytes``);
- blobs are read only through :meth:`GitRepo._blob` with the loader's 1 MiB cap (larger fleet
  files are refused by name, other large files are left out unread).

:func:`scan_history` walks the commits of a range itself (header, then object) so that nothing
later (libgit2's revwalk, ``descendant_of``, pygit2) ever reads an oversized commit: it runs
before the fetched ref is trusted to be complete and before verification walks the range.
"""

from __future__ import annotations

import resource
from collections.abc import Callable, Container, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pygit2
from pygit2.enums import ObjectType

from gitedge.core.fleet.files import TRUST_PATH
from gitedge.errors import GitEdgeError, SourceUnavailable

MAX_COMMIT_BYTES = 1 << 20
MAX_TREE_BYTES = 4 << 20
MAX_RANGE_BYTES = 32 << 20  # the default of source.limits.maxRangeBytes
MAX_WALK_ENTRIES = 100_000  # entries one snapshot walk meets (a tree met twice counts twice)
MAX_PATH_BYTES = 4096  # one path (Linux's PATH_MAX: git could not check it out either)
MAX_NAME_BYTES = 16 << 20  # the paths one snapshot walk builds, in all
REASON_TOO_LARGE = "too-large"

_CAPS = {
    ObjectType.COMMIT: MAX_COMMIT_BYTES,
    ObjectType.TAG: MAX_COMMIT_BYTES,
    ObjectType.TREE: MAX_TREE_BYTES,
}
_COMMIT = (ObjectType.COMMIT,)
_TREE = (ObjectType.TREE,)
_NAMES = {ObjectType.COMMIT: "commit", ObjectType.TAG: "tag", ObjectType.TREE: "tree"}


@dataclass(frozen=True)
class Oversize:
    """An object over its cap: ``commit`` is the commit that brings it (the object itself, or
    the commit whose root tree it is)."""

    commit: str
    detail: str


def too_large(
    repo: pygit2.Repository, oid: pygit2.Oid, *, kinds: tuple[ObjectType, ...]
) -> str | None:
    """Why the commit, tag or tree ``oid`` may not be read (None: it may). Raises
    :class:`SourceUnavailable` when it is absent or not of one of ``kinds`` (a commit's parent
    or tree line may name a 1 GB blob: reading it to find out would be the harm)."""
    return _sized(repo, oid, kinds=kinds)[0]


def _sized(
    repo: pygit2.Repository, oid: pygit2.Oid, *, kinds: tuple[ObjectType, ...]
) -> tuple[str | None, int]:
    try:
        kind, size = repo.odb.read_header(oid)
    except (KeyError, pygit2.GitError, ValueError):
        raise SourceUnavailable(f"object {oid} is missing (an incomplete history)") from None
    if kinds and ObjectType(kind) not in kinds:
        want = " or ".join(k.name.lower() for k in kinds)
        raise SourceUnavailable(f"object {oid} is a {ObjectType(kind).name.lower()}, not a {want}")
    cap = _CAPS.get(ObjectType(kind))
    if cap is not None and size > cap:
        name = _NAMES[ObjectType(kind)]
        what = f"the {name}" if name != "tree" else f"the tree {oid}"
        return f"{what} is {size} bytes; the limit is {cap >> 20} MiB", size
    return None, size


def scan_history(
    repo: pygit2.Repository,
    tip: pygit2.Oid,
    *,
    stop: tuple[Container[str], ...] = (),
    max_range_bytes: int = MAX_RANGE_BYTES,
) -> Oversize | None:
    """Every commit reachable from ``tip`` down to those in ``stop`` (ids already checked: the
    last verified commit, the verified-commit cache, the previously fetched tip), each with its
    root tree sized before it is read. The first object over its cap is returned and the walk
    goes on elsewhere (never below it: its parents cannot be known without reading it).
    Raises :class:`SourceUnavailable` when a commit or root tree of the range is absent.

    The commits of the range and their distinct trust files may hold ``max_range_bytes`` in
    all: verification keeps each commit's signature and signed payload, and reads every trust
    file of the range, before it decides, so 300 commits of 1 MB each (a 3 MB pack) cost 650
    MB, 200 distinct 1 MB trust files 240 MB. Past it, the walk stops and the tip is named.

    Cost: one header, one small read per commit (6-12 ms per 1,000); a side branch forked
    before ``stop`` is walked to its root, once per call."""
    found: Oversize | None = None
    total = 0
    trust = _TrustBlobs(repo)
    todo = [tip]
    seen: set[pygit2.Oid] = set()
    while todo:
        oid = todo.pop()
        if oid in seen:
            continue
        seen.add(oid)
        hex_id = str(oid)
        if any(hex_id in ids for ids in stop):
            continue
        why, size = _sized(repo, oid, kinds=_COMMIT)
        if why is not None:
            found = found or Oversize(hex_id, why)
            continue
        total += size
        if total > max_range_bytes:
            return Oversize(str(tip), _range_why(len(seen), max_range_bytes))
        commit = repo.get(oid)
        if not isinstance(commit, pygit2.Commit):
            raise SourceUnavailable(f"{oid} is not a commit (an incomplete history)")
        why = too_large(repo, commit.tree_id, kinds=_TREE)
        if why is None:
            why, size = trust.new_size(commit.tree_id)
            total += size
        if why is not None:
            found = found or Oversize(hex_id, f"its root tree: {why}")
        elif total > max_range_bytes:
            return Oversize(str(tip), _range_why(len(seen), max_range_bytes))
        todo.extend(commit.parent_ids)
    return found


def _range_why(commits: int, cap: int) -> str:
    return (
        f"the {commits}+ commits up to it and their trust files hold more than {cap >> 20} MiB "
        "in all (source.limits.maxRangeBytes); verify the range in steps"
    )


class _TrustBlobs:
    """The size of each commit's ``.gitedge/trust.yaml`` the first time that blob is met (0
    after, or when there is none); every tree on the way sized before it is read and each
    looked up once (most commits share their ``.gitedge/`` tree)."""

    def __init__(self, repo: pygit2.Repository) -> None:
        self.repo = repo
        self.by_root: dict[pygit2.Oid, pygit2.Oid | None] = {}
        self.by_dir: dict[pygit2.Oid, pygit2.Oid | None] = {}
        self.counted: set[pygit2.Oid] = set()

    def new_size(self, root_id: pygit2.Oid) -> tuple[str | None, int]:
        """(why a tree on the way may not be read, None; the bytes newly counted)."""
        dir_name, _, file_name = TRUST_PATH.partition("/")
        if root_id not in self.by_root:
            root = self.repo.get(root_id)
            entry = root[dir_name] if isinstance(root, pygit2.Tree) and dir_name in root else None
            is_dir = entry is not None and entry.type == ObjectType.TREE
            self.by_root[root_id] = entry.id if entry is not None and is_dir else None
        dir_id = self.by_root[root_id]
        if dir_id is None:
            return None, 0
        if dir_id not in self.by_dir:
            why = too_large(self.repo, dir_id, kinds=_TREE)
            if why is not None:
                return f"{dir_name}/: {why}", 0
            tree = self.repo.get(dir_id)
            entry = tree[file_name] if isinstance(tree, pygit2.Tree) and file_name in tree else None
            is_blob = entry is not None and entry.type == ObjectType.BLOB
            self.by_dir[dir_id] = entry.id if entry is not None and is_blob else None
        blob = self.by_dir[dir_id]
        if blob is None or blob in self.counted:
            return None, 0
        self.counted.add(blob)
        try:
            kind, size = self.repo.odb.read_header(blob)
        except (KeyError, pygit2.GitError, ValueError):
            raise SourceUnavailable(f"object {blob} is missing (an incomplete history)") from None
        # a file's mode on a tree or commit id (a hand-made tree): nothing to count here; the
        # verdict (invalid-trust-policy, naming the commit) is the trust decision's
        return None, size if kind == ObjectType.BLOB else 0


def lookup_tree(
    repo: pygit2.Repository, oid: pygit2.Oid, *, refuse: Callable[[str], GitEdgeError]
) -> pygit2.Tree:
    """The tree ``oid``, sized before it is read; ``refuse(why)`` is raised when over its cap."""
    why = too_large(repo, oid, kinds=_TREE)
    if why is not None:
        raise refuse(why)
    tree = repo.get(oid)
    if not isinstance(tree, pygit2.Tree):
        raise SourceUnavailable(f"object {oid} is not a tree")
    return tree


def tree_entry(
    repo: pygit2.Repository,
    tree: pygit2.Tree,
    path: str,
    *,
    refuse: Callable[[str], GitEdgeError],
) -> pygit2.Object | None:
    """The entry at ``path`` below ``tree`` (None when absent or under a non-directory), each
    directory on the way sized before it is read (``tree[path]`` would read them unchecked)."""
    parts = [p for p in path.split("/") if p]
    for i, part in enumerate(parts):
        if part not in tree:
            return None
        entry = tree[part]
        if i == len(parts) - 1:
            return entry
        if entry.type != ObjectType.TREE:
            return None
        tree = lookup_tree(repo, entry.id, refuse=refuse)
    return None


def walk_files(
    repo: pygit2.Repository,
    tree_id: pygit2.Oid,
    prefix: str,
    *,
    refuse_for: Callable[[str], Callable[[str], GitEdgeError]],
) -> Iterator[tuple[str, pygit2.Object]]:
    """(path, entry) of every blob under tree ``tree_id``, depth first, each directory sized
    before it is read; submodules (commits) are skipped. ``refuse_for(path)`` makes the error
    raised for a problem at ``path``.

    Bounded in what it meets, not only in what it reads: a tree of 1,200 entries that each name
    one tree of 1,200 empty files is 1.4 million paths from a 100 KB repo (58 s and 208 MiB
    before this bound; 20,000 x 20,000 would never end). So at most :data:`MAX_WALK_ENTRIES`
    entries of any kind, paths of at most :data:`MAX_PATH_BYTES` and :data:`MAX_NAME_BYTES`
    of paths in all; no recursion (a tree nested 5,000 deep raised RecursionError)."""
    met = names = 0
    stack = [(iter(lookup_tree(repo, tree_id, refuse=refuse_for(prefix or "."))), prefix)]
    while stack:
        entries, where = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        name = (entry.raw_name or b"").decode("utf-8", "replace")
        path = f"{where}/{name}" if where else name
        met += 1
        names += len(path)
        if met > MAX_WALK_ENTRIES or names > MAX_NAME_BYTES:
            why = (
                f"more than {MAX_WALK_ENTRIES:,} entries"
                if met > MAX_WALK_ENTRIES
                else f"paths of more than {MAX_NAME_BYTES >> 20} MiB in all"
            )
            raise refuse_for(prefix or ".")(f"{why} below it (a tree met twice counts twice)")
        if len(path.encode()) > MAX_PATH_BYTES:
            raise refuse_for(path[:200] + "...")(f"a path longer than {MAX_PATH_BYTES} bytes")
        if entry.type == ObjectType.TREE:
            sub = lookup_tree(repo, entry.id, refuse=refuse_for(path))
            stack.append((iter(sub), path))
        elif entry.type == ObjectType.BLOB:
            yield path, entry


@contextmanager
def memory_cap(extra_bytes: int) -> Iterator[None]:
    """While in the block, this process may map at most ``extra_bytes`` more of private
    writable memory than it has now (RLIMIT_DATA over ``VmData``; read-only pack maps do not
    count): an allocation past it fails (libgit2 reports "Out of memory", Python raises
    MemoryError) instead of the pod being OOM-killed.

    For libgit2's fetch: its indexer streams a whole object to hash it, but builds each
    deltified object in memory (base and result), and a 600 KB pack can hold a delta that
    resolves to 100 MB; no libgit2 option bounds that. The soft limit is put back after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    now = _vm_data()
    if now is None:  # pragma: no cover - not Linux
        yield
        return
    cap = now + extra_bytes
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def _vm_data() -> int | None:
    """This process's private writable memory (what RLIMIT_DATA counts), in bytes."""
    try:
        with Path("/proc/self/status").open("rb") as f:
            for line in f:
                if line.startswith(b"VmData:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
