"""Site status reports as OCI artifacts in a registry repository: push one, read them all.

One site's report is an OCI image manifest with ``artifactType``
``application/vnd.gitedge.site-status.v1``, the empty config (``application/vnd.oci.empty.v1+json``,
the two bytes ``{}``) and one layer: the JSON document of :mod:`gitedge.core.status.sitereport`,
under the tag :func:`~gitedge.core.status.sitereport.tag_for` of its cluster. ``oras pull`` fetches
it as ``status.json``; any OCI registry stores it (no referrers API needed).

Reading is the fleet view: list the tags (``Link`` pages followed), then for each tag the
manifest (digest-checked by the client), the layer's size checked against the 64 KiB cap
*before* it is read, its bytes read to that size and hashed against the descriptor, then
:func:`~gitedge.core.status.sitereport.from_document`. A tag that fails any of these is returned as
an :class:`Unreadable` naming the tag and why; the other sites are still shown. Only a failure to
reach or list the repository raises.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from gitedge.adapters.registry.client import NETWORK_ERRORS, RegistryClient, sized_body
from gitedge.adapters.registry.hosts import Hosts, RetryPolicy
from gitedge.core.images.manifests import OCI_MANIFEST, Descriptor, digest_of, parse_manifest
from gitedge.core.images.refs import ImageRef
from gitedge.core.status.sitereport import (
    ARTIFACT_TYPE,
    MAX_REPORT_BYTES,
    MEDIA_TYPE,
    SiteReport,
    from_document,
    tag_for,
    to_document,
)
from gitedge.errors import (
    DigestMismatch,
    GitEdgeError,
    InvalidImage,
    RegistryUnavailable,
    ReportError,
    scrub,
)

EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"
TITLE = "org.opencontainers.image.title"
CREATED = "org.opencontainers.image.created"

__all__ = [
    "FleetReports",
    "ReportRepository",
    "Unreadable",
    "artifact_manifest",
    "push_report",
    "read_report_layer",
    "read_reports",
    "report_layer",
]


@dataclass(frozen=True)
class ReportRepository:
    """``host[:port]/repository``: where the sites' reports live."""

    host: str
    repository: str

    @classmethod
    def parse(cls, text: str) -> ReportRepository:
        """ValueError (saying what is expected) on a tag, a digest or a malformed name."""
        try:
            ref = ImageRef.parse(text)
        except ValueError as e:
            raise ValueError(f"report repository {text!r}: {e}") from None
        if ref.tag or ref.digest:
            raise ValueError(
                f"report repository {text!r}: give host[:port]/repository, without tag or digest"
            )
        return cls(ref.registry, ref.repository)

    def __str__(self) -> str:
        return f"{self.host}/{self.repository}"


def artifact_manifest(document: bytes, report: SiteReport) -> bytes:
    """The manifest bytes wrapping one report ``document`` (its layer)."""
    created = json.loads(document)["time"]
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": EMPTY_MEDIA_TYPE, "digest": digest_of(EMPTY), "size": len(EMPTY)},
        "layers": [
            {
                "mediaType": MEDIA_TYPE,
                "digest": digest_of(document),
                "size": len(document),
                "annotations": {TITLE: "status.json"},
            }
        ],
        "annotations": {CREATED: created, "io.gitedge.cluster": report.cluster},
    }
    return json.dumps(doc, indent=2).encode()


def push_report(client: RegistryClient, repo: ReportRepository, report: SiteReport) -> str:
    """Push ``report`` under its cluster's tag; returns the manifest digest."""
    document = to_document(report)
    tag = tag_for(report.cluster)
    what = f"{repo}:{tag}"
    for data, media_type in ((EMPTY, EMPTY_MEDIA_TYPE), (document, MEDIA_TYPE)):
        _put_blob(
            client,
            repo.repository,
            data,
            Descriptor(media_type, digest_of(data), len(data)),
            what=what,
        )
    raw = artifact_manifest(document, report)
    manifest = parse_manifest(raw, digest=digest_of(raw), content_type=OCI_MANIFEST, where=what)
    client.put_manifest(repo.repository, tag, manifest, what=what)
    return manifest.digest


def _put_blob(
    client: RegistryClient, repository: str, data: bytes, desc: Descriptor, *, what: str
) -> None:
    if client.blob_size(repository, desc.digest, what=what) == desc.size:
        return
    location = client.start_upload(repository, what=what)
    assert location is not None  # no mount was asked
    try:
        location = client.patch_upload(
            location, sized_body(iter((data,)), len(data)), repo=repository, what=what
        )
        client.finish_upload(location, desc.digest, repo=repository, what=what)
    except BaseException:
        client.cancel_upload(location, repo=repository)
        raise


@dataclass(frozen=True)
class Unreadable:
    """A tag whose report could not be read, and why (scrubbed, names the tag)."""

    tag: str
    error: str


@dataclass(frozen=True)
class FleetReports:
    """Every report read from a repository, and the tags that could not be read."""

    reports: tuple[SiteReport, ...]
    unreadable: tuple[Unreadable, ...]


def read_reports(
    repo: ReportRepository,
    *,
    hosts: Hosts | None = None,
    retry: RetryPolicy | None = None,
    jobs: int = 8,
    page: int = 1000,
) -> FleetReports:
    """All sites' reports in ``repo``; raises only when the repository cannot be listed."""
    client = RegistryClient(host=repo.host, config=(hosts or Hosts()).get(repo.host), retry=retry)
    try:
        tags = sorted(client.list_tags(repo.repository, what=str(repo), page=page))
        if not tags:
            return FleetReports((), ())
        with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(tags)))) as pool:
            results = list(pool.map(lambda t: _read_one(client, repo, t), tags))
    finally:
        client.close()
    return FleetReports(
        tuple(r for r in results if isinstance(r, SiteReport)),
        tuple(r for r in results if isinstance(r, Unreadable)),
    )


def _read_one(client: RegistryClient, repo: ReportRepository, tag: str) -> SiteReport | Unreadable:
    where = f"{repo}:{tag}"
    try:
        desc = report_layer(client, repo, tag, where=where)
        report = from_document(
            read_report_layer(client, repo.repository, desc, where=where), where=where
        )
    except (GitEdgeError, ReportError) as e:
        return Unreadable(tag, scrub(str(e), limit=400))
    if tag_for(report.cluster) != tag:
        return Unreadable(tag, f"{where}: holds the report of cluster {report.cluster!r}")
    return report


def report_layer(
    client: RegistryClient, repo: ReportRepository, tag: str, *, where: str
) -> Descriptor:
    """The report layer's descriptor from ``tag``'s manifest (one GET), its type and size
    checked; InvalidImage naming ``where`` when it is not a site status."""
    m = client.get_manifest(repo.repository, tag, what=where)
    doc = json.loads(m.data)
    kind = doc.get("artifactType") or (m.config.media_type if m.config else m.media_type)
    if m.is_index or kind != ARTIFACT_TYPE:
        raise InvalidImage(f"{where}: not a gitedge site status (artifactType {kind!r})")
    layers = [d for d in m.layers if d.media_type == MEDIA_TYPE]
    if len(layers) != 1:
        raise InvalidImage(f"{where}: {len(layers)} layer(s) of type {MEDIA_TYPE}; expected one")
    desc = layers[0]
    if desc.size > MAX_REPORT_BYTES:
        raise InvalidImage(
            f"{where}: report layer of {desc.size} bytes; the limit is {MAX_REPORT_BYTES}"
        )
    return desc


def read_report_layer(
    client: RegistryClient, repository: str, desc: Descriptor, *, where: str
) -> bytes:
    """The whole blob, never more than its descriptor's size, digest-checked."""
    _, chunks = client.read_blob(repository, desc.digest, offset=0, what=where)
    data = bytearray()
    try:
        for chunk in chunks:
            data += chunk
            if len(data) > desc.size:
                raise DigestMismatch(
                    image=where, digest=desc.digest, detail=f"blob is longer than {desc.size} B"
                )
    except NETWORK_ERRORS as e:
        raise RegistryUnavailable(
            f"{where}: blob {desc.digest} cut short: {scrub(str(e))}"
        ) from None
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    got = digest_of(bytes(data), algorithm=desc.digest.split(":", 1)[0])
    if got != desc.digest:
        raise DigestMismatch(
            image=where, digest=desc.digest, detail=f"{len(data)} B that hash to {got}"
        )
    return bytes(data)
