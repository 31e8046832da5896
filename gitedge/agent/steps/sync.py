"""The sync step: import the bundles dropped into ``source.bundleDir``
(``agent/bundles/importing.py``: each through the pass's own verify, plan and mirror steps over the
bundle source), then fetch the tracked branch from the pass's
:class:`~gitedge.agent.sources.Source`; offline, a bundle imported by this pass stands in for the
fetch.
"""

from __future__ import annotations

from datetime import datetime

from gitedge.agent.bundles.importing import import_inbox
from gitedge.agent.passtypes import Context, StepResult, Synced
from gitedge.agent.sources import Source
from gitedge.core.status.conditions import SOURCE_REACHABLE, Condition
from gitedge.errors import GitEdgeError, SourceUnavailable, Transient

__all__ = ["sync_step"]


def sync_step(ctx: Context, *, source: Source, now: datetime) -> StepResult[Synced]:
    before: tuple[Condition, ...] = ()
    copied: tuple[tuple[str, str, int], ...] = ()
    bundle_tip = None
    if ctx.config.source.bundle_dir:
        inbox = import_inbox(ctx, now=now)
        before, copied, bundle_tip = tuple(inbox.conditions), tuple(inbox.mirrored), inbox.tip
    try:
        fetched, reach = source.fetch(ctx)
    except SourceUnavailable as e:
        if bundle_tip is None:
            return StepResult(before, Synced(None, copied), error=e)
        branch = ctx.config.source.branch
        msg = f"source unreachable; a bundle brought {branch} to {bundle_tip}"
        offline = Condition(SOURCE_REACHABLE, "False", "BundleImported", msg)
        return StepResult((*before, offline), Synced(bundle_tip, copied), outcome="bundle")
    except GitEdgeError as e:  # what the inbox did stays in the pass
        return StepResult(before, Synced(None, copied), error=e)
    except OSError as e:
        return StepResult(before, Synced(None, copied), error=Transient(f"sync: {e}"))
    ctx.metrics.set(
        "gitedge_last_sync_timestamp_seconds",
        now.timestamp(),
        help="when the fleet repo was last fetched (the site clock)",
    )
    return StepResult((*before, *reach), Synced(fetched, copied))
