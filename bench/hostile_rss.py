"""Measure: peak RSS of a `gitedge mirror` process fed an endless body by a hostile registry.

Issue 13 saw 11.8 GB in 40 s when a registry's ``WWW-Authenticate`` realm answered with an
endless body. Here a hostile server on 127.0.0.1 (tests/hostileserver.py) plays the registry
(``401 Bearer realm=...`` on every request without our token) and its realm (an endless JSON
body), and, in a second case, answers the manifest itself with an endless body. The mirror is
run as its own process, with credentials from an agent config; its peak RSS is ``ru_maxrss``
from ``wait4`` on that child. Prints one line per case; asserts nothing.

    python3 bench/hostile_rss.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.hostileserver import Answer, Request, hostile_server  # noqa: E402


def realm_case(realm: str) -> Answer:
    challenge = f'Bearer realm="{realm}",service="hostile",scope="repository:edge/os:pull"'
    return Answer(401, (("WWW-Authenticate", challenge), ("Content-Length", "0")))


def run(case: str, tmp: Path) -> None:
    endless = Answer(200, (("Content-Type", "application/json"),), b'{"token":"', endless=True)

    def answer(req: Request) -> Answer:
        if case == "realm":
            realm = f"http://{req.headers['Host']}/token"  # absolute, as registries send it
            return endless if req.path.startswith("/token") else realm_case(realm)
        return Answer(200, (("Content-Type", "application/vnd.oci.image.manifest.v1+json"),),
                      b"{ ", endless=True)  # fmt: skip

    (tmp / "user").write_text("site-agent\n")
    (tmp / "password").write_text("not-a-real-password\n")
    with hostile_server(answer) as reg:
        config = tmp / "agent.yaml"
        config.write_text(
            "apiVersion: gitedge.io/v1alpha1\nkind: AgentConfig\n"
            "cluster: {name: bench}\nsource: {url: 'git://127.0.0.1/fleet'}\n"
            "trust: {bootstrap: /dev/null}\n"
            f"registry:\n  upstreamAuth:\n    '{reg.host}':\n"
            f"      usernameFile: {tmp / 'user'}\n      passwordFile: {tmp / 'password'}\n"
        )
        cmd = [sys.executable, "-m", "gitedge", "mirror", f"{reg.host}/edge/os:1.0",
               f"oci:{tmp / 'out'}:1.0", "--config", str(config)]  # fmt: skip
        began = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - began
        err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
        sent = reg.bytes_sent
    print(
        f"endless {case} body: exit {os.waitstatus_to_exitcode(status)} in {seconds:.1f}s, "
        f"peak RSS {usage.ru_maxrss / 1024:.1f} MiB, server wrote {sent / 2**20:.1f} MiB "
        f"before the client stopped reading\n  stderr: {err[:300]}"
    )


def main() -> None:
    for case in ("realm", "manifest"):
        with tempfile.TemporaryDirectory() as d:
            run(case, Path(d))


if __name__ == "__main__":
    main()
