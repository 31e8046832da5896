"""The wheel carries ``examples/`` (the demo's fleet repo, agent config and cluster files) as
package data, ``gitedge/_examples``, so that ``gitedge demo`` runs from any install.
``examples/`` stays the one source: it is copied when the wheel is built, never kept twice in
the repo. An editable install builds no copy; the demo then reads the checkout's ``examples/``."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = ("agent.yaml", "clusters", "fleet-repo")


class BuildPyWithExamples(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        dst = Path(self.build_lib) / "gitedge" / "_examples"
        shutil.rmtree(dst, ignore_errors=True)
        dst.mkdir(parents=True)
        for name in SHIPPED:
            src = ROOT / "examples" / name
            if src.is_dir():
                shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, dst / name)


setup(cmdclass={"build_py": BuildPyWithExamples})
