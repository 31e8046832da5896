"""The ``Source`` port: where a pass's commits and images come from.

- :class:`NetworkSource`: the fleet repo fetched from ``source.url`` (and ``source.mirrors``,
  ``agent/steps/gitmirrors.py``) into the mirror's fetched ref; images read upstream.
- the bundle source (``agent/bundles/importing.BundleSource``): an opened bundle's git bundle
  imported into the same ref; its images read from its OCI layout.

Either way the same steps follow (verify, plan, mirror): one verification path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gitedge.adapters.git.transport import SourceAuth
from gitedge.adapters.images.mirroring import Location
from gitedge.agent.passtypes import Context, ImageLocator
from gitedge.agent.steps.gitmirrors import sync_with_mirrors
from gitedge.core.config import SourceAuth as SourceAuthConfig
from gitedge.core.images.refs import ImageRef
from gitedge.core.status.conditions import SOURCE_REACHABLE, Condition

__all__ = ["UPSTREAM", "NetworkSource", "Source", "UpstreamImages"]


class Source(Protocol):
    """Brings the tracked branch into the mirror's fetched ref (:meth:`fetch`: its tip and the
    conditions about reaching it; raises SourceUnavailable) and says where images are read."""

    @property
    def images(self) -> ImageLocator: ...

    def fetch(self, ctx: Context) -> tuple[str, tuple[Condition, ...]]: ...


@dataclass(frozen=True)
class UpstreamImages:
    """Every image read from its own registry."""

    from_bundle: bool = False

    def location(self, ref: ImageRef) -> Location:
        return ref


UPSTREAM = UpstreamImages()


def _auth(a: SourceAuthConfig) -> SourceAuth:
    return SourceAuth(
        ssh_key_file=Path(a.ssh_key_file) if a.ssh_key_file else None,
        known_hosts_file=Path(a.known_hosts_file) if a.known_hosts_file else None,
        username_file=Path(a.username_file) if a.username_file else None,
        password_file=Path(a.password_file) if a.password_file else None,
        ca_file=Path(a.ca_file) if a.ca_file else None,
    )


@dataclass(frozen=True)
class NetworkSource:
    """``source.url`` (and its mirrors) through ``GitMirror.fetch``; images upstream."""

    images: ImageLocator = UPSTREAM

    def fetch(self, ctx: Context) -> tuple[str, tuple[Condition, ...]]:
        src = ctx.config.source
        auth = _auth(src.auth)

        def fetch(url: str, target: str | None) -> str:
            return ctx.git.fetch(
                url=url,
                branch=src.branch,
                auth=auth,
                timeout_s=ctx.fetch_timeout_s,
                max_pack_bytes=src.limits.max_pack_bytes,
                memory_bytes=src.limits.fetch_memory_bytes,
                target=target,
            )

        if not src.mirrors:
            tip = fetch(src.url, None)
            return tip, (Condition(SOURCE_REACHABLE, "True", "Fetched", f"{src.branch} at {tip}"),)
        synced = sync_with_mirrors(
            ctx.git, origin=src.url, mirrors=src.mirrors, branch=src.branch, fetch=fetch
        )
        for m in synced.lags:
            ctx.metrics.set(
                "gitedge_mirror_lag_commits",
                -1.0 if m.behind is None else float(m.behind),
                help="commits a source mirror lags behind the origin (-1: unknown)",
                labels={"mirror": m.url},
            )
        return synced.fetched, tuple(synced.conditions)
