"""The pure rules of gitedge/core/delivery/sucimages.py: which kubectl image SUC's Jobs run (the
kubelet's env precedence, then job.go's KubectlImage and defaultKubectlImage per release), the
skew warning, and which pulls failed."""

from __future__ import annotations

from pathlib import Path

import yaml

from gitedge.core.delivery.sucimages import (
    default_kubectl_image,
    env_configmaps,
    kubectl_skew,
    missing_mirrors,
    pull_failures,
    suc_kubectl_image,
)

MANIFEST = (
    Path(__file__).resolve().parent.parent
    / "gitedge/data/suc/v0.20.1/system-upgrade-controller.yaml"
)


def shipped() -> tuple[dict, dict]:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    dep = next(d for d in docs if d["kind"] == "Deployment")
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    return dep, cm


def with_container(dep: dict, **fields) -> dict:
    c = dep["spec"]["template"]["spec"]["containers"][0]
    c.update(fields)
    return dep


def test_the_shipped_manifest_reads_its_configmap():
    dep, cm = shipped()
    assert env_configmaps(dep) == ("default-controller-env",)
    k = suc_kubectl_image(dep, {"default-controller-env": cm["data"]})
    assert k.image == "rancher/kubectl:v1.30.3"
    assert "ConfigMap default-controller-env" in k.source


def test_env_wins_over_envfrom_and_a_later_envfrom_wins_a_key():
    dep, _ = shipped()
    with_container(dep, envFrom=[{"configMapRef": {"name": "a"}}, {"configMapRef": {"name": "b"}}])
    cms = {"a": {"SYSTEM_UPGRADE_JOB_KUBECTL_IMAGE": "a/kubectl:v1.29.0"},
           "b": {"SYSTEM_UPGRADE_JOB_KUBECTL_IMAGE": "b/kubectl:v1.31.0"}}  # fmt: skip
    assert suc_kubectl_image(dep, cms).image == "b/kubectl:v1.31.0"
    dep["spec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "SYSTEM_UPGRADE_JOB_KUBECTL_IMAGE", "value": "c/kubectl:v1.32.0"}
    )
    assert suc_kubectl_image(dep, cms).image == "c/kubectl:v1.32.0"


def test_a_prefix_and_a_configmapkeyref():
    dep, _ = shipped()
    with_container(dep, envFrom=[{"prefix": "SYSTEM_UPGRADE_", "configMapRef": {"name": "p"}}],
                   env=[])  # fmt: skip
    cms = {
        "p": {"JOB_KUBECTL_IMAGE": "p/kubectl:v1.30.1", "SYSTEM_UPGRADE_JOB_KUBECTL_IMAGE": "no"}
    }
    assert suc_kubectl_image(dep, cms).image == "p/kubectl:v1.30.1"
    ref = {"configMapKeyRef": {"name": "k", "key": "img"}}
    with_container(dep, env=[{"name": "SYSTEM_UPGRADE_JOB_KUBECTL_IMAGE", "valueFrom": ref}])
    assert env_configmaps(dep) == ("p", "k")
    assert suc_kubectl_image(dep, {**cms, "k": {"img": "k/kubectl:v1.30.2"}}).image == (
        "k/kubectl:v1.30.2"
    )


def test_empty_or_unreadable_is_jobgo_default_of_the_running_release():
    """job.go: os.Getenv(...) != "" else defaultKubectlImage, which changed across releases."""
    dep, cm = shipped()
    cm["data"]["SYSTEM_UPGRADE_JOB_KUBECTL_IMAGE"] = ""
    k = suc_kubectl_image(dep, {"default-controller-env": cm["data"]})
    assert (k.image, "v0.20.1" in k.source) == ("rancher/kubectl:v1.30.3", True)
    with_container(dep, image="rancher/system-upgrade-controller:v0.13.4")
    assert suc_kubectl_image(dep, {"default-controller-env": None}).image == (
        "rancher/kubectl:v1.25.4"
    )


def test_default_of_the_vendored_release_is_what_its_manifest_sets():
    """v0.20.1's manifest sets SYSTEM_UPGRADE_JOB_KUBECTL_IMAGE to job.go's defaultKubectlImage
    (both read at the tag: gitedge/data/suc/v0.20.1/README.md)."""
    dep, cm = shipped()
    image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    assert default_kubectl_image(image) == cm["data"]["SYSTEM_UPGRADE_JOB_KUBECTL_IMAGE"]
    assert (
        default_kubectl_image("rancher/system-upgrade-controller@sha256:" + "b" * 64)
        == (cm["data"]["SYSTEM_UPGRADE_JOB_KUBECTL_IMAGE"])
    )  # no release tag: the newest default


def test_skew_more_than_one_minor_either_way():
    assert kubectl_skew("rancher/kubectl:v1.30.3", ["v1.29.10+k3s1", "v1.31.1+k3s1"]) is None
    w = kubectl_skew("rancher/kubectl:v1.30.3", ["v1.27.16+k3s1", "v1.28.15+k3s1"])
    assert w is not None and "v1.27.16+k3s1, v1.28.15+k3s1" in w
    assert kubectl_skew("rancher/kubectl:v1.30.3", ["v1.32.0+k3s1"]) is not None
    assert kubectl_skew("rancher/kubectl:latest", ["v1.20.0+k3s1"]) is None  # no version


def test_pull_failures_only_of_the_given_plans():
    pods = [
        {"metadata": {"name": "p1", "labels": {"upgrade.cattle.io/plan": "gitedge-os-server"}},
         "spec": {"nodeName": "n1"},
         "status": {"containerStatuses": [
             {"image": "c/os@sha256:" + "a" * 64, "state": {"waiting": {"reason": "ImagePullBackOff"}}},
             {"image": "c/ok:1", "state": {"running": {}}}]}},
        {"metadata": {"name": "p2", "labels": {"upgrade.cattle.io/plan": "theirs"}},
         "spec": {"nodeName": "n2"},
         "status": {"containerStatuses": [
             {"image": "x:1", "state": {"waiting": {"reason": "ErrImagePull"}}}]}},
    ]  # fmt: skip
    events = [
        {"involvedObject": {"kind": "Pod", "name": "p1"}, "reason": "BackOff",
         "message": 'Back-off pulling image "rancher/kubectl:v1.30.3"'},
        {"involvedObject": {"kind": "Pod", "name": "p2"}, "reason": "Failed",
         "message": 'Failed to pull image "x:2": nope'},
    ]  # fmt: skip
    got = pull_failures(pods, events, plans={"gitedge-os-server"})
    assert [(f.image, f.node, f.reason) for f in got] == [
        ("c/os@sha256:" + "a" * 64, "n1", "ImagePullBackOff"),
        ("rancher/kubectl:v1.30.3", "n1", "ImagePullBackOff"),
    ]
    assert "docs/site-setup.md" in got[0].message()


def test_missing_mirrors_leaves_the_cache_out():
    images = ["rancher/kubectl:v1.30.3", "cache:5000/edge/os:1", "quay.io/x/y:1"]
    assert missing_mirrors(images, mirrors=["quay.io"], cache="cache:5000") == ["docker.io"]
    assert missing_mirrors(images, mirrors=["docker.io", "quay.io"], cache="cache:5000") == []


def test_a_malformed_value_is_told_not_raised():
    dep, cm = shipped()
    cm["data"]["SYSTEM_UPGRADE_JOB_KUBECTL_IMAGE"] = "Rancher/Kubectl:v1"
    k = suc_kubectl_image(dep, {"default-controller-env": cm["data"]})
    assert k.image == "Rancher/Kubectl:v1"  # as SUC reads it; the agent warns (sucwatch)
    assert kubectl_skew(k.image, ["v1.20.0+k3s1"]) is None
    assert default_kubectl_image("not an image") == "rancher/kubectl:v1.30.3"
