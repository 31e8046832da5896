"""Reading an existing repository (a bare mirror or a clone) with pygit2: commits, trees, blobs
and signatures (:class:`GitRepo`), the facts verification needs of one commit
(:class:`CommitFacts`), and the snapshot of one commit's tree (:func:`read_commit_tree`).

Every object is read under the caps of :mod:`gitedge.adapters.git.objects`; an oversized tree is
refused ``too-large`` for a commit being verified, else as a problem of the fleet repo.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pygit2
from pygit2.enums import ObjectType, RepositoryOpenFlag, SortMode

from gitedge.adapters.git import objects as gitobjects
from gitedge.adapters.git.objects import REASON_TOO_LARGE as TOO_LARGE
from gitedge.adapters.git.transport import size_mib
from gitedge.core.fleet.files import MAX_FILE_BYTES, MAX_REPO_BYTES, TRUST_PATH
from gitedge.core.fleet.snapshot import Symlink
from gitedge.errors import (
    GitEdgeError,
    InvalidFleetRepo,
    Problem,
    SourceUnavailable,
    VerificationFailed,
    scrub,
)

__all__ = ["FETCHED_PREFIX", "LIBGIT2_ERRORS", "CommitFacts", "GitRepo", "read_commit_tree"]

FETCHED_PREFIX = "refs/gitedge/fetched/"  # where a fetch lands a branch; names resolve there too

_SYMLINK_MODE = 0o120000
_MAX_SYMLINK_BYTES = 4096
LIBGIT2_ERRORS = (pygit2.GitError, KeyError, ValueError, OSError)


@dataclass(frozen=True)
class CommitFacts:
    """What verification needs to know about one commit, read without diffing anything.

    ``signature``/``payload`` come from the ``gpgsig`` header (SSH or OpenPGP alike);
    ``trust_blob_id`` is the blob id of ``.gitedge/trust.yaml`` at this commit (compare with the
    parents' to see whether the trust file changed)."""

    id: str
    parents: tuple[str, ...]
    committer_time: datetime
    author: str
    committer: str
    signature: bytes | None
    payload: bytes | None
    trust_blob_id: str | None


class GitRepo:
    """Read commits, trees and blobs of an existing repository (a bare mirror or a clone)."""

    def __init__(self, *, path: str | Path) -> None:
        self.path = Path(path)
        self._repo: pygit2.Repository | None = None

    @property
    def repo(self) -> pygit2.Repository:
        """The open pygit2 repository; raises SourceUnavailable when it is not one."""
        if self._repo is None:
            try:
                self._repo = pygit2.Repository(str(self.path), RepositoryOpenFlag.NO_SEARCH)
            except LIBGIT2_ERRORS as e:
                raise SourceUnavailable(
                    f"{self.path} is not a readable git repository: {scrub(str(e))}"
                ) from None
        return self._repo

    def resolve(self, rev: str) -> str:
        """The commit id ``rev`` names: a ref, a branch (also a fetched one), a short or full id.

        A ref or an id (short or full) is followed to its commit with every object sized first
        (a tag or commit over its cap raises VerificationFailed ``too-large``); an expression
        (``main~2``) is left to libgit2's revparse, which reads what it walks through."""
        for candidate in (rev, FETCHED_PREFIX + rev):
            try:
                oid = self._named(candidate)
                return str(self._peel(oid)) if oid is not None else _revparse(self.repo, candidate)
            except pygit2.AmbiguousError:
                raise SourceUnavailable(f"{self.path}: revision {rev!r} is ambiguous") from None
            except LIBGIT2_ERRORS:
                continue
        raise SourceUnavailable(f"{self.path}: revision {rev!r} not found (or not a commit)")

    def _named(self, rev: str) -> pygit2.Oid | None:
        """The object a ref or a full id names, without reading it (None: neither)."""
        if 4 <= len(rev) <= 40 and all(ch in "0123456789abcdef" for ch in rev):
            try:  # a short id is expanded from the index of ids, not by reading the object
                oid = self.repo.expand_id(rev)
            except (KeyError, ValueError, pygit2.GitError):
                oid = None
            if oid is not None and self.repo.odb.exists(oid):
                return oid
        try:
            target = self.repo.lookup_reference_dwim(rev).resolve().target
        except LIBGIT2_ERRORS:
            return None
        return target if isinstance(target, pygit2.Oid) else None

    def _peel(self, oid: pygit2.Oid) -> pygit2.Oid:
        """``oid`` followed through annotated tags to a commit, each object sized first."""
        for _ in range(16):
            kinds = (ObjectType.COMMIT, ObjectType.TAG)
            try:
                why = gitobjects.too_large(self.repo, oid, kinds=kinds)
            except SourceUnavailable:
                raise KeyError(oid) from None  # not a commit: resolve says so
            if why is not None:
                raise VerificationFailed(commit=str(oid), reason=TOO_LARGE, detail=why)
            obj = self.repo.get(oid)
            if isinstance(obj, pygit2.Commit):
                return oid
            if not isinstance(obj, pygit2.Tag):
                raise KeyError(oid)
            oid = obj.target
        raise KeyError(oid)

    def check_sizes(
        self,
        *,
        rev: str,
        since: str | None,
        known: Container[str] = (),
        max_range_bytes: int = gitobjects.MAX_RANGE_BYTES,
    ) -> None:
        """Refuse, before anything walks them, the commits in (``since``, ``rev``] (``known``:
        ids already checked) over the commit cap or whose root tree is over the tree cap, and a
        range whose commits and trust files exceed ``max_range_bytes``: raises
        VerificationFailed ``too-large`` naming the commit (the tip for the range; see
        :mod:`gitobjects`). Callers walking a range (verify_range) call this first."""
        tip = pygit2.Oid(hex=self.resolve(rev))
        stop = (known, {self.resolve(since)} if since is not None else set())
        try:
            found = gitobjects.scan_history(
                self.repo, tip, stop=stop, max_range_bytes=max_range_bytes
            )
        except SourceUnavailable as e:
            raise SourceUnavailable(f"{self.path}: cannot walk history of {rev!r}: {e}") from None
        if found is not None:
            raise VerificationFailed(commit=found.commit, reason=TOO_LARGE, detail=found.detail)

    def _commit(self, rev: str) -> pygit2.Commit:
        commit = self.repo.get(self.resolve(rev))
        assert isinstance(commit, pygit2.Commit)
        return commit

    def is_descendant(self, *, commit: str, ancestor: str) -> bool:
        """Whether ``ancestor`` is reachable from ``commit`` (a commit is its own descendant)."""
        a, b = self.resolve(commit), self.resolve(ancestor)
        try:
            return a == b or bool(self.repo.descendant_of(a, b))
        except LIBGIT2_ERRORS as e:
            raise SourceUnavailable(f"{self.path}: cannot walk history: {scrub(str(e))}") from None

    def read_blob(self, commit: str, path: str) -> bytes | None:
        """The content of regular file ``path`` at ``commit``; None when it is absent, a
        directory, a symlink or a submodule. Files over 1 MiB raise InvalidFleetRepo."""
        commit_id = self.resolve(commit)
        refuse = _refuse_for(None, path)
        tree = gitobjects.lookup_tree(self.repo, self._commit(commit_id).tree_id, refuse=refuse)
        entry = gitobjects.tree_entry(self.repo, tree, path, refuse=refuse)
        if entry is None or entry.type != ObjectType.BLOB or entry.filemode == _SYMLINK_MODE:
            return None
        return self._blob(entry.id, path, limit=MAX_FILE_BYTES)

    def trust_blob_id(self, commit: str) -> str | None:
        """The blob id of ``.gitedge/trust.yaml`` at ``commit`` (None when it has none)."""
        commit_id = self.resolve(commit)
        return _trust_blob(self.repo, self._commit(commit_id).tree_id, commit=commit_id)

    def committer_time(self, commit: str) -> datetime:
        """The committer time of ``commit`` (UTC)."""
        return _instant(self._commit(commit).commit_time)

    def blob_by_id(self, blob_id: str, *, path: str = TRUST_PATH) -> bytes:
        """A blob's content by its id (``path`` names it in errors); at most 1 MiB. A blob the
        repo lacks (a server that left it out of the pack) is SourceUnavailable."""
        try:
            oid = pygit2.Oid(hex=blob_id)
        except LIBGIT2_ERRORS:
            raise SourceUnavailable(f"{self.path}: {blob_id!r} is not an object id") from None
        try:
            return self._blob(oid, path, limit=MAX_FILE_BYTES)
        except LIBGIT2_ERRORS as e:
            raise SourceUnavailable(
                f"{self.path}: cannot read {path} (blob {blob_id}): {scrub(str(e))}"
            ) from None

    def _blob(self, oid: pygit2.Oid, path: str, *, limit: int) -> bytes:
        kind, size = self.repo.odb.read_header(oid)
        if kind != ObjectType.BLOB:  # a file entry naming a tree or commit: a hostile tree
            what = ObjectType(kind).name.lower()
            raise InvalidFleetRepo([Problem(path, 0, f"names a {what}, not a file")])
        if size > limit:
            raise InvalidFleetRepo([Problem(path, 0, f"file is larger than {size_mib(limit)}")])
        blob = self.repo.get(oid)
        assert isinstance(blob, pygit2.Blob)
        return bytes(blob.data)

    def tree_snapshot(self, commit_id: str, *, subdir: str = "") -> dict[str, bytes | Symlink]:
        """Every file under ``subdir`` and under ``.gitedge/`` at ``commit_id``, keyed by posix
        path from the repo root; symlinks become :class:`Symlink`, submodules are skipped.

        YAML files (and anything under ``.gitedge/``) over 1 MiB raise InvalidFleetRepo naming
        the file; other files over 1 MiB are left out, unread (the loader only reads YAML). More
        than 64 MiB in all raises too."""
        commit = self._commit(commit_id)
        repo = self.repo
        base = posixpath.normpath(subdir).strip("/") if subdir not in ("", ".", "/") else ""
        if base.startswith(".."):
            raise InvalidFleetRepo([Problem(subdir, 0, "source.path leaves the repo")])
        in_gitedge = base == ".gitedge" or base.startswith(".gitedge/")
        out: dict[str, bytes | Symlink] = {}
        total = 0
        try:
            for root in [base] if not base or in_gitedge else [base, ".gitedge"]:
                refuse = _refuse_for(None, root or ".")
                tree: pygit2.Object | None = gitobjects.lookup_tree(
                    repo, commit.tree_id, refuse=refuse
                )
                if root and isinstance(tree, pygit2.Tree):
                    tree = gitobjects.tree_entry(repo, tree, root, refuse=refuse)
                if tree is None or tree.type != ObjectType.TREE:
                    continue  # an absent subdir or .gitedge/ is the loader's business
                for path, entry in gitobjects.walk_files(
                    repo, tree.id, root, refuse_for=lambda p: _refuse_for(None, p)
                ):
                    if entry.filemode == _SYMLINK_MODE:
                        target = self._blob(entry.id, path, limit=_MAX_SYMLINK_BYTES)
                        out[path] = Symlink(target.decode("utf-8", "replace"))
                        continue
                    size = self.repo.odb.read_header(entry.id)[1]
                    if size > MAX_FILE_BYTES and not _is_fleet_file(path):
                        continue
                    out[path] = self._blob(entry.id, path, limit=MAX_FILE_BYTES)
                    total += size
                    if total > MAX_REPO_BYTES:
                        cap = size_mib(MAX_REPO_BYTES)
                        msg = f"files under {base or '.'!r} exceed {cap} in all"
                        raise InvalidFleetRepo([Problem(path, 0, msg)])
        except LIBGIT2_ERRORS as e:
            raise SourceUnavailable(
                f"{self.path}: cannot read the tree of {commit.id}: {scrub(str(e))}"
            ) from None
        return out

    def commit_facts(self, *, since: str | None, rev: str, first_parent: bool) -> list[CommitFacts]:
        """Facts of every commit reachable from ``rev`` and not from ``since`` (all ancestors when
        ``since`` is None), parents before children; ``first_parent`` follows only first parents.
        One revwalk, no diffs; the trust blob id is a cached tree lookup."""
        return list(self.iter_commit_facts(since=since, rev=rev, first_parent=first_parent))

    def iter_commit_facts(
        self, *, since: str | None, rev: str, first_parent: bool, unsorted: bool = False
    ) -> Iterator[CommitFacts]:
        """:meth:`commit_facts` one commit at a time, as the walk reaches them (the verify step
        hands signatures to its workers while it walks). Revisions are resolved at the call.
        ``unsorted``: in whatever order libgit2 reaches them from ``rev`` (newest first on a
        straight history), which starts at once; parents before children needs every commit
        read first (a tenth of a second on 10,000), see :meth:`topological_ids`."""
        tip = self.resolve(rev)
        hidden = self.resolve(since) if since is not None else None
        sort = SortMode.NONE if unsorted else SortMode.TOPOLOGICAL | SortMode.REVERSE
        return self._walk_facts(tip, hidden, first_parent=first_parent, rev=rev, sort=sort)

    def topological_ids(self, *, since: str | None, rev: str) -> list[str]:
        """The ids :meth:`commit_facts` yields (all parents), in its order."""
        tip = self.resolve(rev)
        hidden = self.resolve(since) if since is not None else None
        try:
            walker = self.repo.walk(tip, SortMode.TOPOLOGICAL | SortMode.REVERSE)
            if hidden is not None:
                walker.hide(hidden)
            return [str(c.id) for c in walker]
        except LIBGIT2_ERRORS as e:
            raise SourceUnavailable(
                f"{self.path}: cannot walk history of {rev!r}: {scrub(str(e))}"
            ) from None

    def grafted(self) -> frozenset[str]:
        """Commits whose parents libgit2 shows other than they are written: a shallow clone's
        cut commits (its ``shallow`` file: shown as roots) and those of ``info/grafts`` (any
        parents), in the repository and, for a linked worktree, its main one (``commondir``).
        Their history cannot be verified here. SourceUnavailable when such a list exists but
        cannot be read."""
        gitdir = Path(self.repo.path)
        dirs = [gitdir]
        ids: set[str] = set()
        try:
            common = (gitdir / "commondir").read_text("utf-8").strip()
            dirs.append(gitdir / common)  # a linked worktree: the lists are the main repo's
        except FileNotFoundError:
            pass
        except (OSError, UnicodeDecodeError) as e:
            raise SourceUnavailable(f"{self.path}: cannot read its commondir: {e}") from None
        for name in (d / n for d in dirs for n in ("shallow", "info/grafts")):
            try:
                text = name.read_text("ascii")
            except FileNotFoundError:
                continue
            except (OSError, UnicodeDecodeError) as e:
                raise SourceUnavailable(f"{self.path}: cannot read {name}: {e}") from None
            ids.update(line.split()[0] for line in text.splitlines() if line.split())
        if self.repo.is_shallow and not ids:  # shallow, yet no list found: nothing is sure
            raise SourceUnavailable(f"{self.path}: a shallow clone whose shallow list is missing")
        return frozenset(ids)

    def ancestor_ids(self, rev: str) -> set[str]:
        """Ids of ``rev`` and all its ancestors: one complete walk, ids only."""
        try:
            return {str(c.id) for c in self.repo.walk(self.resolve(rev), SortMode.NONE)}
        except LIBGIT2_ERRORS as e:
            raise SourceUnavailable(
                f"{self.path}: cannot walk history of {rev!r}: {scrub(str(e))}"
            ) from None

    def _walk_facts(
        self, tip: str, hidden: str | None, *, first_parent: bool, rev: str, sort: SortMode
    ) -> Iterator[CommitFacts]:
        repo = self.repo
        trust_dir = TRUST_PATH.split("/")[0]
        trust_by_tree: dict[pygit2.Oid, str | None] = {}
        trust_by_dir: dict[pygit2.Oid, str | None] = {}

        def trust_of(tree_id: pygit2.Oid, commit: str) -> str | None:
            """``_trust_blob``, remembered by the tree of ``.gitedge/`` too: most commits change
            the root tree but not that directory, so one root-tree entry look-up answers."""
            tree = gitobjects.lookup_tree(repo, tree_id, refuse=_refuse_for(commit, "."))
            if trust_dir not in tree:
                return None
            entry = tree[trust_dir]
            if entry.type != ObjectType.TREE:
                return None
            if entry.id not in trust_by_dir:
                trust_by_dir[entry.id] = _trust_blob(repo, tree_id, commit=commit)
            return trust_by_dir[entry.id]

        when = datetime.fromtimestamp  # hot loop: 10,000 commits in ~0.3 s
        try:
            walker = repo.walk(tip, sort)
            if first_parent:
                walker.simplify_first_parent()
            if hidden is not None:
                walker.hide(hidden)
            for c in walker:
                tree_id = c.tree_id
                if tree_id in trust_by_tree:
                    trust = trust_by_tree[tree_id]
                else:
                    trust = trust_by_tree[tree_id] = trust_of(tree_id, str(c.id))
                signature, payload = c.gpg_signature
                try:
                    at = when(c.commit_time, UTC)
                except (ValueError, OverflowError, OSError):
                    at = _instant(c.commit_time)
                yield CommitFacts(
                    str(c.id),
                    tuple(map(str, c.parent_ids)),
                    at,
                    c.author.raw_name.decode("utf-8", "replace"),
                    c.committer.raw_name.decode("utf-8", "replace"),
                    signature,
                    payload,
                    trust,
                )
        except LIBGIT2_ERRORS as e:
            raise SourceUnavailable(
                f"{self.path}: cannot walk history of {rev!r}: {scrub(str(e))}"
            ) from None


def read_commit_tree(*, repo: str | Path, rev: str, subdir: str = "") -> dict[str, bytes | Symlink]:
    """The snapshot of ``rev`` in the repository at ``repo`` (for ``gitedge plan --rev``)."""
    source = GitRepo(path=repo)
    return source.tree_snapshot(source.resolve(rev), subdir=subdir)


def _instant(seconds: int) -> datetime:
    """A committer time as a UTC datetime; one Python cannot hold (before year 1, after 9999:
    a hand-made commit) is the earliest or latest it can, so the commit is judged (and a later
    one refused as dated before it) instead of the walk failing with no commit named."""
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (ValueError, OverflowError, OSError):
        return datetime(9999, 12, 31, tzinfo=UTC) if seconds > 0 else datetime(1, 1, 2, tzinfo=UTC)


def _is_fleet_file(path: str) -> bool:
    return path.endswith((".yaml", ".yml")) or "/.gitedge/" in f"/{path}"


def _trust_blob(repo: pygit2.Repository, tree_id: pygit2.Oid, *, commit: str) -> str | None:
    refuse = _refuse_for(commit, ".")
    tree = gitobjects.lookup_tree(repo, tree_id, refuse=refuse)
    entry = gitobjects.tree_entry(repo, tree, TRUST_PATH, refuse=refuse)
    return str(entry.id) if entry is not None and entry.type == ObjectType.BLOB else None


def _refuse_for(commit: str | None, path: str) -> Callable[[str], GitEdgeError]:
    """How an oversized tree is refused: a commit being verified fails ``too-large``; a tree
    read for the fleet's files is a problem of the fleet repo at ``path``."""

    def refuse(why: str) -> GitEdgeError:
        if commit is not None:
            return VerificationFailed(commit=commit, reason=TOO_LARGE, detail=f"{path}: {why}")
        return InvalidFleetRepo([Problem(path, 0, why)])

    return refuse


def _revparse(repo: pygit2.Repository, rev: str) -> str:
    return str(repo.revparse_single(rev).peel(pygit2.Commit).id)
