"""The git source: fetch a branch into a bare mirror, or import an offline bundle, one branch at
a time (:class:`GitMirror`).

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

Transports, credentials, host keys, TLS and the libgit2 fetch with its limits:
:mod:`gitedge.adapters.git.transport`. The git CLI fetch of local paths and bundles:
:mod:`gitedge.adapters.git.cli`. Reading commits and trees: :mod:`gitedge.adapters.git.repo`.
Caps on what is read (objects, packs, memory): :mod:`gitedge.adapters.git.objects`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote

import pygit2
from pygit2.enums import ObjectType

from gitedge.adapters.git import objects as gitobjects
from gitedge.adapters.git.cli import fetch_bundle, fetch_local
from gitedge.adapters.git.repo import FETCHED_PREFIX, LIBGIT2_ERRORS, GitRepo
from gitedge.adapters.git.transport import (
    FETCH_MEMORY_BYTES,
    MAX_PACK_BYTES,
    MIN_RATE,
    SourceAuth,
    check_branch,
    check_url,
    fetch_branch,
    redact_url,
)
from gitedge.errors import SourceUnavailable, scrub

__all__ = ["INCOMING_PREFIX", "GitMirror"]

INCOMING_PREFIX = "refs/gitedge/incoming/"
_FETCH_LOCK = threading.Lock()  # libgit2 timeouts, home dir and CA store are process-wide


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
            except LIBGIT2_ERRORS as e:
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
        ``target``: a mirror's, ``agent/steps/gitmirrors.py``); its commit id.
        A pack growing past ``max_pack_bytes`` (``source.limits.maxPackBytes``) is aborted; the
        fetch may allocate ``memory_bytes`` (``source.limits.fetchMemoryBytes``) more than the
        process holds (:func:`gitobjects.memory_cap`), an object that needs more is refused.
        ``timeout_s`` is the stall window: no wall-clock limit, but each window must bring
        ``min_rate`` bytes a second (:class:`~gitedge.adapters.git.transport.Callbacks`)."""
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
        with _FETCH_LOCK, self._landing(branch, what, target=target) as incoming:
            fetch_branch(
                repo,
                url=url,
                refspec=f"+refs/heads/{branch}:{incoming}",
                auth=auth,
                what=what,
                timeout_s=timeout_s,
                max_pack_bytes=max_pack_bytes,
                memory_bytes=memory_bytes,
                min_rate=min_rate,
            )
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
            fetch_local(
                git_dir=self.path,
                local=local,
                branch=branch,
                into=incoming,
                what=what,
                timeout_s=timeout_s,
                memory_bytes=memory_bytes,
            )
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
            fetch_bundle(
                git_dir=self.path,
                bundle=bundle,
                branch=branch,
                into=incoming,
                what=what,
                timeout_s=timeout_s,
                memory_bytes=memory_bytes,
            )
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
        except LIBGIT2_ERRORS:
            kind = None
        if kind != ObjectType.COMMIT:
            raise SourceUnavailable(f"{what}: the branch does not point at a commit")
        try:
            stop = ({str(old)},) if isinstance(old, pygit2.Oid) else ()
            gitobjects.scan_history(self.repo, new, stop=stop)
        except SourceUnavailable as e:
            raise SourceUnavailable(f"{what}: history is incomplete: {e}") from None
        except LIBGIT2_ERRORS as e:
            raise SourceUnavailable(f"{what}: history is incomplete: {scrub(str(e))}") from None

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


def _delete_ref(repo: pygit2.Repository, name: str) -> None:
    if name in repo.references:
        repo.references.delete(name)
