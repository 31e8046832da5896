"""The cluster as the agent reads it: nodes, gitedge-owned SUC Plans and how far each Plan is.

Pure: parsing of API objects (JSON as the API returns it) into small frozen facts, the cluster's
actual K3s version (the lowest kubelet version wins), and a Plan's progress.

A Plan's progress is read exactly as SUC decides it (rancher/system-upgrade-controller,
pkg/upgrade/plan/plan.go ``SelectConcurrentNodes``): SUC selects the nodes its ``nodeSelector``
matches that have a ``kubernetes.io/hostname`` label (``NodeSelector``) and whose
``plan.upgrade.cattle.io/<plan>`` label is NotIn [``disabled``, ``status.latestHash``]; the Plan
is complete when that selects no node (pkg/upgrade/handle_upgrade.go, ``Complete``). So a node
is done when its label is the latest hash or ``disabled`` -- and only once the status is the
*current* spec's: SUC sets ``status.latestVersion = MungeVersion(spec.version)`` (``+`` made
``-``, handle_upgrade.go; an unmunged value, as a stand-in or a future SUC may write, is
accepted too) and ``status.latestHash`` by ``DigestStatus`` (plan.go): the hex SHA-224 of
latestVersion, ``spec.serviceAccountName`` and the value of each field the
``upgrade.cattle.io/digest`` annotation names (gitedge's Plans mount no secrets, whose hashes
SUC would add). The agent computes that hash from the spec it reads; until the status carries
it, SUC has not resolved the spec and the labels on the nodes are an earlier spec's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from gitedge.core.config import ClusterStatus, derived_labels
from gitedge.core.fleet.selectors import LabelSelector
from gitedge.core.fleet.versions import K3sVersion
from gitedge.core.rollout.admission import base_selector
from gitedge.core.rollout.planning import ClusterFacts
from gitedge.core.rollout.sucplans import CONTROL_PLANE, STEP_ANNOTATION, SUC_DIGEST_ANNOTATION
from gitedge.errors import VersionError

DONE_LABEL_PREFIX = "plan.upgrade.cattle.io/"
HOSTNAME_LABEL = "kubernetes.io/hostname"
DISABLED = "disabled"  # a node labelled plan.upgrade.cattle.io/<plan>=disabled: SUC skips it
# the spec.window gitedge wrote (JSON): an API server whose Plan CRD lacks the field (SUC older
# than v0.15.0) prunes spec.window but keeps annotations, so a pruned window is seen on any read
WINDOW_ANNOTATION = "gitedge.io/window"
JOB_PLAN_LABEL = "upgrade.cattle.io/plan"  # pkg/apis/upgrade.cattle.io constants LabelPlan
JOB_VERSION_LABEL = "upgrade.cattle.io/version"  # LabelVersion: the Plan's latestVersion

__all__ = [
    "DONE_LABEL_PREFIX",
    "WINDOW_ANNOTATION",
    "ClusterSnapshot",
    "JobFacts",
    "NodeFacts",
    "PlanState",
    "Progress",
    "actual_k3s_version",
    "cluster_facts",
    "digest_status",
    "get_path",
    "munge_version",
    "plan_progress",
    "resolved_hash",
    "str_map",
]


def str_map(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items() if v is not None}


def get_path(obj: object, *path: str) -> object:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


@dataclass(frozen=True)
class NodeFacts:
    """A node as the API shows it: name, labels, architecture, kubelet version."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    architecture: str = ""
    kubelet_version: str = ""

    @property
    def control_plane(self) -> bool:
        return self.labels.get(CONTROL_PLANE) == "true"

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> NodeFacts:
        """From a core/v1 Node as JSON."""
        info = get_path(obj, "status", "nodeInfo")
        return cls(
            name=str(get_path(obj, "metadata", "name") or ""),
            labels=str_map(get_path(obj, "metadata", "labels")),
            architecture=str(get_path(info, "architecture") or ""),
            kubelet_version=str(get_path(info, "kubeletVersion") or ""),
        )


@dataclass(frozen=True)
class PlanState:
    """A gitedge-owned SUC Plan as read from the API, with the status SUC wrote."""

    name: str
    spec: Mapping[str, Any]
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    latest_hash: str | None = None
    latest_version: str | None = None
    conditions: tuple[Mapping[str, Any], ...] = ()
    resource_version: str | None = None
    applying: tuple[str, ...] = ()  # nodes SUC runs a job on now

    @property
    def step(self) -> str | None:
        return self.annotations.get(STEP_ANNOTATION)

    @property
    def window_pruned(self) -> bool:
        """gitedge wrote a ``spec.window`` (its annotation says so) and the stored Plan has
        none: the API server pruned it, its Plan CRD predates SUC v0.15.0."""
        return bool(self.annotations.get(WINDOW_ANNOTATION)) and "window" not in self.spec

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> PlanState:
        """From an upgrade.cattle.io/v1 Plan as JSON."""
        spec = obj.get("spec")
        conds = get_path(obj, "status", "conditions")
        latest_hash = get_path(obj, "status", "latestHash")
        latest_version = get_path(obj, "status", "latestVersion")
        rv = get_path(obj, "metadata", "resourceVersion")
        applying = get_path(obj, "status", "applying")
        return cls(
            name=str(get_path(obj, "metadata", "name") or ""),
            spec=spec if isinstance(spec, Mapping) else {},
            labels=str_map(get_path(obj, "metadata", "labels")),
            annotations=str_map(get_path(obj, "metadata", "annotations")),
            latest_hash=str(latest_hash) if latest_hash else None,
            latest_version=str(latest_version) if latest_version else None,
            conditions=tuple(c for c in conds if isinstance(c, Mapping))
            if isinstance(conds, list)
            else (),
            resource_version=str(rv) if rv else None,
            applying=tuple(str(n) for n in applying) if isinstance(applying, list) else (),
        )


@dataclass(frozen=True)
class JobFacts:
    """A Job SUC created for a Plan (pkg/upgrade/job/job.go ``New``): the Plan and version it
    applies (its labels) and the ``activeDeadlineSeconds`` SUC gave it."""

    name: str
    plan: str
    version: str
    active_deadline: int | None

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> JobFacts:
        """From a batch/v1 Job as JSON."""
        labels = str_map(get_path(obj, "metadata", "labels"))
        deadline = get_path(obj, "spec", "activeDeadlineSeconds")
        return cls(
            name=str(get_path(obj, "metadata", "name") or ""),
            plan=labels.get(JOB_PLAN_LABEL, ""),
            version=labels.get(JOB_VERSION_LABEL, ""),
            active_deadline=deadline if isinstance(deadline, int) else None,
        )


@dataclass(frozen=True)
class ClusterSnapshot:
    """The cluster as read in one pass: every node, the Plans gitedge owns and the Jobs SUC
    runs for them."""

    nodes: tuple[NodeFacts, ...]
    plans: tuple[PlanState, ...] = ()
    jobs: tuple[JobFacts, ...] = ()


def actual_k3s_version(nodes: Sequence[NodeFacts]) -> K3sVersion | None:
    """The cluster's K3s version: the lowest kubelet version of its nodes (None: no nodes).

    Raises VersionError naming the node whose kubelet version is not a K3s version."""
    lowest: K3sVersion | None = None
    for node in nodes:
        try:
            version = K3sVersion.parse(node.kubelet_version)
        except VersionError as e:
            raise VersionError(f"node {node.name!r}: {e}") from None
        if lowest is None or version < lowest:
            lowest = version
    return lowest


def cluster_facts(
    *,
    name: str,
    labels: Mapping[str, str],
    nodes: Sequence[NodeFacts],
    os_image: str | None = None,
) -> ClusterFacts:
    """Planner facts from the nodes: actual K3s version, and the derived ``gitedge.io/arch`` and
    ``gitedge.io/k3s-minor`` labels, so targets and the path follow what runs."""
    version = actual_k3s_version(nodes)
    arches = tuple(sorted({n.architecture for n in nodes if n.architecture}))
    status = ClusterStatus(k3s_version=version.text if version else None, arches=arches)
    return ClusterFacts(
        name=name,
        labels=derived_labels(dict(labels), status),
        k3s_version=status.k3s_version,
        os_image=os_image,
    )


@dataclass(frozen=True)
class Progress:
    """How far one Plan is: the nodes it selects, and those not done yet."""

    plan: str
    selected: int
    pending: tuple[str, ...]
    resolved: bool

    @property
    def complete(self) -> bool:
        return not self.pending

    def describe(self) -> str:
        done = self.selected - len(self.pending)
        text = f"{self.plan} {done}/{self.selected} nodes done"
        if not self.resolved and self.selected:
            text += " (SUC has not resolved this spec yet)"
        elif self.pending:
            more = " ..." if len(self.pending) > 5 else ""
            text += f" (waiting for {', '.join(self.pending[:5])}{more})"
        return text


def munge_version(version: str) -> str:
    """SUC's ``MungeVersion`` (pkg/upgrade/plan/plan.go): ``+`` made ``-``."""
    return version.replace("+", "-")


def digest_status(
    *,
    latest_version: str,
    spec: Mapping[str, Any],
    annotations: Mapping[str, str],
    metadata: Mapping[str, Any] | None = None,
) -> str:
    """``status.latestHash`` as SUC's ``DigestStatus`` (pkg/upgrade/plan/plan.go) computes it
    for a Plan without secrets: SHA-224 of ``latest_version``, ``spec.serviceAccountName``, then
    for each comma-separated entry of the ``upgrade.cattle.io/digest`` annotation the string at
    that dotted path of the Plan (``addToHashFromAnnotation``; wrangler's ``data.Object.String``
    gives "" for a missing field)."""
    h = hashlib.sha224()
    h.update(latest_version.encode())
    h.update(str(spec.get("serviceAccountName") or "").encode())
    fields = annotations.get(SUC_DIGEST_ANNOTATION, "")
    if fields:
        obj = {"metadata": {**(metadata or {}), "annotations": dict(annotations)}, "spec": spec}
        for entry in fields.split(","):
            value = get_path(obj, *entry.split("."))
            h.update(_go_string(value).encode())
    return h.hexdigest()


def _go_string(value: object) -> str:
    """wrangler's ``data.Object.String`` on ``data.Convert(plan)`` (pkg/data/convert
    ``ToString``): the typed Plan is marshalled first, so an ``omitempty`` zero value is absent
    (""), a list gives its first item, then ``fmt.Sprint`` and TrimSpace."""
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None or value in (0, False, "", [], {}):
        return ""
    return _go_sprint(value).strip()


def _go_sprint(value: object) -> str:
    """``fmt.Sprint`` of a value decoded from JSON (numbers as their JSON text)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{_go_sprint(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go_sprint(v) for v in value) + "]"
    return str(value)


def resolved_hash(plan: PlanState) -> str | None:
    """The latestHash SUC writes once it has resolved ``plan``'s current spec, for the
    latestVersion its status shows (munged or not; None: the status names another version, or
    the spec has no version)."""
    version = plan.spec.get("version")
    if not isinstance(version, str) or not version or plan.latest_version is None:
        return None
    if plan.latest_version not in (munge_version(version), version):
        return None
    return digest_status(
        latest_version=plan.latest_version, spec=plan.spec, annotations=plan.annotations
    )


def plan_progress(plan: PlanState, nodes: Sequence[NodeFacts]) -> Progress:
    """Which nodes ``plan`` selects and which of them SUC would still run a Job on (see the
    module docstring: a node is done when its ``plan.upgrade.cattle.io/<plan>`` label is the
    hash of the current spec, or ``disabled``)."""
    try:
        # what the fleet selects, not only the nodes admitted now (gitedge.core.rollout.admission)
        selector = LabelSelector.model_validate(base_selector(plan.spec))
    except ValidationError:
        return Progress(
            plan=plan.name, selected=0, pending=("<invalid nodeSelector>",), resolved=False
        )
    selected = [n for n in nodes if HOSTNAME_LABEL in n.labels and selector.matches(n.labels)]
    want = resolved_hash(plan)
    resolved = want is not None and plan.latest_hash == want
    key = DONE_LABEL_PREFIX + plan.name
    pending = tuple(
        sorted(
            n.name
            for n in selected
            if n.labels.get(key) != DISABLED and (not resolved or n.labels.get(key) != want)
        )
    )
    return Progress(plan=plan.name, selected=len(selected), pending=pending, resolved=resolved)
