"""``gitedge demo`` from a wheel install, as a new user gets gitedge: its wheel built from this
checkout with no index, installed into an empty venv from the wheelhouse that ``.ci/wheelhouse``
prepares (``pip --no-index --find-links``: no index is reached, pip's own config ignored), and
the demo run from another directory with no checkout on ``sys.path``. The demo's example fleet
is package data (``gitedge/_examples``), copied from ``examples/`` by setup.py when the wheel is
built: the installed copy must equal the checkout's."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WHEELHOUSE = Path(os.environ.get("GITEDGE_WHEELHOUSE", ROOT / "dist" / "wheels"))
SOURCES = (
    "pyproject.toml",
    "setup.py",
    "MANIFEST.in",
    "README.md",
    "LICENSE",
    "gitedge",
    "examples",
)

pytestmark = pytest.mark.timeout(600)


def pip(python: Path | str, *args: str, cwd: Path) -> str:
    done = subprocess.run(
        [str(python), "-m", "pip", "--isolated", "--disable-pip-version-check", *args],
        cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def clean_env() -> dict[str, str]:
    """No PYTHONPATH (the checkout must not be importable) and no PIP_* settings."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("PIP_")}


def tree(root: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(root)): p
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_demo_runs_from_a_wheel_installed_into_an_empty_venv(tmp_path: Path) -> None:
    deps = [w.name for w in WHEELHOUSE.glob("*.whl") if not w.name.startswith("gitedge-")]
    assert any(n.startswith("setuptools-") for n in deps) and any(
        n.startswith("pygit2-") for n in deps
    ), f"no wheelhouse at {WHEELHOUSE}: make it with .ci/wheelhouse (it reaches the index once)"

    # gitedge's wheel from a copy of the checkout's sources: no index, setuptools from the
    # wheelhouse into pip's isolated build environment
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(ROOT / name, src / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, src / name)
    dist = tmp_path / "dist"
    pip(sys.executable, "wheel", "--no-deps", "--no-index", "--find-links", str(WHEELHOUSE),
        "-w", str(dist), str(src), cwd=tmp_path)  # fmt: skip
    (wheel,) = dist.glob("gitedge-*.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    pip(
        python,
        "install",
        "--no-compile",
        "--no-index",
        "--find-links",
        str(WHEELHOUSE),
        str(wheel),
        cwd=tmp_path,
    )

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [str(python), "-c", "import gitedge; print(gitedge.__file__)"],
        cwd=elsewhere, env=clean_env(), capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    package = Path(where.stdout.strip()).parent
    assert package.is_relative_to(venv), package  # the venv's copy, not the checkout

    # the packaged examples are the checkout's, file for file (what the demo reads: setup.py's
    # SHIPPED; examples/site-overlay is a kustomize overlay for operators, not demo input)
    shipped, source = tree(package / "_examples"), tree(ROOT / "examples")
    source = {k: v for k, v in source.items() if not k.startswith("site-overlay/")}
    assert sorted(shipped) == sorted(source)
    for name, path in source.items():
        assert filecmp.cmp(path, shipped[name], shallow=False), name

    demo = subprocess.run(
        [str(venv / "bin" / "gitedge"), "demo"],
        cwd=elsewhere, env=clean_env(), capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert str(ROOT) not in demo.stdout + demo.stderr
    assert demo.stdout.rstrip().endswith(
        "demo ok: verified, mirrored and applied (printed) as the fleet asked"
    )
