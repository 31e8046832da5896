"""The git source: fetch a branch into a bare mirror (pygit2), import offline bundles (git CLI),
and read commits, trees and signatures out of a repository.

Refs. A fetch writes one ref, ``refs/gitedge/fetched/<branch>``, and no other (no tags are
followed, FETCH_HEAD is left as it was); the agent keeps its verified commit elsewhere. A failed
fetch or import (unreachable, refused, bad credentials, untrusted certificate or host key,
connection dropped mid-pack, corrupt pack, missing branch, incomplete history) raises
:class:`~gitedge.errors.SourceUnavailable` and leaves every ref as it was: objects land under a
scratch ref ``refs/gitedge/incoming/<branch>``, the new commits are checked to be present, and
only then does the fetched ref move, in one atomic ref write.

Time. libgit2's connect/read timeouts (``server_connect_timeout``, ``server_timeout``) bound
every network wait, so a server that accepts but never answers fails after ``timeout_s``; a
progress callback aborts a transfer still trickling in at the deadline.

Transports, credentials, host keys and TLS: :mod:`gitedge.adapters.gittransport`. Caps on
what is read (objects, packs, memory): :mod:`gitedge.adapters.gitobjects`.
"""

from __future__ import annotations

import os
import posixpath
import threading
from collections.abc import Callable, Container, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

import pygit2
from pygit2.enums import ObjectType, RepositoryOpenFlag, SortMode

from gitedge.adapters import gitobjects
from gitedge.adapters.gitcli import run_git
from gitedge.adapters.gitobjects import REASON_TOO_LARGE as TOO_LARGE
from gitedge.adapters.gittransport import (
    MIN_RATE,
    Callbacks,
    SourceAuth,
    check_branch,
    check_url,
    fetch_no_tags,
    libgit2_settings,
    paced,
    redact_url,
)
from gitedge.core.fleetfiles import MAX_FILE_BYTES, MAX_REPO_BYTES, TRUST_PATH
from gitedge.core.snapshot import Symlink
from gitedge.errors import (
    GitEdgeError,
    InvalidFleetRepo,
    Problem,
    SourceUnavailable,
    VerificationFailed,
    scrub,
)

__all__ = [
    "FETCHED_PREFIX",
    "FETCH_MEMORY_BYTES",
    "INCOMING_PREFIX",
    "MAX_PACK_BYTES",
    "CommitFacts",
    "GitMirror",
    "GitRepo",
    "SourceAuth",
    "read_commit_tree",
    "redact_url",
]

FETCHED_PREFIX = "refs/gitedge/fetched/"
MAX_PACK_BYTES = 256 << 20  # the default of source.limits.maxPackBytes
FETCH_MEMORY_BYTES = 64 << 20  # the default of source.limits.fetchMemoryBytes
INCOMING_PREFIX = "refs/gitedge/incoming/"
_SYMLINK_MODE = 0o120000
_MAX_SYMLINK_BYTES = 4096
_LIBGIT2_ERRORS = (pygit2.GitError, KeyError, ValueError, OSError)
_FETCH_LOCK = threading.Lock()  # libgit2 timeouts, home dir and CA store are process-wide


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
            except _LIBGIT2_ERRORS as e:
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
            except _LIBGIT2_ERRORS:
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
        except _LIBGIT2_ERRORS:
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
        except _LIBGIT2_ERRORS as e:
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
        except _LIBGIT2_ERRORS:
            raise SourceUnavailable(f"{self.path}: {blob_id!r} is not an object id") from None
        try:
            return self._blob(oid, path, limit=MAX_FILE_BYTES)
        except _LIBGIT2_ERRORS as e:
            raise SourceUnavailable(
                f"{self.path}: cannot read {path} (blob {blob_id}): {scrub(str(e))}"
            ) from None

    def _blob(self, oid: pygit2.Oid, path: str, *, limit: int) -> bytes:
        kind, size = self.repo.odb.read_header(oid)
        if kind != ObjectType.BLOB:  # a file entry naming a tree or commit: a hostile tree
            what = ObjectType(kind).name.lower()
            raise InvalidFleetRepo([Problem(path, 0, f"names a {what}, not a file")])
        if size > limit:
            raise InvalidFleetRepo([Problem(path, 0, f"file is larger than {_size(limit)}")])
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
                        msg = f"files under {base or '.'!r} exceed {_size(MAX_REPO_BYTES)} in all"
                        raise InvalidFleetRepo([Problem(path, 0, msg)])
        except _LIBGIT2_ERRORS as e:
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
        except _LIBGIT2_ERRORS as e:
            raise SourceUnavailable(
                f"{self.path}: cannot walk history of {rev!r}: {scrub(str(e))}"
            ) from None

    def ancestor_ids(self, rev: str) -> set[str]:
        """Ids of ``rev`` and all its ancestors: one complete walk, ids only."""
        try:
            return {str(c.id) for c in self.repo.walk(self.resolve(rev), SortMode.NONE)}
        except _LIBGIT2_ERRORS as e:
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
        except _LIBGIT2_ERRORS as e:
            raise SourceUnavailable(
                f"{self.path}: cannot walk history of {rev!r}: {scrub(str(e))}"
            ) from None


class GitMirror(GitRepo):
    """A bare mirror at ``mirror_dir`` (created on first use) that fetches one branch at a time."""

    def __init__(self, *, mirror_dir: str | Path) -> None:
        super().__init__(path=mirror_dir)

    @property
    def repo(self) -> pygit2.Repository:
        if self._repo is None and not (self.path / "HEAD").exists():
            if self.path.exists() and any(self.path.iterdir()):
                raise SourceUnavailable(f"mirror {self.path} exists but is not a git repository")
            try:
                self._repo = pygit2.init_repository(str(self.path), bare=True)
            except _LIBGIT2_ERRORS as e:
                msg = f"cannot create mirror {self.path}: {scrub(str(e))}"
                raise SourceUnavailable(msg) from None
        return super().repo

    def fetch(
        self,
        *,
        url: str,
        branch: str,
        auth: SourceAuth | None = None,
        timeout_s: float = 60.0,
        max_pack_bytes: int = MAX_PACK_BYTES,
        memory_bytes: int = FETCH_MEMORY_BYTES,
        min_rate: float = MIN_RATE,
        target: str | None = None,
    ) -> str:
        """Fetch ``branch`` of ``url`` into ``refs/gitedge/fetched/<branch>`` (or the ref
        ``target``: a mirror's, ``agent/gitmirrors.py``); its commit id.
        A pack growing past ``max_pack_bytes`` (``source.limits.maxPackBytes``) is aborted; the
        fetch may allocate ``memory_bytes`` (``source.limits.fetchMemoryBytes``) more than the
        process holds (:func:`gitobjects.memory_cap`), an object that needs more is refused.
        ``timeout_s`` is the stall window: no wall-clock limit, but each window must bring
        ``min_rate`` bytes a second (:class:`~gitedge.adapters.gittransport.Callbacks`)."""
        shown = redact_url(url)
        scheme = check_url(url)
        check_branch(branch)
        auth = auth or SourceAuth()
        repo = self.repo
        what = f"fetch of branch {branch!r} from {shown}"
        if scheme == "file":  # libgit2 calls a missing plain path an "unsupported URL protocol"
            local = Path(unquote(url[7:]) if url.startswith("file://") else url)
            if not local.exists():
                raise SourceUnavailable(
                    f"{what} failed: {local} does not exist (source.url names a local "
                    "repository: check the path, or give an https://, ssh:// or git:// URL)"
                )
            # libgit2's local transport builds the whole pack inside this process, under the
            # memory cap: a history of ~20,000 small commits already needed more than 64 MiB.
            # git's own fetch streams it through upload-pack, each git bounded as a bundle's
            return self._fetch_local(local, branch, what, timeout_s, memory_bytes, target)
        callbacks = Callbacks(
            auth=auth,
            shown=shown,
            scheme=scheme,
            stall_s=timeout_s,
            max_pack_bytes=max_pack_bytes,
            min_rate=min_rate,
        )
        with _FETCH_LOCK, libgit2_settings(scheme=scheme, auth=auth, timeout_s=timeout_s):
            with self._landing(branch, what, target=target) as incoming:
                try:
                    remote = repo.remotes.create_anonymous(url)
                    with paced(callbacks), gitobjects.memory_cap(memory_bytes):  # its thread first
                        fetch_no_tags(remote, f"+refs/heads/{branch}:{incoming}", callbacks)
                except SourceUnavailable:
                    raise
                except (*_LIBGIT2_ERRORS, MemoryError) as e:
                    if callbacks.slow is not None and "timed out" not in str(e).lower():
                        raise SourceUnavailable(f"{what} failed: {callbacks.slow}") from None
                    late = "timed out" in str(e).lower()
                    hint = f" (no answer within {timeout_s:g}s)" if late else ""
                    if isinstance(e, MemoryError) or "out of memory" in str(e).lower():
                        what_needs = (  # no pack byte yet: an endless ref advertisement
                            "an object in the pack needs more than {} of memory to index"
                            if callbacks.received
                            else "the server's ref advertisement took more than {} of memory"
                        )  # fmt: skip
                        need = what_needs.format(_size(memory_bytes))
                        hint = f" ({need}: source.limits.fetchMemoryBytes)"
                    raise SourceUnavailable(f"{what} failed: {scrub(str(e))}{hint}") from None
                if incoming not in repo.references:
                    raise SourceUnavailable(f"{what} failed: no such branch at {shown}")
            return str(repo.references[target or FETCHED_PREFIX + branch].target)

    def _fetch_local(
        self,
        local: Path,
        branch: str,
        what: str,
        timeout_s: float,
        memory_bytes: int,
        target: str | None,
    ) -> str:
        """:meth:`fetch` from a repository on a local path, with the git CLI."""
        self.repo  # noqa: B018 - creates the mirror on first use
        with _FETCH_LOCK, self._landing(branch, what, target=target) as incoming:
            heads = self._git(["ls-remote", "--heads", "--", str(local.absolute())], what,
                              timeout_s, memory_bytes)  # fmt: skip
            if not any(line.endswith(f"\trefs/heads/{branch}") for line in heads.splitlines()):
                raise SourceUnavailable(f"{what} failed: no such branch at {local}")
            self._git([*_CLI_FETCH, str(local.absolute()), f"+refs/heads/{branch}:{incoming}"],
                      what, timeout_s, memory_bytes)  # fmt: skip
        return str(self.repo.references[target or FETCHED_PREFIX + branch].target)

    def import_bundle(
        self,
        *,
        bundle_file: str | Path,
        branch: str,
        timeout_s: float = 120.0,
        memory_bytes: int = FETCH_MEMORY_BYTES,
    ) -> str:
        """Import ``branch`` from a git bundle (``git bundle create``) into the same fetched ref,
        with the git CLI (libgit2 cannot read bundles); returns the commit id. Each git runs
        with ``memory_bytes`` of data at most (a huge object fails the import, not the pod)."""
        check_branch(branch)
        bundle = Path(bundle_file).absolute()
        what = f"bundle {bundle}"
        if not bundle.is_file():
            raise SourceUnavailable(f"{what}: no such file")
        self.repo  # noqa: B018 - creates the mirror on first use
        with _FETCH_LOCK, self._landing(branch, what) as incoming:
            mem = memory_bytes
            self._git(["bundle", "verify", str(bundle)], what, timeout_s, mem)
            heads = self._git(["bundle", "list-heads", str(bundle)], what, timeout_s, mem)
            if not any(line.endswith(f" refs/heads/{branch}") for line in heads.splitlines()):
                raise SourceUnavailable(f"{what}: has no branch {branch!r}")
            refspec = f"+refs/heads/{branch}:{incoming}"
            self._git([*_CLI_FETCH, str(bundle), refspec], what, timeout_s, mem)
        return str(self.repo.references[FETCHED_PREFIX + branch].target)

    @contextmanager
    def _landing(self, branch: str, what: str, *, target: str | None = None) -> Iterator[str]:
        """Objects arrive under a scratch ref; on success the new commits are checked to be
        present and the fetched ref (or ``target``) moves in one write. On any failure every
        ref is as before."""
        repo = self.repo
        incoming, target = INCOMING_PREFIX + branch, target or FETCHED_PREFIX + branch
        fetch_head = self.path / "FETCH_HEAD"  # libgit2 truncates it even when told not to write
        saved_fetch_head = fetch_head.read_bytes() if fetch_head.exists() else None
        _delete_ref(repo, incoming)
        try:
            yield incoming
            new = repo.references[incoming].target
            assert isinstance(new, pygit2.Oid)
            old = repo.references[target].target if target in repo.references else None
            self._check_complete(new, old, what)
            repo.create_reference(target, new, force=True, message=f"gitedge: {what}")
        finally:
            _delete_ref(repo, incoming)
            if saved_fetch_head is None:
                fetch_head.unlink(missing_ok=True)
            else:
                fetch_head.write_bytes(saved_fetch_head)

    def _check_complete(self, new: pygit2.Oid, old: object, what: str) -> None:
        """Every commit between ``old`` and ``new`` and its root tree must be in the mirror.
        Walked by :func:`gitobjects.scan_history`, which reads no object over its cap: an
        oversized commit is left unread here (its parents unknown) and refused by the verify
        step, ``too-large``, naming it."""
        try:
            kind = self.repo.odb.read_header(new)[0]
        except _LIBGIT2_ERRORS:
            kind = None
        if kind != ObjectType.COMMIT:
            raise SourceUnavailable(f"{what}: the branch does not point at a commit")
        try:
            stop = ({str(old)},) if isinstance(old, pygit2.Oid) else ()
            gitobjects.scan_history(self.repo, new, stop=stop)
        except SourceUnavailable as e:
            raise SourceUnavailable(f"{what}: history is incomplete: {e}") from None
        except _LIBGIT2_ERRORS as e:
            raise SourceUnavailable(f"{what}: history is incomplete: {scrub(str(e))}") from None

    def _git(
        self, args: list[str], what: str, timeout_s: float, memory_bytes: int | None = None
    ) -> str:
        """Run the git CLI on the mirror, isolated from user and system config, time-bounded."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.path)}
        env |= {"GIT_DIR": str(self.path), "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C"}
        env |= {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0"}
        return run_git(args, env=env, what=what, timeout_s=timeout_s, memory_bytes=memory_bytes)

    # the fetched ref and commit ids, for agent/ (which imports no pygit2)
    def fetched_tip(self, branch: str) -> str | None:
        ref = self.repo.references.get(FETCHED_PREFIX + branch)
        return str(ref.target) if ref is not None else None

    def set_fetched(self, branch: str, commit: str | None) -> None:
        if commit is None:
            _delete_ref(self.repo, FETCHED_PREFIX + branch)
        else:
            self.repo.references.create(FETCHED_PREFIX + branch, pygit2.Oid(hex=commit), force=True)

    def has_commit(self, commit: str) -> bool:
        """Whether the object exists; ValueError for an id libgit2 cannot read."""
        try:
            return bool(self.repo.odb.exists(commit))
        except pygit2.GitError as e:
            raise ValueError(str(e)) from None

    def commits_ahead(self, commit: str, base: str) -> int:
        return int(self.repo.ahead_behind(commit, base)[0])


def read_commit_tree(*, repo: str | Path, rev: str, subdir: str = "") -> dict[str, bytes | Symlink]:
    """The snapshot of ``rev`` in the repository at ``repo`` (for ``gitedge plan --rev``)."""
    source = GitRepo(path=repo)
    return source.tree_snapshot(source.resolve(rev), subdir=subdir)


# ---------------------------------------------------------------------------- helpers

# git fetch as the bundle import and local paths run it: one index-pack thread (each thread's
# stack counts against the data limit), a small delta base cache: the memory cap then bounds
# the objects, not the machine's cores
_CLI_FETCH = [
    "-c", "pack.threads=1", "-c", "core.deltaBaseCacheLimit=16m",
    "fetch", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules",
]  # fmt: skip


def _instant(seconds: int) -> datetime:
    """A committer time as a UTC datetime; one Python cannot hold (before year 1, after 9999:
    a hand-made commit) is the earliest or latest it can, so the commit is judged (and a later
    one refused as dated before it) instead of the walk failing with no commit named."""
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (ValueError, OverflowError, OSError):
        return datetime(9999, 12, 31, tzinfo=UTC) if seconds > 0 else datetime(1, 1, 2, tzinfo=UTC)


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n} bytes"


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


def _delete_ref(repo: pygit2.Repository, name: str) -> None:
    if name in repo.references:
        repo.references.delete(name)
