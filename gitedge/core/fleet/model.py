"""The fleet repo (apiVersion ``gitedge.io/v1alpha1``): its kinds, and loading it from a snapshot.

A fleet repo is every ``*.yaml``/``*.yml`` file under the repo root (or ``source.path``), each
holding documents of the kinds below. ``.gitedge/trust.yaml`` is read wherever ``source.path``
points; other dot-directories (``.github/``, ``.gitlab-ci/``...) are not fleet documents and are
skipped. Everything else must validate: unknown kinds and fields, bad names, duplicate names,
dangling references, oversized files and symlinks that leave the repo are all problems, each
reported as ``path:line: message``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator

from gitedge.core.fleet.base import Duration, Model
from gitedge.core.fleet.files import TRUST_PATH, FleetFiles
from gitedge.core.fleet.osimage import OsTarget as OsTarget
from gitedge.core.fleet.selectors import LabelSelector, check_labels
from gitedge.core.fleet.snapshot import Snapshot
from gitedge.core.fleet.trustspec import ImagePolicy as ImagePolicy
from gitedge.core.fleet.trustspec import ImageSigner as ImageSigner
from gitedge.core.fleet.trustspec import Signer as Signer
from gitedge.core.fleet.trustspec import TrustPolicySpec as TrustPolicySpec
from gitedge.core.fleet.versions import K3sVersion, check_version
from gitedge.core.fleet.windowspec import MaintenanceWindowSpec
from gitedge.core.fleet.yamldoc import Document, Stream, line_of, validation_problems
from gitedge.core.images.refs import ImageRef, check_image
from gitedge.errors import InvalidFleetRepo, Problem

API_VERSION = "gitedge.io/v1alpha1"
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _dns_label(name: str) -> str:
    if len(name) > 63 or not _DNS1123_LABEL.match(name):
        raise ValueError(
            f"name {name!r} must be a DNS-1123 label: at most 63 lowercase letters, digits and "
            "'-', starting and ending with a letter or digit"
        )
    return name


Name = Annotated[str, AfterValidator(_dns_label)]
Labels = Annotated[dict[str, str], AfterValidator(check_labels)]
Version = Annotated[str, AfterValidator(check_version)]
Image = Annotated[str, AfterValidator(check_image)]


class Metadata(Model):
    name: Name
    labels: Labels = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class ClusterGroupSpec(Model):
    selector: LabelSelector


def _year_month(text: str) -> str:
    if not re.fullmatch(r"(19|20)\d\d-(0[1-9]|1[0-2])", text):
        raise ValueError(f"released {text!r} must be a year and month, YYYY-MM (e.g. 2024-10)")
    return text


def _sha256(text: str) -> str:
    if not re.fullmatch(r"sha256:[a-f0-9]{64}", text):
        raise ValueError(f"digest {text!r} must be sha256:<64 lowercase hex>")
    return text


YearMonth = Annotated[str, AfterValidator(_year_month)]
Sha256 = Annotated[str, AfterValidator(_sha256)]


class K3sRelease(Model):
    """One catalog release with what a site cannot find out offline: the month K3s built it
    (k3s-upgrade refuses a target built in an earlier month than the running binary) and the
    digest of its upgrade image (what the signed commit approves)."""

    version: Version
    released: YearMonth | None = Field(
        default=None, description="YYYY-MM: the month the release was built"
    )
    digest: Sha256 | None = Field(
        default=None,
        description="sha256 digest of the release's upgrade image (the image index of "
        "<upgradeImage>:<version with + as ->)",
    )


class K3sReleasesSpec(Model):
    versions: tuple[Version, ...] = Field(
        default=(), description="releases by version alone (see releases for month and digest)"
    )
    releases: tuple[K3sRelease, ...] = Field(
        default=(), description="releases with their build month and upgrade image digest"
    )

    @model_validator(mode="after")
    def _some_once(self) -> K3sReleasesSpec:
        seen: set[K3sVersion] = set()
        for text in (*self.versions, *(r.version for r in self.releases)):
            v = K3sVersion.parse(text)
            if v in seen:
                raise ValueError(f"K3s version {text} is listed twice")
            seen.add(v)
        if not seen:
            raise ValueError("list at least one release in versions or releases")
        return self


class K3sTarget(Model):
    version: Version
    upgrade_image: Image = "rancher/k3s-upgrade"

    @field_validator("upgrade_image")
    @classmethod
    def _untagged(cls, image: str) -> str:
        ref = ImageRef.parse(image)
        if ref.tag or ref.digest:
            raise ValueError(
                f"upgradeImage {image!r} must be a repository without tag or digest: the tag "
                "comes from the version"
            )
        return image


class Drain(Model):
    """SUC's ``spec.drain``: a field left out here is left out of the Plan, so SUC's own default
    applies (pkg/upgrade/job/job.go: --ignore-daemonsets and --delete-emptydir-data unless set
    false; no --force, no --disable-eviction)."""

    force: bool | None = None
    timeout: Duration | None = Field(
        default=None,
        description="kubectl drain's --timeout; absent = 15m (the Job deadline fits it)",
    )
    grace_period: int | None = Field(default=None, ge=0)
    ignore_daemon_sets: bool | None = Field(
        default=None, description="absent = SUC's default, true"
    )
    delete_emptydir_data: bool | None = Field(
        default=None,
        description="absent = SUC's default, true (K3s's metrics-server uses an emptyDir: with "
        "false, kubectl drain refuses the node)",
    )
    disable_eviction: bool | None = None
    skip_wait_for_delete_timeout: int | None = Field(default=None, ge=0)


class Rollout(Model):
    concurrency: int = Field(default=1, ge=1)
    cordon: bool = True
    drain: Drain | None = None
    upgrade_timeout: Duration | None = Field(
        default=None,
        description="how long the upgrade itself may take on one node (absent = 20m); each "
        "Job's deadline is this plus the drain timeout and SUC's start-up allowance",
    )
    order: tuple[Literal["k3s", "os"], ...] = ("k3s", "os")

    @field_validator("order")
    @classmethod
    def _perm(cls, order: tuple[str, ...]) -> tuple[str, ...]:
        if sorted(order) != ["k3s", "os"]:
            raise ValueError("order must list k3s and os once each, e.g. [k3s, os]")
        return order


class UpgradeTargetSpec(Model):
    cluster_selector: LabelSelector | None = Field(
        default=None, description="label selector; {} selects every cluster"
    )
    cluster_group: Name | None = None
    priority: int = 0
    window: Name | None = Field(
        default=None, description="a MaintenanceWindow; absent = apply once mirrored"
    )
    suspend: bool = False
    os: OsTarget | None = None
    k3s: K3sTarget | None = None
    rollout: Rollout = Field(default_factory=Rollout)

    @model_validator(mode="after")
    def _sense(self) -> UpgradeTargetSpec:
        if self.cluster_selector is None and self.cluster_group is None:
            raise ValueError(
                "set clusterSelector ({} selects every cluster) or clusterGroup: a target never "
                "selects all clusters by omission"
            )
        if self.os is None and self.k3s is None:
            raise ValueError("a target must set os, k3s or both")
        if self.os and self.os.k3s and self.k3s and self.os.k3s != self.k3s.version:
            raise ValueError(
                f"os.k3s says the OS image carries K3s {self.os.k3s} but k3s.version is "
                f"{self.k3s.version}: the OS step sets the K3s of these clusters; make them agree "
                "(or drop k3s)"
            )
        return self


class _Doc(Model):
    api_version: Literal["gitedge.io/v1alpha1"]
    metadata: Metadata


class TrustPolicy(_Doc):
    kind: Literal["TrustPolicy"]
    spec: TrustPolicySpec


class ClusterGroup(_Doc):
    kind: Literal["ClusterGroup"]
    spec: ClusterGroupSpec


class MaintenanceWindow(_Doc):
    kind: Literal["MaintenanceWindow"]
    spec: MaintenanceWindowSpec


class K3sReleases(_Doc):
    kind: Literal["K3sReleases"]
    spec: K3sReleasesSpec


class UpgradeTarget(_Doc):
    kind: Literal["UpgradeTarget"]
    spec: UpgradeTargetSpec


FLEET_KINDS: dict[str, type[_Doc]] = {
    m.__name__: m
    for m in (TrustPolicy, ClusterGroup, MaintenanceWindow, K3sReleases, UpgradeTarget)
}
NOT_IN_FLEET = {"Cluster", "AgentConfig"}


@dataclass(frozen=True)
class Origin:
    """Where a document was defined. The lines of its fields are looked up (in the document's
    node tree, composed again then) only when a problem names them, which is rare."""

    path: str
    line: int
    stream: Stream | None = field(default=None, repr=False, compare=False)
    index: int = 0

    def line_of(self, ref: str, *more: str | int) -> int:
        """The line of ``spec.<ref>[.<more>...]`` (the nearest enclosing field's line, or the
        document's when there is no such field)."""
        if self.stream is None:
            return self.line
        return line_of(self.stream.node(self.index), ("spec", ref, *more))


@dataclass
class Fleet:
    """A validated fleet repo."""

    trust_policy: TrustPolicy | None = None
    groups: dict[str, ClusterGroup] = field(default_factory=dict)
    windows: dict[str, MaintenanceWindow] = field(default_factory=dict)
    releases: dict[str, K3sReleases] = field(default_factory=dict)
    targets: dict[str, UpgradeTarget] = field(default_factory=dict)
    origins: dict[tuple[str, str], Origin] = field(default_factory=dict)
    #: documents that did not validate, by (kind, name): where they are, so that what refers to
    #: them points there instead of reading as the cause
    broken: dict[tuple[str, str], str] = field(default_factory=dict)

    def k3s_releases(self) -> list[K3sVersion]:
        """Every release of every K3sReleases document, parsed."""
        return [
            *(K3sVersion.parse(v) for r in self.releases.values() for v in r.spec.versions),
            *(K3sVersion.parse(e.version) for r in self.releases.values() for e in r.spec.releases),
        ]

    def k3s_release_details(self) -> dict[K3sVersion, K3sRelease]:
        """The catalog entries listed under ``releases`` (with month and digest), by version."""
        return {
            K3sVersion.parse(e.version): e for r in self.releases.values() for e in r.spec.releases
        }

    @property
    def images(self) -> ImagePolicy:
        """The image policy in force: the TrustPolicy's, else the defaults (digests required)."""
        return self.trust_policy.spec.images if self.trust_policy else ImagePolicy()

    def where(self, kind: str, name: str) -> str:
        o = self.origins.get((kind, name))
        return f"{o.path}:{o.line}" if o else f"{kind}/{name}"


def load_fleet(snapshot: Snapshot, *, subdir: str = "", origin: str = "") -> Fleet:
    """Load and validate a fleet repo; raises InvalidFleetRepo listing every problem.

    ``origin`` is prefixed to paths in problems (the directory the user named).
    """
    return load_files(FleetFiles(snapshot, subdir=subdir, origin=origin))


def load_files(files: FleetFiles) -> Fleet:
    """:func:`load_fleet` over files already read (and being parsed: see :class:`FleetFiles`).
    :func:`gitedge.adapters.fleetload.load_files` runs it with the garbage collector paused."""
    problems: list[Problem] = []
    fleet = Fleet()
    for entry, parsed in files:  # in path order, so that problems are too
        if isinstance(entry, Problem):
            problems.append(entry)
            continue
        assert parsed is not None
        docs, file_problems = parsed
        problems.extend(file_problems)
        for doc in docs:
            _add(fleet, doc, path=entry.shown, is_trust_file=entry.is_trust, problems=problems)
    dependents = list(_references(fleet))
    if problems or dependents:
        n = len(problems) + len(dependents)
        raise InvalidFleetRepo(
            problems, summary=f"fleet repo has {n} problem(s)", dependents=dependents
        )
    return fleet


def _add(
    fleet: Fleet, doc: Document, *, path: str, is_trust_file: bool, problems: list[Problem]
) -> None:
    value = doc.value
    if not isinstance(value, dict):
        problems.append(
            Problem(
                path, doc.line, "a document must be a mapping with apiVersion, kind, metadata, spec"
            )
        )
        return
    kind = value.get("kind")
    api = value.get("apiVersion")
    if api != API_VERSION:
        problems.append(Problem(path, doc.line, f"apiVersion must be {API_VERSION!r}, not {api!r}"))
        return
    if isinstance(kind, str) and kind in NOT_IN_FLEET:  # a list/map kind is unhashable
        where = "`gitedge validate --clusters`" if kind == "Cluster" else "`--config`"
        msg = f"kind {kind} belongs to a site's files, not the fleet repo (give it to {where})"
        problems.append(Problem(path, doc.line, msg))
        return
    if not isinstance(kind, str) or kind not in FLEET_KINDS:
        problems.append(
            Problem(
                path, doc.line, f"unknown kind {kind!r}; expected one of {', '.join(FLEET_KINDS)}"
            )
        )
        return
    model = FLEET_KINDS[kind]
    raw_name = (
        value.get("metadata", {}).get("name") if isinstance(value.get("metadata"), dict) else None
    )
    label = f"{kind}/{raw_name}" if isinstance(raw_name, str) else kind
    try:
        obj = model.model_validate(value)
    except ValidationError as e:
        problems.extend(validation_problems(e, path=path, node=doc.node, prefix=label, model=model))
        fleet.broken.setdefault((kind, str(raw_name)), f"{path}:{doc.line}")
        return
    name = obj.metadata.name
    if kind == "TrustPolicy" and not is_trust_file:
        problems.append(Problem(path, doc.line, f"a TrustPolicy is only read from {TRUST_PATH}"))
        return
    if is_trust_file and kind != "TrustPolicy":
        problems.append(Problem(path, doc.line, f"{TRUST_PATH} may hold only the TrustPolicy"))
        return
    key = (kind, name)
    if key in fleet.origins:
        problems.append(
            Problem(
                path, doc.line, f"{kind} {name!r} is already defined at {fleet.where(kind, name)}"
            )
        )
        return
    if isinstance(obj, TrustPolicy) and fleet.trust_policy is not None:
        problems.append(Problem(path, doc.line, f"{TRUST_PATH} must hold exactly one TrustPolicy"))
        return
    fleet.origins[key] = Origin(path, doc.line, doc.stream, doc.index)
    if isinstance(obj, TrustPolicy):
        fleet.trust_policy = obj
    elif isinstance(obj, ClusterGroup):
        fleet.groups[name] = obj
    elif isinstance(obj, MaintenanceWindow):
        fleet.windows[name] = obj
    elif isinstance(obj, K3sReleases):
        fleet.releases[name] = obj
    elif isinstance(obj, UpgradeTarget):
        fleet.targets[name] = obj


def _references(fleet: Fleet) -> Iterable[Problem]:
    """Problems of references; one to a broken document points at it (its own problem is the
    cause, told above)."""
    catalog_broken = [w for (k, _), w in fleet.broken.items() if k == "K3sReleases"]
    listed = set(fleet.k3s_releases()) if not catalog_broken else set()
    for name, target in fleet.targets.items():
        o = fleet.origins[("UpgradeTarget", name)]
        spec, what = target.spec, f"UpgradeTarget/{name}"
        for field_name, kind, ref in (
            ("window", "MaintenanceWindow", spec.window),
            ("clusterGroup", "ClusterGroup", spec.cluster_group),
        ):
            if not ref or ref in (fleet.windows if kind == "MaintenanceWindow" else fleet.groups):
                continue
            at = fleet.broken.get((kind, ref))
            yield Problem(
                o.path,
                o.line_of(field_name),
                f"{what}: {field_name} {ref!r} is invalid itself (see {at}); fix it there"
                if at
                else f"{what}: {field_name} {ref!r} is not a {kind} in this repo; define it "
                f"(kind: {kind}, metadata.name: {ref}) or correct the name",
            )
        if not spec.k3s:
            continue
        if catalog_broken:
            yield Problem(
                o.path,
                o.line_of("k3s"),
                f"{what}: sets k3s, and the K3sReleases catalog is invalid itself (see "
                f"{catalog_broken[0]}); fix it there",
            )
        elif not fleet.releases:
            yield Problem(
                o.path,
                o.line_of("k3s"),
                f"{what}: sets k3s but the repo has no K3sReleases catalog; add one listing "
                f"{spec.k3s.version} and a release of every minor a site passes through",
            )
        elif K3sVersion.parse(spec.k3s.version) not in listed:
            yield Problem(
                o.path,
                o.line_of("k3s"),
                f"{what}: k3s version {spec.k3s.version} is not in the K3sReleases catalog "
                f"({fleet.where('K3sReleases', next(iter(fleet.releases)))}); add it to the "
                "catalog's versions, or pick a listed one",
            )


def model_schema(model: type[Model]) -> dict[str, Any]:
    """The JSON Schema of a kind, in validation mode (what users write)."""
    return model.model_json_schema(mode="validation", by_alias=True)
