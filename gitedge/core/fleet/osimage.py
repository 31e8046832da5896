"""The ``os`` part of an UpgradeTarget: the OS image, its upgrader, and the K3s it carries.

Some OS images carry their own K3s: Kairos "standard" images do ("core" images do not), and the
K3s they install is recorded *inside* the image, in ``/etc/kairos-release``
(``KAIROS_SOFTWARE_VERSION=v1.30.11+k3s1``, ``KAIROS_SOFTWARE_VERSION_PREFIX=k3s``: kairos-io/kairos
kairos-init/pkg/stages/steps_init.go, the "Write kairos-release" stage). That file sits in one of
the image's layers (hundreds of MiB), not in the image config's labels, so a site would have to
pull and unpack a layer to read it: the fleet repo *declares* it instead, as ``os.k3s``. What is
cheap is the tag: Kairos names its standard images
``<flavor>:<release>-standard-<arch>-<model>-<version>-k3sv1.30.11-k3s1`` (sdk/versioneer,
``Artifact.ContainerName``), so a ``kairos`` target whose tag says which K3s it carries must
declare the same one (:func:`k3s_in_tag`), and a repo that forgets ``os.k3s`` is refused.

A target whose OS carries K3s is planned as a K3s step (core/rollout/osk3s.py): never a downgrade,
never a skipped minor (``os.via`` lists an OS image for each intermediate minor), servers first, and
no k3s-upgrade Plan for the cluster.

Elemental's upgrade script (rancher/elemental framework/files/usr/sbin/suc-upgrade, ``config``)
copies ``/run/data/cloud-config`` to the node's ``/oem/90_operator.yaml``, and *removes* that file
when ``/run/data/cloud-config`` is empty or absent; elemental-operator mounts a Secret there
(controllers/managedosimage_controller.go ``newFleetBundleResources``). ``cloudConfigSecret``
names that Secret (key ``cloud-config``, in the Plans' namespace).

Fields added here (``k3s``, ``via``, ``cloudConfigSecret``) are new: an agent older than them
refuses a commit that sets them as an ``unknown field`` (``extra="forbid"``) and never guesses.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from gitedge.core.fleet.base import Model
from gitedge.core.fleet.versions import K3sVersion, check_version
from gitedge.core.images.refs import ImageRef, check_image

Image = Annotated[str, AfterValidator(check_image)]
Version = Annotated[str, AfterValidator(check_version)]

# sdk/versioneer: "-" + SoftwareVersionPrefix + SoftwareVersion with "+" made "-", at the tag's end
_TAG_K3S = re.compile(r"-k3s(v\d+\.\d+\.\d+(?:-rc\d+)?)-k3s(\d+)$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def k3s_in_tag(image: str) -> str | None:
    """The K3s version a Kairos image's tag names (``...-k3sv1.30.11-k3s1`` -> ``v1.30.11+k3s1``),
    or None when the tag does not follow Kairos's naming."""
    tag = ImageRef.parse(image).tag
    m = _TAG_K3S.search(tag) if tag else None
    return f"{m.group(1)}+k3s{m.group(2)}" if m else None


def _secret_name(name: str) -> str:
    if len(name) > 253 or not _DNS_LABEL.match(name):
        raise ValueError(f"cloudConfigSecret {name!r} must be a Secret name (DNS-1123 label)")
    return name


class OsStep(Model):
    """An intermediate OS image and the K3s it carries, for a cluster more than one K3s minor
    behind the target's."""

    image: Image = Field(description="OS image carrying the K3s below (tag, digest or both)")
    k3s: Version = Field(description="the K3s version this image carries")


class OsTarget(Model):
    image: Image = Field(description="OS image: tag, digest or both (a digest is verified)")
    upgrader: Literal["kairos", "elemental", "bootc", "custom"] = "kairos"
    command: tuple[str, ...] | None = Field(default=None, description="custom upgrader only")
    args: tuple[str, ...] | None = Field(default=None, description="custom upgrader only")
    k3s: Version | None = Field(
        default=None,
        description="the K3s version the image carries (Kairos standard images: "
        "KAIROS_SOFTWARE_VERSION of its /etc/kairos-release); the OS step is then the cluster's "
        "K3s step, and no k3s-upgrade Plan is written",
    )
    via: tuple[OsStep, ...] = Field(
        default=(),
        description="OS images carrying K3s of the minors between a cluster's and k3s, one per "
        "minor: K3s cannot skip a minor",
    )
    cloud_config_secret: Annotated[str, AfterValidator(_secret_name)] | None = Field(
        default=None,
        description="elemental only: a Secret (key cloud-config) mounted at /run/data, as "
        "elemental-operator does; its upgrade script writes it to /oem/90_operator.yaml",
    )

    @model_validator(mode="after")
    def _custom(self) -> OsTarget:
        if self.upgrader == "custom" and not self.command:
            raise ValueError("upgrader 'custom' needs a command (and optionally args)")
        if self.upgrader != "custom" and (self.command or self.args):
            raise ValueError(f"command/args are only for upgrader 'custom', not {self.upgrader!r}")
        if self.cloud_config_secret and self.upgrader != "elemental":
            raise ValueError(
                f"cloudConfigSecret is only for upgrader 'elemental', not {self.upgrader!r}"
            )
        self._check_k3s()
        return self

    def _check_k3s(self) -> None:
        if self.via and self.k3s is None:
            raise ValueError("via lists OS images by the K3s they carry: set k3s too")
        if self.upgrader == "kairos":
            for image, declared in ((self.image, self.k3s), *((s.image, s.k3s) for s in self.via)):
                named = k3s_in_tag(image)
                if named is not None and declared != named:
                    raise ValueError(
                        f"the tag of {image} names K3s {named} (Kairos's standard image naming): "
                        f"set k3s: {named}" + ("" if image == self.image else " on its via entry")
                    )
        if self.k3s is None:
            return
        goal = K3sVersion.parse(self.k3s)
        minors: set[tuple[int, int]] = set()
        for s in self.via:
            v = K3sVersion.parse(s.k3s)
            if (v.major, v.minor) >= (goal.major, goal.minor):
                raise ValueError(
                    f"via {s.image}: carries K3s {s.k3s}, not older than the target's minor "
                    f"{goal.minor_line}; via lists only intermediate minors"
                )
            if (v.major, v.minor) in minors:
                raise ValueError(f"via lists two OS images for K3s {v.minor_line}: keep one")
            minors.add((v.major, v.minor))
