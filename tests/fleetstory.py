"""The fleet and cluster the applying tests share: a store three K3s minors behind the target.

Fleet: K3sReleases v1.28.15, v1.29.10, v1.30.6; window ``nights`` (every day 01:00-05:00 UTC);
one UpgradeTarget ``stores`` for every cluster: K3s v1.30.6+k3s1 and a Kairos OS image pinned
by digest, rollout concurrency 2. Cluster: one server and two agents on v1.27.16+k3s1.
"""

from __future__ import annotations

from datetime import UTC, datetime

from gitedge.core.fleet.model import Fleet, load_fleet
from gitedge.core.rollout.sucplans import Site

HEAD = "apiVersion: gitedge.io/v1alpha1\n"
OS_DIGEST = "sha256:" + "4e" * 32
OS_IMAGE = f"registry.example.com/edge/os:1.4.2@{OS_DIGEST}"
K3S_DIGESTS = {
    f"docker.io/rancher/k3s-upgrade:{tag}": "sha256:" + c * 64
    for tag, c in (("v1.28.15-k3s1", "a"), ("v1.29.10-k3s1", "b"), ("v1.30.6-k3s1", "c"))
}
START = "v1.27.16+k3s1"
PATH = ("v1.28.15+k3s1", "v1.29.10+k3s1", "v1.30.6+k3s1")
IN_WINDOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # a Monday, 02:00 UTC: "nights" is open
OUT_OF_WINDOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
NEXT_OPEN = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
SITE = Site(namespace="system-upgrade", cache="cache.site.internal:5000", digests=K3S_DIGESTS)
NODES = (("server-0", True), ("agent-0", False), ("agent-1", False))


def fleet(
    *,
    window: str | None = "nights",
    k3s: str | None = PATH[-1],
    os: str | None = OS_IMAGE,
    order: str = "[k3s, os]",
    suspend: bool = False,
    require_digest: bool = False,
) -> Fleet:
    """The shared fleet. Its TrustPolicy opts out of ``images.requireDigest`` (the catalog lists
    versions without digests) unless a test asks for the default rule."""
    lines = [
        HEAD + "kind: UpgradeTarget",
        "metadata: {name: stores}",
        "spec:",
        "  clusterSelector: {}",
        f"  suspend: {'true' if suspend else 'false'}",
        f"  rollout: {{concurrency: 2, cordon: true, order: {order}}}",
    ]
    if window:
        lines.append(f"  window: {window}")
    if k3s:
        lines.append(f"  k3s: {{version: {k3s}}}")
    if os:
        lines.append(f"  os: {{image: '{os}', upgrader: kairos}}")
    files = {
        "releases.yaml": HEAD + "kind: K3sReleases\nmetadata: {name: catalog}\nspec:\n"
        "  versions: [v1.28.14+k3s1, v1.28.15+k3s1, v1.29.10+k3s1, v1.30.6+k3s1]\n",
        "windows.yaml": HEAD + "kind: MaintenanceWindow\nmetadata: {name: nights}\nspec:\n"
        '  days: [mon, tue, wed, thu, fri, sat, sun]\n  start: "01:00"\n  end: "05:00"\n',
        "target.yaml": "\n".join(lines) + "\n",
        ".gitedge/trust.yaml": HEAD + "kind: TrustPolicy\nmetadata: {name: fleet}\nspec:\n"
        "  signers: [{name: release, key: 'ssh-ed25519 AAAA release', roles: [release, admin]}]\n"
        f"  images: {{requireDigest: {'true' if require_digest else 'false'}}}\n",
    }
    return load_fleet({k: v.encode() for k, v in files.items()})
