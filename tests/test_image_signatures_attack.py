"""Attacks on the image-signature rule (agent/steps/imagetrust.py) found by atk16, end to end against
real ``docker-registry`` upstream and cache on 127.0.0.1 (tests/test_agent.py's site).

The apply step plans again from a fresh read of the cluster (agent/steps/applyplans.py), but the images
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
    # the OS image, and SUC's kubectl that its Jobs run (not the fleet's to sign: fleet_named)
    assert [n.key for n in p.needed] == [f"{site.registry}/{REPO}:1.0", site.kubectl]
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
    from gitedge.adapters.images.mirroring import LayoutRef, Mirror
    from gitedge.adapters.images.ocilayout import OciLayout
    from gitedge.adapters.images.signedindex import check_cut_index, keep_signed_index
    from gitedge.core.images.manifests import OCI_INDEX, Platform, digest_of, parse_manifest
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


def test_the_sig_manifest_copied_is_the_one_judged_not_a_second_answer(tmp_path: Path) -> None:
    """The ``.sig`` tag was read twice: once to judge it (its config and layers held to
    ``MAX_SIGNATURE_BLOB``), then again by tag to copy it into the cache. A registry answering
    the second read with a manifest naming a large blob had that blob copied into the cache
    (the cap meant to keep signature artifacts small in every site's cache, bypassed). The copy
    is now made by the digest of the manifest that was read and judged."""
    import hashlib
    import http.client
    from http.server import BaseHTTPRequestHandler

    from gitedge.adapters.images.mirroring import Mirror
    from gitedge.adapters.trust.imagesigs import SigSite, copy_signatures, find_signatures
    from gitedge.core.images.cosign import MAX_SIGNATURE_BLOB
    from gitedge.core.images.manifests import OCI_MANIFEST
    from gitedge.core.images.refs import ImageRef
    from tests.cosigntools import client_for, push_blob
    from tests.registryserver import _threaded_server, docker_registry

    repo = "edge/fat"
    with docker_registry(tmp_path / "up") as up, docker_registry(tmp_path / "cache") as cache:
        digest = push_image(tmp_path / "img", f"{up.host}/{repo}:1").digest
        sign_simple(up.host, repo, digest, make_key())
        tag = digest.replace(":", "-") + ".sig"
        c = client_for(up.host)
        try:
            big = push_blob(c, repo, b"x" * (4 * MAX_SIGNATURE_BLOB))
            honest = c.get_manifest(repo, tag, what="t").data
        finally:
            c.close()
        doc = json.loads(honest)
        doc["layers"].append({"mediaType": "application/octet-stream", "digest": big,
                              "size": 4 * MAX_SIGNATURE_BLOB})  # fmt: skip
        fat = json.dumps(doc).encode()
        reads = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.endswith(f"/manifests/{tag}"):
                    reads.append(self.command)
                    if len([r for r in reads if r == "GET"]) > 1 or (
                        self.command == "HEAD" and "GET" in reads
                    ):
                        self.send_response(200)
                        self.send_header("Content-Type", OCI_MANIFEST)
                        self.send_header("Docker-Content-Digest",
                                         "sha256:" + hashlib.sha256(fat).hexdigest())  # fmt: skip
                        self.send_header("Content-Length", str(len(fat)))
                        self.end_headers()
                        if self.command == "GET":
                            self.wfile.write(fat)
                        return
                conn = http.client.HTTPConnection("127.0.0.1", up.port, timeout=30)
                try:
                    conn.request(self.command, self.path,
                                 headers={k: v for k, v in self.headers.items()
                                          if k.lower() in ("accept", "range")})  # fmt: skip
                    r = conn.getresponse()
                    body = r.read()
                    self.send_response(r.status)
                    for k, v in r.getheaders():
                        if k.lower() in ("content-type", "docker-content-digest", "content-range",
                                         "content-length"):  # fmt: skip
                            self.send_header(k, v)
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(body)
                finally:
                    conn.close()

            do_HEAD = do_GET  # noqa: N815 (http.server dispatches on the method name)

        with _threaded_server(Handler) as port, Mirror() as m:
            src = SigSite(ref=ImageRef(f"127.0.0.1:{port}", repo))
            found = find_signatures(m, src, digest, what="t")
            assert found.sig is not None and len(found.candidates) == 1
            copy_signatures(m, src, SigSite(ref=ImageRef(cache.host, repo)), digest, found,
                            what="t")  # fmt: skip
        c = client_for(cache.host)
        try:
            assert c.blob_size(repo, big, what="t") is None  # the large blob was not copied
            assert c.get_manifest(repo, tag, what="t").data == honest  # the judged one was
        finally:
            c.close()
