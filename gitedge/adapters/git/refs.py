"""The branch's commit as a server advertises it, by ``git ls-remote`` (no pack, no pygit2).

The agent's long-lived parent asks this at each poll: when the branch is where the last pass
fetched it (and nothing else is due, ``core/passrules.pass_due``), no pass child starts. With
protocol v2 (git://, http(s), ssh) the client asks ``ls-refs`` for the one ref prefix, so the
exchange is a few hundred bytes whatever the repository holds.

Best effort by design: any failure (unreachable, refused, a credential or host key the CLI
cannot use, a timeout) answers None and the pass runs, which fetches with libgit2 and reports
the error properly. Secrets stay in their files: the password reaches git through a credential
helper that reads the file (the command line names only paths), the ssh key by ``-i``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

from gitedge.adapters.localfiles import read_bounded

__all__ = ["remote_tip"]

_OID = re.compile(rb"^([0-9a-f]{40}|[0-9a-f]{64})\t(\S+)$")
_MAX_OUTPUT = 64 << 10

_HELPER = (
    '!f() { test "$1" = get || exit 0; '
    'if [ -n "$GITEDGE_USER_FILE" ]; then '
    'printf "username=%s\\n" "$(cat "$GITEDGE_USER_FILE")"; fi; '
    'printf "password=%s\\n" "$(cat "$GITEDGE_PASSWORD_FILE")"; }; f'
)


def remote_tip(
    *,
    url: str,
    branch: str,
    timeout_s: float = 30.0,
    ssh_key_file: str | None = None,
    known_hosts_file: str | None = None,
    username_file: str | None = None,
    password_file: str | None = None,
    ca_file: str | None = None,
) -> str | None:
    """The commit ``refs/heads/<branch>`` names at ``url``; None when it cannot be learned
    (the caller then runs a full pass)."""
    ref = f"refs/heads/{branch}"
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "TMPDIR", "HOME")}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1", LC_ALL="C")
    env["GIT_CONFIG_GLOBAL"] = os.devnull
    argv = ["git", "-c", "protocol.version=2", "-c", "credential.helper="]
    if password_file:
        env["GITEDGE_PASSWORD_FILE"] = password_file
        if username_file:
            env["GITEDGE_USER_FILE"] = username_file
        argv += ["-c", f"credential.helper={_HELPER}"]
    if ca_file:
        argv += ["-c", f"http.sslCAInfo={ca_file}"]
    ssh = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, int(timeout_s))}"]
    if ssh_key_file:
        ssh += ["-i", ssh_key_file, "-o", "IdentitiesOnly=yes"]
    if username_file and not password_file:  # ssh: the user when the URL names none
        try:
            user = read_bounded(Path(username_file), limit=4096).decode("utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return None
        if user and not user.startswith("-"):
            ssh += ["-l", user]
    if known_hosts_file:
        ssh += ["-o", f"UserKnownHostsFile={known_hosts_file}", "-o", "StrictHostKeyChecking=yes"]
    env["GIT_SSH_COMMAND"] = shlex.join(ssh)
    argv += ["ls-remote", "--", url, ref]
    try:
        proc = subprocess.run(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout_s,
            cwd=Path("/"),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0 or len(proc.stdout) > _MAX_OUTPUT:
        return None
    for line in proc.stdout.splitlines():
        m = _OID.match(line)
        if m and m.group(2).decode() == ref:
            return m.group(1).decode()
    return None
