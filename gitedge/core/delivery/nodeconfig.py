"""What each node of a site needs to pull from the site's registry cache (pure: text in, text out).

Plans name ``cache-host:5000/...`` images, and SUC's Jobs also pull images by their upstream names
(its kubectl image, ``rancher/kubectl`` on Docker Hub). Pulls happen on the node, not in a pod:

- containerd (K3s) reads ``/etc/rancher/k3s/registries.yaml`` when K3s starts
  (https://docs.k3s.io/installation/private-registry): a mirror for every upstream registry
  gitedge mirrors, with the cache as endpoint (``http://`` for a plain-http cache), and the
  cache's CA under ``configs.<host>.tls.ca_file``;
- bootc pulls through containers/image on the host: a ``registries.conf.d`` drop-in
  (containers-registries.conf(5), v2 format: ``[[registry]]`` with ``[[registry.mirror]]``) and
  the cache's CA in ``/etc/containers/certs.d/<host:port>/ca.crt`` (containers-certs.d(5));
- Kairos writes both K3s files from its cloud-config: the standard ``write_files`` section,
  run in Kairos' boot stage (https://kairos.io/docs/architecture/cloud-init/), placed in ``/oem``
  where Kairos keeps the node's configuration.

The cache keeps an image's repository path and drops its registry (``ImageRef.with_registry``):
``docker.io/rancher/k3s-upgrade:v1.30.2-k3s1`` is ``cache:5000/rancher/k3s-upgrade:...``. So every
mirror points at the cache root, with no rewrite.

Hubs (``registry.endpoints``, issue 19) are listed after the cache, before the registry: K3s
turns each ``mirrors.<registry>.endpoint`` list into a ``hosts.toml`` whose ``[host]`` entries
containerd tries in file order, then the registry itself as the default ``server`` (k3s
``pkg/agent/containerd/config.go`` ``getHostConfigs``; containerd ``docs/hosts.md``). The cache
comes first because it is the site's own copy, on the LAN, holding exactly the digests the agent
verified and the Plans pin: a node should not cross the WAN for them. The hub is next, so that a
pull the cache cannot serve (the cache down, an image the agent has not mirrored yet) costs the
region's hub and not the origin; the origin stays the last resort. containers/image (bootc) does
the same with ``[[registry.mirror]]`` entries in order, then the ``location``. A hub that needs
credentials is left out of the nodes' files (they would carry its secret) and named in their
header; the agent still reads it with its ``upstreamAuth``.

The cache's host name is resolved by containerd and containers/image on the host, with the
host's resolver (``/etc/hosts``, the site's DNS), never by the cluster's CoreDNS: a Service name
such as ``registry.kube-system.svc`` does not work.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gitedge.core.config import CacheConfig, RegistryConfig
from gitedge.core.fleet.model import Fleet
from gitedge.core.images.refs import DOCKER_HUB, ImageRef, cache_host

# SUC's Job kubectl image when SUC's environment names none: defaultKubectlImage in
# rancher/system-upgrade-controller pkg/upgrade/job/job.go ("rancher/kubectl:v1.30.3"),
# on Docker Hub.
SUC_KUBECTL_IMAGE = "rancher/kubectl"

K3S_REGISTRIES = "/etc/rancher/k3s/registries.yaml"
K3S_CA = "/etc/rancher/k3s/gitedge-cache-ca.crt"
CONTAINERS_DROPIN = "/etc/containers/registries.conf.d/50-gitedge-cache.conf"
KAIROS_SNIPPET = "/oem/90_gitedge-cache.yaml"

__all__ = [
    "CacheEndpoint",
    "NodeFile",
    "cache_endpoint",
    "hub_endpoints",
    "kairos_cloud_config",
    "node_files",
    "registries_conf",
    "registries_yaml",
    "stale_registries",
    "upstream_registries",
]


@dataclass(frozen=True)
class CacheEndpoint:
    """How a node reaches the cache: ``host`` is ``host[:port]``."""

    host: str
    plain_http: bool
    skip_verify: bool = False
    ca_pem: str | None = None

    @property
    def url(self) -> str:
        return f"{'http' if self.plain_http else 'https'}://{self.host}"

    @property
    def dns_name(self) -> str | None:
        """The name each node's host resolver must know; None for an IP address."""
        name = self.host.rsplit(":", 1)[0] if not self.host.endswith("]") else self.host
        return None if _is_ip(name) else name


@dataclass(frozen=True)
class NodeFile:
    """One file to install on each node: its path there, mode, and who reads it."""

    path: str
    content: str
    mode: str
    reader: str  # "k3s", "bootc" or "kairos"
    what: str


def _is_loopback(host: str) -> bool:
    bare = host[1:].split("]", 1)[0] if host.startswith("[") else host.rsplit(":", 1)[0]
    return bare in ("localhost", "::1") or bare.startswith("127.")


def cache_endpoint(cache: CacheConfig, *, ca_pem: str | None) -> CacheEndpoint:
    """The scheme the agent uses for the cache (adapters/registry/client.py: the URL's scheme, else
    https with a CA file, else http for ``insecure`` or loopback hosts), so that nodes pull the
    way the agent pushed. ``insecure`` on an https cache means: do not verify its certificate."""
    host = cache_host(cache.url)
    url = cache.url.strip()
    scheme = url.split("://", 1)[0].lower() if "://" in url else None
    if scheme is None:
        if cache.ca_file:
            scheme = "https"
        else:
            scheme = "http" if (cache.insecure or _is_loopback(host)) else "https"
    plain = scheme == "http"
    return CacheEndpoint(
        host=host,
        plain_http=plain,
        skip_verify=cache.insecure and not plain,
        ca_pem=None if plain else ca_pem,
    )


@dataclass(frozen=True)
class Hubs:
    """``registry.endpoints`` as the nodes see it: registry -> hub endpoints in order, and the
    hubs left out because they need credentials."""

    by_registry: Mapping[str, tuple[CacheEndpoint, ...]]
    left_out: tuple[str, ...] = ()

    def of(self, registry: str) -> tuple[CacheEndpoint, ...]:
        return tuple(self.by_registry.get(registry, ()))

    def all(self) -> tuple[CacheEndpoint, ...]:
        seen = {h.host: h for hubs in self.by_registry.values() for h in hubs}
        return tuple(seen[k] for k in sorted(seen))


NO_HUBS = Hubs({})


def hub_endpoints(registry: RegistryConfig, *, ca_pems: Mapping[str, str]) -> Hubs:
    """Each registry's hubs, with the scheme and CA the agent uses for them (its
    ``upstreamAuth`` entry: https with a CA file, http when ``insecure`` or on loopback)."""
    out: dict[str, tuple[CacheEndpoint, ...]] = {}
    left_out: list[str] = []
    for name, hosts in registry.endpoints.items():
        hubs = []
        for host in dict.fromkeys(hosts):
            a = registry.upstream_auth.get(host)
            if host == name:
                continue
            if a is not None and (a.username_file or a.password_file or a.token_file):
                left_out.append(host)
                continue
            cfg = CacheConfig(
                url=host, ca_file=a.ca_file if a else None, insecure=a.insecure if a else False
            )
            hubs.append(cache_endpoint(cfg, ca_pem=ca_pems.get(host)))
        out[name] = tuple(hubs)
    return Hubs(out, tuple(dict.fromkeys(left_out)))


def _hub_ca(hub: CacheEndpoint) -> str:
    return f"/etc/rancher/k3s/gitedge-hub-{hub.host.replace(':', '_').strip('[]')}.crt"


def upstream_registries(fleet: Fleet, *, cache: str, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """Every registry the nodes pull gitedge's images from by upstream name, sorted: the OS and
    k3s-upgrade images of every target, SUC's default kubectl image (Docker Hub), and ``extra``
    (e.g. the registry of a kubectl image SUC is configured with). The cache itself is left out:
    it is no mirror of itself."""
    found = {ImageRef.parse(SUC_KUBECTL_IMAGE).registry}
    for target in fleet.targets.values():
        spec = target.spec
        if spec.os is not None:
            found.add(ImageRef.parse(spec.os.image).registry)
        if spec.k3s is not None:
            found.add(ImageRef.parse(spec.k3s.upgrade_image).registry)
    for host in extra:
        found.add(_registry_name(host))
    found.discard(cache)
    return tuple(sorted(found))


def _registry_name(host: str) -> str:
    name = host.strip().rstrip("/")
    if name in ("index.docker.io", "registry-1.docker.io"):
        return DOCKER_HUB
    cache_host(name)  # raises ValueError on anything that is not host[:port]
    return name


def _q(text: str) -> str:
    """A double-quoted string, valid both as YAML and as a TOML basic string."""
    return json.dumps(text, ensure_ascii=True)


def _header(cache: CacheEndpoint, path: str, cluster: str, hubs: Hubs = NO_HUBS) -> list[str]:
    name = cache.dns_name
    lines = [
        f"# {path}",
        f"# Written by `gitedge node-config` for cluster {cluster}: the images of the registries",
        f"# below are pulled from the site cache {cache.url}.",
    ]
    if hubs.by_registry:
        lines.append("# Then from the regional hub(s) listed after it, then the registry itself.")
    for h in hubs.left_out:
        lines.append(f"# Hub {h} is left out: it needs credentials, which this file would carry.")
    if name is not None:
        lines += [
            f"# {name} must resolve in this HOST's DNS (/etc/hosts or the site's DNS server):",
            "# the node's container runtime resolves it, not the cluster's CoreDNS.",
        ]
    return lines


def _is_ip(name: str) -> bool:
    bare = name.strip("[]")
    return ":" in bare or (all(p.isdigit() for p in bare.split(".")) and bare.count(".") == 3)


def registries_yaml(
    cache: CacheEndpoint, upstreams: Sequence[str], *, cluster: str, hubs: Hubs = NO_HUBS
) -> str:
    """``/etc/rancher/k3s/registries.yaml``: every upstream and the cache itself mirrored to the
    cache endpoint, then each upstream's hubs (module docstring: why in that order); the cache's
    and hubs' TLS settings under ``configs``. K3s reads it only at start."""
    out = _header(cache, K3S_REGISTRIES, cluster, hubs)
    out += [
        "# K3s reads this file when it starts: restart k3s (servers) or k3s-agent (agents).",
        "mirrors:",
    ]
    for name in (cache.host, *upstreams):
        out += [f"  {_q(name)}:", "    endpoint:", f"      - {_q(cache.url)}"]
        out += [f"      - {_q(h.url)}" for h in hubs.of(name) if h.host != cache.host]
    configs: list[str] = []
    for ep, ca in ((cache, K3S_CA), *((h, _hub_ca(h)) for h in hubs.all())):
        tls: list[str] = []
        if ep.ca_pem is not None:
            tls.append(f"      ca_file: {_q(ca)}")
        if ep.skip_verify:
            tls.append("      insecure_skip_verify: true")
        if tls:
            configs += [f"  {_q(ep.host)}:", "    tls:", *tls]
    if configs:
        out += ["configs:", *configs]
    return "\n".join(out) + "\n"


def registries_conf(
    cache: CacheEndpoint, upstreams: Sequence[str], *, cluster: str, hubs: Hubs = NO_HUBS
) -> str:
    """A containers-registries.conf(5) drop-in: the cache as first mirror of every upstream, then
    its hubs; an endpoint ``insecure`` when it is plain http or its certificate is not verified."""
    insecure = cache.plain_http or cache.skip_verify
    out = _header(cache, CONTAINERS_DROPIN, cluster, hubs)
    out += [
        "# Read by containers/image (bootc, podman, skopeo) at each pull; no restart needed.",
        "",
        "[[registry]]",
        f"location = {_q(cache.host)}",
        f"insecure = {str(insecure).lower()}",
    ]
    for name in upstreams:
        out += [
            "",
            "[[registry]]",
            f"prefix = {_q(name)}",
            f"location = {_q(name)}",
        ]
        for ep in (cache, *(h for h in hubs.of(name) if h.host != cache.host)):
            out += [
                "",
                "[[registry.mirror]]",
                f"location = {_q(ep.host)}",
                f"insecure = {str(ep.plain_http or ep.skip_verify).lower()}",
            ]
    return "\n".join(out) + "\n"


def _block(text: str, indent: int) -> list[str]:
    pad = " " * indent
    return [f"{pad}{line}" if line else "" for line in text.rstrip("\n").split("\n")]


def kairos_cloud_config(files: Sequence[NodeFile], *, cache: CacheEndpoint, cluster: str) -> str:
    """A Kairos cloud-config that writes the K3s files (cloud-init ``write_files``, run in
    Kairos' boot stage before K3s starts)."""
    out = ["#cloud-config", *_header(cache, KAIROS_SNIPPET, cluster)]
    out += [
        "# Kairos reads the cloud-configs in /oem at every boot; reboot (or restart k3s) to apply.",
        "write_files:",
    ]
    for f in files:
        out += [
            f"  - path: {_q(f.path)}",
            f"    permissions: {_q(f.mode)}",
            '    owner: "root:root"',
            "    content: |",
            *_block(f.content, 6),
        ]
    return "\n".join(out) + "\n"


def node_files(
    cache: CacheEndpoint, upstreams: Sequence[str], *, cluster: str, hubs: Hubs = NO_HUBS
) -> list[NodeFile]:
    """Every file a node needs, in install order: K3s's, containers/image's, then the Kairos
    cloud-config that carries K3s's for Kairos nodes."""
    k3s = [
        NodeFile(
            K3S_REGISTRIES,
            registries_yaml(cache, upstreams, cluster=cluster, hubs=hubs),
            "0600",
            "k3s",
            "containerd's mirrors and the cache's TLS (K3s, every node)",
        )
    ]
    if cache.ca_pem is not None:
        k3s.append(NodeFile(K3S_CA, cache.ca_pem, "0644", "k3s", "the cache's CA (K3s)"))
    hub_cas = [h for h in hubs.all() if h.ca_pem is not None and h.host != cache.host]
    for h in hub_cas:
        k3s.append(NodeFile(_hub_ca(h), h.ca_pem or "", "0644", "k3s", f"hub {h.host}'s CA (K3s)"))
    files = list(k3s)
    files.append(
        NodeFile(
            CONTAINERS_DROPIN,
            registries_conf(cache, upstreams, cluster=cluster, hubs=hubs),
            "0644",
            "bootc",
            "containers/image mirrors (bootc hosts)",
        )
    )
    if cache.ca_pem is not None:
        files.append(
            NodeFile(
                f"/etc/containers/certs.d/{cache.host}/ca.crt",
                cache.ca_pem,
                "0644",
                "bootc",
                "the cache's CA (containers/image, bootc hosts)",
            )
        )
    for h in hub_cas:
        path = f"/etc/containers/certs.d/{h.host}/ca.crt"
        files.append(NodeFile(path, h.ca_pem or "", "0644", "bootc", f"hub {h.host}'s CA"))
    files.append(
        NodeFile(
            KAIROS_SNIPPET,
            kairos_cloud_config(k3s, cache=cache, cluster=cluster),
            "0600",
            "kairos",
            "cloud-config writing the K3s files (Kairos nodes, instead of the K3s files)",
        )
    )
    return files


def stale_registries(
    installed: Any, *, cache: CacheEndpoint, upstreams: Sequence[str], hubs: Hubs = NO_HUBS
) -> list[str]:
    """What an installed registries.yaml (parsed) lacks: each registry it does not send to the
    cache (a pull that will go upstream), each hub of ``registry.endpoints`` it does not list for
    its registry (``<registry> via <hub>``: a pull the cache misses goes to the origin), and
    ``configs.<cache>.tls`` when the cache needs its CA (or no verification) and the file does
    not say so. Empty when the node config is current."""
    mirrors = installed.get("mirrors") if isinstance(installed, Mapping) else None
    if not isinstance(mirrors, Mapping):
        mirrors = {}
    missing = []
    for name in (cache.host, *upstreams):
        entry = mirrors.get(name)
        endpoints = entry.get("endpoint") if isinstance(entry, Mapping) else None
        if not isinstance(endpoints, list) or not any(
            isinstance(e, str) and _same_endpoint(e, cache) for e in endpoints
        ):
            missing.append(name)
            continue
        for hub in hubs.of(name):
            if hub.host != cache.host and not any(
                isinstance(e, str) and _same_endpoint(e, hub) for e in endpoints
            ):
                missing.append(f"{name} via {hub.host}")
    if cache.ca_pem is not None or cache.skip_verify:
        configs = installed.get("configs") if isinstance(installed, Mapping) else None
        entry = configs.get(cache.host) if isinstance(configs, Mapping) else None
        tls = entry.get("tls") if isinstance(entry, Mapping) else None
        tls = tls if isinstance(tls, Mapping) else {}
        if (cache.ca_pem is not None and not tls.get("ca_file")) or (
            cache.skip_verify and tls.get("insecure_skip_verify") is not True
        ):
            missing.append(f"configs.{cache.host}.tls")
    return missing


def _same_endpoint(endpoint: str, cache: CacheEndpoint) -> bool:
    e = endpoint.strip().rstrip("/")
    if e.endswith("/v2"):
        e = e[: -len("/v2")]
    if "://" not in e:  # K3s defaults a bare endpoint to https (normalizeEndpointAddress)
        e = "https://" + e
    return e == cache.url
