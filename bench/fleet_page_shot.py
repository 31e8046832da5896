"""The README's screenshot of the fleet page: N sites of the example fleet (tests/fleetkit.py)
pushed into a local docker-registry, ``gitedge fleet status -o html``, and headless Chromium's
screenshot of the page.

    python3 bench/fleet_page_shot.py [--sites 600] [--out docs/fleet-page.png]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.fleetkit import example_fleet, push_reports  # noqa: E402
from tests.registryserver import docker_registry  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sites", type=int, default=600)
    ap.add_argument("--out", default=str(ROOT / "docs" / "fleet-page.png"))
    ap.add_argument("--size", default="1280,1560", help="the window, WIDTH,HEIGHT")
    args = ap.parse_args()
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    with tempfile.TemporaryDirectory(prefix="gitedge-page-") as tmp:
        page = Path(tmp) / "fleet.html"
        with docker_registry(Path(tmp) / "registry") as registry:
            push_reports(registry.host, "fleet/sites", example_fleet(args.sites, now=now))
            subprocess.run(
                [sys.executable, "-m", "gitedge", "fleet", "status", "--registry",
                 f"{registry.host}/fleet/sites", "--cache-dir", f"{tmp}/cache",
                 "--now", now.isoformat(), "-o", "html", "--out", str(page)],
                check=True, timeout=300,
            )  # fmt: skip
        subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--user-data-dir={tmp}/profile", f"--window-size={args.size}",
             f"--screenshot={args.out}", page.as_uri()],
            check=True, timeout=120, capture_output=True,
            env={**os.environ, "HOME": tmp, "XDG_CONFIG_HOME": f"{tmp}/config",
                 "XDG_CACHE_HOME": f"{tmp}/cache-xdg"},
        )  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
