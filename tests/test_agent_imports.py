"""gitedge/agent imports (issue 17): no cycle among its modules, TYPE_CHECKING imports counted
(the pass's result types live in agent/passtypes.py, which imports no step); pygit2 only through
adapters/ (GitMirror's methods); anywhere in gitedge/, an import inside a function only with a
comment on its line, or the line above, saying why. (`lint-imports` checks the layers and cycles
of the whole package in CI; this file keeps the same rules for agent/ in the test suite.)"""

from __future__ import annotations

import ast
from pathlib import Path

import gitedge

PACKAGE = Path(gitedge.__file__).parent
AGENT = PACKAGE / "agent"


def _trees(root: Path = AGENT) -> dict[str, tuple[ast.Module, list[str]]]:
    out = {}
    for p in sorted(root.rglob("*.py")):
        text = p.read_text()
        parts = p.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(("gitedge", *parts[: -1 if parts[-1] == "__init__" else None]))
        out[name] = (ast.parse(text), text.splitlines())
    return out


def _imported(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(v: str, path: list[str]) -> list[str] | None:
        state[v] = 1
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return [*path[path.index(w) :], w] if w in path else [*path, w]
            if w not in state:
                found = visit(w, [*path, w])
                if found:
                    return found
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state:
            found = visit(v, [v])
            if found:
                return found
    return None


def test_agent_modules_import_no_cycle() -> None:
    trees = _trees()
    graph = {m: {d for d in _imported(t) if d in trees and d != m} for m, (t, _) in trees.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or ())


def test_the_cycle_check_sees_a_type_checking_import() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert _cycle(graph) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_pygit2_only_through_adapters() -> None:
    users = sorted(m for m, (t, _) in _trees().items() if "pygit2" in _imported(t))
    assert users == []


def test_an_import_in_a_function_says_why() -> None:
    silent = []
    for m, (tree, lines) in _trees(PACKAGE).items():
        for f in ast.walk(tree):
            if not isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for n in ast.walk(f):
                if not isinstance(n, ast.Import | ast.ImportFrom):
                    continue
                said = lines[n.lineno - 1 : (n.end_lineno or n.lineno)]
                if not any("#" in line for line in said) and "#" not in lines[n.lineno - 2]:
                    silent.append(f"{m}:{n.lineno}")
    assert silent == []
