"""Where and how to reach each registry host: scheme, CA, credential files, retry patience.

Built from the agent config (``registry.upstreamAuth.<host>`` and ``registry.cache``), so the
agent and ``gitedge mirror --config`` reach registries the same way. Plain HTTP is chosen for
loopback hosts (as Docker does) and for hosts marked ``insecure``; a CA file or an ``https://``
cache URL means HTTPS.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gitedge.core.images.refs import cache_host


@dataclass(frozen=True)
class HostConfig:
    """How to reach one registry host; secrets are file paths, read when a client is made."""

    username_file: Path | None = None
    password_file: Path | None = None
    token_file: Path | None = None
    ca_file: Path | None = None
    insecure: bool = False
    scheme: str | None = None  # "http"/"https" from an explicit cache URL
    #: hosts marked ``insecure`` anywhere in the config: a token realm there may get our
    #: credentials over plain HTTP (auth.py); filled in by :meth:`Hosts.get`
    insecure_hosts: frozenset[str] = frozenset()
    #: which side this host is for the agent, named in errors: "cache" (``registry.cache``),
    #: "upstream" (any other host, when a config names a cache), "" (not known)
    role: str = ""


def is_loopback(host: str) -> bool:
    """Whether ``host[:port]`` names this machine (Docker talks plain HTTP to those)."""
    name = host.rsplit("]", 1)[0].lstrip("[") if host.startswith("[") else host.split(":")[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Hosts:
    """Per-host settings, looked up by ``host:port`` first and then by the bare host."""

    by_host: Mapping[str, HostConfig] = field(default_factory=dict)
    cache: str | None = None  # the site cache's host[:port], when a config names one

    def get(self, host: str) -> HostConfig:
        if host in self.by_host:
            found = self.by_host[host]
        else:
            bare = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            found = self.by_host.get(bare, HostConfig())
        insecure = frozenset(h.lower() for h, c in self.by_host.items() if c.insecure)
        role = "" if self.cache is None else "cache" if host == self.cache else "upstream"
        return replace(found, insecure_hosts=found.insecure_hosts | insecure, role=role)

    @classmethod
    def from_config(cls, registry: Any) -> Hosts:
        """From an AgentConfig's ``registry`` section (``upstreamAuth`` and ``cache``)."""
        out: dict[str, HostConfig] = {}
        for host, a in registry.upstream_auth.items():
            out[host] = HostConfig(
                username_file=Path(a.username_file) if a.username_file else None,
                password_file=Path(a.password_file) if a.password_file else None,
                token_file=Path(a.token_file) if a.token_file else None,
                ca_file=Path(a.ca_file) if a.ca_file else None,
                insecure=a.insecure,
            )
        cache, cache_at = registry.cache, None
        if cache is not None:
            url = cache.url.strip()
            scheme = url.split("://", 1)[0] if "://" in url else None
            host = cache_host(url)
            base = out.get(host, HostConfig())
            out[host] = HostConfig(
                username_file=base.username_file,
                password_file=base.password_file,
                token_file=base.token_file,
                ca_file=Path(cache.ca_file) if cache.ca_file else base.ca_file,
                insecure=cache.insecure or base.insecure,
                scheme=scheme,
            )
            cache_at = host
        return cls(out, cache=cache_at)


@dataclass(frozen=True)
class Limits:
    """The bounds of one transfer (bounds.py): the stall timeout, and the minimum rate in
    bytes per second averaged over each window of ``window_s`` seconds."""

    stall_s: float = 60.0
    min_rate: float = 1024.0
    window_s: float = 30.0


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded patience: how often and how long to retry, and the bounds of one transfer.

    ``read_timeout_s`` is the stall timeout: no byte for that long (or response headers not
    complete that long after the request) fails the read. ``min_rate_bps`` over each
    ``rate_window_s`` is the slowest a body may come (bounds.py); there is no wall-clock
    limit on a transfer, and a blob cut for being too slow resumes from its last byte."""

    attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    max_retry_after_s: float = 60.0  # a 429 asking for longer becomes Waiting(retry_after)
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    min_rate_bps: float = 1024.0
    rate_window_s: float = 30.0

    def limits(self) -> Limits:
        return Limits(
            stall_s=self.read_timeout_s, min_rate=self.min_rate_bps, window_s=self.rate_window_s
        )

    def delay(self, attempt: int) -> float:
        """Full-jitter exponential backoff, so a fleet reconnecting at once spreads out."""
        return random.uniform(0, min(self.max_delay_s, self.base_delay_s * 2**attempt))  # noqa: S311
