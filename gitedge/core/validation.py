"""`gitedge validate`: a fleet repo, and optionally the cluster identities it must serve.

Beyond the schema and the references, a repo is checked against each given cluster: its targets
must resolve without ambiguity, and each K3s target must be reachable from the cluster's current
version through the K3sReleases catalog. Without clusters, the catalog is checked against the
targets (``core/fleet/catalogcheck.py``: build months k3s-upgrade would refuse, one digest for two
upgrade image repositories), and an OS target whose image carries K3s and a K3s target of another
version that may select one cluster are reported (core/rollout/osk3s.py). Under TrustPolicy
``images.requireDigest`` (the default) every image a target may make a site pull must be named by
digest (core/delivery/requiredigest.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from gitedge.core.config import AgentConfig, Cluster, SiteFile, derived_labels, load_site_file
from gitedge.core.delivery.requiredigest import fleet_unpinned
from gitedge.core.fleet.catalogcheck import catalog_problems
from gitedge.core.fleet.model import FLEET_KINDS, Fleet, load_fleet
from gitedge.core.fleet.snapshot import Snapshot
from gitedge.core.images.refs import cache_host
from gitedge.core.rollout.osk3s import fleet_disagreements
from gitedge.core.rollout.planning import ClusterFacts, Plan, plan
from gitedge.core.rollout.sucplans import Site
from gitedge.errors import InvalidInput, Problem, Stalled


def site_facts(
    site: SiteFile, *, current_k3s: str | None = None, current_os: str | None = None
) -> ClusterFacts:
    """The facts the planner uses, from a Cluster identity or an AgentConfig."""
    if isinstance(site, AgentConfig):
        name, labels, status = site.cluster.name, site.cluster.labels, site.cluster.status
    else:
        assert isinstance(site, Cluster)
        name, labels, status = site.metadata.name, site.metadata.labels, site.status
    if current_k3s or current_os:
        status = status.model_copy(
            update={
                "k3s_version": current_k3s or status.k3s_version,
                "os_image": current_os or status.os_image,
            }
        )
    return ClusterFacts(
        name=name,
        labels=derived_labels(labels, status),
        k3s_version=status.k3s_version,
        os_image=status.os_image,
    )


def site_of(site: SiteFile) -> Site:
    """Where rendered SUC Plans go and which cache they pull from: an AgentConfig says
    (``apply.namespace``, ``registry.cache.url``); a bare Cluster identity takes the defaults."""
    if isinstance(site, AgentConfig):
        cache = site.registry.cache
        return Site(namespace=site.apply.namespace, cache=cache_host(cache.url) if cache else None)
    return Site()


def no_documents(fleet: Fleet, *, origin: str) -> Problem | None:
    """A repo with no fleet document at all is the wrong directory (a TrustPolicy alone is a
    legitimate start)."""
    if fleet.origins:
        return None
    return Problem(
        origin or ".",
        0,
        f"no fleet document found (no YAML file of kind {', '.join(FLEET_KINDS)}); give the "
        "fleet repo's root directory",
    )


def validate(
    snapshot: Snapshot,
    *,
    clusters: Mapping[str, bytes],
    now: datetime,
    origin: str = "",
) -> tuple[Fleet | None, list[Problem], list[Plan]]:
    """Validate a repo snapshot and plan for each cluster file (``{path: bytes}``).

    Returns the fleet (None when it does not load), every problem found, and the plans made.
    """
    try:
        fleet = load_fleet(snapshot, origin=origin)
    except InvalidInput as e:
        return None, list(e.problems), []
    empty = no_documents(fleet, origin=origin)
    if empty is not None:
        return None, [empty], []
    problems: list[Problem] = catalog_problems(fleet)
    problems += fleet_disagreements(fleet)  # OS and K3s targets at odds
    problems += [u.problem for u in fleet_unpinned(fleet)]
    plans: list[Plan] = []
    for path, data in sorted(clusters.items()):
        try:
            site = load_site_file(data, path=path)
        except InvalidInput as e:
            problems.extend(e.problems)
            continue
        facts = site_facts(site)
        try:
            plans.append(plan(fleet, facts, now=now))
        except Stalled as e:
            problems.append(Problem(path, 0, f"cluster {facts.name}: {e}"))
    return fleet, problems, plans
