"""A site's own files: its cluster identity (``kind: Cluster``) and its ``AgentConfig``.

Secrets are never inline: every credential field names a file the agent reads at use time.
"""

from __future__ import annotations

import difflib
from datetime import timedelta
from typing import Literal

from pydantic import Field, ValidationError, field_validator

from gitedge.core.fleet.base import Duration, Model
from gitedge.core.fleet.model import API_VERSION, Image, Labels, Metadata, Version
from gitedge.core.fleet.versions import K3sVersion
from gitedge.core.fleet.yamldoc import parse_documents, validation_problems
from gitedge.core.images.refs import cache_host
from gitedge.errors import InvalidFleetRepo, Problem

ARCH_LABEL = "gitedge.io/arch"
K3S_MINOR_LABEL = "gitedge.io/k3s-minor"


class ClusterStatus(Model):
    """Facts about the cluster used when it cannot be asked (``gitedge plan``, print mode)."""

    k3s_version: Version | None = None
    os_image: Image | None = None
    arches: tuple[str, ...] = ()


class ClusterSpec(Model):
    name: str = Field(min_length=1)
    labels: Labels = Field(default_factory=dict)
    status: ClusterStatus = Field(default_factory=ClusterStatus)


class Cluster(Model):
    """A cluster identity file (``examples/clusters/*.yaml``)."""

    api_version: Literal["gitedge.io/v1alpha1"]
    kind: Literal["Cluster"]
    metadata: Metadata
    status: ClusterStatus = Field(default_factory=ClusterStatus)


class SourceAuth(Model):
    ssh_key_file: str | None = None
    known_hosts_file: str | None = None
    username_file: str | None = None
    password_file: str | None = None
    ca_file: str | None = None


class SourceLimits(Model):
    max_pack_bytes: int = Field(
        256 << 20,
        ge=1 << 20,
        description="a fetch whose pack grows past this many bytes is aborted (default 256 MiB; "
        "a 5,000-commit catch-up of a fleet repo is a few MB)",
    )
    max_range_bytes: int = Field(
        32 << 20,
        ge=1 << 20,
        description="the new commits one verification takes in may hold this many bytes in all "
        "(default 32 MiB, ~30,000 signed commits): each one's signature is kept until decided",
    )
    fetch_memory_bytes: int = Field(
        64 << 20,
        ge=8 << 20,
        description="memory a fetch may take beyond what the pass holds (default 64 MiB): "
        "indexing a deltified object builds it whole; one needing more fails the fetch",
    )


class SourceConfig(Model):
    url: str = Field(min_length=1)
    branch: str = "main"
    path: str = ""
    interval: Duration = timedelta(minutes=5)
    auth: SourceAuth = Field(default_factory=SourceAuth)
    bundle_dir: str | None = None
    limits: SourceLimits = Field(default_factory=SourceLimits)
    mirrors: tuple[str, ...] = Field(
        default=(),
        description="Git URLs fetched first, for the bytes (same auth); commits are verified "
        "anyway, and the origin's ref is checked when it is reachable",
    )


class TrustConfig(Model):
    bootstrap: str = Field(
        min_length=1,
        description="pinned trust file: TrustPolicy YAML, allowed_signers, or armored OpenPGP keys",
    )


class CacheConfig(Model):
    url: str
    ca_file: str | None = None
    insecure: bool = False

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        cache_host(url)
        return url


class RegistryAuth(Model):
    username_file: str | None = None
    password_file: str | None = None
    token_file: str | None = None
    ca_file: str | None = None
    insecure: bool = False


class RegistryConfig(Model):
    cache: CacheConfig | None = None
    upstream_auth: dict[str, RegistryAuth] = Field(default_factory=dict)
    platforms: Literal["auto"] | tuple[str, ...] = "auto"
    endpoints: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="registry host -> hosts tried first for its images (a regional hub), in "
        "order, then the registry itself; each with its own upstreamAuth entry",
    )
    node_mirrors: tuple[str, ...] | None = Field(
        None,
        description="the upstream registries the nodes' registries.yaml sends to the cache, as "
        "`gitedge node-config` printed them; status warns when the site needs one more "
        "(unset: not checked)",
    )


class ApplyConfig(Model):
    mode: Literal["suc", "print"] = "suc"
    namespace: str = "system-upgrade"
    kubectl_image: Image | None = Field(
        None,
        description="the kubectl image SUC's Jobs run (SYSTEM_UPGRADE_JOB_KUBECTL_IMAGE): "
        "mirrored before any Plan; unset: read from SUC's Deployment and its ConfigMap, else "
        "SUC's built-in default",
    )


class StateConfig(Model):
    dir: str = "/var/lib/gitedge"


class ReportConfig(Model):
    repository: str = Field(description="registry repository for status artifacts")


class AgentConfig(Model):
    """The agent's configuration file."""

    api_version: Literal["gitedge.io/v1alpha1"]
    kind: Literal["AgentConfig"]
    cluster: ClusterSpec
    source: SourceConfig
    trust: TrustConfig
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    apply: ApplyConfig = Field(default_factory=ApplyConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    report: ReportConfig | None = None


def derived_labels(labels: dict[str, str], status: ClusterStatus) -> dict[str, str]:
    """The cluster's labels plus ``gitedge.io/arch`` and ``gitedge.io/k3s-minor`` from its facts.

    A cluster with nodes of several architectures gets them joined sorted with ``-``
    (``amd64-arm64``), so a selector for one architecture does not pick a mixed cluster.
    """
    out = dict(labels)
    if status.arches:
        out[ARCH_LABEL] = "-".join(sorted(set(status.arches)))
    if status.k3s_version:
        out[K3S_MINOR_LABEL] = K3sVersion.parse(status.k3s_version).minor_line
    return out


SiteFile = Cluster | AgentConfig


def load_site_file(data: bytes, *, path: str) -> SiteFile:
    """Load a Cluster identity or an AgentConfig (one document); InvalidFleetRepo on problems."""
    docs, problems = parse_documents(data, path=path)
    if not problems and len(docs) != 1:
        problems = [Problem(path, 0, f"expected one document, found {len(docs)}")]
    if problems:
        raise InvalidFleetRepo(problems)
    doc = docs[0]
    value = doc.value
    kind = value.get("kind") if isinstance(value, dict) else None
    model: type[Cluster] | type[AgentConfig]
    if kind == "Cluster":
        model = Cluster
    elif kind == "AgentConfig":
        model = AgentConfig
    else:
        close = difflib.get_close_matches(str(kind), ["Cluster", "AgentConfig"], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InvalidFleetRepo(
            [Problem(path, doc.line, f"expected kind Cluster or AgentConfig, not {kind!r}{hint}")]
        )
    if value.get("apiVersion") != API_VERSION:
        raise InvalidFleetRepo([Problem(path, doc.line, f"apiVersion must be {API_VERSION!r}")])
    try:
        return model.model_validate(value)
    except ValidationError as e:
        raise InvalidFleetRepo(
            validation_problems(e, path=path, node=doc.node, prefix=kind, model=model)
        ) from None
