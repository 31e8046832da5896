"""One reconcile pass: sync -> verify -> clock -> plan -> mirror -> apply -> report.

Every step has the same signature (``step(pass_) -> conditions``) and sets only its own
condition; the report step summarises them once (``Ready``) and records the status. A step that
raises is classified by what happens next (``errors.py``):

- ``Stalled``   a person must act (bad signature, rewritten branch, invalid repo, ambiguous
                target, wrong digest): the step's condition says so, nothing is retried early;
- ``Waiting``   nothing is wrong but the work waits (window closed, registry 429): the pass
                carries ``retry_after``;
- ``Transient`` (and any other I/O failure) retried by the scheduler with backoff and jitter.

The pass always works from the **last verified commit**: a failed fetch, a bad commit or a
rewritten branch leave it where it was and the later steps go on from it (a site offline for a
year keeps applying what it verified). The mirror step copies every image of the whole K3s path
(and the OS image) into the cache before the apply step may start any step: a site that is online
for an hour holds the whole path afterwards. Decisions are pure (``core/planning``,
``core/applying``, ``core/agentrules``, ``core/conditions``); effects happen here.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitedge.adapters.endpoints import endpoint_refs, first_served, record_served
from gitedge.adapters.gitrepo import FETCHED_PREFIX
from gitedge.adapters.gitsource import GitMirror
from gitedge.adapters.gittransport import SourceAuth as GitAuth
from gitedge.adapters.imagesigs import SigSite, signer_keys
from gitedge.adapters.mirroring import LayoutRef, Location, Mirror, MirrorResult
from gitedge.adapters.registryhosts import Hosts, RetryPolicy
from gitedge.adapters.state import LastVerified, Mirrored, State
from gitedge.agent.applying import ApplyResult, ClusterApi, apply_step
from gitedge.agent.caching import check_tag, mirror_verified
from gitedge.agent.clusters import PrintCluster
from gitedge.agent.compat import understood_fleet
from gitedge.agent.imagetrust import (
    bundle_signed_digest,
    bundle_site,
    check_mirrored,
    check_needed,
    fleet_named,
    mirror_signatures,
)
from gitedge.agent.server import Metrics
from gitedge.agent.sucwatch import observe, suc_needs
from gitedge.agent.verifying import VerifiedCommits, load_bootstrap, verify_range
from gitedge.core import conditions as cond
from gitedge.core.agentrules import (
    NeededImage,
    clock_trusted,
    needed_images,
    platforms_for,
    same_images,
)
from gitedge.core.clusterstate import ClusterSnapshot, cluster_facts
from gitedge.core.conditions import Condition
from gitedge.core.config import AgentConfig
from gitedge.core.fleet import Fleet
from gitedge.core.images import ImageRef, cache_host
from gitedge.core.ocimanifest import Platform
from gitedge.core.pins import pins_condition, plan_unpinned
from gitedge.core.planmanifests import Action
from gitedge.core.planning import Plan, plan_json
from gitedge.core.planning import plan as make_plan
from gitedge.core.suc import Site
from gitedge.core.timefmt import iso_z
from gitedge.core.versions import K3sVersion
from gitedge.errors import (
    DigestMismatch,
    GitEdgeError,
    ImageSignatureRefused,
    KubeApiError,
    RollbackRefused,
    SourceUnavailable,
    Stalled,
    Transient,
    Waiting,
    scrub,
)

if TYPE_CHECKING:
    from gitedge.adapters.bundlefile import OpenedBundle

log = logging.getLogger("gitedge.agent")

SOURCE_REACHABLE = cond.SOURCE_REACHABLE
PLANNED = cond.PLANNED
STEP_ORDER = cond.STEPS[: cond.STEPS.index("apply") + 1]  # the report runs after, in _report
_OWN_CONDITION = cond.STEP_CONDITION  # core/conditions.TABLE: what a failed step sets False

__all__ = ["Agent", "ClusterApi", "Pass", "PrintCluster"]


@dataclass
class Pass:
    """What one pass knows, step by step; also what ``gitedge run --once`` prints from."""

    now: datetime
    fetched: str | None = None
    tip: str | None = None  # the last verified commit: everything below works from it
    new_commits: int = 0
    clock_ok: bool = True
    fleet: Fleet | None = None
    plan: Plan | None = None
    snapshot: ClusterSnapshot | None = None
    needed: tuple[NeededImage, ...] = ()
    mirrored_now: list[tuple[str, str, int]] = field(default_factory=list)  # key, digest, bytes
    mirror_complete: bool = False
    endpoint_notes: list[str] = field(default_factory=list)  # registry.endpoints: who served
    actions: list[Action] = field(default_factory=list)
    applied: ApplyResult | None = None  # what the apply step read, decided and did
    conditions: list[Condition] = field(default_factory=list)
    #: step -> ok|stalled|waiting|retry|skipped; sync also "bundle" (offline, a bundle stood in)
    outcomes: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = None
    status: dict[str, Any] = field(default_factory=dict)
    suc: dict[str, Any] = field(default_factory=dict)  # SUC's images (agent/sucwatch.py)

    @property
    def stalled(self) -> bool:
        return "stalled" in self.outcomes.values()

    @property
    def transient(self) -> bool:
        return "retry" in self.outcomes.values()

    @property
    def settled(self) -> bool:
        """The pass left nothing for the next one unless the branch moves: every step ran
        and ended ``ok`` (verify may have refused the fetched commit), the branch was fetched
        from the source, no ``Retry-After``, the clock trusted, every image in the cache, no
        action sent and every component up to date (or untargeted). The agent's parent then
        polls by a ref check alone
        (``core/agentrules.pass_due``)."""
        decision = self.applied.decision if self.applied is not None else None
        # a refused commit (verify stalled) is refused again while the branch stays on it:
        # the steps after it ran from the last verified commit, so that alone leaves no work
        return (
            all(
                self.outcomes.get(step) == "ok"
                or (step == "verify" and self.outcomes.get(step) == "stalled")
                for step in STEP_ORDER
            )
            and self.fetched is not None
            and self.retry_after is None
            and self.clock_ok
            and self.mirror_complete
            and not self.actions
            and decision is not None
            and all(c.complete for c in decision.components)
        )


class Agent:
    """The long-lived parts of the agent; :meth:`reconcile` runs one pass."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        cluster: ClusterApi,
        metrics: Metrics | None = None,
        retry: RetryPolicy | None = None,
        fetch_timeout_s: float = 60.0,
    ) -> None:
        self.config = config
        self.cluster = cluster
        self.metrics = metrics or Metrics()
        self.retry = retry or RetryPolicy()
        self.fetch_timeout_s = fetch_timeout_s
        self.dir = Path(config.state.dir)
        self.state = State(self.dir)
        try:
            self.state.check()  # a corrupt state stops here (StateError), before any fetch
        except BaseException:
            self.state.close()
            raise
        if isinstance(cluster, PrintCluster):
            cluster.remember_in(self.state)  # printed Plans stay printed across passes
        self.git = GitMirror(mirror_dir=self.dir / "fleet.git")
        self.bootstrap = load_bootstrap(config.trust.bootstrap)
        self.verified = VerifiedCommits(self.dir, bootstrap=self.bootstrap)
        self.hosts = Hosts.from_config(config.registry)
        self.stop = threading.Event()  # set on SIGTERM: the pass ends after its current step
        self.last_tick = 0.0
        self.importing: OpenedBundle | None = None  # the bundle agent/bundles.py is importing

    def close(self) -> None:
        self.state.close()

    # ------------------------------------------------------------------ the pass

    def reconcile(self, *, now: datetime | None = None) -> Pass:
        p = Pass(now=now or datetime.now(UTC))
        steps: dict[str, Callable[[Pass], list[Condition]]] = {
            "sync": self._sync,
            "verify": self._verify,
            "clock": self._clock,
            "plan": self._plan,
            "mirror": self._mirror,
            "apply": self._apply,
        }
        for name in STEP_ORDER:
            if self.stop.is_set():
                p.outcomes[name] = "skipped"
                continue
            try:
                p.conditions += steps[name](p)
                p.outcomes.setdefault(name, "ok")  # sync may say "bundle"
            except GitEdgeError as e:
                p.conditions += self._failed(p, name, e)
            except OSError as e:  # the disk, a socket: retried like any Transient
                p.conditions += self._failed(p, name, Transient(f"{name}: {e}"))
        self._report(p)
        return p

    def _failed(self, p: Pass, step: str, e: GitEdgeError) -> list[Condition]:
        text = scrub(str(e), limit=1000)
        p.errors[step] = text
        if isinstance(e, Stalled):
            p.outcomes[step] = "stalled"
            log.error("%s stalled: %s", step, text)
        elif isinstance(e, Waiting):
            p.outcomes[step] = "waiting"
            if e.retry_after is not None:
                p.retry_after = min(p.retry_after or e.retry_after, e.retry_after)
            log.info("%s waiting: %s", step, text)
        else:
            p.outcomes[step] = "retry"
            log.warning("%s failed, will retry: %s", step, text)
        reason = e.reason if isinstance(e, KubeApiError) else type(e).__name__
        if step == "clock":
            return [Condition(cond.CLOCK_UNTRUSTED, "Unknown", reason, text)]
        out = [Condition(_OWN_CONDITION[step], "False", reason, text)]
        if isinstance(e, RollbackRefused):
            out.append(Condition(cond.ROLLBACK_REFUSED, "True", "RollbackRefused", text))
        return out

    # ------------------------------------------------------------------ steps

    def _sync(self, p: Pass) -> list[Condition]:
        """Import the bundles dropped into ``source.bundleDir`` (``agent/bundles.py``: each
        verified, planned and mirrored through this agent's own steps), then fetch the tracked
        branch; offline, a bundle imported by this pass stands in for the fetch."""
        src = self.config.source
        bundle_tip = None
        if src.bundle_dir:
            from gitedge.agent.bundles import import_inbox

            inbox = import_inbox(self, now=p.now)
            p.conditions += inbox.conditions
            p.mirrored_now += inbox.mirrored
            bundle_tip = inbox.tip
        a = src.auth
        auth = GitAuth(
            ssh_key_file=Path(a.ssh_key_file) if a.ssh_key_file else None,
            known_hosts_file=Path(a.known_hosts_file) if a.known_hosts_file else None,
            username_file=Path(a.username_file) if a.username_file else None,
            password_file=Path(a.password_file) if a.password_file else None,
            ca_file=Path(a.ca_file) if a.ca_file else None,
        )

        def fetch(url: str, target: str | None) -> str:
            return self.git.fetch(
                url=url,
                branch=src.branch,
                auth=auth,
                timeout_s=self.fetch_timeout_s,
                max_pack_bytes=src.limits.max_pack_bytes,
                memory_bytes=src.limits.fetch_memory_bytes,
                target=target,
            )

        try:
            if src.mirrors:
                from gitedge.agent.gitmirrors import sync_with_mirrors

                synced = sync_with_mirrors(
                    self.git, origin=src.url, mirrors=src.mirrors, branch=src.branch, fetch=fetch
                )
                p.fetched = synced.fetched
                for m in synced.lags:
                    self.metrics.set(
                        "gitedge_mirror_lag_commits",
                        -1.0 if m.behind is None else float(m.behind),
                        help="commits a source mirror lags behind the origin (-1: unknown)",
                        labels={"mirror": m.url},
                    )
                self._synced(p)
                return synced.conditions
            p.fetched = fetch(src.url, None)
            self._synced(p)
            return [Condition(SOURCE_REACHABLE, "True", "Fetched", f"{src.branch} at {p.fetched}")]
        except SourceUnavailable:
            if bundle_tip is None:
                raise
            p.fetched = bundle_tip
            p.outcomes["sync"] = "bundle"  # offline: a bundle stood in for the fetch
            msg = f"source unreachable; a bundle brought {src.branch} to {bundle_tip}"
            return [Condition(SOURCE_REACHABLE, "False", "BundleImported", msg)]

    def _synced(self, p: Pass) -> None:
        self.metrics.set(
            "gitedge_last_sync_timestamp_seconds",
            p.now.timestamp(),
            help="when the fleet repo was last fetched (the site clock)",
        )

    def _verify(self, p: Pass) -> list[Condition]:
        """Verify (last verified, fetched]; only a fully verified tip moves the last verified
        commit. Without a fetch this pass, the mirror's fetched ref is verified again (cheap:
        verified ids are cached), so a bad commit stays reported while offline."""
        last = self.state.last_verified
        p.tip = last.commit if last else None
        rev = p.fetched
        if rev is None:
            ref = FETCHED_PREFIX + self.config.source.branch
            rev = (
                str(self.git.repo.references[ref].target)
                if ref in self.git.repo.references
                else None
            )
        if rev is None:
            if p.tip is None:
                raise SourceUnavailable("nothing fetched yet: no verified commit to work from")
            return [Condition(cond.SOURCE_VERIFIED, "True", "LastVerified", f"at {p.tip}")]
        decision = verify_range(
            self.git,
            bootstrap=self.bootstrap,
            rev=rev,
            since=p.tip,
            cache=self.verified,
            max_range_bytes=self.config.source.limits.max_range_bytes,
        )
        p.new_commits = len(decision.accepted)
        if decision.tip != p.tip:
            committed = self.git.committer_time(decision.tip)
            self.state.record_verified(
                LastVerified(
                    commit=decision.tip,
                    committed_at=committed,
                    verified_at=p.now,
                    policy_source=decision.policy.source,
                    policy_digest=decision.policy.digest,
                )
            )
            log.info("verified %d new commit(s) up to %s", p.new_commits, decision.tip)
        p.tip = decision.tip
        msg = f"{p.tip} verified ({p.new_commits} new); trust in force: {decision.policy.source}"
        return [
            Condition(cond.SOURCE_VERIFIED, "True", "Verified", msg),
            Condition(cond.ROLLBACK_REFUSED, "False", "Descends", "the branch descends"),
        ]

    def _clock(self, p: Pass) -> list[Condition]:
        last = self.state.last_verified
        newest = last.committed_at if last else None
        p.clock_ok = clock_trusted(now=p.now, newest_commit=newest)
        if p.clock_ok:
            msg = (
                f"the clock reads {iso_z(p.now)}, not before the newest verified commit "
                f"({iso_z(newest)})"
                if newest
                else f"the clock reads {iso_z(p.now)}; no verified commit to compare it with yet"
            )
            return [Condition(cond.CLOCK_UNTRUSTED, "False", "ClockSane", msg)]
        msg = (
            f"the clock reads {iso_z(p.now)}, before the newest verified commit "
            f"({iso_z(newest) if newest else '?'}): every window is treated as closed"
        )
        return [Condition(cond.CLOCK_UNTRUSTED, "True", "ClockUntrusted", msg)]

    def _plan(self, p: Pass) -> list[Condition]:
        if p.tip is None:
            raise SourceUnavailable("no verified commit yet: nothing to plan from")
        commit, p.fleet, too_old = understood_fleet(
            git=self.git, state=self.state, tip=p.tip, subdir=self.config.source.path
        )
        p.snapshot = self.cluster.snapshot()
        c = self.config.cluster
        facts = cluster_facts(
            name=c.name, labels=c.labels, nodes=p.snapshot.nodes, os_image=c.status.os_image
        )
        p.plan = make_plan(p.fleet, facts, now=p.now, site=self._site())
        refused = plan_unpinned(p.fleet, p.plan)
        p.needed = tuple(n for n in needed_images(p.plan) if n.component not in refused)
        p.needed += suc_needs(self, p, others=len(p.needed))  # + SUC's kubectl image
        self.state.put_doc("desired", {"commit": commit, **plan_json(p.plan)})
        if too_old is not None:
            return [Condition(PLANNED, "False", "AgentTooOld", str(too_old).split("\n")[0])]
        parts = []
        if p.plan.k3s:
            parts.append(f"k3s {p.plan.k3s.version} via {' -> '.join(p.plan.k3s.path) or '-'}")
        if p.plan.os:
            parts.append(f"os {p.plan.os.image}")
        return [
            Condition(PLANNED, "True", "Planned", "; ".join(parts) or "no target"),
            pins_condition(refused),
        ]

    def _site(self) -> Site:
        cache = self.config.registry.cache
        digests = {}
        for m in self.state.mirrored().values():
            ref = ImageRef.parse(m.source)
            if ref.tag and not ref.digest:
                digests[f"{ref.name}:{ref.tag}"] = m.digest
        return Site(
            namespace=self.config.apply.namespace,
            cache=cache_host(cache.url) if cache else None,
            digests=digests,
        )

    def _mirror(self, p: Pass) -> list[Condition]:
        """Every needed image into the cache; images already there (state and cache agree) cost
        no upstream request. All are tried before the first failure is raised."""
        if p.plan is None:
            raise Waiting("no plan: nothing to mirror")
        done = self.state.mirrored()
        arches = tuple(n.architecture for n in (p.snapshot.nodes if p.snapshot else ()))
        if not arches:
            arches = self.config.cluster.status.arches
        plats = [Platform.parse(x) for x in platforms_for(self.config.registry.platforms, arches)]
        errors: list[GitEdgeError] = []
        with Mirror(hosts=self.hosts, retry=self.retry) as mirror:
            for need in p.needed:
                if self.stop.is_set():
                    raise Transient("stopping: mirror step interrupted")
                try:
                    self._mirror_one(p, mirror, need, done, plats)
                except GitEdgeError as e:
                    log.warning("mirror of %s failed: %s", need.key, scrub(str(e)))
                    errors.append(e)
        if errors:
            stalled = [e for e in errors if isinstance(e, Stalled)]
            raise (stalled or errors)[0]
        p.mirror_complete = True
        moved = sum(b for _, _, b in p.mirrored_now)
        msg = f"{len(p.needed)} image(s) in the cache ({len(p.mirrored_now)} copied, {moved} B)"
        out = [Condition(cond.MIRRORED, "True", "Mirrored", msg)]
        if p.endpoint_notes:  # which endpoint served what, and which were skipped and why
            bad = any(n.startswith("endpoint ") for n in p.endpoint_notes)
            reason = "EndpointSkipped" if bad else "Served"
            text = "; ".join(p.endpoint_notes)
            out.append(Condition(cond.REGISTRY_ENDPOINTS, "False" if bad else "True", reason, text))
        return out

    def _mirror_one(
        self,
        p: Pass,
        mirror: Mirror,
        need: NeededImage,
        done: dict[str, Mirrored],
        plats: list[Platform],
    ) -> None:
        ref = need.ref
        dst = self._cache_location(ref)
        have = done.get(need.key)
        keys = signer_keys(p.fleet) if fleet_named(need) else ()
        refused: ImageSignatureRefused | None = None
        if have is not None and mirror.first_gap(dst, have.digest) is None:
            try:  # the signatures the cache holds, judged again (agent/imagetrust.py)
                if keys:
                    check_mirrored(mirror, key=need.key, ref=ref, dst=dst, cached=have.digest,
                                   keys=keys, state=self.state, now=p.now)  # fmt: skip
                return  # verified when recorded, and still whole (agent/caching.py)
            except ImageSignatureRefused as e:  # signers added since: look at the source
                refused = e

        def attempt(src: Location) -> MirrorResult:
            if need.tag_checked and isinstance(src, ImageRef):  # upstream, not a bundle's layout
                check_tag(mirror, src)
            # a pinned digest must stay the digest SUC is given: never cut a pinned index
            plat = () if ref.digest else plats
            r = mirror_verified(mirror, src, dst, what=need.key, platforms=plat)
            if ref.digest and r.source_digest != ref.digest:
                raise DigestMismatch(
                    image=str(ref), digest=ref.digest, detail=f"{src} holds {r.source_digest}"
                )
            return r

        src = self._source_location(ref)
        served: Location = src
        endpoints = self.config.registry.endpoints
        try:
            if isinstance(src, ImageRef) and endpoints.get(src.registry):
                r, served, skipped = first_served(endpoint_refs(src, endpoints), attempt)
                p.endpoint_notes += [*skipped, f"{need.key} served by {served.registry}"]
            else:
                r = attempt(src)
        except GitEdgeError:
            if refused is not None:  # the source is out of reach: the refusal is the news
                raise refused from None
            raise
        if keys:  # recorded as mirrored only with a good signature next to it in the cache
            site, signed = SigSite.of(served), r.source_digest
            if isinstance(src, LayoutRef) and self.importing is not None:  # from a bundle
                site = bundle_site(src, ref)
                found = bundle_signed_digest(mirror, layout=src.path, ref=ref, cached=r.digest)
                signed = found or signed
            mirror_signatures(mirror, key=need.key, ref=ref, src=site, src_image=src, dst=dst,
                              signed=signed, cached=r.digest, keys=keys, state=self.state,
                              now=p.now)  # fmt: skip
        self.state.record_mirrored(
            Mirrored(need.key, r.digest, f"{dst}@{r.digest}", r.stats.bytes_total, p.now)
        )
        record_served(self.state, key=need.key, served=served, digest=r.digest, now=p.now)
        p.mirrored_now.append((need.key, r.digest, r.stats.bytes_copied))
        self.metrics.inc(
            "gitedge_mirror_bytes_total",
            r.stats.bytes_copied,
            help="bytes copied into the registry cache",
        )
        log.info("mirrored %s -> %s (%s)", need.key, dst, r.digest)

    def _cache_location(self, ref: ImageRef) -> Location:
        cache = self.config.registry.cache
        if cache is None:  # no registry cache: OCI layouts under the state dir (print mode, demo)
            return LayoutRef(self.dir / "cache" / ref.registry / ref.repository, ref.tag)
        return ImageRef(cache_host(cache.url), ref.repository, tag=ref.tag)

    def _source_location(self, ref: ImageRef) -> Location:
        """While a bundle is imported, the image in its OCI layout (read by the digest its
        index names); else the upstream registry."""
        if self.importing is not None:
            held = self.importing.location(ref)
            if held is not None:
                return held
        return ref

    def _apply(self, p: Pass) -> list[Condition]:
        """Through :func:`~gitedge.agent.applying.apply_step`: a fresh read of the cluster,
        the pure decision, each action sent (the step it starts recorded first); a Plan changed
        under us is read and decided again. Only with every image of the path in the cache."""
        if p.plan is None or p.fleet is None:
            raise Waiting("no plan to apply")
        if not p.mirror_complete:
            raise Waiting("waiting for every image of the path to be in the cache")
        self._check_signatures(p)
        c = self.config.cluster

        def starting(action: Action) -> None:
            if self.stop.is_set():
                raise Transient("stopping: apply step interrupted")
            step = _step_of(action)
            if action.verb != "delete" and step:
                self.state.record_step_started(component=action.component, step=step, at=p.now)

        fleet = p.fleet
        r = apply_step(
            api=self.cluster,
            fleet=fleet,
            cluster=c.name,
            labels=c.labels,
            site=self._site(),
            now=p.now,
            clock_trusted=p.clock_ok,
            os_image=c.status.os_image,
            before=starting,
            planned_check=lambda planned: same_images(
                p.needed, planned, held=plan_unpinned(fleet, planned)
            ),
        )
        p.applied = r
        p.actions += r.performed
        for action in r.performed:
            log.info("%s %s: %s", action.verb, action.name, action.reason)
        if r.snapshot is not None:
            p.snapshot = r.snapshot
        if r.error is not None:
            raise r.error
        if r.decision is not None:
            self._record_done(
                p, [(s.component, s.step) for s in r.decision.components if s.state == "up-to-date"]
            )
        if r.retry_after is not None:
            p.retry_after = min(p.retry_after or r.retry_after, r.retry_after)
        return list(r.conditions)

    def _check_signatures(self, p: Pass) -> None:
        """Before any Plan is written: every image's signature judged again from the cache."""
        keys = signer_keys(p.fleet)
        if keys:
            with Mirror(hosts=self.hosts, retry=self.retry) as mirror:
                named = [n for n in p.needed if fleet_named(n)]
                check_needed(mirror, needed=named, keys=keys, state=self.state, now=p.now,
                             cache_location=self._cache_location)  # fmt: skip

    def _record_done(self, p: Pass, up_to_date: list[tuple[str, str | None]]) -> None:
        running = None
        if p.snapshot is not None and p.snapshot.nodes:
            try:
                running = min(K3sVersion.parse(n.kubelet_version) for n in p.snapshot.nodes)
            except GitEdgeError:
                running = None
        for component, step, _, finished in self.state.applied():
            if finished is not None:
                continue
            done = (component, step) in up_to_date
            if component == "k3s" and running is not None:
                with contextlib.suppress(GitEdgeError):
                    done = done or K3sVersion.parse(step) <= running
            if done:
                self.state.record_step_done(component=component, step=step, at=p.now)

    # ------------------------------------------------------------------ report

    def _report(self, p: Pass) -> None:
        from gitedge.agent.status import build_status

        observe(self, p)
        previous = cond.from_json(self.state.get_doc("conditions"))
        merged = cond.merge(previous, p.conditions, now=p.now)
        merged = cond.merge(merged, [cond.summarize(merged)], now=p.now)
        self.state.put_doc("conditions", cond.to_json(merged))
        p.conditions = merged
        p.status = build_status(self.config, self.state, p)
        self.state.put_doc("status", p.status)
        self._push_report(p)
        self._metrics(p)
        self._publish_status(p)

    def _publish_status(self, p: Pass) -> None:
        """The same status in the cluster (``suc`` mode: the status ConfigMap), best effort:
        the state dir holds it already, and the next pass writes it again."""
        fields = {k: v for k, v in p.status.items() if k != "conditions"}
        try:
            self.cluster.write_status(p.conditions, now=p.now, fields=fields)
        except GitEdgeError as e:
            log.warning("status not written to the cluster: %s", scrub(str(e)))
            self.metrics.inc(
                "gitedge_status_write_failures_total",
                1,
                help="passes whose status could not be written to the cluster",
            )

    def _push_report(self, p: Pass) -> None:
        """This site's report to ``report.repository`` (``agent/reporting.py``), bounded to once
        per interval unless it changed; a failure only sets the ``Reported`` condition."""
        if self.config.report is None or self.stop.is_set():
            return
        from gitedge.agent.reporting import Reporter

        reporter = Reporter(self.config, state=self.state, metrics=self.metrics, hosts=self.hosts)
        reported = reporter.push(p)
        if reported is not None:
            p.conditions = cond.merge(p.conditions, [reported], now=p.now)
            p.status["conditions"] = cond.to_json(p.conditions)
            self.state.put_doc("conditions", p.status["conditions"])
            self.state.put_doc("status", p.status)

    def _metrics(self, p: Pass) -> None:
        m = self.metrics
        last = self.state.last_verified
        if last is not None:
            m.set(
                "gitedge_last_verified_commit_age_seconds",
                max(0.0, (p.now - last.committed_at).total_seconds()),
                help="age of the newest verified commit (the site clock)",
            )
        m.replace(
            "gitedge_applied_version",
            {
                (("component", c), ("step", s)): 1.0 if done else 0.0
                for c, s, _, done in self.state.applied()
            },
            help="steps applied (1: done, 0: started)",
        )
        for c in p.conditions:
            m.set(
                "gitedge_condition",
                1.0 if c.status == "True" else 0.0,
                help="agent conditions (1: True)",
                labels={"type": c.type},
            )
        for name, w in (p.status.get("windows") or {}).items():
            m.set(
                "gitedge_window_open",
                1.0 if w is None or w.get("open") else 0.0,  # no window: apply once mirrored
                help="whether a component's maintenance window is open",
                labels={"component": name},
            )


def _step_of(action: Action) -> str | None:
    meta = (action.manifest or {}).get("metadata", {})
    step = (meta.get("annotations") or {}).get("gitedge.io/step")
    return str(step) if step else None
