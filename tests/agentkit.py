"""Helpers for the agent's end-to-end tests: a fleet repo written commit by commit (signed in
process, byte-compatible with ``ssh-keygen -Y sign``), a TCP relay whose link can be cut (a site
going offline), and images pushed to a real registry.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pygit2
from pygit2.enums import FileMode

from gitedge.adapters.images.mirroring import Mirror
from tests.registryserver import LayoutImage, make_layout
from tests.sigtools import SshKey, allowed_signers_line, make_ssh_key, sshsig_sign_fast

START = 1_767_225_600  # 2026-01-01T00:00:00Z
DAY = 86_400


def trust_yaml(key: SshKey, *, require_digest: bool = False) -> str:
    """The fleet's TrustPolicy: ``key`` as release and admin. Tag-only images are allowed
    (``images.requireDigest: false``) unless a test asks for the default rule."""
    return (
        "apiVersion: gitedge.io/v1alpha1\nkind: TrustPolicy\nmetadata: {name: fleet}\nspec:\n"
        f"  signers:\n    - name: release\n      key: {key.public!r}\n"
        "      roles: [release, admin]\n  verify: all\n"
        f"  images: {{requireDigest: {'true' if require_digest else 'false'}}}\n"
    )


def fleet_files(
    *, registry: str, releases: list[str], k3s: str, os_image: str | None, window: bool = True
) -> dict[str, str]:
    """A small fleet: one K3s catalog, one window (every night 01:00-05:00 UTC), one target."""
    files = {
        "releases.yaml": "apiVersion: gitedge.io/v1alpha1\nkind: K3sReleases\n"
        "metadata: {name: k3s}\nspec:\n  versions: [" + ", ".join(releases) + "]\n",
        "windows.yaml": "apiVersion: gitedge.io/v1alpha1\nkind: MaintenanceWindow\n"
        "metadata: {name: nights}\nspec:\n"
        "  timeZone: UTC\n  days: [mon, tue, wed, thu, fri, sat, sun]\n"
        '  start: "01:00"\n  end: "05:00"\n',
    }
    target = (
        "apiVersion: gitedge.io/v1alpha1\nkind: UpgradeTarget\nmetadata: {name: all}\nspec:\n"
        "  clusterSelector: {}\n"
        + ("  window: nights\n" if window else "")
        + f"  k3s: {{version: {k3s}, upgradeImage: {registry}/rancher/k3s-upgrade}}\n"
    )
    if os_image:
        target += f"  os: {{image: {os_image}, upgrader: kairos}}\n"
    files["targets.yaml"] = target
    return files


class FleetRepo:
    """A bare repo (served by ``git daemon``) whose ``main`` gets signed commits, fast."""

    def __init__(self, path: Path, key: SshKey) -> None:
        self.path = path
        self.key = key
        self.repo = pygit2.init_repository(str(path), bare=True, initial_head="main")
        self.files: dict[str, str] = {".gitedge/trust.yaml": trust_yaml(key)}
        self.head: pygit2.Oid | None = None
        self.n = 0

    def _tree(self) -> pygit2.Oid:
        dirs: dict[str, dict[str, str]] = {}
        for name, text in self.files.items():
            d, _, base = name.rpartition("/")
            dirs.setdefault(d, {})[base] = text
        root = self.repo.TreeBuilder()
        for d, entries in sorted(dirs.items()):
            tb = self.repo.TreeBuilder() if d else root
            for base, text in sorted(entries.items()):
                tb.insert(base, self.repo.create_blob(text.encode()), FileMode.BLOB)
            if d:
                root.insert(d, tb.write(), FileMode.TREE)
        return root.write()

    def commit(
        self,
        files: dict[str, str] | None = None,
        *,
        at: int | None = None,
        signed: bool = True,
        parent: pygit2.Oid | str | None = "head",
    ) -> str:
        """Commit ``files`` (merged into the tree) on top of ``parent`` and move main there."""
        self.n += 1
        self.files.update(files or {"notes.txt": f"change {self.n}\n"})
        when = at if at is not None else START + self.n * 60
        who = pygit2.Signature("Release Bot", "release@fleet.example", when, 0)
        base = self.head if parent == "head" else parent
        parents = [base] if isinstance(base, pygit2.Oid) else []
        payload = self.repo.create_commit_string(
            who, who, f"change {self.n}\n", self._tree(), parents
        )
        if signed:
            sig = sshsig_sign_fast(self.key, payload.encode()).decode()
            oid = self.repo.create_commit_with_signature(payload, sig)
        else:
            oid = self.repo.create_commit(
                None, who, who, f"change {self.n}\n", self._tree(), parents
            )
        self.set_main(oid)
        return str(oid)

    def set_main(self, oid: pygit2.Oid | str) -> None:
        target = oid if isinstance(oid, pygit2.Oid) else pygit2.Oid(hex=oid)
        self.repo.references.create("refs/heads/main", target, force=True)
        self.head = target


class Relay:
    """A TCP relay on 127.0.0.1:N to ``target`` port. ``online = False`` cuts the link: every
    connection is closed at once, as when the site's uplink is down."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.online = True
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = int(self._sock.getsockname()[1])
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._closed = False
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            if not self.online:
                client.close()
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.target), timeout=10)
            except OSError:
                client.close()
                continue
            self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                t = threading.Thread(target=self._pump, args=(a, b), daemon=True)
                t.start()
                self._threads.append(t)

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                b.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closed = True
        for s in (self._sock, *self._conns):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept/recv; close alone does not
            s.close()
        for t in self._threads:
            t.join(timeout=5)


@contextlib.contextmanager
def relay(target: int) -> Iterator[Relay]:
    r = Relay(target)
    try:
        yield r
    finally:
        r.close()


def push_image(tmp: Path, dst: str, *, sizes: tuple[int, ...] = (20_000,)) -> LayoutImage:
    """A fresh two-platform image made as an OCI layout and pushed to ``dst`` (a registry)."""
    safe = dst.replace("/", "_").replace(":", "_")
    img = make_layout(tmp / "layouts" / safe, tag="x", layer_sizes=sizes)
    with Mirror() as m:
        m.mirror(f"oci:{img.path}:x", dst)
    return img


# SUC's kubectl image (issue 15): every Job that cordons or drains runs it, so the agent mirrors it
# with any step and bundles carry it. SUC v0.20.1's default is on docker.io (unreachable here), so
# a test site pushes its own copy to its local upstream and names it.
KUBECTL = "rancher/kubectl:v1.30.3"


def push_kubectl(tmp: Path, host: str) -> tuple[str, LayoutImage]:
    """SUC's kubectl image pushed to the registry at ``host``: the reference to name as
    AgentConfig ``apply.kubectlImage`` / ``bundle create --kubectl-image``, and the image."""
    ref = f"{host}/{KUBECTL}"
    return ref, push_image(tmp / "kubectl", ref)


def served_fleet_repo(tmp: Path) -> FleetRepo:
    """A fleet repo under ``tmp/served`` (for ``git daemon``) signed by a new ed25519 key that
    ``tmp/allowed_signers`` trusts as ``release``."""
    key = make_ssh_key(tmp / "keys", "ed25519")
    (tmp / "allowed_signers").write_text(allowed_signers_line("release", key) + "\n")
    return FleetRepo(tmp / "served" / "fleet.git", key)


def sigkill_when(
    proc: subprocess.Popen[bytes],
    reached: threading.Event,
    release: threading.Event,
    *,
    what: str,
    before: Callable[[], None] | None = None,
) -> None:
    """SIGKILL ``proc`` once ``reached`` is set (``before`` runs first), then set ``release`` so
    the server side that held the process there goes on; the process is reaped either way."""
    try:
        assert reached.wait(90), what
        if before is not None:
            before()
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
