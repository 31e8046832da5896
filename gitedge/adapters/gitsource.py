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

Host keys (ssh). libgit2 1.9 (libssh2) checks the host key against ``.ssh/known_hosts`` in its
home directory and passes the verdict to the certificate callback; pygit2 alone would accept
any key, so our callback accepts exactly what libgit2 verified. ``SourceAuth.known_hosts_file``
becomes that home's known_hosts for the fetch (else ``$HOME/.ssh/known_hosts`` is used).
Verified: the presented key is listed for the host (``[host]:port`` when not 22; plain or
hashed names). Not honoured: ``@cert-authority`` and ``@revoked`` lines. TLS: OpenSSL checks
chain and host name; ``SourceAuth.ca_file`` is added to the process's trusted CAs.

Secrets are read from their files when a server asks; they never reach exceptions (remote text
goes through :func:`~gitedge.errors.scrub`, URLs lose their userinfo).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import posixpath
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pygit2
from pygit2.callbacks import git_fetch_options
from pygit2.enums import CredentialType, ObjectType, RepositoryOpenFlag, SortMode
from pygit2.ffi import C, ffi
from pygit2.utils import StrArray

from gitedge.adapters.gitcli import run_git
from gitedge.core.fleetfiles import MAX_FILE_BYTES, MAX_REPO_BYTES, TRUST_PATH
from gitedge.core.snapshot import Symlink
from gitedge.errors import InvalidFleetRepo, InvalidInput, Problem, SourceUnavailable, scrub

FETCHED_PREFIX = "refs/gitedge/fetched/"
INCOMING_PREFIX = "refs/gitedge/incoming/"
_SYMLINK_MODE = 0o120000
_MAX_SYMLINK_BYTES = 4096
_LIBGIT2_ERRORS = (pygit2.GitError, KeyError, ValueError, OSError)
_FETCH_LOCK = threading.Lock()  # libgit2 timeouts, home dir and CA store are process-wide
_CA_LOADED: set[str] = set()


@dataclass(frozen=True)
class SourceAuth:
    """Where the secrets of a git source live; each is read only when a server asks for it."""

    ssh_key_file: Path | None = None
    known_hosts_file: Path | None = None
    username_file: Path | None = None
    password_file: Path | None = None
    ca_file: Path | None = None


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


def redact_url(url: str) -> str:
    """``url`` without userinfo secrets (``https://user:pw@host`` -> ``https://***@host``)."""
    return scrub(url, limit=200)


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
        """The commit id ``rev`` names: a ref, a branch (also a fetched one), a short or full id."""
        for candidate in (rev, FETCHED_PREFIX + rev):
            try:
                return str(self.repo.revparse_single(candidate).peel(pygit2.Commit).id)
            except pygit2.AmbiguousError:
                raise SourceUnavailable(f"{self.path}: revision {rev!r} is ambiguous") from None
            except _LIBGIT2_ERRORS:
                continue
        raise SourceUnavailable(f"{self.path}: revision {rev!r} not found (or not a commit)")

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
        tree = self._commit(commit).tree
        try:
            entry = tree[path.strip("/")]
        except _LIBGIT2_ERRORS:
            return None
        if entry.type != ObjectType.BLOB or entry.filemode == _SYMLINK_MODE:
            return None
        return self._blob(entry.id, path, limit=MAX_FILE_BYTES)

    def trust_blob_id(self, commit: str) -> str | None:
        """The blob id of ``.gitedge/trust.yaml`` at ``commit`` (None when it has none)."""
        return _trust_blob(self.repo, self._commit(commit).tree_id)

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
        if kind != ObjectType.BLOB:  # a hand-made tree: a file's mode on a tree or commit id
            raise InvalidFleetRepo([Problem(path, 0, f"is not a file (object {oid} is no blob)")])
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
        base = posixpath.normpath(subdir).strip("/") if subdir not in ("", ".", "/") else ""
        if base.startswith(".."):
            raise InvalidFleetRepo([Problem(subdir, 0, "source.path leaves the repo")])
        in_gitedge = base == ".gitedge" or base.startswith(".gitedge/")
        out: dict[str, bytes | Symlink] = {}
        total = 0
        try:
            for root in [base] if not base or in_gitedge else [base, ".gitedge"]:
                try:
                    tree = commit.tree[root] if root else commit.tree
                except KeyError:
                    continue  # an absent subdir or .gitedge/ is the loader's business
                for path, entry in self._walk(tree, root):
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

    def _walk(self, tree: pygit2.Object, prefix: str) -> Iterator[tuple[str, pygit2.Object]]:
        """(path, entry) of every blob under ``tree``; submodules (commits) are skipped."""
        if isinstance(tree, pygit2.Tree):
            for entry in tree:
                name = (entry.raw_name or b"").decode("utf-8", "replace")
                path = f"{prefix}/{name}" if prefix else name
                if entry.type == ObjectType.TREE:
                    yield from self._walk(self.repo[entry.id], path)
                elif entry.type == ObjectType.BLOB:
                    yield path, entry

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

        def trust_of(tree_id: pygit2.Oid) -> str | None:
            """``_trust_blob``, remembered by the tree of ``.gitedge/`` too: most commits change
            the root tree but not that directory, so one root-tree entry look-up answers."""
            tree = repo.get(tree_id)
            if not isinstance(tree, pygit2.Tree):
                return _trust_blob(repo, tree_id)
            if trust_dir not in tree:
                return None
            entry = tree[trust_dir]
            if entry.type != ObjectType.TREE:
                return None
            if entry.id not in trust_by_dir:
                trust_by_dir[entry.id] = _trust_blob(repo, tree_id)
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
                    trust = trust_by_tree[tree_id] = trust_of(tree_id)
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
        self, *, url: str, branch: str, auth: SourceAuth | None = None, timeout_s: float = 60.0
    ) -> str:
        """Fetch ``branch`` of ``url`` into ``refs/gitedge/fetched/<branch>``; its commit id."""
        shown = redact_url(url)
        scheme = _check_url(url)
        _check_branch(branch)
        auth = auth or SourceAuth()
        repo = self.repo
        what = f"fetch of branch {branch!r} from {shown}"
        started = time.monotonic()
        callbacks = _Callbacks(auth=auth, shown=shown, scheme=scheme, deadline=started + timeout_s)
        with _FETCH_LOCK, _libgit2_settings(scheme=scheme, auth=auth, timeout_s=timeout_s):
            with self._landing(branch, what) as incoming:
                try:
                    remote = repo.remotes.create_anonymous(url)
                    _fetch_no_tags(remote, f"+refs/heads/{branch}:{incoming}", callbacks)
                except SourceUnavailable:
                    raise
                except _LIBGIT2_ERRORS as e:
                    late = time.monotonic() - started >= timeout_s
                    hint = f" (no answer within {timeout_s:g}s)" if late else ""
                    raise SourceUnavailable(f"{what} failed: {scrub(str(e))}{hint}") from None
                if incoming not in repo.references:
                    raise SourceUnavailable(f"{what} failed: no such branch at {shown}")
            return str(repo.references[FETCHED_PREFIX + branch].target)

    def import_bundle(
        self, *, bundle_file: str | Path, branch: str, timeout_s: float = 120.0
    ) -> str:
        """Import ``branch`` from a git bundle (``git bundle create``) into the same fetched ref,
        with the git CLI (libgit2 cannot read bundles); returns the commit id."""
        _check_branch(branch)
        bundle = Path(bundle_file).absolute()
        what = f"bundle {bundle}"
        if not bundle.is_file():
            raise SourceUnavailable(f"{what}: no such file")
        self.repo  # noqa: B018 - creates the mirror on first use
        with _FETCH_LOCK, self._landing(branch, what) as incoming:
            self._git(["bundle", "verify", str(bundle)], what, timeout_s)
            heads = self._git(["bundle", "list-heads", str(bundle)], what, timeout_s)
            if not any(line.endswith(f" refs/heads/{branch}") for line in heads.splitlines()):
                raise SourceUnavailable(f"{what}: has no branch {branch!r}")
            args = ["fetch", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules"]
            self._git([*args, str(bundle), f"+refs/heads/{branch}:{incoming}"], what, timeout_s)
        return str(self.repo.references[FETCHED_PREFIX + branch].target)

    @contextmanager
    def _landing(self, branch: str, what: str) -> Iterator[str]:
        """Objects arrive under a scratch ref; on success the new commits are checked to be
        present and the fetched ref moves in one write. On any failure every ref is as before."""
        repo = self.repo
        incoming, target = INCOMING_PREFIX + branch, FETCHED_PREFIX + branch
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
        """Every commit between ``old`` and ``new`` and its root tree must be in the mirror."""
        repo, odb = self.repo, self.repo.odb
        try:
            if not isinstance(repo.get(new), pygit2.Commit):
                raise SourceUnavailable(f"{what}: the branch does not point at a commit")
            walker = repo.walk(new, SortMode.NONE)
            if isinstance(old, pygit2.Oid) and odb.exists(old):
                walker.hide(old)
            for commit in walker:
                if not odb.exists(commit.tree_id):
                    raise SourceUnavailable(f"{what}: tree of commit {commit.id} is missing")
        except _LIBGIT2_ERRORS as e:
            raise SourceUnavailable(f"{what}: history is incomplete: {scrub(str(e))}") from None

    def _git(self, args: list[str], what: str, timeout_s: float) -> str:
        """Run the git CLI on the mirror, isolated from user and system config, time-bounded."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.path)}
        env |= {"GIT_DIR": str(self.path), "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C"}
        env |= {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0"}
        return run_git(args, env=env, what=what, timeout_s=timeout_s)


def read_commit_tree(*, repo: str | Path, rev: str, subdir: str = "") -> dict[str, bytes | Symlink]:
    """The snapshot of ``rev`` in the repository at ``repo`` (for ``gitedge plan --rev``)."""
    source = GitRepo(path=repo)
    return source.tree_snapshot(source.resolve(rev), subdir=subdir)


# ---------------------------------------------------------------------------- helpers


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


def _trust_blob(repo: pygit2.Repository, tree_id: pygit2.Oid) -> str | None:
    tree = repo.get(tree_id)
    assert isinstance(tree, pygit2.Tree)
    try:
        entry = tree[TRUST_PATH]
    except KeyError:
        return None
    return str(entry.id) if entry.type == ObjectType.BLOB else None


def _delete_ref(repo: pygit2.Repository, name: str) -> None:
    if name in repo.references:
        repo.references.delete(name)


def _check_branch(branch: str) -> None:
    if not branch or not pygit2.reference_is_valid_name(f"refs/heads/{branch}"):
        raise InvalidInput([Problem("source.branch", 0, f"{branch!r} is not a valid branch name")])


def _check_url(url: str) -> str:
    """The transport of ``url``; plain http only to loopback, unknown schemes refused."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if "://" not in url:  # a local path, or scp-like user@host:path
        scheme = "file" if url.startswith("/") else "ssh" if ":" in url.split("/")[0] else ""
    if scheme == "http" and not _is_loopback(parts.hostname or ""):
        msg = "plain http is allowed only to a loopback address; use https"
        raise InvalidInput([Problem("source.url", 0, msg)])
    if scheme not in ("https", "http", "ssh", "git", "file"):
        raise InvalidInput([Problem("source.url", 0, f"unsupported URL {redact_url(url)!r}")])
    return scheme


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_secret(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8"
        raise InvalidInput([Problem(str(path), 0, f"cannot read {what}: {reason}")]) from None


class _Callbacks(pygit2.RemoteCallbacks):
    """Credentials from files (each offered once), certificates and host keys exactly as
    libgit2 verified them, and a deadline on the whole transfer."""

    def __init__(self, *, auth: SourceAuth, shown: str, scheme: str, deadline: float) -> None:
        super().__init__()
        self.auth, self.shown, self.scheme, self.deadline = auth, shown, scheme, deadline
        self.offered: set[CredentialType] = set()

    def credentials(
        self, url: str, username_from_url: str | None, allowed_types: CredentialType
    ) -> Any:
        auth = self.auth
        user = username_from_url or (
            _read_secret(auth.username_file, "source username") if auth.username_file else None
        )
        if allowed_types & CredentialType.USERNAME:
            return pygit2.Username(user or "git")
        for kind in (CredentialType.SSH_KEY, CredentialType.USERPASS_PLAINTEXT):
            if allowed_types & kind and kind in self.offered:
                raise SourceUnavailable(f"{self.shown}: authentication failed")
        if allowed_types & CredentialType.SSH_KEY and auth.ssh_key_file is not None:
            self.offered.add(CredentialType.SSH_KEY)
            return pygit2.Keypair(user or "git", None, str(auth.ssh_key_file), "")
        if allowed_types & CredentialType.USERPASS_PLAINTEXT and auth.password_file is not None:
            self.offered.add(CredentialType.USERPASS_PLAINTEXT)
            password = _read_secret(auth.password_file, "source password")
            return pygit2.UserPass(user or "git", password)
        raise SourceUnavailable(f"{self.shown}: the server asks for credentials; none are set")

    def certificate_check(self, certificate: None, valid: bool, host: bytes) -> bool:
        if not valid:
            what = "ssh host key" if self.scheme == "ssh" else "TLS certificate"
            name = host.decode("utf-8", "replace")
            raise SourceUnavailable(f"{self.shown}: {what} of {name} is not trusted")
        return True

    def transfer_progress(self, stats: Any) -> None:
        if time.monotonic() > self.deadline:
            raise SourceUnavailable(f"{self.shown}: transfer did not finish in time")

    def sideband_progress(self, string: str) -> None:
        self.transfer_progress(None)


def _fetch_no_tags(remote: pygit2.Remote, refspec: str, callbacks: _Callbacks) -> None:
    """``Remote.fetch`` without tag following and without writing FETCH_HEAD entries (pygit2
    does not expose these two libgit2 fetch options)."""
    with git_fetch_options(callbacks) as payload:
        opts = payload.fetch_options
        opts.download_tags = C.GIT_REMOTE_DOWNLOAD_TAGS_NONE
        opts.update_fetchhead = 0
        with StrArray([refspec]) as arr:
            err = C.git_remote_fetch(remote._remote, arr.ptr, opts, ffi.NULL)
            payload.check_error(err)


@contextmanager
def _libgit2_settings(*, scheme: str, auth: SourceAuth, timeout_s: float) -> Iterator[None]:
    """Process-wide libgit2 settings for one fetch: timeouts, trusted CA, known_hosts home."""
    settings = pygit2.settings
    ms = max(1, int(timeout_s * 1000))
    saved = (settings.server_connect_timeout, settings.server_timeout, settings.homedir)
    settings.server_connect_timeout = ms
    settings.server_timeout = ms
    if auth.ca_file is not None and scheme == "https":
        _load_ca(auth.ca_file)
    home: str | None = None
    try:
        if scheme == "ssh" and auth.known_hosts_file is not None:
            home = tempfile.mkdtemp(prefix="gitedge-ssh-")
            (Path(home) / ".ssh").mkdir()
            try:
                shutil.copyfile(auth.known_hosts_file, Path(home) / ".ssh" / "known_hosts")
            except OSError as e:
                problem = Problem(str(auth.known_hosts_file), 0, f"cannot read: {e.strerror}")
                raise InvalidInput([problem]) from None
            settings.homedir = home
        yield
    finally:
        settings.server_connect_timeout, settings.server_timeout = saved[0], saved[1]
        if home is not None:
            if saved[2] is not None:
                settings.homedir = saved[2]
            shutil.rmtree(home, ignore_errors=True)


def _load_ca(ca_file: Path) -> None:
    """Add ``ca_file`` to libgit2's trusted CAs (OpenSSL adds; the system CAs stay trusted)."""
    try:
        key = hashlib.sha256(ca_file.read_bytes()).hexdigest()
    except OSError as e:
        raise InvalidInput([Problem(str(ca_file), 0, f"cannot read: {e.strerror}")]) from None
    if key not in _CA_LOADED:
        pygit2.settings.set_ssl_cert_locations(str(ca_file), None)
        _CA_LOADED.add(key)
