"""A stand-in for K3s's handling of ``/etc/rancher/k3s/registries.yaml``, and for containerd's
resolution of an image through the ``hosts.toml`` files K3s writes from it.

Each rule follows the real source, cited by file and function:

- rancher/wharfie ``pkg/registries/types.go`` (``Registry``, ``Mirror``, ``RegistryConfig``,
  ``TLSConfig``: the YAML keys) and ``pkg/registries/registries.go`` ``GetPrivateRegistries``
  (``yaml.Unmarshal`` of gopkg.in/yaml.v2: unknown keys ignored, a wrong type is an error);
  read at wharfie bb7080c1010b054dcc0b0845968d4139173f1017;
- k3s-io/k3s ``pkg/agent/containerd/config.go`` ``getHostConfigs``, ``normalizeEndpointAddress``,
  ``defaultHostConfig``, ``configForHost``, ``endpointURLEqual``, ``endpointHasConfig`` (read at
  k3s 06ea261ce3f10517abfdc3532f5a1c56db06adc2), which build one ``HostConfig`` per registry;
  checked against the cases of k3s's own ``Test_UnitGetHostConfigs`` (config_test.go) in
  tests/test_nodeconfig.py;
- k3s-io/k3s ``pkg/agent/templates/templates.go`` ``HostsTomlTemplate`` (read at 053afed): one
  ``[host."<endpoint>"]`` table per endpoint with ``capabilities = ["pull", "resolve"]``, ``ca``,
  ``client``, ``skip_verify``, ``override_path`` and a ``rewrite`` table. The ``server`` line
  comes from ``HostConfig.Default`` (config.go ``defaultHostConfig``); the template text of the
  version with ``Default`` was not available to read, so its TLS keys for the default endpoint
  are written at top level, as containerd's hosts.toml format places a server's settings;
- containerd ``docs/hosts.md`` / ``remotes/docker/config/hosts.go`` (``ConfigureHosts``,
  ``parseHostsFile``): the ``[host]`` entries are tried in file order, then ``server``; an
  endpoint path gets ``/v2`` unless ``override_path``; a request is
  ``<endpoint path>/<repository>/manifests/<reference>``.
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

PROGRAM = "k3s"
# spegel.DefaultRegistry InternalAddress:RegistryPort (k3s pkg/spegel): the embedded mirror, not
# enabled here; normalizeEndpointAddress only compares against it.
MIRROR_ADDR = "127.0.0.1:6443"


class RegistriesError(ValueError):
    """What ``yaml.Unmarshal`` (yaml.v2) would refuse: K3s fails to start on it."""


@dataclass
class TLS:
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    insecure_skip_verify: bool = False


@dataclass
class RegistryConfig:
    tls: TLS | None = None
    auth: dict[str, str] | None = None


@dataclass
class Mirror:
    endpoints: list[str] = field(default_factory=list)
    rewrites: dict[str, str] = field(default_factory=dict)


@dataclass
class Registry:
    mirrors: dict[str, Mirror] = field(default_factory=dict)
    configs: dict[str, RegistryConfig] = field(default_factory=dict)


def _typed(value: Any, kind: type, where: str) -> Any:
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise RegistriesError(f"{where}: cannot unmarshal {type(value).__name__} into {kind}")
    return value


def load_registries(text: str) -> Registry:
    """wharfie ``GetPrivateRegistries``: yaml.v2 into ``Registry`` (types.go's yaml tags)."""
    doc = _typed(yaml.safe_load(text), dict, "registries.yaml")
    out = Registry()
    for host, m in _typed(doc.get("mirrors"), dict, "mirrors").items():
        m = _typed(m, dict, f"mirrors.{host}")
        endpoints = _typed(m.get("endpoint"), list, f"mirrors.{host}.endpoint")  # yaml:"endpoint"
        rewrites = _typed(m.get("rewrite"), dict, f"mirrors.{host}.rewrite")  # yaml:"rewrite"
        for e in endpoints:
            _typed(e, str, f"mirrors.{host}.endpoint[]")
        out.mirrors[str(host)] = Mirror(endpoints=list(endpoints), rewrites=dict(rewrites))
    for host, c in _typed(doc.get("configs"), dict, "configs").items():
        c = _typed(c, dict, f"configs.{host}")
        tls = None
        if c.get("tls") is not None:  # TLS *TLSConfig `yaml:"tls"`
            t = _typed(c["tls"], dict, f"configs.{host}.tls")
            tls = TLS(
                ca_file=_typed(t.get("ca_file"), str, "ca_file"),
                cert_file=_typed(t.get("cert_file"), str, "cert_file"),
                key_file=_typed(t.get("key_file"), str, "key_file"),
                insecure_skip_verify=_typed(t.get("insecure_skip_verify"), bool, "insecure"),
            )
        auth = _typed(c.get("auth"), dict, f"configs.{host}.auth") if c.get("auth") else None
        out.configs[str(host)] = RegistryConfig(tls=tls, auth=auth)
    return out


@dataclass
class Endpoint:
    url: str | None  # scheme://host/path, or None for the "*" default
    config: RegistryConfig = field(default_factory=RegistryConfig)
    override_path: bool = False
    rewrites: dict[str, str] = field(default_factory=dict)


@dataclass
class HostConfig:
    default: Endpoint | None
    endpoints: list[Endpoint] = field(default_factory=list)


def _is_localhost(host: str) -> bool:
    """containerd remotes/docker ``IsLocalhost``: "localhost" or a loopback IP, port ignored."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _default_host(host: str) -> str:
    """containerd remotes/docker ``DefaultHost``: docker.io is registry-1.docker.io."""
    return "registry-1.docker.io" if host == "docker.io" else host


def normalize_endpoint(endpoint: str, mirror_addr: str = MIRROR_ADDR) -> tuple[str, str, bool]:
    """config.go ``normalizeEndpointAddress``: (registry name, URL, override path)."""
    if "://" not in endpoint:
        endpoint = "//" + endpoint
    u = urlsplit(endpoint)
    host, port = u.netloc, u.port
    scheme = u.scheme
    if not scheme:  # localhost on odd ports defaults to http, unless it's the embedded mirror
        odd = port is not None and port != 443
        scheme = "http" if _is_localhost(host) and odd and host != mirror_addr else "https"
    registry = host
    host = _default_host(registry)
    if host == "registry-1.docker.io":  # the reverse of the DefaultHost normalization
        registry = "docker.io"
    if u.path in ("", "/", "/v2"):
        return registry, f"{scheme}://{host}/v2", False
    return registry, f"{scheme}://{host}{u.path}", True


def _config_for_host(configs: dict[str, RegistryConfig], host: str) -> RegistryConfig:
    """config.go ``configForHost``: the config under the DefaultHost name, else the name."""
    h = _default_host(host)
    if h != host and h in configs:
        return configs[h]
    return configs.get(host, RegistryConfig())


def _default_host_config(host: str, config: RegistryConfig) -> HostConfig:
    """config.go ``defaultHostConfig``."""
    _, url, _ = normalize_endpoint(host)
    return HostConfig(default=Endpoint(url=None if host == "*" else url, config=config))


def _has_config(ep: Endpoint | None) -> bool:
    """config.go ``endpointHasConfig``."""
    if ep is None:
        return False
    c = ep.config
    return ep.override_path or c.auth is not None or c.tls is not None or bool(ep.rewrites)


def host_configs(registry: Registry, *, no_default_endpoint: bool = False) -> dict[str, HostConfig]:
    """config.go ``getHostConfigs``: one HostConfig per registry named in configs or mirrors."""
    hosts: dict[str, HostConfig] = {}
    for host, config in registry.configs.items():  # create config for default endpoints
        hosts["_default" if host == "*" else host] = _default_host_config(host, config)
    for host, mirror in registry.mirrors.items():  # create endpoints for mirrors
        hc = hosts.get(host)
        if hc is None:
            hc = _default_host_config(host, _config_for_host(registry.configs, host))
            if no_default_endpoint:
                hc.default = None
            elif host == "*":
                hc.default = Endpoint(url="")
        seen: set[str] = set()
        for i, endpoint in enumerate(mirror.endpoints):
            name, url, override = normalize_endpoint(endpoint)
            if url in seen:  # "Skipping duplicate endpoint URL"
                continue
            seen.add(url)
            ep = Endpoint(
                url=url,
                config=_config_for_host(registry.configs, name),
                override_path=override,
                rewrites=mirror.rewrites if urlsplit(url).netloc != MIRROR_ADDR else {},
            )
            default_url = hc.default.url if hc.default else ""
            if i + 1 == len(mirror.endpoints) and (default_url or "") == url:
                hc.default = ep  # the last endpoint is the default endpoint: move it there
            else:
                hc.endpoints.append(ep)
        hosts["_default" if host == "*" else host] = hc
    # Clean up hosts whose config leaves only defaults
    return {h: c for h, c in hosts.items() if c.endpoints or _has_config(c.default)}


def _tls_lines(config: RegistryConfig, indent: str) -> list[str]:
    t = config.tls
    if t is None:
        return []
    out = []
    if t.ca_file:
        out.append(f'{indent}ca = ["{t.ca_file}"]')
    if t.cert_file or t.key_file:
        out.append(f'{indent}client = [["{t.cert_file}", "{t.key_file}"]]')
    if t.insecure_skip_verify:
        out.append(f"{indent}skip_verify = true")
    return out


def render_hosts_toml(hc: HostConfig) -> str:
    """templates.go ``HostsTomlTemplate`` for one registry."""
    lines = [f"# File generated by {PROGRAM}. DO NOT EDIT."]
    if hc.default is not None and hc.default.url:
        lines.append(f'server = "{hc.default.url}"')
        lines.append('capabilities = ["pull", "resolve"]')
        if hc.default.override_path:
            lines.append("override_path = true")
        lines += _tls_lines(hc.default.config, "")
    lines.append("")
    for e in hc.endpoints:
        lines.append(f'[host."{e.url}"]')
        lines.append('  capabilities = ["pull", "resolve"]')
        if e.override_path:
            lines.append("  override_path = true")
        lines += _tls_lines(e.config, "  ")
        if e.rewrites:
            lines.append(f'  [host."{e.url}".rewrite]')
            lines += [f'    "{p}" = "{r}"' for p, r in e.rewrites.items()]
        lines.append("")
    return "\n".join(lines) + "\n"


def k3s_hosts_dir(registries_yaml: str) -> dict[str, str]:
    """What K3s writes under ``agent/etc/containerd/certs.d``: directory name -> hosts.toml
    (config.go ``writeContainerdHosts``; ``hostDirectory`` is the host itself on Linux)."""
    return {
        h: render_hosts_toml(c) for h, c in host_configs(load_registries(registries_yaml)).items()
    }


@dataclass(frozen=True)
class Attempt:
    """One request containerd would make for a manifest: URL, CA files, skip_verify."""

    url: str
    ca: tuple[str, ...] = ()
    skip_verify: bool = False


def resolve(hosts_dir: dict[str, str], image: str) -> list[Attempt]:
    """containerd's hosts resolution of ``registry/repository:tag``: the hosts.toml of the
    registry (else ``_default``), its ``[host]`` entries in file order, then ``server`` (absent
    file or server: ``https://<DefaultHost>/v2``)."""
    registry, _, rest = image.partition("/")
    repo, _, tag = rest.rpartition(":")
    text = hosts_dir.get(registry, hosts_dir.get("_default"))
    doc = tomllib.loads(text) if text else {}
    tried: list[tuple[str, dict[str, Any]]] = list(doc.get("host", {}).items())
    server = doc.get("server") or f"https://{_default_host(registry)}/v2"
    tried.append((server, doc))
    out = []
    for url, settings in tried:
        if "://" not in url:
            url = "https://" + url
        u = urlsplit(url)
        path = u.path.rstrip("/")
        if not settings.get("override_path") and not path.endswith("/v2"):
            path += "/v2"
        ca = settings.get("ca", ())
        out.append(
            Attempt(
                url=f"{u.scheme}://{u.netloc}{path}/{repo}/manifests/{tag}",
                ca=(ca,) if isinstance(ca, str) else tuple(ca),
                skip_verify=bool(settings.get("skip_verify", False)),
            )
        )
    return out
