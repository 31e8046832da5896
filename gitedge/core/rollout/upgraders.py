"""The upgrade container of an OS Plan, as each upgrader's own project runs it under SUC.

Pure. SUC's Job (rancher/system-upgrade-controller pkg/upgrade/job/job.go ``New``) runs the
upgrade container privileged with CAP_SYS_BOOT, with ``hostIPC``, ``hostPID`` and
``hostNetwork``, the host's ``/`` mounted at ``/host`` (volume ``host-root``), and each
``spec.secrets`` entry mounted read-only at its ``path`` (pkg/upgrade/container/container.go
``WithSecrets``). Each upgrader below uses exactly that host access, as its project does:

- ``kairos``: the Plan Kairos ships, kairos-io/kairos examples/plans/system-upgrade.yaml (and
  https://kairos.io/docs/upgrade/kubernetes/): ``upgrade.image`` the OS image, ``command``
  ``/usr/sbin/suc-upgrade``, nothing else. That script is in every Kairos image
  (kairos-init/pkg/bundled/bundled.go ``SucUpgrade``): it compares ``/etc/kairos-release`` with
  ``$HOST_DIR/etc/kairos-release`` (``HOST_DIR`` defaults to SUC's ``/host``), bind-mounts the
  host's ``/dev`` and ``/run``, runs ``kairos-agent upgrade --source dir:/`` and reboots with
  ``nsenter -i -m -t 1 -- reboot`` (hostPID makes PID 1 the host's init).
- ``elemental``: the Plan elemental-operator builds from a ManagedOSImage
  (rancher/elemental-operator controllers/managedosimage_controller.go
  ``newFleetBundleResources``): ``command`` ``/usr/sbin/suc-upgrade`` (rancher/elemental
  framework/files/usr/sbin/suc-upgrade: ``nsenter -i -m -t 1`` for systemctl and reboot),
  tolerations ``Exists``, and the Secret holding the ManagedOSImage's ``cloudConfig`` (key
  ``cloud-config``) mounted at ``/run/data``. gitedge mounts ``os.cloudConfigSecret`` there when
  set, with ``ignoreUpdates: true``: SUC then neither hashes the Secret into ``latestHash``
  (pkg/upgrade/plan/plan.go ``DigestStatus``; the agent computes that hash from the Plan alone,
  core/rollout/clusterstate.py) nor requires it to exist (job.go: the volume's ``Optional`` is
  ``IgnoreUpdates``). Unlike elemental-operator, editing the Secret alone starts no upgrade: the
  fleet commit does. Without a Secret the script removes ``/oem/90_operator.yaml`` on the host,
  as it does under elemental-operator with an empty ``cloudConfig``.
- ``bootc``: bootc documents no SUC Plan. It documents its CLI: ``bootc switch [--apply]
  <TARGET>`` ("a management agent control[s] operating system updates via container image
  tags", containers/bootc docs/src/man/bootc-switch.md) and ``bootc upgrade``, driven by
  fork/exec (docs/src/bootc-via-api.md). bootc refuses to run in a container (lib/src/cli.rs
  ``prepare_for_write``: ``running_in_container`` reads the ``container`` variable and
  ``/run/.containerenv``) and needs an ostree-booted host, so the host's own bootc runs in the
  host's namespaces, entered as Kairos and Elemental enter them: ``nsenter -i -m -t 1 --``, with
  ``container`` unset (an image config may set it, as Fedora-family ones do; the Job runs the
  OS image, and bootc reads the variable whatever the namespace). ``switch`` rather than
  ``upgrade``: the image is pinned by digest in the cache, so each target is a new reference;
  ``upgrade`` would re-pull the reference the host already tracks. ``--apply`` reboots; the Job's
  pod runs again after the reboot and ``switch`` then finds "Image specification is unchanged"
  and exits 0 (cli.rs ``switch``), which completes the Job.
- ``custom``: the target's ``command``/``args``.
"""

from __future__ import annotations

from typing import Any

from gitedge.core.fleet.osimage import OsTarget

SUC_UPGRADE = "/usr/sbin/suc-upgrade"
ELEMENTAL_DATA = "/run/data"  # elemental-operator's Plan: Secrets[{Path: "/run/data"}]
HOST_NS = ("nsenter", "-i", "-m", "-t", "1", "--")  # the host's IPC and mount namespaces

__all__ = ["ELEMENTAL_DATA", "HOST_NS", "SUC_UPGRADE", "upgrade_spec"]


def upgrade_spec(*, os: OsTarget, image: str, pinned: str) -> tuple[dict[str, Any], list[Any]]:
    """The Plan's ``upgrade`` container and ``secrets`` for ``os``: ``image`` as the Plan names
    it (SUC may append ``:<version>``), ``pinned`` the exact reference bootc should boot."""
    upgrade: dict[str, Any] = {"image": image}
    secrets: list[Any] = []
    if os.upgrader == "kairos":
        upgrade["command"] = [SUC_UPGRADE]
    elif os.upgrader == "elemental":
        upgrade["command"] = [SUC_UPGRADE]
        if os.cloud_config_secret:
            secrets.append(
                {"name": os.cloud_config_secret, "path": ELEMENTAL_DATA, "ignoreUpdates": True}
            )
    elif os.upgrader == "bootc":
        upgrade["command"] = [*HOST_NS, "env", "-u", "container", "bootc", "switch", "--apply"]
        upgrade["args"] = [pinned]
    else:
        upgrade["command"] = list(os.command or ())
        if os.args:
            upgrade["args"] = list(os.args)
    return upgrade, secrets
