"""An OCI distribution client: raw manifests, streamed blobs, resumable reads, verified uploads.

The distribution API calls of one registry host, over :class:`~gitedge.adapters.registry.httpclient.
RegistryTransport` (requests with bounds, redirects, auth and retries: see that module). Every
body is read with a cap (manifests and tag lists :data:`MAX_MANIFEST_BYTES`), blobs stream with
the minimum rate of ``bounds.py`` and resume from their last byte
(``adapters/images/endpoints.py``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from gitedge.adapters.registry.bounds import content_length, discard, iter_body
from gitedge.adapters.registry.httpclient import (
    CHUNK,
    NETWORK_ERRORS,
    RegistryTransport,
    _remote_text,
    _SizedBody,
    sized_body,
)
from gitedge.core.images.manifests import (
    ACCEPT,
    MAX_MANIFEST_BYTES,
    Manifest,
    digest_of,
    is_digest,
    parse_manifest,
)
from gitedge.errors import (
    DigestMismatch,
    ImageNotFound,
    RegistryRefused,
    RegistryUnavailable,
    scrub,
)

if TYPE_CHECKING:
    import requests  # loaded by registryhttp, which must come first (charset detection)

__all__ = ["CHUNK", "NETWORK_ERRORS", "RegistryClient", "sized_body"]


class RegistryClient(RegistryTransport):
    """One registry host: the distribution API calls."""

    def get_manifest(self, repo: str, reference: str, *, what: str) -> Manifest:
        """The manifest's exact bytes, verified: by digest they must hash to it; by tag they
        must hash to the ``Docker-Content-Digest`` the registry announces (when it does).

        A connection cut while the body is read is retried like any dropped request."""
        last = ""
        for attempt in range(self.retry.attempts):
            if attempt:
                self._sleep(self.retry.delay(attempt - 1))
            r = self.call(
                "GET",
                f"/v2/{repo}/manifests/{reference}",
                repo=repo,
                what=what,
                headers={"Accept": ACCEPT},
                stream=True,
            )
            if r.status_code == 404:
                detail = _remote_text(r, self.limits)
                r.close()
                raise ImageNotFound(f"image {what} not found in {self.host} ({detail})")
            if r.status_code != 200:
                raise self.refused(r, what=what)
            try:
                data = self.read(r, cap=MAX_MANIFEST_BYTES, what=what, thing="manifest")
            except NETWORK_ERRORS as e:
                last = scrub(str(e), limit=200)
                continue
            return self._verified_manifest(r, data, reference, what=what)
        raise RegistryUnavailable(
            f"{what}: manifest read from {self.host} cut {self.retry.attempts} time(s): {last}"
        )

    def _verified_manifest(
        self, r: requests.Response, data: bytes, reference: str, *, what: str
    ) -> Manifest:
        announced = r.headers.get("Docker-Content-Digest")
        expected = reference if ":" in reference else announced
        if expected is not None and not is_digest(expected):
            raise DigestMismatch(
                image=what, digest=scrub(expected, limit=80), detail="not a sha256/sha512 digest"
            )
        digest = digest_of(data, algorithm=expected.split(":", 1)[0] if expected else "sha256")
        if expected and digest != expected:
            raise DigestMismatch(
                image=what, digest=expected, detail=f"manifest bytes hash to {digest}"
            )
        return parse_manifest(
            data, digest=digest, content_type=r.headers.get("Content-Type"), where=f"image {what}"
        )

    def manifest_digest(self, repo: str, reference: str, *, what: str) -> str | None:
        """HEAD a manifest: its digest, or None when the registry does not have it."""
        r = self.call(
            "HEAD",
            f"/v2/{repo}/manifests/{reference}",
            repo=repo,
            what=what,
            headers={"Accept": ACCEPT},
        )
        if r.status_code not in (200, 404):
            raise self.refused(r, what=what)
        discard(r, limits=self.limits)
        if r.status_code == 404:
            return None
        return r.headers.get("Docker-Content-Digest") or (reference if ":" in reference else None)

    def put_manifest(self, repo: str, reference: str, manifest: Manifest, *, what: str) -> None:
        """PUT the exact bytes under their own media type; the registry must agree on the digest."""
        r = self.call(
            "PUT",
            f"/v2/{repo}/manifests/{reference}",
            repo=repo,
            what=what,
            headers={"Content-Type": manifest.media_type},
            data=manifest.data,
        )
        if r.status_code not in (200, 201):
            raise self.refused(r, what=f"{what}: PUT manifest {manifest.digest}")
        got = r.headers.get("Docker-Content-Digest")
        discard(r, limits=self.limits)
        if got and got != manifest.digest:
            raise RegistryRefused(
                f"{what}: registry {self.host} stored manifest {manifest.digest} as "
                f"{scrub(got, limit=100)}"
            )

    def list_tags(
        self, repo: str, *, what: str, page: int = 1000, limit: int = 100_000
    ) -> list[str]:
        """Every tag of ``repo`` (``GET /v2/<name>/tags/list?n=``, following ``Link: rel=next``
        pages); a repository the registry does not know has none. At most ``limit`` tags, and
        at most ``limit // 10`` pages (``n`` is a hint a registry may lower): a registry paging
        on forever with empty pages, each at a new URL, is refused."""
        url: str | None = f"/v2/{repo}/tags/list?{urlencode({'n': page})}"
        tags: list[str] = []
        seen: set[str] = set()
        while url is not None:
            seen.add(url)
            if len(seen) > max(1, limit // 10):
                raise RegistryRefused(
                    f"{what}: registry {self.host} pages on past {len(seen) - 1} tag list pages"
                )
            r = self.call("GET", url, repo=repo, what=what)
            if r.status_code == 404 and not tags:
                discard(r, limits=self.limits)
                return []
            if r.status_code != 200:
                raise self.refused(r, what=f"{what}: list tags")
            try:
                body = self.read(r, cap=MAX_MANIFEST_BYTES, what=what, thing="tag list")
            except NETWORK_ERRORS as e:
                raise RegistryUnavailable(f"{what}: tag list cut short: {scrub(str(e))}") from None
            try:
                doc = json.loads(body)
                got = (doc.get("tags") or []) if isinstance(doc, dict) else None
            except (ValueError, RecursionError):
                got = None
            if not isinstance(got, list):
                raise RegistryRefused(f"{what}: registry {self.host} sent a malformed tag list")
            tags += [t for t in got if isinstance(t, str)]
            if len(tags) > limit:
                raise RegistryRefused(f"{what}: more than {limit} tags in {self.host}/{repo}")
            try:
                nxt = r.links.get("next", {}).get("url")
            except Exception:
                raise RegistryRefused(
                    f"{what}: registry {self.host} sent a malformed Link header"
                ) from None
            url = self.url(nxt, what=f"{what}: next tag page") if nxt else None
            if url in seen:  # a registry paging in a circle
                raise RegistryRefused(f"{what}: registry {self.host} repeats a tag list page")
        return tags

    def blob_size(self, repo: str, digest: str, *, what: str) -> int | None:
        """HEAD a blob: its size, or None when the registry does not have it."""
        r = self.call("HEAD", f"/v2/{repo}/blobs/{digest}", repo=repo, what=what)
        if r.status_code not in (200, 404):
            raise self.refused(r, what=what)
        discard(r, limits=self.limits)
        if r.status_code == 404:
            return None
        size = content_length(r)
        return -1 if size is None else size

    def read_blob(
        self, repo: str, digest: str, *, offset: int, what: str
    ) -> tuple[int, Iterator[bytes]]:
        """Stream a blob from ``offset`` (an HTTP Range request when > 0).

        Returns where the stream really starts (0 when the registry ignored the Range) and an
        iterator of chunks; a connection that breaks mid-stream raises one of NETWORK_ERRORS
        from the iterator, so the caller can resume from what it has.
        """
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        r = self.call(
            "GET", f"/v2/{repo}/blobs/{digest}", repo=repo, what=what, headers=headers, stream=True
        )
        start = 0
        if r.status_code == 404:
            discard(r, limits=self.limits)
            raise ImageNotFound(f"image {what}: blob {digest} not found in {self.host}")
        if r.status_code == 416:
            discard(r, limits=self.limits)
            raise DigestMismatch(
                image=what, digest=digest, detail=f"blob ends before byte {offset} (truncated)"
            )
        if r.status_code == 206:
            crange = r.headers.get("Content-Range", "")
            if not crange.startswith(f"bytes {offset}-"):
                r.close()
                raise RegistryRefused(
                    f"{what}: {self.host} answered Range with {scrub(crange, limit=80)!r}"
                )
            start = offset
        elif r.status_code != 200:
            raise self.refused(r, what=f"{what}: blob {digest}")

        return start, iter_body(r, limits=self.limits)

    def start_upload(
        self, repo: str, *, what: str, mount: tuple[str, str] | None = None
    ) -> str | None:
        """Open an upload session and return its URL; with ``mount=(digest, from_repo)`` try a
        cross-repository mount first, returning None when the registry mounted the blob."""
        query = "?" + urlencode({"mount": mount[0], "from": mount[1]}) if mount else ""
        r = self.call("POST", f"/v2/{repo}/blobs/uploads/{query}", repo=repo, what=what)
        if r.status_code == 201 and mount:
            discard(r, limits=self.limits)
            return None
        if r.status_code != 202 or not r.headers.get("Location"):
            raise self.refused(r, what=f"{what}: start upload")
        discard(r, limits=self.limits)
        return self.url(r.headers["Location"], what=f"{what}: upload")

    def patch_upload(self, location: str, body: _SizedBody, *, repo: str, what: str) -> str:
        """Send the blob's bytes in one streamed PATCH (not retried: the body is a stream)."""
        r = self.call(
            "PATCH",
            location,
            repo=repo,
            what=what,
            retry=False,
            data=body,
            headers={"Content-Type": "application/octet-stream"},
        )
        if r.status_code != 202:
            raise self.refused(r, what=f"{what}: upload")
        discard(r, limits=self.limits)
        return self.url(r.headers.get("Location") or location, what=f"{what}: upload")

    def finish_upload(self, location: str, digest: str, *, repo: str, what: str) -> None:
        """Commit the upload under ``digest`` (the registry checks it again)."""
        sep = "&" if "?" in location else "?"
        r = self.call(
            "PUT",
            f"{location}{sep}{urlencode({'digest': digest})}",
            repo=repo,
            what=what,
            headers={"Content-Length": "0"},
        )
        if r.status_code not in (201, 204):
            raise self.refused(r, what=f"{what}: commit blob {digest}")
        discard(r, limits=self.limits)

    def cancel_upload(self, location: str, *, repo: str) -> None:
        """Drop an upload session, best effort (registries purge stale ones anyway)."""
        with contextlib.suppress(Exception):  # cleanup must not mask the real error
            r = self._send("DELETE", location, repo=repo, what="cancel", headers={})
            discard(r, limits=self.limits)
