"""Bundles that bring commits and no image (issue 13): a trust rotation carried to an offline site.

``gitedge bundle create --all`` on a fleet whose targets need no image used to end in a traceback
(``FileNotFoundError .../images/oci-layout``). Now the bundle holds an empty OCI layout and
imports like any other: the site verifies the rotation, then a commit signed by the new key.
Real ``git`` (a local fleet repo, signed in process with ssh-keygen keys), the real CLI.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

from gitedge.adapters.images.bundlefile import read_index
from gitedge.adapters.state import State
from tests.agentkit import START, FleetRepo
from tests.sigtools import SshKey, make_ssh_key
from tests.test_bundle import write_site


def gitedge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gitedge", *args], capture_output=True, text=True, timeout=120
    )


def two_key_trust(old: SshKey, new: SshKey) -> str:
    return (
        "apiVersion: gitedge.io/v1alpha1\nkind: TrustPolicy\nmetadata: {name: fleet}\nspec:\n"
        f"  signers:\n    - name: release\n      key: {old.public!r}\n"
        "      roles: [release, admin]\n"
        f"    - name: release-2027\n      key: {new.public!r}\n"
        "      roles: [release, admin]\n  verify: all\n"
    )


def test_commits_only_bundles_carry_a_trust_rotation_to_an_offline_site(tmp_path: Path) -> None:
    old = make_ssh_key(tmp_path / "keys", "ed25519", comment="release@fleet.example")
    new = make_ssh_key(tmp_path / "keys2", "ed25519", comment="release-2027@fleet.example")
    fleet = FleetRepo(tmp_path / "fleet.git", old)
    fleet.commit({"README.md": "no target yet\n"}, at=START)
    c2 = fleet.commit({".gitedge/trust.yaml": two_key_trust(old, new)}, at=START + 60)
    site = write_site(tmp_path / "site", git_url="git://127.0.0.1:9/absent.git", key=old,
                      k3s="v1.27.16+k3s1")  # fmt: skip

    full = tmp_path / "rotation.tar"
    r = gitedge("bundle", "create", "--repo", str(fleet.path), "--all", "--out", str(full), "-q")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    index = read_index(full)
    assert index.tip == c2 and index.images == ()
    with tarfile.open(full) as t:  # the same members as any bundle: an empty layout
        assert {"images/oci-layout", "images/index.json"} <= set(t.getnames())

    r = gitedge("bundle", "import", str(full), "--config", str(site), "-q")
    assert r.returncode == 0, r.stderr
    assert f"verified 2 new commit(s), now at {c2}" in r.stdout

    fleet.key = new  # the new key signs from now on; a commits-only incremental bundle
    c3 = fleet.commit({"README.md": "signed by the 2027 key\n"}, at=START + 120)
    inc = tmp_path / "next.tar"
    r = gitedge("bundle", "create", "--repo", str(fleet.path), "--all", "--since", c2,
                "--out", str(inc), "-q")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert read_index(inc).since == c2
    r = gitedge("bundle", "import", str(inc), "--config", str(site), "-q")
    assert r.returncode == 0, r.stderr
    state = State(tmp_path / "site" / "state")
    try:
        last = state.last_verified
        assert last is not None and last.commit == c3
        assert state.mirrored() == {}
    finally:
        state.close()
