"""Durable agent state in SQLite (standard library), one file under ``state.dir``.

What the agent must not lose across crashes, reboots and months offline:

- the last verified commit (and the trust policy in force there, by source and digest);
- the desired state it last planned (plan JSON) and the conditions it last reported;
- every image it mirrored and verified into the cache (upstream reference -> digest);
- every step it applied, and when SUC reported it done;
- the ids of commits already verified, by trust-rules version and bootstrap (a cache: table
  ``verified``, read by :class:`gitedge.adapters.trust.verifiedcommits.VerifiedCommits`).

Each update is one SQLite transaction (WAL journal, ``synchronous=FULL``): a process killed at
any instant leaves either the old or the new value, never half of one. Values are JSON text;
nothing secret is ever stored here (the config names secret files; their contents stay there).

A value that does not decode (a disk fault, a hand edit) is handled by what it is. The last
verified commit is where trust and rollback protection start: a corrupt one is a
:class:`StateError` saying how to recover, never a silent reset. Mirrored-image and applied-step
rows are records of a cache and of history: a bad row is dropped with a warning (the image is
mirrored and verified again; what the cluster runs decides what is applied). Documents (desired
state, conditions, status, ...) are written again by every pass: a corrupt one reads as absent,
with a warning. A database locked by another process past the timeout, or not a database at all,
is a :class:`StateError` naming the file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from gitedge.core.images.manifests import is_digest
from gitedge.core.images.refs import ImageRef
from gitedge.errors import StateError, StateMoved

log = logging.getLogger("gitedge.state")

SCHEMA_VERSION = 1
_FORGET_LAST = "DELETE FROM meta WHERE key = 'last_verified'"
_SET_SCHEMA = "UPDATE meta SET value = '1' WHERE key = 'schema_version'"  # SCHEMA_VERSION
_DELETE_ROW = {
    "mirrored": "DELETE FROM mirrored WHERE rowid = ?",
    "applied": "DELETE FROM applied WHERE rowid = ?",
}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS mirrored (
    source TEXT PRIMARY KEY,     -- upstream reference as the plan names it
    digest TEXT NOT NULL,        -- manifest (or index) digest, verified in the cache
    cache_ref TEXT NOT NULL,     -- where it is in the cache, pinned
    bytes INTEGER NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS applied (
    component TEXT NOT NULL,     -- os | k3s
    step TEXT NOT NULL,          -- a K3s version or an OS image reference
    started_at TEXT NOT NULL,
    done_at TEXT,
    PRIMARY KEY (component, step)
);
CREATE TABLE IF NOT EXISTS verified (
    rules TEXT NOT NULL,         -- the trust rules' version (agent/steps/verifyrange.py RULES)
    bootstrap TEXT NOT NULL,     -- the bootstrap policy's digest, shortened
    commit_id TEXT NOT NULL,     -- a commit verified under both
    PRIMARY KEY (rules, bootstrap, commit_id)
) WITHOUT ROWID;
"""


D = TypeVar("D", dict[str, Any], list[Any])


@dataclass(frozen=True)
class DocKey(Generic[D]):
    """A document's name and shape: :meth:`State.doc` and :meth:`State.put` take one of the
    keys below instead of a string, so that writer and readers agree on both."""

    name: str
    shape: type[D]


#: Documents read and written by more than one module (``doc:<name>`` rows of ``meta``).
DESIRED = DocKey[dict[str, Any]]("desired", dict)  # the plan last made, with its commit
CONDITIONS = DocKey[list[Any]]("conditions", list)  # the conditions last reported
STATUS = DocKey[dict[str, Any]]("status", dict)  # the status of the last pass
IMAGE_SIGNATURES = DocKey[dict[str, Any]]("imageSignatures", dict)  # image -> who signed it
IMAGE_ENDPOINTS = DocKey[dict[str, Any]]("imageEndpoints", dict)  # image -> who served it
BUNDLE_INBOX = DocKey[dict[str, Any]]("bundles", dict)  # bundle files seen and imported


@dataclass(frozen=True)
class LastVerified:
    commit: str
    committed_at: datetime
    verified_at: datetime
    policy_source: str
    policy_digest: str


@dataclass(frozen=True)
class Mirrored:
    source: str
    digest: str
    cache_ref: str
    bytes: int
    at: datetime


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat()


_ABSENT = object()  # no row at all, as opposed to a row holding JSON null


class _Bad(ValueError):
    """A stored value that does not decode. Kept here, outside errors.py's tree: a private
    signal that never leaves this module (turned into a StateError or a warning here)."""


def _instant(value: object) -> datetime:
    if not isinstance(value, str):
        raise _Bad(f"not a time: {value!r:.60}")
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise _Bad(f"not a time: {value!r:.60}") from None
    if t.tzinfo is None:
        raise _Bad(f"a time without a zone: {value!r:.60}")
    return t


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise _Bad(f"{what} is not text: {value!r:.60}")
    return value


def _commit_id(value: object) -> str:
    text = _text(value, "commit")
    if len(text) not in (40, 64) or text.strip("0123456789abcdef"):
        raise _Bad(f"not a commit id: {text!r:.80}")
    return text


class State:
    """The agent's durable state. Open once per process; every method is one transaction."""

    def __init__(self, directory: str | Path, *, timeout_s: float = 10.0) -> None:
        self.dir = Path(directory)
        self.path = self.dir / "state.sqlite3"
        self.timeout_s = timeout_s
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            # one thread at a time (the agent's passes never overlap), but not always the thread
            # that opened it: the scheduler runs passes on its worker thread
            self._db = sqlite3.connect(
                self.path, isolation_level=None, timeout=timeout_s, check_same_thread=False
            )
        except (sqlite3.Error, OSError) as e:
            raise StateError(f"{self.path}: cannot open the state database: {e}") from None
        try:
            with self._errors("open"):
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.executescript(_SCHEMA)
                try:
                    version = self._get("schema_version", _ABSENT)
                except _Bad as e:
                    version = str(e)
                if version is _ABSENT:
                    self._put("schema_version", SCHEMA_VERSION)
                elif not isinstance(version, int) or isinstance(version, bool) or version < 1:
                    raise StateError(
                        f"{self.path}: schema_version is corrupt ({version!r:.60}); if this "
                        "gitedge wrote the file, set it back (sqlite3 "
                        f"{self.path} {_SET_SCHEMA!r}; everything else is kept), else restore the "
                        "file from a backup"
                    )
                elif version > SCHEMA_VERSION:
                    raise StateError(
                        f"{self.path} was written by a newer gitedge (schema {version}); "
                        "upgrade the agent or move the state aside"
                    )
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    def check(self) -> None:
        """Read every record once, as a pass will: a corrupt last verified commit raises
        :class:`StateError` now, bad mirrored/applied rows are dropped with a warning."""
        self.last_verified  # noqa: B018 - read for its check
        self.mirrored()
        self.applied()

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """SQLite's errors as StateError naming the file: locked past the timeout (another
        gitedge process writing), not a database, a disk fault."""
        try:
            yield
        except sqlite3.OperationalError as e:
            if "locked" in str(e) or "busy" in str(e):
                raise StateError(
                    f"{self.path}: locked by another process for more than "
                    f"{self.timeout_s:g}s ({doing}); is an agent pass or a bundle import running? "
                    "Try again when it ends (nothing was changed)"
                ) from None
            raise StateError(f"{self.path}: cannot {doing}: {e}") from None
        except sqlite3.Error as e:
            raise StateError(
                f"{self.path}: cannot {doing}: {e}; restore the file from a backup, or move it "
                "aside: the agent then verifies the fleet repo again from its root under the "
                "bootstrap trust (rollback protection starts again from the tip it verifies: "
                "check that tip) and mirrors its images again"
            ) from None

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._errors("write"):
            self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise
        with self._errors("write"):
            self._db.execute("COMMIT")

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._errors("read"):
            return self._db.execute(sql, args).fetchall()

    def _get(self, key: str, missing: Any = None) -> Any:
        """The JSON value under ``key`` (``missing`` when there is no row); :class:`_Bad` when
        it does not decode."""
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        if not rows:
            return missing
        raw = rows[0][0]
        if not isinstance(raw, str | bytes):
            raise _Bad(f"not JSON text: {raw!r:.60}")
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
            raise _Bad(f"not JSON: {str(e)[:80]}") from None

    def _put(self, key: str, value: Any) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value, sort_keys=True)),
            )

    # -- the last verified commit ------------------------------------------------------------

    @property
    def last_verified(self) -> LastVerified | None:
        """The last verified commit; a record that does not decode is a :class:`StateError`
        (trust and rollback protection start from it: never reset silently)."""
        try:
            v = self._get("last_verified", _ABSENT)
            if v is _ABSENT:
                return None
            if not isinstance(v, dict):  # even null: we never write one, so it is no "none yet"
                raise _Bad(f"not an object: {v!r:.60}")
            return LastVerified(
                commit=_commit_id(v.get("commit")),
                committed_at=_instant(v.get("committedAt")),
                verified_at=_instant(v.get("verifiedAt")),
                policy_source=_text(v.get("policySource"), "policySource"),
                policy_digest=_text(v.get("policyDigest"), "policyDigest"),
            )
        except _Bad as e:
            raise StateError(
                f"{self.path}: the last verified commit is corrupt ({e}). Trust and rollback "
                "protection start from it, so gitedge stops rather than guess. To recover, "
                "restore the file from a backup, or delete the record (sqlite3 "
                f"{self.path} {_FORGET_LAST!r}): the next pass "
                "then verifies the fleet repo from its root under the bootstrap trust, and "
                "rollback protection starts again from the tip it verifies (check that tip). "
                "Mirrored images, applied steps and verified-commit ids are kept"
            ) from None

    def record_verified(self, lv: LastVerified, *, replacing: str | None = None) -> None:
        """Record ``lv``; with ``replacing``, only if the record is still that commit, in the
        same transaction (:class:`StateMoved` otherwise): ``accept-history`` verified against
        the trust at the commit it read, and an agent pass may have moved on meanwhile."""
        if replacing is not None:
            with self._tx() as db:
                rows = db.execute("SELECT value FROM meta WHERE key = 'last_verified'").fetchall()
                try:
                    now = json.loads(rows[0][0]).get("commit") if rows else None
                except (ValueError, TypeError, AttributeError):
                    now = None  # not our record: not the one verified against
                if now != replacing:
                    raise StateMoved(
                        f"{self.path}: the last verified commit changed while verifying from "
                        f"{replacing} (now {now}, by another gitedge process): nothing recorded; "
                        "run the command again"
                    )
                db.execute(
                    "UPDATE meta SET value = ? WHERE key = 'last_verified'",
                    (json.dumps(self._verified_doc(lv), sort_keys=True),),
                )
            return
        self._put("last_verified", self._verified_doc(lv))

    @staticmethod
    def _verified_doc(lv: LastVerified) -> dict[str, str]:
        return {
            "commit": lv.commit,
            "committedAt": _iso(lv.committed_at),
            "verifiedAt": _iso(lv.verified_at),
            "policySource": lv.policy_source,
            "policyDigest": lv.policy_digest,
        }

    # -- desired state and conditions ---------------------------------------------------------

    def get_doc(self, name: str) -> Any:
        """A JSON document kept under ``name`` (``desired``, ``conditions``, ...). Every pass
        writes them again: one that does not decode reads as absent, with a warning."""
        try:
            return self._get(f"doc:{name}")
        except _Bad as e:
            log.warning(
                "%s: document %r is corrupt (%s): ignored, the next pass writes it again",
                self.path,
                name,
                e,
            )
            return None

    def put_doc(self, name: str, value: Any) -> None:
        self._put(f"doc:{name}", value)

    def doc(self, key: DocKey[D]) -> D | None:
        """The document ``key`` names; None when absent, corrupt or not of its shape (a
        warning says so: every pass writes it again)."""
        value = self.get_doc(key.name)
        if value is None or isinstance(value, key.shape):
            return value
        log.warning(
            "%s: document %r is not a JSON %s: ignored, the next pass writes it again",
            self.path,
            key.name,
            "object" if key.shape is dict else "array",
        )
        return None

    def put(self, key: DocKey[D], value: D) -> None:
        """Write the document ``key`` names (stored as :meth:`put_doc` stores it)."""
        self._put(f"doc:{key.name}", value)

    # -- verified commit ids (a cache) ---------------------------------------------------------

    def verified_commits(self, *, rules: str, bootstrap: str) -> set[str]:
        """Ids verified under ``rules`` and ``bootstrap``; ids under other rules are not read
        (they are checked again). A row that is not a commit id is dropped with a warning."""
        rows = self._read(
            "SELECT commit_id FROM verified WHERE rules = ? AND bootstrap = ?", (rules, bootstrap)
        )
        ids: set[str] = set()
        for (cid,) in rows:
            try:
                ids.add(_commit_id(cid))
            except _Bad as e:
                log.warning(
                    "%s: a verified row is corrupt (%s): ignored, that commit is verified again",
                    self.path,
                    e,
                )
        return ids

    def record_verified_commits(self, ids: Iterable[str], *, rules: str, bootstrap: str) -> None:
        """Add ``ids`` under ``rules`` and ``bootstrap``; rows of other rules are deleted (no
        pass reads them again)."""
        with self._tx() as db:
            db.execute("DELETE FROM verified WHERE rules != ?", (rules,))
            db.executemany(
                "INSERT OR IGNORE INTO verified (rules, bootstrap, commit_id) VALUES (?, ?, ?)",
                [(rules, bootstrap, cid) for cid in ids],
            )

    # -- mirrored images ----------------------------------------------------------------------

    def record_mirrored(self, m: Mirrored) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO mirrored (source, digest, cache_ref, bytes, at) VALUES (?,?,?,?,?) "
                "ON CONFLICT(source) DO UPDATE SET digest=excluded.digest, "
                "cache_ref=excluded.cache_ref, bytes=excluded.bytes, at=excluded.at",
                (m.source, m.digest, m.cache_ref, m.bytes, _iso(m.at)),
            )

    def mirrored(self) -> dict[str, Mirrored]:
        """Images mirrored and verified into the cache. A row that does not decode is dropped
        with a warning: the next pass mirrors (and verifies) that image again."""
        out: dict[str, Mirrored] = {}
        bad: list[tuple[int, str]] = []
        rows = self._read("SELECT rowid, source, digest, cache_ref, bytes, at FROM mirrored")
        for rowid, source, digest, cache_ref, size, at in rows:
            try:
                src = _text(source, "source")
                ImageRef.parse(src)
                if not isinstance(digest, str) or not is_digest(digest):
                    raise _Bad(f"not a digest: {digest!r:.80}")
                if not isinstance(size, int) or size < 0:
                    raise _Bad(f"not a size: {size!r:.40}")
                out[src] = Mirrored(src, digest, _text(cache_ref, "cache_ref"), size, _instant(at))
            except (_Bad, ValueError) as e:
                bad.append((rowid, f"{source!r:.100}: {e}"))
        self._drop("mirrored", bad, "the next pass mirrors and verifies that image again")
        return out

    def _drop(self, table: str, bad: list[tuple[int, str]], then: str) -> None:
        for _, why in bad:
            log.warning("%s: a %s row is corrupt (%s): dropped; %s", self.path, table, why, then)
        if bad:
            # locked: dropped the next time instead
            with contextlib.suppress(StateError), self._tx() as db:
                db.executemany(_DELETE_ROW[table], [(rowid,) for rowid, _ in bad])

    # -- applied steps ------------------------------------------------------------------------

    def record_step_started(self, *, component: str, step: str, at: datetime) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO applied (component, step, started_at) VALUES (?,?,?) "
                "ON CONFLICT(component, step) DO NOTHING",
                (component, step, _iso(at)),
            )

    def record_step_done(self, *, component: str, step: str, at: datetime) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO applied (component, step, started_at, done_at) VALUES (?,?,?,?) "
                "ON CONFLICT(component, step) DO UPDATE SET done_at = "
                "COALESCE(applied.done_at, excluded.done_at)",
                (component, step, _iso(at), _iso(at)),
            )

    def applied(self) -> list[tuple[str, str, datetime, datetime | None]]:
        """Steps applied, oldest first. A row that does not decode is dropped with a warning:
        it is history only (what the cluster runs decides what is applied)."""
        out: list[tuple[str, str, datetime, datetime | None]] = []
        bad: list[tuple[int, str]] = []
        rows = self._read("SELECT rowid, component, step, started_at, done_at FROM applied")
        for rowid, c, s, a, d in rows:
            try:
                if c not in ("os", "k3s"):
                    raise _Bad(f"not a component: {c!r:.40}")
                out.append((c, _text(s, "step"), _instant(a), None if d is None else _instant(d)))
            except _Bad as e:
                bad.append((rowid, f"{s!r:.100}: {e}"))
        self._drop("applied", bad, "only the record of that step is lost")
        return sorted(out, key=lambda r: r[2])
