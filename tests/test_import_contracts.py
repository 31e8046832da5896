"""The acyclic_modules contract (.ci/importcontracts.py) run by the real lint-imports on a tiny package.

It must list each cycle with its modules and line numbers, count imports made inside functions
and under `if TYPE_CHECKING:` (the real graph), and pass once the cycle is gone.
"""

import os
import subprocess
import sys
from pathlib import Path

CI = Path(__file__).resolve().parent.parent / ".ci"

CONFIG = """\
[importlinter]
root_package = pkg
contract_types =
    acyclic_modules: importcontracts.AcyclicModulesContract

[importlinter:contract:cycles]
name = no cycle
type = acyclic_modules
root = pkg
"""


def _lint(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{CI}", COLUMNS="200")
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(lint), "--config", str(tmp_path / ".importlinter"), "--no-cache"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _package(tmp_path: Path, files: dict[str, str]) -> None:
    (tmp_path / ".importlinter").write_text(CONFIG)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    for name, text in files.items():
        (tmp_path / "pkg" / name).write_text(text)


def test_cycles_are_listed_with_their_lines(tmp_path):
    _package(
        tmp_path,
        {
            "a.py": "import pkg.b\n",
            "b.py": "def f():\n    from pkg import a  # inside a function\n",
            "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import d\n",
            "d.py": "import pkg.c\n",
            "e.py": "import pkg.a\n",  # imports into a cycle, is on none
        },
    )
    done = _lint(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Import cycles among 2 modules: pkg.a, pkg.b" in done.stdout
    assert "pkg.a -> pkg.b (l.1)" in done.stdout
    assert "pkg.b -> pkg.a (l.2)" in done.stdout
    assert "Import cycles among 2 modules: pkg.c, pkg.d" in done.stdout
    assert "pkg.c -> pkg.d (l.3)" in done.stdout
    assert "pkg.e" not in done.stdout


def test_no_cycle_keeps_the_contract(tmp_path):
    _package(tmp_path, {"a.py": "import pkg.b\n", "b.py": "import pkg.c\n", "c.py": "X = 1\n"})
    done = _lint(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no cycle KEPT" in done.stdout
