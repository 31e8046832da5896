"""The TrustPolicy kind's spec (``.gitedge/trust.yaml``): commit signers, their roles and
validity, and the image policy (digests required, cosign image signers). Part of the fleet
models (:mod:`gitedge.core.fleet.model` builds the kind from them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from gitedge.core.fleet.base import Model

__all__ = ["ImagePolicy", "ImageSigner", "Signer", "Timestamp", "TrustPolicySpec"]


def _aware(value: datetime | None) -> datetime | None:
    """Timestamps without a zone are read as UTC (as Kubernetes does for RFC 3339 'Z')."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


Timestamp = Annotated[datetime, AfterValidator(_aware)]


class Signer(Model):
    """A key allowed to sign fleet commits. ``release`` may sign any commit; ``admin`` may also
    change ``.gitedge/trust.yaml``."""

    name: str = Field(min_length=1)
    key: str = Field(min_length=1, description="OpenSSH public key line, or armored OpenPGP key")
    roles: tuple[Literal["release", "admin"], ...] = Field(min_length=1)
    valid_after: Timestamp | None = None
    valid_before: Timestamp | None = None

    @model_validator(mode="after")
    def _window(self) -> Signer:
        if self.valid_after and self.valid_before and self.valid_before <= self.valid_after:
            raise ValueError(f"signer {self.name!r}: validBefore must be after validAfter")
        return self


class ImageSigner(Model):
    """A cosign key allowed to sign the images of ``repositories`` (``core/images/cosign.py``)."""

    name: str = Field(min_length=1)
    key: str = Field(min_length=1, description="cosign public key, PEM (ECDSA P-256 or ed25519)")
    repositories: tuple[str, ...] = Field(
        min_length=1,
        description="globs of image repositories (registry/path) it may sign, e.g. "
        "registry.example.com/edge/*",
    )

    @field_validator("key")
    @classmethod
    def _key(cls, key: str) -> str:
        # cosignsig imports `cryptography`: a fleet without image signers does not need it
        from gitedge.core.images.cosign import load_public_key  # lazy: plan's start-up time

        load_public_key(key)
        return key


class ImagePolicy(Model):
    """What the fleet requires of the images its sites pull (``spec.images`` of the TrustPolicy).

    A fleet repo without a TrustPolicy gets these defaults: a tag-only image is refused unless
    an admin-signed ``.gitedge/trust.yaml`` opts out with ``requireDigest: false``. With
    ``signers``, an image also needs a valid cosign signature by a signer allowed for its
    repository, over its digest."""

    require_digest: bool = Field(
        default=True,
        description="every image a site pulls (OS images, the K3s upgrade image of each catalog "
        "version a path may use) must be named by digest in the fleet repo; false is an "
        "explicit opt-out (tags are then resolved at the site, when it mirrors)",
    )
    signers: tuple[ImageSigner, ...] = ()

    @field_validator("signers")
    @classmethod
    def _unique(cls, signers: tuple[ImageSigner, ...]) -> tuple[ImageSigner, ...]:
        names = [s.name for s in signers]
        if len(set(names)) != len(names):
            raise ValueError("image signer names must be unique")
        return signers


class TrustPolicySpec(Model):
    signers: tuple[Signer, ...] = Field(min_length=1)
    verify: Literal["all", "first-parent"] = "all"
    images: ImagePolicy = Field(default_factory=ImagePolicy)

    @field_validator("signers")
    @classmethod
    def _unique(cls, signers: tuple[Signer, ...]) -> tuple[Signer, ...]:
        seen: set[str] = set()
        for s in signers:
            if s.name in seen:
                raise ValueError(f"signer name {s.name!r} appears twice")
            seen.add(s.name)
        return signers
