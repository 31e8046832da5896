"""`gitedge node-config`: what each node needs to pull from the site's cache.

The registries.yaml is checked against K3s's own handling of it (tests/k3sregistries.py, a
stand-in citing k3s-io/k3s and rancher/wharfie), and the containers registries.conf drop-in is
used by a real client (skopeo) against a real docker-registry on 127.0.0.1, plain http and TLS.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from gitedge.core.config import CacheConfig
from gitedge.core.delivery import nodeconfig as nc
from gitedge.core.fleet.model import load_fleet
from tests import k3sregistries as k3s
from tests.gitserver import free_port, make_tls_files
from tests.registryserver import SKOPEO_BIN, docker_registry, make_layout, skopeo_push

HEAD = "apiVersion: gitedge.io/v1alpha1\n"
CACHE = "cache.site.internal:5000"
K3S_UPGRADE = "docker.io/rancher/k3s-upgrade:v1.30.6-k3s1"
KUBECTL = "docker.io/rancher/kubectl:v1.30.3"


def fleet_files(os_image: str = "upstream.example/edge/os:1.0") -> dict[str, str]:
    return {
        "releases.yaml": HEAD + "kind: K3sReleases\nmetadata: {name: catalog}\nspec:\n"
        "  versions: [v1.29.10+k3s1, v1.30.6+k3s1]\n",
        "target.yaml": HEAD + "kind: UpgradeTarget\nmetadata: {name: stores}\nspec:\n"
        "  clusterSelector: {}\n  k3s: {version: v1.30.6+k3s1}\n"
        f"  os: {{image: '{os_image}', upgrader: kairos}}\n",
    }


def fleet(os_image: str = "upstream.example/edge/os:1.0") -> object:
    return load_fleet({k: v.encode() for k, v in fleet_files(os_image).items()})


def render(cache: CacheConfig, *, ca_pem: str | None = None) -> tuple[nc.CacheEndpoint, str]:
    endpoint = nc.cache_endpoint(cache, ca_pem=ca_pem)
    upstreams = nc.upstream_registries(fleet(), cache=endpoint.host)  # type: ignore[arg-type]
    return endpoint, nc.registries_yaml(endpoint, upstreams, cluster="store-1")


# ---------------------------------------------------------------------------- which registries


def test_upstreams_are_the_fleets_image_registries_and_sucs_kubectl() -> None:
    got = nc.upstream_registries(fleet(), cache=CACHE)  # type: ignore[arg-type]
    # upstream.example: the OS image; docker.io: rancher/k3s-upgrade and SUC's rancher/kubectl
    assert got == ("docker.io", "upstream.example")
    more = nc.upstream_registries(
        fleet(f"{CACHE}/edge/os:1.0"),  # type: ignore[arg-type]
        cache=CACHE,
        extra=["quay.io", "index.docker.io"],
    )
    assert more == ("docker.io", "quay.io")  # the cache is no mirror of itself


# ---------------------------------------------------------------------------- K3s stand-in


def test_plain_http_cache_k3s_resolves_every_image_to_the_cache() -> None:
    _, text = render(CacheConfig(url=f"http://{CACHE}"))
    hosts = k3s.k3s_hosts_dir(text)
    for image, repo in (
        (K3S_UPGRADE, "rancher/k3s-upgrade/manifests/v1.30.6-k3s1"),
        (KUBECTL, "rancher/kubectl/manifests/v1.30.3"),
        ("upstream.example/edge/os:1.0", "edge/os/manifests/1.0"),
        (f"{CACHE}/rancher/k3s-upgrade:v1.30.6-k3s1", "rancher/k3s-upgrade/manifests/v1.30.6-k3s1"),
    ):
        first = k3s.resolve(hosts, image)[0]
        assert first == k3s.Attempt(url=f"http://{CACHE}/v2/{repo}"), image
    # the default endpoint is still last (K3s's "Default Endpoint Fallback")
    assert k3s.resolve(hosts, K3S_UPGRADE)[-1].url.startswith("https://registry-1.docker.io/v2/")


def test_tls_cache_with_its_own_ca_k3s_verifies_the_cache_with_that_ca() -> None:
    endpoint, text = render(
        CacheConfig(url=f"https://{CACHE}", ca_file="/etc/gitedge/cache-ca.pem"),
        ca_pem="-----BEGIN CERTIFICATE-----\n...\n",
    )
    assert endpoint.url == f"https://{CACHE}"
    hosts = k3s.k3s_hosts_dir(text)
    for image in (K3S_UPGRADE, KUBECTL, "upstream.example/edge/os:1.0"):
        first = k3s.resolve(hosts, image)[0]
        assert first.url.startswith(f"https://{CACHE}/v2/"), image
        assert first.ca == (nc.K3S_CA,) and not first.skip_verify
    own = k3s.resolve(hosts, f"{CACHE}/edge/os:1.0")[0]
    assert own == k3s.Attempt(url=f"https://{CACHE}/v2/edge/os/manifests/1.0", ca=(nc.K3S_CA,))


def test_https_cache_marked_insecure_skips_verification_only() -> None:
    endpoint, text = render(CacheConfig(url=f"https://{CACHE}", insecure=True))
    assert not endpoint.plain_http
    first = k3s.resolve(k3s.k3s_hosts_dir(text), K3S_UPGRADE)[0]
    assert first.url.startswith(f"https://{CACHE}/v2/") and first.skip_verify


def test_scheme_follows_the_agents_rule() -> None:
    # adapters/registry/client.py: the URL's scheme; else https with a CA; else http when insecure
    assert nc.cache_endpoint(CacheConfig(url=CACHE, insecure=True), ca_pem=None).plain_http
    assert not nc.cache_endpoint(CacheConfig(url=CACHE), ca_pem=None).plain_http
    assert nc.cache_endpoint(CacheConfig(url="127.0.0.1:5000"), ca_pem=None).plain_http


def test_the_stand_in_tells_a_wrong_registries_yaml_from_a_right_one() -> None:
    # a bare endpoint is https (normalizeEndpointAddress): a plain-http cache is then missed
    bare = f'mirrors:\n  docker.io:\n    endpoint: ["{CACHE}"]\n'
    assert k3s.resolve(k3s.k3s_hosts_dir(bare), K3S_UPGRADE)[0].url.startswith("https://")
    # yaml.v2 ignores an unknown key: "endpoints" configures nothing, pulls go upstream
    typo = f'mirrors:\n  docker.io:\n    endpoints: ["http://{CACHE}"]\n'
    assert k3s.resolve(k3s.k3s_hosts_dir(typo), K3S_UPGRADE)[0].url.startswith(
        "https://registry-1.docker.io/"
    )
    with pytest.raises(k3s.RegistriesError):  # a string where yaml.v2 wants []string
        k3s.load_registries(f"mirrors:\n  docker.io:\n    endpoint: http://{CACHE}\n")


# Cases of k3s's own Test_UnitGetHostConfigs (pkg/agent/containerd/config_test.go at 06ea261,
# those without the embedded registry): registries.yaml -> {host: (default URL, [(endpoint URL,
# override_path, has auth)])}. The stand-in must give what K3s's getHostConfigs gives.
AUTH = "configs:\n  {}:\n    auth: {{username: user, password: pass}}\n"
REG = "registry.example.com"
K3S_CASES = [
    ("no registries", "", False, {}),
    ("default endpoint", "mirrors:\n  docker.io:\n", False, {}),
    ("default endpoint listed", "mirrors:\n  docker.io:\n    endpoint: [docker.io]\n", False, {}),
    (
        "default endpoint and creds",
        "mirrors:\n  docker.io:\n" + AUTH.format("docker.io"),
        False,
        {"docker.io": ("https://registry-1.docker.io/v2", [])},
    ),
    ("only creds", AUTH.format(REG), False, {REG: (f"https://{REG}/v2", [])}),
    *(
        (
            f"mirror endpoint {endpoint}",
            f"mirrors:\n  docker.io:\n    endpoint: ['{endpoint}']\n",
            False,
            {"docker.io": ("https://registry-1.docker.io/v2", [(url, override, False)])},
        )
        for endpoint, url, override in (
            (f"https://{REG}/prefix/v2", f"https://{REG}/prefix/v2", True),
            (f"{REG}/prefix/v2", f"https://{REG}/prefix/v2", True),
            (f"{REG}/v2", f"https://{REG}/v2", False),
            (f"https://{REG}", f"https://{REG}/v2", False),
            (REG, f"https://{REG}/v2", False),
            (f"{REG}:443", f"https://{REG}:443/v2", False),
            ("1.2.3.4", "https://1.2.3.4/v2", False),
            ("localhost:5000", "http://localhost:5000/v2", False),
            ("https://localhost:5000", "https://localhost:5000/v2", False),
            ("127.0.0.1:5000", "http://127.0.0.1:5000/v2", False),
        )
    ),
    (
        "duplicates in different formats",
        f"mirrors:\n  docker.io:\n    endpoint: [{REG}, 'https://{REG}', 'https://{REG}/v2']\n",
        False,
        {"docker.io": ("https://registry-1.docker.io/v2", [(f"https://{REG}/v2", False, False)])},
    ),
    (
        "duplicates in different positions",
        "mirrors:\n  docker.io:\n    endpoint: ['https://registry.example.com',"
        " 'https://registry.example.org', 'https://registry.example.com']\n",
        False,
        {
            "docker.io": (
                "https://registry-1.docker.io/v2",
                [
                    (f"https://{REG}/v2", False, False),
                    ("https://registry.example.org/v2", False, False),
                ],
            )
        },
    ),
    *(
        (
            f"mirror endpoint and mirror creds, no default endpoint: {no_default}",
            f"mirrors:\n  docker.io:\n    endpoint: ['https://{REG}/v2']\n" + AUTH.format(REG),
            no_default,
            {
                "docker.io": (
                    None if no_default else "https://registry-1.docker.io/v2",
                    [(f"https://{REG}/v2", False, True)],
                ),
                REG: (f"https://{REG}/v2", []),
            },
        )
        for no_default in (False, True)
    ),
    (
        "wildcard mirror endpoint",
        f"mirrors:\n  '*':\n    endpoint: ['https://{REG}/v2']\n",
        False,
        {"_default": ("", [(f"https://{REG}/v2", False, False)])},
    ),
    ("localhost registry on an odd port", "mirrors:\n  'localhost:5000':\n", False, {}),
]


@pytest.mark.parametrize(("name", "text", "no_default", "want"), K3S_CASES)
def test_the_stand_in_gives_what_k3s_own_tests_expect(
    name: str, text: str, no_default: bool, want: dict[str, object]
) -> None:
    got = k3s.host_configs(k3s.load_registries(text), no_default_endpoint=no_default)
    summary = {
        host: (
            hc.default.url if hc.default else None,
            [(e.url, e.override_path, e.config.auth is not None) for e in hc.endpoints],
        )
        for host, hc in got.items()
    }
    assert summary == want, name


# ---------------------------------------------------------------------------- other files


def test_registries_conf_mirrors_every_upstream_and_kairos_carries_the_k3s_files() -> None:
    endpoint = nc.cache_endpoint(CacheConfig(url=f"https://{CACHE}"), ca_pem="PEM\n")
    files = nc.node_files(endpoint, ("docker.io", "upstream.example"), cluster="store-1")
    by_path = {f.path: f for f in files}
    conf = tomllib.loads(by_path[nc.CONTAINERS_DROPIN].content)
    regs = {r.get("prefix", r["location"]): r for r in conf["registry"]}
    assert regs[CACHE] == {"location": CACHE, "insecure": False}
    for name in ("docker.io", "upstream.example"):
        assert regs[name]["mirror"] == [{"location": CACHE, "insecure": False}]
    assert by_path[f"/etc/containers/certs.d/{CACHE}/ca.crt"].content == "PEM\n"
    kairos = yaml.safe_load(by_path[nc.KAIROS_SNIPPET].content)
    assert by_path[nc.KAIROS_SNIPPET].content.startswith("#cloud-config\n")
    written = {w["path"]: w["content"] for w in kairos["write_files"]}
    assert written == {
        nc.K3S_REGISTRIES: by_path[nc.K3S_REGISTRIES].content,
        nc.K3S_CA: "PEM\n",
    }
    assert "must resolve in this HOST's DNS" in by_path[nc.K3S_REGISTRIES].content


def test_stale_when_an_upstream_registry_appears_that_the_node_lacks() -> None:
    endpoint = nc.cache_endpoint(CacheConfig(url=f"http://{CACHE}"), ca_pem=None)
    old = yaml.safe_load(nc.registries_yaml(endpoint, ("docker.io",), cluster="c"))
    now = ("docker.io", "upstream.example")
    assert nc.stale_registries(old, cache=endpoint, upstreams=now) == ["upstream.example"]
    current = yaml.safe_load(nc.registries_yaml(endpoint, now, cluster="c"))
    assert nc.stale_registries(current, cache=endpoint, upstreams=now) == []
    moved = nc.cache_endpoint(CacheConfig(url="http://cache2:5000"), ca_pem=None)
    assert nc.stale_registries(current, cache=moved, upstreams=now) == ["cache2:5000", *now]
    tls = nc.cache_endpoint(CacheConfig(url=f"https://{CACHE}", ca_file="ca.pem"), ca_pem="PEM")
    with_ca = yaml.safe_load(nc.registries_yaml(tls, now, cluster="c"))
    assert nc.stale_registries(with_ca, cache=tls, upstreams=now) == []
    del with_ca["configs"]  # the CA is not named: containerd cannot verify the cache
    assert nc.stale_registries(with_ca, cache=tls, upstreams=now) == [f"configs.{CACHE}.tls"]


# ---------------------------------------------------------------------------- the command


def write_site(
    tmp: Path, *, cache_url: str | None, ca_file: Path | None = None, os_image: str = ""
) -> tuple[Path, Path]:
    repo = tmp / "fleet"
    repo.mkdir()
    files = fleet_files(os_image) if os_image else fleet_files()
    for name, text in files.items():
        (repo / name).write_text(text)
    cache = ""
    if cache_url:
        cache = f"registry:\n  cache:\n    url: {cache_url}\n"
        if ca_file:
            cache += f"    caFile: {ca_file}\n"
    cfg = tmp / "agent.yaml"
    cfg.write_text(
        HEAD + "kind: AgentConfig\ncluster: {name: store-1}\n"
        "source: {url: 'ssh://git@git.example/fleet.git'}\n"
        f"trust: {{bootstrap: {tmp / 'trust.yaml'}}}\n{cache}state: {{dir: {tmp / 'state'}}}\n"
    )
    return cfg, repo


def gitedge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gitedge", *args],
        capture_output=True, text=True, timeout=60, env=os.environ.copy(),
    )  # fmt: skip


def test_command_prints_writes_and_checks(tmp_path: Path) -> None:
    cfg, repo = write_site(tmp_path, cache_url=f"http://{CACHE}")
    text = gitedge("node-config", "--config", str(cfg), "--repo", str(repo))
    assert text.returncode == 0, text.stderr
    assert (
        f"==> {nc.K3S_REGISTRIES}" in text.stdout and "docker.io, upstream.example" in text.stdout
    )
    doc = json.loads(
        gitedge("node-config", "--config", str(cfg), "--repo", str(repo), "-o", "json").stdout
    )
    assert doc["upstreams"] == ["docker.io", "upstream.example"]
    out = tmp_path / "out"
    assert (
        gitedge(
            "node-config", "--config", str(cfg), "--repo", str(repo), "--out", str(out)
        ).returncode
        == 0
    )
    written = out / nc.K3S_REGISTRIES.lstrip("/")
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert written.read_text() == next(
        f["content"] for f in doc["files"] if f["path"] == nc.K3S_REGISTRIES
    )
    check = gitedge(
        "node-config", "--config", str(cfg), "--repo", str(repo), "--check", str(written)
    )
    assert check.returncode == 0, check.stdout
    # the fleet gains an OS image from a registry the installed file lacks: stale
    (repo / "target.yaml").write_text(fleet_files("quay.io/edge/os:2.0")["target.yaml"])
    stale = gitedge(
        "node-config", "--config", str(cfg), "--repo", str(repo), "--check", str(written)
    )
    assert stale.returncode == 1 and "quay.io" in stale.stdout and "site-setup.md" in stale.stdout


def test_command_mirrors_the_kubectl_registry_suc_uses_and_prints_node_mirrors(
    tmp_path: Path,
) -> None:
    """Issue 15: the registry of SUC's kubectl (``apply.kubectlImage``) is mirrored too, and
    the output says what to record in ``registry.nodeMirrors``."""
    cfg, repo = write_site(tmp_path, cache_url=f"http://{CACHE}")
    cfg.write_text(
        cfg.read_text() + "apply: {kubectlImage: 'kube.example:5000/k/kubectl:v1.31.0'}\n"
    )
    text = gitedge("node-config", "--config", str(cfg), "--repo", str(repo))
    assert text.returncode == 0, text.stderr
    assert "#   registry: {nodeMirrors: [docker.io, kube.example:5000, upstream.example]}" in (
        text.stdout
    )
    hosts = k3s.k3s_hosts_dir(
        next(
            f["content"]
            for f in json.loads(
                gitedge(
                    "node-config", "--config", str(cfg), "--repo", str(repo), "-o", "json"
                ).stdout
            )["files"]
            if f["path"] == nc.K3S_REGISTRIES
        )
    )
    assert k3s.resolve(hosts, "kube.example:5000/k/kubectl:v1.31.0")[0].url.startswith(
        f"http://{CACHE}/v2/k/kubectl/"
    )


def test_command_without_a_cache_or_a_fleet_says_what_to_give(tmp_path: Path) -> None:
    cfg, repo = write_site(tmp_path, cache_url=None)
    r = gitedge("node-config", "--config", str(cfg), "--repo", str(repo))
    assert (
        r.returncode == 2
        and "registry.cache is not set" in r.stderr
        and "Traceback" not in r.stderr
    )
    (tmp_path / "b").mkdir()
    cfg2, _ = write_site(tmp_path / "b", cache_url=f"http://{CACHE}")
    r = gitedge("node-config", "--config", str(cfg2))  # no --repo, and the agent fetched nothing
    assert r.returncode == 2 and "--repo" in r.stderr and "Traceback" not in r.stderr


def test_command_reads_the_agents_last_verified_commit_by_default(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from gitedge.adapters.state import LastVerified, State
    from tests.gitserver import git, git_env

    cfg, repo = write_site(tmp_path, cache_url=f"http://{CACHE}")
    env = git_env(tmp_path / "home")
    git("init", "-q", cwd=repo, env=env)
    git("add", "-A", cwd=repo, env=env)
    git("commit", "-qm", "verified", cwd=repo, env=env)
    verified = git("rev-parse", "HEAD", cwd=repo, env=env).strip()
    # a later commit the agent has fetched but not verified: its registry must not count
    (repo / "target.yaml").write_text(fleet_files("quay.io/edge/os:2.0")["target.yaml"])
    git("commit", "-qam", "not verified yet", cwd=repo, env=env)
    state_dir = tmp_path / "state"
    git("clone", "-q", "--bare", str(repo), str(state_dir / "fleet.git"), cwd=tmp_path, env=env)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    state = State(state_dir)
    state.record_verified(LastVerified(verified, now, now, "bootstrap", "sha256:" + "0" * 64))
    state.close()
    r = gitedge("node-config", "--config", str(cfg), "-o", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["upstreams"] == ["docker.io", "upstream.example"]


# ---------------------------------------------------------------------------- a real client


def skopeo_copy(conf: Path, src: str, dest: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SKOPEO_BIN, "--registries-conf", str(conf), "copy", "--all", "--preserve-digests",
         "--quiet", *flags, f"docker://{src}", f"oci:{dest}:pulled"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def pulled_digest(layout: Path) -> str:
    return str(json.loads((layout / "index.json").read_text())["manifests"][0]["digest"])


def test_skopeo_pulls_upstream_names_through_a_plain_http_cache(tmp_path: Path) -> None:
    # The upstream is a closed port on loopback: a pull that does not go to the mirror fails.
    upstream = f"localhost:{free_port()}"
    img = make_layout(tmp_path / "img", single=True, layer_sizes=(20_000,))
    with docker_registry(tmp_path / "cache") as cache:
        skopeo_push(img, f"{cache.host}/edge/os:1.0")  # where gitedge's mirror step puts it
        cfg, repo = write_site(
            tmp_path, cache_url=f"http://{cache.host}", os_image=f"{upstream}/edge/os:1.0"
        )
        out = tmp_path / "node"
        r = gitedge("node-config", "--config", str(cfg), "--repo", str(repo), "--out", str(out))
        assert r.returncode == 0, r.stderr
        conf = out / nc.CONTAINERS_DROPIN.lstrip("/")
        got = skopeo_copy(conf, f"{upstream}/edge/os:1.0", tmp_path / "pulled")
        assert got.returncode == 0, got.stderr
        assert pulled_digest(tmp_path / "pulled") == img.digest
        empty = tmp_path / "empty.conf"
        empty.write_text("unqualified-search-registries = []\n")
        without = skopeo_copy(empty, f"{upstream}/edge/os:1.0", tmp_path / "pulled2")
        assert without.returncode != 0


def test_skopeo_pulls_through_a_tls_cache_with_its_own_ca(tmp_path: Path) -> None:
    upstream = f"localhost:{free_port()}"
    tls = make_tls_files(tmp_path / "tls")
    img = make_layout(tmp_path / "img", single=True, layer_sizes=(20_000,))
    with docker_registry(tmp_path / "cache", tls=tls) as cache:
        push_certs = tmp_path / "push-certs"
        push_certs.mkdir()
        (push_certs / "ca.crt").write_bytes(tls.ca_file.read_bytes())
        skopeo_push(img, f"{cache.host}/edge/os:1.0", f"--dest-cert-dir={push_certs}")
        cfg, repo = write_site(
            tmp_path,
            cache_url=f"https://{cache.host}",
            ca_file=tls.ca_file,
            os_image=f"{upstream}/edge/os:1.0",
        )
        out = tmp_path / "node"
        r = gitedge("node-config", "--config", str(cfg), "--repo", str(repo), "--out", str(out))
        assert r.returncode == 0, r.stderr
        conf = out / nc.CONTAINERS_DROPIN.lstrip("/")
        certs = out / "etc/containers/certs.d" / cache.host  # containers-certs.d(5) layout
        assert (certs / "ca.crt").read_text() == tls.ca_file.read_text()
        got = skopeo_copy(
            conf, f"{upstream}/edge/os:1.0", tmp_path / "pulled", "--src-cert-dir", str(certs)
        )
        assert got.returncode == 0, got.stderr
        assert pulled_digest(tmp_path / "pulled") == img.digest
        # without the CA the cache's certificate is not trusted, and nothing else serves the image
        untrusted = skopeo_copy(conf, f"{upstream}/edge/os:1.0", tmp_path / "pulled2")
        assert untrusted.returncode != 0
        assert "certificate" in untrusted.stderr
