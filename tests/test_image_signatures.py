"""Image signatures end to end: the agent against real ``docker-registry`` upstream and cache on
127.0.0.1 (no referrers API: the ``sha256-<hex>`` fallback tag is what cosign's libraries write
there), signatures made in both cosign formats (``tests/cosigntools.py`` names the source lines).

An image whose signature is missing, made by a key not allowed for its repository, or made over
another digest is not applied (Mirrored False, ImageSignatureRefused naming the image and the
reason, nothing printed); both forms are accepted; the verdict is judged again from the cache
with the upstream gone, and ``status`` says who signed what.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from typing import Any

import pytest

from gitedge.agent import reconcile
from gitedge.agent.steps.status import status_text
from tests.agentkit import fleet_files, push_image, trust_yaml
from tests.cosigntools import CosignKey, make_key, sign_bundle, sign_simple
from tests.test_agent import OLD, Site, at, conditions, site  # noqa: F401

REPO = "edge/os"


def signed_trust(s: Site, key: CosignKey, *, globs: str = "['*/edge/*']") -> str:
    pem = "\n".join("          " + line for line in key.public_pem.strip().splitlines())
    base = trust_yaml(s.fleet.key).replace("  images: {requireDigest: false}\n", "")
    return base + (
        "  images:\n    requireDigest: false\n    signers:\n      - name: edge-ci\n"
        f"        repositories: {globs}\n        key: |\n{pem}\n"
    )


def setup(s: Site, key: CosignKey, *, globs: str = "['*/edge/*']") -> str:
    digest = push_image(s.tmp, f"{s.upstream.host}/{REPO}:1.0").digest
    files = fleet_files(registry=s.registry, releases=OLD, k3s=OLD[0],
                        os_image=f"{s.registry}/{REPO}:1.0")  # fmt: skip
    files[".gitedge/trust.yaml"] = signed_trust(s, key, globs=globs)
    s.fleet.commit(files)
    return digest


def refused(s: Site, reason: str) -> None:
    p = s.run(at(0))
    status, why = conditions(p)["Mirrored"]
    assert (status, why) == ("False", "ImageSignatureRefused")
    msg = next(c.message for c in p.conditions if c.type == "Mirrored")
    assert f"{s.registry}/{REPO}:1.0" in msg and reason in msg
    assert p.outcomes["apply"] == "waiting" and s.printed == []


def test_missing_signature_is_not_applied(site: Site) -> None:  # noqa: F811
    setup(site, make_key())
    refused(site, "no signature found")


def test_key_not_allowed_for_the_repository_is_not_applied(site: Site) -> None:  # noqa: F811
    key = make_key("ed25519")
    digest = setup(site, key, globs="['*/other/*']")
    sign_bundle(site.upstream.host, REPO, digest, key)
    refused(site, "a key not allowed to sign")


def test_signature_over_another_digest_is_not_applied(site: Site) -> None:  # noqa: F811
    key = make_key()
    digest = setup(site, key)
    other = push_image(site.tmp / "other", f"{site.upstream.host}/{REPO}:other").digest
    sign_simple(site.upstream.host, REPO, digest, key, payload_digest=other)
    refused(site, f"over another digest, {other}")


def test_unknown_key_is_not_applied(site: Site) -> None:  # noqa: F811
    digest = setup(site, make_key())
    sign_bundle(site.upstream.host, REPO, digest, make_key())
    refused(site, "none verifies")


@pytest.mark.parametrize("form", ["bundle", "simple-signing"])
def test_both_cosign_forms_are_accepted_and_checked_again_offline(site: Site, form: str) -> None:  # noqa: F811
    key = make_key("ed25519" if form == "bundle" else "ecdsa")
    digest = setup(site, key)
    (sign_bundle if form == "bundle" else sign_simple)(site.upstream.host, REPO, digest, key)
    p = site.run(at(0))
    assert conditions(p)["Mirrored"][0] == "True", p.errors
    assert p.outcomes["apply"] == "ok" and site.printed
    img = p.status["mirror"]["images"][0]
    assert img["signature"]["verified"] and img["signature"]["signer"] == "edge-ci"
    assert img["signature"]["form"] == form and img["signature"]["digest"] == digest
    assert "signed by edge-ci" in status_text(p.status)
    # the upstream goes away: the next pass judges the signature the cache holds
    site.up.online = False
    p2 = site.run(at(0, hour=3))
    assert p2.outcomes["mirror"] == "ok" and p2.outcomes["apply"] == "ok", p2.errors


def test_signature_removed_from_the_cache_stops_the_apply(site: Site) -> None:  # noqa: F811
    """The apply step judges the cache again: a cache whose signature went missing (or was
    swapped) between passes applies nothing, even with the upstream gone."""
    key = make_key()
    digest = setup(site, key)
    sign_simple(site.upstream.host, REPO, digest, key)
    assert site.run(at(0)).outcomes["apply"] == "ok"
    sig = f"{digest.replace(':', '-')}.sig"
    tags = site.cache.root / "docker/registry/v2/repositories" / REPO / "_manifests/tags" / sig
    assert tags.is_dir()
    shutil.rmtree(tags)
    site.up.online = False
    p = site.run(at(0, hour=3))
    assert conditions(p)["Mirrored"] == ("False", "ImageSignatureRefused")
    assert p.outcomes["apply"] == "waiting"


def gitedge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gitedge", *args], capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_verify_image_by_hand_upstream_and_from_the_cache(site: Site) -> None:  # noqa: F811
    key = make_key("ed25519")
    digest = setup(site, key)
    ref, cfg = f"{site.registry}/{REPO}:1.0", str(site.config_path)
    sign_bundle(site.upstream.host, REPO, digest, key)
    # before any pass, with the policy given by hand; the fleet's trust file as committed
    trust = site.tmp / "trust.yaml"
    trust.write_text(site.fleet.files[".gitedge/trust.yaml"])
    r = gitedge("verify-image", ref, "--config", cfg, "--trust", str(trust))
    assert r.returncode == 0, r.stderr
    assert f"digest  {digest}" in r.stdout and "found   bundle" in r.stdout
    assert "verified: signed by edge-ci (bundle)" in r.stdout
    assert site.run(at(0)).outcomes["apply"] == "ok"
    # from the cache, offline, with the policy of the last verified commit
    site.up.online = False
    r = gitedge("verify-image", ref, "--config", cfg, "--cache", "-o", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["verified"] and doc["digest"] == digest and doc["cached"] != digest  # amd64 cut
    assert doc["read"] == "cache" and doc["formsFound"] == ["bundle"]
    # an image nobody signed: exit 1, the reason said
    site.up.online = True
    other = push_image(site.tmp / "o", f"{site.upstream.host}/{REPO}:2.0").digest
    r = gitedge("verify-image", f"{site.registry}/{REPO}@{other}", "--config", cfg)
    assert r.returncode == 1 and "REFUSED: no signature found" in r.stdout, r.stderr


def test_apply_step_judges_the_cache_again_before_any_plan(
    site: Site,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The signature is removed from the cache after the mirror step judged it and before the
    apply step: the apply step refuses (its own check, from the cache) and prints nothing."""
    key = make_key()
    digest = setup(site, key)
    sign_simple(site.upstream.host, REPO, digest, key)
    sig = site.cache.root / "docker/registry/v2/repositories" / REPO / "_manifests/tags"
    sig = sig / f"{digest.replace(':', '-')}.sig"
    agent = site.agent()
    mirror_step = reconcile.mirror_step

    def mirror_then_tamper(*args: Any, **kw: Any) -> Any:
        out = mirror_step(*args, **kw)
        shutil.rmtree(sig)  # between the two steps
        return out

    monkeypatch.setattr(reconcile, "mirror_step", mirror_then_tamper)
    try:
        p = agent.reconcile(now=at(0))
    finally:
        agent.close()
    assert p.outcomes["mirror"] == "ok" and p.outcomes["apply"] == "stalled"
    c = next(c for c in p.conditions if c.type == "Applying")
    assert c.reason == "ImageSignatureRefused" and f"{site.registry}/{REPO}:1.0" in c.message
    assert site.printed == []


def test_an_oci_layout_cache_holds_and_judges_signatures_too(site: Site) -> None:  # noqa: F811
    """No cache registry (print mode, demo): the cache is OCI layouts under the state dir, and
    the signature artifacts (here both forms) sit in the image's layout."""
    text = site.config_path.read_text()
    site.config_path.write_text(text.replace(f"  cache: {{url: 'http://{site.cache.host}'}}\n", ""))
    key = make_key()
    digest = setup(site, key)
    sign_bundle(site.upstream.host, REPO, digest, key)
    sign_simple(site.upstream.host, REPO, digest, key)
    p = site.run(at(0))
    assert p.outcomes["apply"] == "ok", p.errors
    layout = site.tmp / "state" / "cache" / site.registry / REPO
    names = json.loads((layout / "index.json").read_text())["manifests"]
    tags = {(m.get("annotations") or {}).get("org.opencontainers.image.ref.name") for m in names}
    hexpart = digest.replace(":", "-")
    assert {hexpart, f"{hexpart}.sig"} <= tags
    site.up.online = False
    r = gitedge("verify-image", f"{site.registry}/{REPO}:1.0", "--config",
                str(site.config_path), "--cache")  # fmt: skip
    assert r.returncode == 0 and "found   bundle, simple-signing" in r.stdout, r.stdout + r.stderr


def test_signers_added_after_the_image_was_cached_are_met_from_the_source(
    site: Site,  # noqa: F811
) -> None:
    """The documented move: images mirrored before the policy lists signers; CI signs, then the
    policy is committed. The next pass finds no signature in the cache, looks at the source,
    copies the signature next to the image and applies."""
    digest = push_image(site.tmp, f"{site.upstream.host}/{REPO}:1.0").digest
    files = fleet_files(registry=site.registry, releases=OLD, k3s=OLD[0],
                        os_image=f"{site.registry}/{REPO}:1.0")  # fmt: skip
    site.fleet.commit(files)
    assert site.run(at(0)).outcomes["mirror"] == "ok"
    key = make_key("ed25519")
    sign_bundle(site.upstream.host, REPO, digest, key)
    site.fleet.commit({".gitedge/trust.yaml": signed_trust(site, key)})
    p = site.run(at(0, hour=3))
    assert p.outcomes["mirror"] == "ok" and p.outcomes["apply"] == "ok", p.errors
    assert p.status["mirror"]["images"][0]["signature"]["form"] == "bundle"
