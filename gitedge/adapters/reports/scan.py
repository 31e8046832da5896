"""``gitedge fleet status`` at fleet size: every site's report, read concurrently, in bounded
memory, fetching again only what changed since the last run.

Phase 1 (the scan) lists the tags, then a bounded pool of ``jobs`` workers (at most ``2 x jobs``
tags in flight) GETs each tag's manifest: one small request per site. The manifest names the
report's layer by digest; a layer already in the :class:`ReportCache` (a file named by that
digest, its bytes hashed again when looked up) is not fetched; a new one is read (size-capped,
digest-checked, parsed) and stored. What the scan keeps per tag is its layer digest or why it is
unreadable: no report bytes. Cache files no tag names any more are removed at the end.

Phase 2 (:func:`iter_reports`) reads the cached documents back one at a time, sorted by tag, and
yields each :class:`~gitedge.core.status.sitereport.SiteReport` (or an :class:`Unreadable`): the
caller aggregates as they stream by. A run after 100 of 10,000 reports changed costs 10,000 manifest
GETs and 100 blob GETs.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from gitedge.adapters.registry.client import RegistryClient
from gitedge.adapters.registry.hosts import Hosts, RetryPolicy
from gitedge.adapters.reports.store import (
    ReportRepository,
    Unreadable,
    read_report_layer,
    report_layer,
)
from gitedge.core.images.manifests import digest_of
from gitedge.core.status.sitereport import SiteReport, from_document, tag_for
from gitedge.errors import GitEdgeError, ReportError, StateError, scrub

__all__ = ["FleetScan", "ReportCache", "default_cache_dir", "iter_reports", "scan_reports"]

_ENTRY = re.compile(r"^(sha256|sha512)-([0-9a-f]{64}|[0-9a-f]{128})\.json$")


def default_cache_dir(repo: ReportRepository) -> Path:
    """``$XDG_CACHE_HOME/gitedge/fleet-status/<host>/<repository>`` (``~/.cache`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gitedge" / "fleet-status" / repo.host.replace(":", "_") / repo.repository


class ReportCache:
    """Report documents by their layer digest, one file each, written atomically."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StateError(f"report cache {directory}: {e.strerror}") from None
        if not os.access(directory, os.W_OK | os.X_OK):
            raise StateError(f"report cache {directory}: not writable")

    def _path(self, digest: str) -> Path:
        algo, hexpart = digest.split(":", 1)
        return self.dir / f"{algo}-{hexpart}.json"

    def get(self, digest: str) -> bytes | None:
        """The document stored under ``digest`` if its bytes still hash to it, else None."""
        try:
            data = self._path(digest).read_bytes()
        except OSError:
            return None
        return data if digest_of(data, algorithm=digest.split(":", 1)[0]) == digest else None

    def put(self, digest: str, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            Path(tmp).replace(self._path(digest))
        except OSError as e:
            Path(tmp).unlink(missing_ok=True)
            raise StateError(f"report cache {self.dir}: {e.strerror}") from None

    def prune(self, keep: set[str]) -> int:
        """Remove every entry whose digest is not in ``keep``; returns how many went."""
        wanted = {self._path(d).name for d in keep}
        gone = 0
        for entry in os.scandir(self.dir):
            if (_ENTRY.match(entry.name) or entry.name.startswith(".tmp-")) and (
                entry.name not in wanted
            ):
                Path(entry.path).unlink(missing_ok=True)
                gone += 1
        return gone


@dataclass
class FleetScan:
    """What a scan found: each tag's layer digest (its document is in the cache) or why it
    could not be read, and how many documents were fetched vs found in the cache."""

    repo: ReportRepository
    cache: ReportCache
    digests: dict[str, str] = field(default_factory=dict)
    unreadable: dict[str, Unreadable] = field(default_factory=dict)
    fetched: int = 0
    cached: int = 0
    pruned: int = 0

    @property
    def tags(self) -> int:
        return len(self.digests) + len(self.unreadable)


def scan_reports(
    repo: ReportRepository,
    *,
    cache: ReportCache,
    hosts: Hosts | None = None,
    retry: RetryPolicy | None = None,
    jobs: int = 16,
    page: int = 1000,
) -> FleetScan:
    """Phase 1: every tag's manifest, and the report layers the cache lacks. Raises only when
    the repository cannot be listed (or the cache cannot be written)."""
    scan = FleetScan(repo, cache)
    lock = threading.Lock()
    client = RegistryClient(
        host=repo.host,
        config=(hosts or Hosts()).get(repo.host),
        retry=retry,
        pool_size=max(1, jobs),
    )
    try:
        tags = client.list_tags(repo.repository, what=str(repo), page=page)

        def one(tag: str) -> None:
            where = f"{repo}:{tag}"
            try:
                desc = report_layer(client, repo, tag, where=where)
                if cache.get(desc.digest) is not None:
                    with lock:
                        scan.cached += 1
                else:
                    data = read_report_layer(client, repo.repository, desc, where=where)
                    report = from_document(data, where=where)
                    if tag_for(report.cluster) != tag:
                        raise ReportError(
                            f"{where}: holds the report of cluster {report.cluster!r}"
                        )
                    cache.put(desc.digest, data)
                    with lock:
                        scan.fetched += 1
            except StateError:
                raise
            except GitEdgeError as e:
                with lock:
                    scan.unreadable[tag] = Unreadable(tag, scrub(str(e), limit=400))
                return
            with lock:
                scan.digests[tag] = desc.digest

        _bounded_map(one, tags, jobs=jobs)
    finally:
        client.close()
    scan.pruned = cache.prune(set(scan.digests.values()))
    return scan


def _bounded_map(fn: Callable[[str], None], items: list[str], *, jobs: int) -> None:
    """Run ``fn`` on every item with ``jobs`` threads, never more than ``2 x jobs`` submitted
    and unfinished (so 10,000 tags are not 10,000 futures); the first error raised stops it."""
    pending: set[Future[None]] = set()
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        try:
            for item in items:
                if len(pending) >= 2 * max(1, jobs):
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        f.result()
                pending.add(pool.submit(fn, item))
            for f in pending:
                f.result()
        finally:
            for f in pending:
                f.cancel()


def iter_reports(scan: FleetScan) -> Iterator[SiteReport | Unreadable]:
    """Phase 2: every tag's report (or why not), sorted by tag, read back from the cache one at
    a time."""
    for tag in sorted([*scan.digests, *scan.unreadable]):
        bad = scan.unreadable.get(tag)
        if bad is not None:
            yield bad
            continue
        where = f"{scan.repo}:{tag}"
        data = scan.cache.get(scan.digests[tag])
        if data is None:
            yield Unreadable(tag, f"{where}: its cached report {scan.digests[tag]} vanished")
            continue
        try:
            report = from_document(data, where=where)
        except ReportError as e:
            yield Unreadable(tag, scrub(str(e), limit=400))
            continue
        if tag_for(report.cluster) != tag:  # the same layer may sit under another tag
            yield Unreadable(tag, f"{where}: holds the report of cluster {report.cluster!r}")
            continue
        yield report
