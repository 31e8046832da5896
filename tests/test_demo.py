"""``gitedge demo``, the README's first command: runs with no services, exits 0, and says what it
verified, mirrored and applied (printed), and that it refused the unsigned commit."""

from __future__ import annotations

import subprocess
import sys


def test_demo_exits_0_and_tells_the_story() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gitedge", "demo"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "verified 1 new commit(s)" in out
    assert "mirrored docker.io/rancher/k3s-upgrade:v1.29.10-k3s1" in out
    assert "fetch failed" in out and "still working from" in out
    assert "# create system-upgrade/gitedge-k3s-server" in out
    assert "unsigned" in out and "refused" in out
    assert out.rstrip().endswith(
        "demo ok: verified, mirrored and applied (printed) as the fleet asked"
    )
