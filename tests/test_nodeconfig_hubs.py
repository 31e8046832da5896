"""`gitedge node-config` with ``registry.endpoints``: each registry's hubs are node mirror
endpoints after the site cache and before the registry itself (the reasons are in
gitedge/core/delivery/nodeconfig.py's docstring). Checked against K3s's handling of registries.yaml
(tests/k3sregistries.py, citing k3s-io/k3s) and with a real client (skopeo) pulling through the
drop-in from real docker-registry instances on 127.0.0.1."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

from gitedge.core.config import CacheConfig, RegistryAuth, RegistryConfig
from gitedge.core.delivery import nodeconfig as nc
from tests import k3sregistries as k3s
from tests.gitserver import free_port
from tests.registryserver import docker_registry, make_layout, skopeo_push
from tests.test_nodeconfig import CACHE, fleet, gitedge, pulled_digest, skopeo_copy, write_site

HUB = "hub.eu-west.example:5000"
SECURE_HUB = "hub-tls.eu-west.example"
PRIVATE_HUB = "hub-private.example"
OS = "upstream.example/edge/os:1.0"


def hubs(*, ca: bool = False) -> nc.Hubs:
    reg = RegistryConfig(
        endpoints={"upstream.example": (HUB, SECURE_HUB, PRIVATE_HUB, "upstream.example")},
        upstream_auth={
            HUB: RegistryAuth(insecure=True),
            SECURE_HUB: RegistryAuth(ca_file="/x/hub-ca.pem" if ca else None),
            PRIVATE_HUB: RegistryAuth(password_file="/x/pw", username_file="/x/user"),
        },
    )
    return nc.hub_endpoints(reg, ca_pems={SECURE_HUB: "HUBPEM\n"} if ca else {})


def render(h: nc.Hubs) -> str:
    cache = nc.cache_endpoint(CacheConfig(url=f"http://{CACHE}"), ca_pem=None)
    upstreams = nc.upstream_registries(fleet(), cache=cache.host)  # type: ignore[arg-type]
    return nc.registries_yaml(cache, upstreams, cluster="store-1", hubs=h)


def test_k3s_tries_the_cache_then_the_hubs_then_the_registry() -> None:
    text = render(hubs())
    attempts = k3s.resolve(k3s.k3s_hosts_dir(text), OS)
    assert [a.url for a in attempts] == [
        f"http://{CACHE}/v2/edge/os/manifests/1.0",  # the site's cache first
        f"http://{HUB}/v2/edge/os/manifests/1.0",  # insecure: plain http, as the agent reads it
        f"https://{SECURE_HUB}/v2/edge/os/manifests/1.0",
        "https://upstream.example/v2/edge/os/manifests/1.0",  # the default endpoint, last
    ]
    # a hub that needs credentials is not on the nodes, and the file says why
    assert PRIVATE_HUB not in yaml.safe_load(text)["mirrors"]["upstream.example"]["endpoint"]
    assert f"# Hub {PRIVATE_HUB} is left out: it needs credentials" in text
    # registries without hubs are unchanged: the cache, then the registry
    docker = k3s.resolve(k3s.k3s_hosts_dir(text), "docker.io/rancher/kubectl:v1.30.3")
    assert [a.url.split("/v2/")[0] for a in docker] == [
        f"http://{CACHE}", "https://registry-1.docker.io",
    ]  # fmt: skip


def test_a_hub_with_its_own_ca_is_verified_with_it() -> None:
    h = hubs(ca=True)
    text = render(h)
    attempts = k3s.resolve(k3s.k3s_hosts_dir(text), OS)
    secure = next(a for a in attempts if SECURE_HUB in a.url)
    ca_path = f"/etc/rancher/k3s/gitedge-hub-{SECURE_HUB}.crt"
    assert secure.ca == (ca_path,)
    assert all(a.ca == () for a in attempts if a is not secure)
    cache = nc.cache_endpoint(CacheConfig(url=f"http://{CACHE}"), ca_pem=None)
    files = {f.path: f for f in nc.node_files(cache, ("upstream.example",), cluster="c", hubs=h)}
    assert files[ca_path].content == "HUBPEM\n"
    assert files[f"/etc/containers/certs.d/{SECURE_HUB}/ca.crt"].content == "HUBPEM\n"
    kairos = yaml.safe_load(files[nc.KAIROS_SNIPPET].content)
    assert ca_path in {w["path"] for w in kairos["write_files"]}
    conf = tomllib.loads(files[nc.CONTAINERS_DROPIN].content)
    (up,) = [r for r in conf["registry"] if r.get("prefix") == "upstream.example"]
    assert up["mirror"] == [
        {"location": CACHE, "insecure": True},
        {"location": HUB, "insecure": True},
        {"location": SECURE_HUB, "insecure": False},
    ]


def test_skopeo_pulls_from_the_hub_when_the_cache_lacks_the_image(tmp_path: Path) -> None:
    # The origin is a closed port: the image can only come from the cache or the hub.
    upstream = f"localhost:{free_port()}"
    img = make_layout(tmp_path / "img", single=True, layer_sizes=(20_000,))
    with docker_registry(tmp_path / "cache") as cache, docker_registry(tmp_path / "hub") as hub:
        skopeo_push(img, f"{hub.host}/edge/os:1.0")  # the cache does not hold it (yet)
        cfg, repo = write_site(
            tmp_path, cache_url=f"http://{cache.host}", os_image=f"{upstream}/edge/os:1.0"
        )
        cfg.write_text(
            cfg.read_text().replace(
                "registry:\n", f"registry:\n  endpoints: {{'{upstream}': ['{hub.host}']}}\n"
            )
        )
        out = tmp_path / "node"
        r = gitedge("node-config", "--config", str(cfg), "--repo", str(repo), "--out", str(out))
        assert r.returncode == 0, r.stderr
        conf = out / nc.CONTAINERS_DROPIN.lstrip("/")
        got = skopeo_copy(conf, f"{upstream}/edge/os:1.0", tmp_path / "pulled")
        assert got.returncode == 0, got.stderr
        assert pulled_digest(tmp_path / "pulled") == img.digest
        # the K3s file lists the same order
        k3s_file = (out / nc.K3S_REGISTRIES.lstrip("/")).read_text()
        endpoints = yaml.safe_load(k3s_file)["mirrors"][upstream]["endpoint"]
        assert endpoints == [f"http://{cache.host}", f"http://{hub.host}"]


def test_check_calls_a_node_file_without_the_hubs_stale() -> None:
    cache = nc.cache_endpoint(CacheConfig(url=f"http://{CACHE}"), ca_pem=None)
    ups = ("docker.io", "upstream.example")
    old = yaml.safe_load(nc.registries_yaml(cache, ups, cluster="c"))
    assert nc.stale_registries(old, cache=cache, upstreams=ups, hubs=hubs()) == [
        f"upstream.example via {HUB}", f"upstream.example via {SECURE_HUB}",
    ]  # fmt: skip
    current = yaml.safe_load(nc.registries_yaml(cache, ups, cluster="c", hubs=hubs()))
    assert nc.stale_registries(current, cache=cache, upstreams=ups, hubs=hubs()) == []
