"""The Kubernetes manifests in deploy/ (namespace, ServiceAccount, RBAC, config, state, Deployment).

Covers: every document validates strictly (unknown fields refused) against the Kubernetes OpenAPI
schemas of 1.27 and 1.30, offline (kubernetes-validate); the Deployment runs the agent non-root
with a read-only root filesystem, no privilege escalation, no capabilities, one replica recreated
(the state volume is single-writer), the ServiceAccount the RBAC binds, ``POD_NAMESPACE`` for the
status ConfigMap; the config it mounts loads as an AgentConfig whose files (trust, secrets, state)
lie under the mounts and whose ``apply.namespace`` is where the Plans Role is; the bootstrap trust
file is a valid TrustPolicy; the RBAC has no wildcard, nothing on Secrets, no escalation verbs.
(That the RBAC is enough and every grant is used: tests/test_kube.py.) The image's
ENTRYPOINT/CMD and each deploy/ container's command/args compose, by Kubernetes' rules, into a
``gitedge`` invocation that parses and runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gitedge.core.config import AgentConfig, load_site_file
from gitedge.core.trust.policy import parse_trust_policy

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
CONTAINERFILE = ROOT / "Containerfile"


def documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        if path.name != "kustomization.yaml":  # the base's own file, not a manifest
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in documents() if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


@pytest.mark.parametrize("version", ["1.27.0", "1.30.0"])
def test_every_document_matches_the_kubernetes_schemas(version):
    docs = documents()
    assert {d["kind"] for d in docs} >= {
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "PersistentVolumeClaim",
        "Deployment",
    }
    for d in docs:
        kubernetes_validate.validate(d, version, strict=True)


def test_the_agent_runs_unprivileged_with_its_service_account():
    dep = one("Deployment")
    spec = dep["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]["spec"]
    sa = one("ServiceAccount")
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    assert dep["metadata"]["namespace"] == sa["metadata"]["namespace"]
    assert (
        pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    )
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    args = container["args"]
    listen = args[args.index("--listen") + 1]  # the CLI's default is 127.0.0.1: probes would fail
    assert listen == f"0.0.0.0:{container['ports'][0]['containerPort']}"
    assert container["livenessProbe"]["httpGet"]["port"] == container["ports"][0]["name"]
    assert {"/healthz", "/readyz"} == {
        container["livenessProbe"]["httpGet"]["path"],
        container["readinessProbe"]["httpGet"]["path"],
    }


def test_the_mounted_config_is_a_valid_agent_config_that_fits_the_mounts():
    dep = one("Deployment")
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_map = one("ConfigMap", volumes["config"]["configMap"]["name"])
    files = {f"{mounts['config']}/{k}": v for k, v in config_map["data"].items()}
    args = container["args"]
    config_path = args[args.index("--config") + 1]
    assert config_path in files
    config = load_site_file(files[config_path].encode(), path=config_path)
    assert isinstance(config, AgentConfig)
    assert config.trust.bootstrap in files
    parse_trust_policy(files[config.trust.bootstrap].encode())
    secret_files = [config.source.auth.ssh_key_file, config.source.auth.known_hosts_file]
    assert all(f and f.startswith(mounts["secrets"] + "/") for f in secret_files)
    assert config.state.dir == mounts["state"]
    assert (
        volumes["state"]["persistentVolumeClaim"]["claimName"]
        == one("PersistentVolumeClaim")["metadata"]["name"]
    )
    plans_role = one("Role", "gitedge-plans")
    assert plans_role["metadata"]["namespace"] == config.apply.namespace
    assert one("Role", "gitedge-status")["metadata"]["namespace"] == dep["metadata"]["namespace"]


def test_rbac_has_no_wildcards_secrets_or_escalation():
    for d in documents():
        if d["kind"] not in ("Role", "ClusterRole"):
            continue
        for rule in d["rules"]:
            words = rule["apiGroups"] + rule["resources"] + rule["verbs"]
            assert "*" not in words, d["metadata"]["name"]
            assert "secrets" not in rule["resources"]
            assert not {"escalate", "bind", "impersonate", "watch", "patch"} & set(rule["verbs"])
    assert one("ClusterRole")["rules"] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}
    ]


def test_kubectl_apply_dry_run_client_over_the_api_emulator(tmp_path: Path) -> None:
    """``kubectl apply --dry-run=client -k deploy/`` (deploy/ is a kustomize base) maps every document to a resource the API
    serves (discovery from tests/kubeapi.py) and creates nothing. The emulator serves no OpenAPI
    document, so kubectl's own schema check is off here; the schema check is the
    kubernetes-validate test above."""
    from tests.kubeapi import KubeEmulator

    with KubeEmulator(token=None) as api:  # kubectl sends no bearer token over plain HTTP
        kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")
        done = subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), "apply", "--dry-run=client",
             "--validate=false", "-k", str(DEPLOY)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert api.writes() == []
    shown = set()
    for line in done.stdout.splitlines():  # "role.rbac.authorization.k8s.io/name created (dry run)"
        resource, name = line.split(" ", 1)[0].split("/", 1)
        shown.add(f"{resource.split('.', 1)[0]}/{name}")
        assert "(dry run)" in line, line
    expected = {f"{d['kind'].lower()}/{d['metadata']['name']}" for d in documents()}
    assert shown == expected, done.stdout


def image_entrypoint_and_cmd(text: str) -> tuple[list[str], list[str]]:
    """ENTRYPOINT and CMD of the Containerfile's final stage (exec form, JSON). Docker's rule: an
    ENTRYPOINT set in a stage resets the CMD inherited from the base image, so a final stage
    with ENTRYPOINT and no CMD has an empty CMD."""
    lines, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        lines.append(buf + line)
        buf = ""
    final = [i for i, line in enumerate(lines) if line.upper().startswith("FROM ")][-1]
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    for line in lines[final:]:
        word, _, rest = line.partition(" ")
        if word.upper() == "ENTRYPOINT":
            entrypoint, cmd = json.loads(rest), cmd  # exec form only: a shell form would wrap it
        elif word.upper() == "CMD":
            cmd = json.loads(rest)
    assert entrypoint is not None, "the final stage sets no ENTRYPOINT"
    return entrypoint, cmd or []


def compose(entrypoint: list[str], cmd: list[str], container: dict[str, Any]) -> list[str]:
    """The argv a Kubernetes container runs (core/v1 Container docs): ``command`` replaces the
    image's ENTRYPOINT and drops its CMD; ``args`` alone replace the CMD; neither: both kept."""
    if "command" in container:
        return list(container["command"]) + list(container.get("args") or [])
    if "args" in container:
        return entrypoint + list(container["args"])
    return entrypoint + cmd


def gitedge_containers() -> list[tuple[str, dict[str, Any]]]:
    """Every container (and init container) of every pod template in deploy/ that runs the
    gitedge image."""
    found = []
    for d in documents():
        spec = d.get("spec") or {}
        pod = (spec.get("template") or {}).get("spec") or {}
        if d["kind"] == "CronJob":
            pod = spec["jobTemplate"]["spec"]["template"]["spec"]
        for c in pod.get("initContainers", []) + pod.get("containers", []):
            if c["image"].split(":")[0].endswith("gitedge/agent"):
                found.append((f"{d['kind']}/{d['metadata']['name']}/{c['name']}", c))
    return found


def test_image_and_manifests_compose_into_a_valid_gitedge_invocation():
    from gitedge.cli import build_parser

    entrypoint, cmd = image_entrypoint_and_cmd(CONTAINERFILE.read_text())
    containers = gitedge_containers()
    assert containers, "no deploy/ container runs the gitedge image"
    image_alone = ("image defaults", {"name": "image"})  # a `docker run` with no arguments
    for where, container in [*containers, image_alone]:
        argv = compose(entrypoint, cmd, container)
        assert argv[0] == "gitedge", (where, argv)
        try:
            args = build_parser().parse_args(argv[1:])
        except SystemExit as e:  # argparse's usage error
            raise AssertionError(f"{where}: {argv} does not parse (exit {e.code})") from None
        assert args.command == "run", (where, argv)
        # and the real program with those arguments gets past its argument parsing: it stops
        # at the config file this test machine lacks, never at an unrecognized argument
        done = subprocess.run(
            [sys.executable, "-m", "gitedge", *argv[1:]],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert "unrecognized arguments" not in done.stderr, (where, done.stderr)
        assert f"--config {args.config}: No such file" in done.stderr, (where, done.stderr)
    dep = one("Deployment")
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    # the image's own default reads its config where the Deployment mounts it
    default = build_parser().parse_args(cmd)
    assert any(default.config.startswith(m + "/") for m in mounts), default.config


def test_the_broken_composition_is_refused():
    """The composition rules of this file see what Kubernetes ran before the fix: an ENTRYPOINT
    holding the arguments, with the Deployment's args appended, does not parse."""
    from gitedge.cli import build_parser

    text = 'FROM x\nENTRYPOINT ["gitedge", "run", "--config", "/c.yaml"]\n'
    entrypoint, cmd = image_entrypoint_and_cmd(text)
    assert cmd == []
    argv = compose(entrypoint, cmd, {"args": ["run", "--config", "/c.yaml"]})
    assert argv == ["gitedge", "run", "--config", "/c.yaml", "run", "--config", "/c.yaml"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv[1:])


# ------------------------------------------------------------------ kustomize (issue 18)

OVERLAY = ROOT / "examples" / "site-overlay"


def kustomize(path: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize PATH`` (kubectl's bundled kustomize; CI's may be Debian's v2.0.3)."""
    r = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True,
                       timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def _key(d: dict[str, Any]) -> tuple[str, str]:
    return d["kind"], d["metadata"]["name"]


def test_the_base_renders_exactly_the_manifests_of_deploy() -> None:
    rendered = kustomize(DEPLOY)
    assert sorted(rendered, key=_key) == sorted(documents(), key=_key)


@pytest.mark.parametrize("version", ["1.27.0", "1.30.0"])
def test_the_site_overlay_renders_valid_manifests_with_its_config_and_labels(version) -> None:
    rendered = kustomize(OVERLAY)
    assert sorted(map(_key, rendered)) == sorted(map(_key, documents()))
    for d in rendered:
        kubernetes_validate.validate(d, version, strict=True)
        assert d["metadata"]["labels"]["gitedge.io/site"] == "store-lyon-0007", _key(d)
    (dep,) = [d for d in rendered if d["kind"] == "Deployment"]
    assert dep["spec"]["template"]["metadata"]["labels"]["gitedge.io/site"] == "store-lyon-0007"
    assert dep["spec"]["selector"]["matchLabels"]["gitedge.io/site"] == "store-lyon-0007"
    (cm,) = [d for d in rendered if _key(d) == ("ConfigMap", "gitedge-config")]
    config = load_site_file(cm["data"]["agent.yaml"].encode(), path="overlay agent.yaml")
    assert isinstance(config, AgentConfig)
    assert config.cluster.name == "store-lyon-0007"
    assert config.registry.cache is not None
    assert config.registry.cache.url == "http://10.42.7.10:5000"
    assert cm["data"]["trust.yaml"] == one("ConfigMap", "gitedge-config")["data"]["trust.yaml"]
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == cm["metadata"]["name"]
