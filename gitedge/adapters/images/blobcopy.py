"""One image's blobs copied between endpoints: the heavy part of :meth:`Mirror.mirror
<gitedge.adapters.images.mirroring.Mirror.mirror>`.

At most ``jobs`` blobs are in flight, the biggest first; the first failure cancels the others
at their next chunk and is the one raised. A blob the destination has is skipped; one another
repository of the destination registry holds (seen by this copier, or the source repository on
the same host) is mounted; any other is streamed through :class:`VerifiedBlob` (hashed on its
way, a cut download resumed, committed only when digest and size check out) and its upload
started again when it fails. Every byte is counted in :class:`MirrorStats` and reported to the
``progress`` callback.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gitedge.adapters.images.endpoints import RegistryRepo, Repo, VerifiedBlob
from gitedge.adapters.registry.hosts import RetryPolicy
from gitedge.core.images.manifests import Descriptor
from gitedge.errors import Cancelled, RegistryUnavailable


@dataclass
class MirrorStats:
    """What a mirror did; ``bytes_resent`` counts source bytes received more than once."""

    blobs_total: int = 0
    blobs_copied: int = 0
    blobs_present: int = 0
    blobs_mounted: int = 0
    bytes_total: int = 0
    bytes_copied: int = 0
    bytes_skipped: int = 0  # present at the destination, or mounted
    bytes_received: int = 0
    bytes_resent: int = 0
    resumes: int = 0
    manifests_written: int = 0
    verified: set[str] = field(default_factory=set)  # blobs copied, so hashed by this call


@dataclass(frozen=True)
class Progress:
    """One report to the ``progress`` callback: the totals so far and what just happened."""

    event: str  # "plan" | "blob" | "bytes" | "manifest" | "done"
    done_bytes: int
    total_bytes: int
    blobs_done: int
    blobs_total: int
    digest: str | None = None
    detail: str = ""  # for "blob": copied | present | mounted
    size: int = 0  # for "blob": its size


ProgressFn = Callable[[Progress], None]


@dataclass
class _Job:
    """One mirror call's blob copying: endpoints, counters, and the stop signal."""

    source: Repo
    dest: Repo
    stats: MirrorStats
    what: str
    host: str | None  # the destination registry (None: a layout)
    mount_source: str | None  # the source repository, when it lives on the destination host
    cancel: threading.Event = field(default_factory=threading.Event)


class BlobCopier:
    """The blobs side of one ``Mirror``, shared by its calls so that mount hints carry over."""

    def __init__(
        self,
        *,
        retry: RetryPolicy,
        jobs: int,
        progress: ProgressFn | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.retry = retry
        self.jobs = jobs
        self._progress = progress
        self._sleep = sleep
        self._seen: dict[str, dict[str, str]] = {}  # host -> blob digest -> a repo holding it
        self._lock = threading.RLock()

    def stream(
        self,
        source: Repo,
        desc: Descriptor,
        what: str,
        stats: MirrorStats,
        *,
        report: bool = True,
        cancel: threading.Event | None = None,
    ) -> VerifiedBlob:
        def on_bytes(received: int, useful: int) -> None:
            with self._lock:
                if received < 0:
                    stats.resumes += 1
                    return
                stats.bytes_received += received
                stats.bytes_resent += received - useful
                stats.bytes_copied += useful
            if useful and report:
                self.report(stats, "bytes", digest=desc.digest)

        return VerifiedBlob(
            source=source,
            desc=desc,
            what=what,
            retry=self.retry,
            sleep=self._sleep,
            on_bytes=on_bytes,
            cancel=cancel,
        )

    def copy(
        self,
        *,
        source: Repo,
        dest: Repo,
        blobs: list[Descriptor],
        stats: MirrorStats,
        what: str,
        host: str | None,
        mount_source: str | None,
    ) -> None:
        """Copy ``blobs`` from ``source`` to ``dest`` (on registry ``host``; None: a layout),
        mounting from ``mount_source`` when the source repository lives on that host."""
        job = _Job(
            source=source,
            dest=dest,
            stats=stats,
            what=what,
            host=host,
            mount_source=mount_source,
        )
        failures: list[BaseException] = []

        def run(desc: Descriptor) -> None:
            if job.cancel.is_set():
                return
            try:
                self._copy_blob(job, desc)
            except Cancelled:
                pass
            except BaseException as e:
                with self._lock:
                    failures.append(e)
                job.cancel.set()

        from concurrent.futures import ThreadPoolExecutor  # a copy's only: a no-op loads none

        with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="mirror") as pool:
            for f in [pool.submit(run, b) for b in sorted(blobs, key=lambda b: -b.size)]:
                f.result()  # big blobs first, for the best overlap; run() raises nothing
        if failures:
            raise failures[0]

    def _copy_blob(self, job: _Job, desc: Descriptor) -> None:
        blob_what = f"{job.what} (blob {desc.digest})"
        if job.dest.has_blob(desc, what=blob_what):
            self._count(job, "present", desc)
            return
        mount_from = None
        if job.host is not None:
            with self._lock:
                mount_from = self._seen.get(job.host, {}).get(desc.digest)
            mount_from = mount_from or job.mount_source
        for attempt in range(self.retry.attempts):
            streams: list[VerifiedBlob] = []

            def open_stream(streams: list[VerifiedBlob] = streams) -> VerifiedBlob:
                streams.append(
                    self.stream(job.source, desc, job.what, job.stats, cancel=job.cancel)
                )
                return streams[-1]

            try:
                how = job.dest.write_blob(desc, open_stream, mount_from=mount_from, what=blob_what)
            except RegistryUnavailable:
                if (streams and streams[-1].failed) or attempt + 1 == self.retry.attempts:
                    raise
                with self._lock:  # the next attempt sends these bytes again
                    done = streams[-1].offset if streams else 0
                    job.stats.bytes_copied -= done
                    job.stats.bytes_resent += done
                self._sleep(self.retry.delay(attempt))
                mount_from = None
                continue
            self._count(job, how, desc)
            return

    def _count(self, job: _Job, how: str, desc: Descriptor) -> None:
        stats = job.stats
        with self._lock:
            if how == "present":
                stats.blobs_present += 1
                stats.bytes_skipped += desc.size
            elif how == "mounted":
                stats.blobs_mounted += 1
                stats.bytes_skipped += desc.size
            else:
                stats.blobs_copied += 1
                stats.verified.add(desc.digest)
            if job.host is not None and isinstance(job.dest, RegistryRepo):
                self._seen.setdefault(job.host, {})[desc.digest] = job.dest.repo
        self.report(stats, "blob", digest=desc.digest, detail=how, size=desc.size)

    def report(
        self,
        stats: MirrorStats,
        event: str,
        *,
        digest: str | None = None,
        detail: str = "",
        size: int = 0,
    ) -> None:
        if self._progress is None:
            return
        with self._lock:
            done = stats.blobs_copied + stats.blobs_present + stats.blobs_mounted
            self._progress(
                Progress(
                    event=event,
                    done_bytes=stats.bytes_copied + stats.bytes_skipped,
                    total_bytes=stats.bytes_total,
                    blobs_done=done,
                    blobs_total=stats.blobs_total,
                    digest=digest,
                    detail=detail,
                    size=size,
                )
            )
