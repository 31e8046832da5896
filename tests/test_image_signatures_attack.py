"""Attacks on the image-signature rule (agent/imagetrust.py) found by atk16, end to end against
real ``docker-registry`` upstream and cache on 127.0.0.1 (tests/test_agent.py's site).

The apply step plans again from a fresh read of the cluster (agent/applying.py), but the images
it judged (``check_needed``) are those of the plan step's plan. When the cluster changed in
between (a node joins running an older K3s), the apply step's plan needs an image the pass
neither mirrored nor judged, and it was written into a Plan: an image no signer is allowed to
sign reached the cluster. Now the apply step waits when its plan needs an image the pass did not
check; the next pass plans, mirrors and judges it.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.agentkit import DAY, START, fleet_files, push_image
from tests.cosigntools import make_key, sign_simple
from tests.test_agent import NEW, OLD, Site, at, conditions, site  # noqa: F401
from tests.test_image_signatures import signed_trust

REPO = "edge/os"


def test_an_image_the_apply_steps_fresh_plan_needs_is_judged_before_any_plan(
    site: Site,  # noqa: F811
) -> None:
    key = make_key()
    digest = push_image(site.tmp, f"{site.upstream.host}/{REPO}:1.0").digest
    sign_simple(site.upstream.host, REPO, digest, key)
    # the cluster runs the target's K3s: the plan step needs no k3s-upgrade image
    cfg = site.config_path.read_text().replace("k3sVersion: v1.27.16+k3s1", f"k3sVersion: {NEW[1]}")
    site.config_path.write_text(cfg)
    files = fleet_files(registry=site.registry, releases=NEW, k3s=NEW[1],
                        os_image=f"{site.registry}/{REPO}:1.0")  # fmt: skip
    files[".gitedge/trust.yaml"] = signed_trust(site, key)  # signs */edge/* only
    site.fleet.commit(files)
    agent = site.agent()
    read = agent.cluster.snapshot
    reads = []

    def joined(*a: Any, **kw: Any) -> Any:  # a node running the older K3s joins after the plan
        snap = read(*a, **kw)
        reads.append(snap)
        if len(reads) == 1:
            return snap
        old = dataclasses.replace(snap.nodes[0], name="late-node", kubelet_version=NEW[0])
        return dataclasses.replace(snap, nodes=(*snap.nodes, old))

    agent.cluster.snapshot = joined  # type: ignore[method-assign]
    try:
        p = agent.reconcile(now=at(0))
    finally:
        agent.close()
    assert [n.key for n in p.needed] == [f"{site.registry}/{REPO}:1.0"]
    assert p.outcomes["mirror"] == "ok" and len(reads) >= 2
    assert not any("k3s-upgrade" in out for out in site.printed), site.printed
    assert p.outcomes["apply"] == "waiting"
    c = next(c for c in p.conditions if c.type == "Applying")
    assert "rancher/k3s-upgrade" in c.message and "not checked" in c.message


def test_a_cut_index_naming_a_signed_child_under_another_platform_is_refused(
    tmp_path: Path,
) -> None:
    """A bundle's layout is outside the site's control: its cut index may list a child of the
    signed index under another platform (the arm64 image as linux/amd64). Every digest is
    signed, but an amd64 node would be given the arm64 image: the cut must keep each child's
    platform as the signed index gives it."""
    from gitedge.adapters.mirroring import LayoutRef, Mirror
    from gitedge.adapters.ocilayout import OciLayout
    from gitedge.adapters.signedindex import check_cut_index, keep_signed_index
    from gitedge.core.ocimanifest import OCI_INDEX, Platform, digest_of, parse_manifest
    from tests.registryserver import make_layout

    signed = make_layout(tmp_path / "a", tag="1", layer_sizes=(1000,))
    cache = tmp_path / "cache"
    with Mirror() as m:
        m.mirror(f"oci:{signed.path}:1", f"oci:{cache}:full")  # every child is in the cache
        cut = m.mirror(f"oci:{signed.path}:1", f"oci:{cache}:cut",
                       platforms=[Platform.parse("linux/amd64")])  # fmt: skip
        dst = LayoutRef(cache)
        keep_signed_index(m, src_image=LayoutRef(signed.path, "1"), dst=dst,
                          digest=signed.digest, what="t")  # fmt: skip
        assert check_cut_index(m, dst=dst, signed=signed.digest, cached=cut.digest,
                               what="t") is None  # fmt: skip
        src = json.loads((signed.path / "blobs" / "sha256" / signed.digest[7:]).read_bytes())
        arm = next(c for c in src["manifests"] if c["platform"]["architecture"] == "arm64")
        doc = json.loads((cache / "blobs" / "sha256" / cut.digest[7:]).read_bytes())
        doc["manifests"] = [{**arm, "platform": {"architecture": "amd64", "os": "linux"}}]
        data = json.dumps(doc).encode()
        swapped = parse_manifest(data, digest=digest_of(data), content_type=OCI_INDEX, where="t")
        OciLayout(path=cache).put_manifest(swapped, tag="swapped", top=True)
        bad = check_cut_index(m, dst=dst, signed=signed.digest, cached=swapped.digest, what="t")
    assert bad and arm["digest"] in bad and "linux/amd64" in bad, bad


def test_an_image_key_revoked_by_a_commit_for_a_newer_agent_is_revoked(
    site: Site,  # noqa: F811
) -> None:
    """The newest verified commit revokes an image signer (its key leaked) and also uses a
    field this agent does not know: the agent keeps planning from the commit it understood
    (agent-too-old), but the image signers in force are the newest verified TrustPolicy's (the
    verifier already parsed it), so what the leaked key signed is no longer applied. Before,
    the kept commit's signers were used: an agent too old for a commit kept trusting the key
    that commit revoked, for as long as it was not upgraded."""
    leaked, fresh = make_key(), make_key()
    digest = push_image(site.tmp, f"{site.upstream.host}/{REPO}:1.0").digest
    sign_simple(site.upstream.host, REPO, digest, leaked)
    files = fleet_files(registry=site.registry, releases=OLD, k3s=OLD[0],
                        os_image=f"{site.registry}/{REPO}:1.0")  # fmt: skip
    files[".gitedge/trust.yaml"] = signed_trust(site, leaked)
    site.fleet.commit(files)
    p = site.run(at(0))
    assert p.outcomes["apply"] == "ok", p.errors
    newer = dict(files)
    newer["targets.yaml"] = files["targets.yaml"].replace(
        "upgrader: kairos}", "upgrader: kairos, rollbackOnFailure: true}"
    )
    newer[".gitedge/trust.yaml"] = signed_trust(site, fresh)  # the leaked key is gone
    site.fleet.commit(newer, at=START + DAY)
    p = site.run(at(1))
    assert conditions(p)["Planned"] == ("False", "AgentTooOld")
    assert conditions(p)["Mirrored"] == ("False", "ImageSignatureRefused"), p.errors
    assert p.outcomes["apply"] != "ok"
    # verify-image by hand judges with the same signers (it loaded the whole tip, and failed)
    r = subprocess.run([sys.executable, "-m", "gitedge", "verify-image", f"{site.registry}/{REPO}:1.0",
                        "--config", str(site.config_path), "--cache"],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 1 and "REFUSED: 1 signature(s) found, none verifies" in r.stdout, (
        r.stdout + r.stderr
    )
