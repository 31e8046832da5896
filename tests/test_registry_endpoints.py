"""``registry.endpoints``: a registry's images read from a regional hub first, then the registry
itself (as containerd's registries.yaml lists mirrors). Every blob is verified by digest, so a
hub that serves wrong bytes is caught, skipped for the next endpoint, and named in the
``RegistryEndpoints`` condition. Real docker-registry instances on 127.0.0.1."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from gitedge.adapters.images.endpoints import endpoint_refs
from gitedge.adapters.images.mirroring import Mirror
from gitedge.agent.reconcile import Agent, Pass, PrintCluster
from gitedge.agent.steps.status import status_text
from gitedge.core.config import AgentConfig, load_site_file
from gitedge.core.images.refs import ImageRef
from tests.agentkit import KUBECTL, START, fleet_files, push_image, push_kubectl, served_fleet_repo
from tests.gitserver import git_daemon
from tests.registryserver import docker_registry

NOW = datetime(2026, 1, 2, 2, tzinfo=UTC)


def site(tmp: Path, *, git: str, cache: str, origin: str, hub: str, kubectl: str) -> Agent:
    cfg = tmp / "agent.yaml"
    cfg.write_text(
        "apiVersion: gitedge.io/v1alpha1\nkind: AgentConfig\n"
        "cluster:\n  name: site-1\n  status: {k3sVersion: v1.27.16+k3s1, arches: [amd64]}\n"
        f"source: {{url: '{git}/fleet.git', interval: 1h}}\n"
        f"trust: {{bootstrap: {tmp / 'allowed_signers'}}}\n"
        f"registry: {{cache: {{url: 'http://{cache}'}}, endpoints: {{'{origin}': ['{hub}']}}}}\n"
        f"apply: {{mode: print, kubectlImage: '{kubectl}'}}\nstate: {{dir: {tmp / 'state'}}}\n"
    )
    config = load_site_file(cfg.read_bytes(), path=str(cfg))
    assert isinstance(config, AgentConfig)
    return Agent(config, cluster=PrintCluster(config=config, out=lambda _: None))


def endpoints_condition(p: Pass) -> tuple[str, str, str]:
    c = next(c for c in p.conditions if c.type == "RegistryEndpoints")
    return c.status, c.reason, c.message


def test_endpoint_order_is_the_hubs_then_the_registry() -> None:
    ref = ImageRef.parse("origin.example/edge/os:2.0")
    hosts = {"origin.example": ("hub-a.example", "hub-b.example", "hub-a.example")}
    assert [r.registry for r in endpoint_refs(ref, hosts)] == [
        "hub-a.example", "hub-b.example", "origin.example",
    ]  # fmt: skip
    assert endpoint_refs(ref, {}) == [ref]


def run_with_hub(
    tmp_path: Path, *, tamper: bool, filled: bool = True, passes: int = 1
) -> tuple[Pass, str, str]:
    repo = served_fleet_repo(tmp_path)
    with (
        docker_registry(tmp_path / "origin") as origin,
        docker_registry(tmp_path / "hub") as hub,
        docker_registry(tmp_path / "cache") as cache,
        git_daemon(tmp_path / "served") as git,
    ):
        push_image(tmp_path, f"{origin.host}/edge/os:2.0", sizes=(300_000,))
        # SUC's kubectl (issue 15) comes from the origin too: the agent mirrors it with any step
        kubectl, _ = push_kubectl(tmp_path, origin.host)
        if filled:  # the hub holds a copy of each, as a pull-through cache would
            with Mirror() as m:
                m.mirror(f"{origin.host}/edge/os:2.0", f"{hub.host}/edge/os:2.0")
                m.mirror(kubectl, f"{hub.host}/{KUBECTL}")
        if tamper:  # every OS layer the hub stores (the only blobs over 100 kB), one byte flipped
            layers = [f for f in (hub.root / "docker").rglob("data") if f.stat().st_size > 100_000]
            assert layers
            for layer in layers:
                data = bytearray(layer.read_bytes())
                data[len(data) // 2] ^= 0xFF
                layer.write_bytes(bytes(data))
        repo.commit(
            fleet_files(registry=origin.host, releases=["v1.27.16+k3s1"], k3s="v1.27.16+k3s1",
                        os_image=f"{origin.host}/edge/os:2.0", window=False),
            at=START,
        )  # fmt: skip
        agent = site(
            tmp_path, git=git, cache=cache.host, origin=origin.host, hub=hub.host, kubectl=kubectl
        )
        try:
            for _ in range(passes):
                p = agent.reconcile(now=NOW)
        finally:
            agent.close()
        return p, origin.host, hub.host


def test_a_hub_serves_the_image(tmp_path: Path) -> None:
    p, origin, hub = run_with_hub(tmp_path, tamper=False)
    assert p.outcomes["mirror"] == "ok", p.errors
    status, reason, msg = endpoints_condition(p)
    assert (status, reason) == ("True", "Served")
    # the OS image, then SUC's kubectl that the Jobs run
    assert msg == f"{origin}/edge/os:2.0 served by {hub}; {origin}/{KUBECTL} served by {hub}"


def test_a_hub_serving_a_tampered_blob_is_skipped_for_the_next_endpoint(tmp_path: Path) -> None:
    p, origin, hub = run_with_hub(tmp_path, tamper=True)
    assert p.outcomes["mirror"] == "ok", p.errors
    assert p.mirror_complete
    status, reason, msg = endpoints_condition(p)
    assert (status, reason) == ("False", "EndpointSkipped")
    assert f"endpoint {hub} skipped" in msg and "sha256:" in msg, msg
    # the OS from the origin; SUC's kubectl (small layers, untouched) still from the hub
    assert msg.endswith(
        f"{origin}/edge/os:2.0 served by {origin}; {origin}/{KUBECTL} served by {hub}"
    ), msg


def served_by(p: Pass) -> list[tuple[str, str | None]]:
    return [(i["image"], i["servedBy"]) for i in p.status["mirror"]["images"]]


def test_status_says_the_hub_served_the_cached_copy(tmp_path: Path) -> None:
    p, origin, hub = run_with_hub(tmp_path, tamper=False)
    assert served_by(p) == [(f"{origin}/edge/os:2.0", hub), (f"{origin}/{KUBECTL}", hub)]
    assert f"{origin}/edge/os:2.0  sha256:" in status_text(p.status)
    assert f"(served by {hub})" in status_text(p.status)


def test_status_says_the_origin_served_what_a_tampered_hub_could_not(tmp_path: Path) -> None:
    p, origin, hub = run_with_hub(tmp_path, tamper=True)
    assert served_by(p) == [(f"{origin}/edge/os:2.0", origin), (f"{origin}/{KUBECTL}", hub)]
    assert f"(served by {origin})" in status_text(p.status)


def test_status_keeps_who_served_the_copy_on_later_passes(tmp_path: Path) -> None:
    p, origin, hub = run_with_hub(tmp_path, tamper=False, passes=2)
    assert p.mirrored_now == []  # the second pass copied nothing: it read the state
    assert served_by(p) == [(f"{origin}/edge/os:2.0", hub), (f"{origin}/{KUBECTL}", hub)]


def test_a_hub_that_lacks_the_image_passes_it_on_to_the_origin(tmp_path: Path) -> None:
    p, origin, hub = run_with_hub(tmp_path, tamper=False, filled=False)
    assert p.outcomes["mirror"] == "ok", p.errors
    status, reason, msg = endpoints_condition(p)
    assert (status, reason) == ("False", "EndpointSkipped")
    assert msg.startswith(f"endpoint {hub} skipped"), msg
    assert f"{origin}/edge/os:2.0 served by {origin}; endpoint {hub} skipped" in msg, msg
    assert msg.endswith(f"{origin}/{KUBECTL} served by {origin}"), msg
    assert served_by(p) == [(f"{origin}/edge/os:2.0", origin), (f"{origin}/{KUBECTL}", origin)]
