"""What each command's process loads (cli/__init__.py imports only the chosen command's module,
and each module imports what it needs at its top): ``--help`` loads no library, a pass's process
(``run --once`` / ``--pass-fd``) no scheduler or status server, the long-lived ``run`` none of
the pass's libraries, ``verify`` no pydantic, ``plan`` the models only once its parse started.

Each probe is a fresh interpreter, as the command's own process is.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: libraries a pass needs and the long-lived agent must not hold (bench/agent.py: idle RSS)
PASS_LIBRARIES = {"pygit2", "cryptography", "requests", "kubernetes"}


def loaded(code: str) -> set[str]:
    """The top-level names of the modules loaded after running ``code`` in a fresh process."""
    names = "sorted({m.split('.')[0] for m in sys.modules})"
    probe = f"{code}\nimport json, sys\nprint(json.dumps({names}))"
    p = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return set(json.loads(p.stdout.strip().splitlines()[-1]))


def test_help_loads_no_library() -> None:
    mods = loaded(
        "import contextlib, io\nfrom gitedge.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n    main(['--help'])"
    )
    assert "gitedge" in mods
    assert not {"pydantic", "yaml", "pygit2", "requests", "cryptography", "kubernetes"} & mods


def test_a_pass_loads_no_scheduler_and_the_agent_loop_no_pass_library() -> None:
    assert "apscheduler" not in loaded("import gitedge.cli.runpass")
    loop = loaded("import gitedge.cli.runloop")
    assert "apscheduler" in loop  # the probe sees what the loop does load
    assert not PASS_LIBRARIES & loop, PASS_LIBRARIES & loop


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        ("verify", {"pydantic"}),
        ("plan", {"pydantic", "pygit2"}),
        ("run", {"apscheduler", "pygit2"}),
        ("mirror", {"pydantic", "yaml", "pygit2", "cryptography"}),
        ("status", PASS_LIBRARIES),
    ],
)
def test_a_command_module_loads_only_its_own_libraries(module: str, absent: set[str]) -> None:
    mods = loaded(f"import gitedge.cli.{module}")
    assert not absent & mods, absent & mods
