"""import-linter contract types of our own (registered by `contract_types` in pyproject.toml).

`acyclic_modules`: no import cycle among the modules under `root`. import-linter's built-in
`acyclic_siblings` compares sibling *packages* (it squashes each subpackage), which forbids two
subpackages importing each other even when no module cycle exists, and it names the imports to
remove rather than the cycles. This contract finds the strongly connected components of the
module graph (every import counts: inside functions, and under `if TYPE_CHECKING:` unless the
session option `exclude_type_checking_imports` is set) and prints a shortest cycle through each
member of each, with line numbers.
"""

from __future__ import annotations

import itertools

import grimp
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


def _components(modules: set[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(modules):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return sorted(found)


def _shortest_cycle(start: str, members: set[str], edges: dict[str, set[str]]) -> list[str]:
    """A shortest path start -> ... -> start inside one component (breadth first)."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(edges[node] & members):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"{start} is in a component but on no cycle")


class AcyclicModulesContract(Contract):
    """No import cycle among the modules under `root` (each cycle is listed when broken)."""

    type_name = "acyclic_modules"

    root = fields.ModuleField()

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        root = self.root.name  # type: ignore[attr-defined]
        modules = {m for m in graph.modules if m == root or m.startswith(root + ".")}
        edges = {m: set(graph.find_modules_directly_imported_by(m)) & modules for m in modules}
        cycles = []
        for component in _components(modules, edges):
            seen: set[frozenset[tuple[str, str]]] = set()
            for start in component:  # a shortest cycle through each member, each listed once
                cycle = _shortest_cycle(start, set(component), edges)
                pairs = list(itertools.pairwise(cycle))
                if frozenset(pairs) in seen:
                    continue
                seen.add(frozenset(pairs))
                links = []
                for importer, imported in pairs:
                    details = graph.get_import_details(importer=importer, imported=imported)
                    lines = sorted({d["line_number"] for d in details})
                    links.append((importer, imported, lines))
                cycles.append({"members": component, "links": links})
        return ContractCheck(kept=not cycles, metadata={"cycles": cycles})

    def render_broken_contract(self, check: ContractCheck) -> None:
        shown: set[tuple[str, ...]] = set()
        for cycle in check.metadata["cycles"]:
            members = tuple(cycle["members"])
            if members not in shown:
                shown.add(members)
                names = ", ".join(members)
                output.print_error(f"Import cycles among {len(members)} modules: {names}")
            output.print_error("cycle:", bold=False)
            for importer, imported, lines in cycle["links"]:
                where = ", ".join(f"l.{n}" for n in lines)
                output.print_error(f"    {importer} -> {imported} ({where})", bold=False)
        output.new_line()
