"""Durable agent state in SQLite (standard library), one file under ``state.dir``.

What the agent must not lose across crashes, reboots and months offline:

- the last verified commit (and the trust policy in force there, by source and digest);
- the desired state it last planned (plan JSON) and the conditions it last reported;
- every image it mirrored and verified into the cache (upstream reference -> digest);
- every step it applied, and when SUC reported it done.

Each update is one SQLite transaction (WAL journal, ``synchronous=FULL``): a process killed at
any instant leaves either the old or the new value, never half of one. Values are JSON text;
nothing secret is ever stored here (the config names secret files; their contents stay there).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gitedge.errors import StateError

SCHEMA_VERSION = 1
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
"""


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


class State:
    """The agent's durable state. Open once per process; every method is one transaction."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.path = self.dir / "state.sqlite3"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            # one thread at a time (the agent's passes never overlap), but not always the thread
            # that opened it: the scheduler runs passes on its worker thread
            self._db = sqlite3.connect(
                self.path, isolation_level=None, timeout=10, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            version = self._get("schema_version")
            if version is None:
                self._put("schema_version", SCHEMA_VERSION)
            elif version > SCHEMA_VERSION:
                raise StateError(
                    f"{self.path} was written by a newer gitedge (schema {version}); "
                    "upgrade the agent or move the state aside"
                )
        except (sqlite3.Error, OSError) as e:
            raise StateError(f"{self.path}: cannot open the state database: {e}") from None

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _get(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

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
        v = self._get("last_verified")
        if v is None:
            return None
        return LastVerified(
            commit=v["commit"],
            committed_at=datetime.fromisoformat(v["committedAt"]),
            verified_at=datetime.fromisoformat(v["verifiedAt"]),
            policy_source=v["policySource"],
            policy_digest=v["policyDigest"],
        )

    def record_verified(self, lv: LastVerified) -> None:
        self._put(
            "last_verified",
            {
                "commit": lv.commit,
                "committedAt": _iso(lv.committed_at),
                "verifiedAt": _iso(lv.verified_at),
                "policySource": lv.policy_source,
                "policyDigest": lv.policy_digest,
            },
        )

    # -- desired state and conditions ---------------------------------------------------------

    def get_doc(self, name: str) -> Any:
        """A JSON document kept under ``name`` (``desired``, ``conditions``, ...)."""
        return self._get(f"doc:{name}")

    def put_doc(self, name: str, value: Any) -> None:
        self._put(f"doc:{name}", value)

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
        rows = self._db.execute("SELECT source, digest, cache_ref, bytes, at FROM mirrored")
        return {r[0]: Mirrored(r[0], r[1], r[2], r[3], datetime.fromisoformat(r[4])) for r in rows}

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
        rows = self._db.execute(
            "SELECT component, step, started_at, done_at FROM applied ORDER BY started_at"
        )
        return [
            (c, s, datetime.fromisoformat(a), datetime.fromisoformat(d) if d else None)
            for c, s, a, d in rows
        ]
