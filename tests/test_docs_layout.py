"""docs/architecture.md's layout tree names every module of the package, where it lives.

The tree is the map a reader walks the code by (issue 17): a module added, moved or renamed
without it fails here, naming the module."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _tree_paths() -> set[str]:
    doc = (ROOT / "docs" / "architecture.md").read_text()
    layout = doc[doc.index("## Layout") : doc.index("## Principles")]
    tree = layout[layout.index("```\ngitedge/\n") + 4 : layout.rindex("```")]
    paths, stack = set(), []
    for line in tree.splitlines()[1:]:
        m = re.match(r"( *)(\S+)", line)
        if m is None:
            continue
        depth = len(m.group(1)) // 2
        stack = [*stack[: depth - 1], m.group(2).rstrip("/")]
        paths.add("/".join(stack))
    return paths


def test_every_module_is_in_the_layout_tree() -> None:
    listed = _tree_paths()
    modules = {
        str(p.relative_to(ROOT / "gitedge"))
        for p in (ROOT / "gitedge").rglob("*.py")
        if p.name != "__init__.py" or p.parent.name in ("gitedge", "cli")
    }
    missing = sorted(modules - listed)
    assert not missing, f"docs/architecture.md's layout does not list: {missing}"
    gone = sorted(p for p in listed if p.endswith(".py") and p not in modules)
    assert not gone, f"docs/architecture.md's layout lists modules that do not exist: {gone}"
