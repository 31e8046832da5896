"""Safe YAML for untrusted fleet repos: line numbers, no arbitrary tags, bounded expansion.

PyYAML's composer (libyaml when available) builds the node graph; this module turns nodes into
plain Python values itself, so that it can:

- accept only the YAML 1.1 core tags (str, int, float, bool, null, timestamp, map, seq, merge);
- cap alias expansion (a "billion laughs" file fails fast instead of eating the agent's memory);
- refuse duplicate mapping keys (PyYAML silently keeps the last one);
- keep each document's node tree, so validation errors are mapped back to ``path:line``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from gitedge.errors import Problem

try:  # libyaml is ~10x faster; the pure-Python composer behaves the same
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - PyYAML wheels ship libyaml
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

MAX_NODES = 200_000  # per file, counting every alias expansion
MAX_DEPTH = 64

_T = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_T + t for t in ("str", "int", "float", "bool", "null", "timestamp")}
_constructor = yaml.SafeLoader("")  # only its scalar constructors are used; they read the node
_SCALAR = yaml.SafeLoader.yaml_constructors


class YamlProblem(Exception):
    """Raised inside conversion; turned into a Problem by :func:`parse_documents`."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


@dataclass(frozen=True)
class Document:
    """One YAML document: its value, its node tree (for line lookups) and its first line."""

    value: Any
    node: yaml.Node
    line: int


def parse_documents(data: bytes, *, path: str) -> tuple[list[Document], list[Problem]]:
    """Parse every document of a YAML stream; problems name ``path`` and the line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return [], [Problem(path, 0, f"not valid UTF-8 (byte {e.start})")]
    loader = _Loader(text)
    docs: list[Document] = []
    budget = [MAX_NODES]
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # pragma: no cover - check_node said there is one
                break
            if isinstance(node, yaml.ScalarNode) and node.tag == _T + "null":
                continue  # an empty document (e.g. a trailing '---')
            value = _convert(node, budget, depth=0)
            docs.append(Document(value=value, node=node, line=node.start_mark.line + 1))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 0
        return [], [Problem(path, line, f"YAML syntax error: {e.problem or e.context}")]
    except yaml.YAMLError as e:
        return [], [Problem(path, 0, f"YAML error: {e}")]
    except YamlProblem as e:
        return [], [Problem(path, e.line, e.message)]
    finally:
        loader.dispose()
    return docs, []


def _convert(node: yaml.Node, budget: list[int], *, depth: int) -> Any:
    line = node.start_mark.line + 1
    budget[0] -= 1
    if budget[0] < 0:
        raise YamlProblem(line, f"document expands to more than {MAX_NODES} nodes (alias bomb?)")
    if depth > MAX_DEPTH:
        raise YamlProblem(line, f"nesting deeper than {MAX_DEPTH} levels (recursive alias?)")
    if isinstance(node, yaml.ScalarNode):
        if node.tag == _T + "str":
            return node.value
        if node.tag not in _SCALAR_TAGS:
            raise YamlProblem(line, f"YAML tag {node.tag!r} is not allowed")
        try:
            return _SCALAR[node.tag](_constructor, node)
        except (ValueError, yaml.YAMLError) as e:
            kind = node.tag.rsplit(":", 1)[-1]
            raise YamlProblem(line, f"bad {kind} value {node.value!r}: {e}") from None
    if isinstance(node, yaml.SequenceNode):
        if node.tag != _T + "seq":
            raise YamlProblem(line, f"YAML tag {node.tag!r} is not allowed")
        return [_convert(item, budget, depth=depth + 1) for item in node.value]
    if isinstance(node, yaml.MappingNode):
        if node.tag != _T + "map":
            raise YamlProblem(line, f"YAML tag {node.tag!r} is not allowed")
        out: dict[Any, Any] = {}
        explicit: set[Any] = set()
        merged: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _T + "merge":
                for source in _merge_sources(value_node):
                    for k, v in _convert(source, budget, depth=depth + 1).items():
                        merged.setdefault(k, v)
                continue
            key = _convert(key_node, budget, depth=depth + 1)
            if isinstance(key, (list, dict)):
                raise YamlProblem(key_node.start_mark.line + 1, "mapping keys must be scalars")
            if key in explicit:
                raise YamlProblem(key_node.start_mark.line + 1, f"duplicate key {key!r}")
            explicit.add(key)
            out[key] = _convert(value_node, budget, depth=depth + 1)
        for k, v in merged.items():
            out.setdefault(k, v)
        return out
    raise YamlProblem(line, "unsupported YAML node")  # pragma: no cover


def _merge_sources(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [node]
    if isinstance(node, yaml.SequenceNode) and all(
        isinstance(n, yaml.MappingNode) for n in node.value
    ):
        return list(node.value)
    raise YamlProblem(node.start_mark.line + 1, "a merge key '<<' needs a mapping or mappings")


def line_of(node: yaml.Node, loc: Sequence[int | str]) -> int:
    """The line of the deepest node along ``loc`` (a pydantic error location)."""
    line = node.start_mark.line + 1
    current = node
    for part in loc:
        nxt: yaml.Node | None = None
        if isinstance(current, yaml.MappingNode):
            for k, v in current.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                    nxt = v
                    break
        elif (
            isinstance(current, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(current.value)
        ):
            nxt = current.value[part]
        if nxt is None:
            break
        current = nxt
        line = current.start_mark.line + 1
    return line


def validation_problems(
    err: ValidationError, *, path: str, node: yaml.Node, prefix: str = "", skip: int = 0
) -> list[Problem]:
    """Turn a pydantic ValidationError into ``path:line: prefix: field: message`` problems.

    ``skip`` drops leading location parts that are not in the YAML (e.g. a wrapper model).
    """
    out = []
    for e in err.errors(include_url=False):
        loc = [p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        loc = loc[skip:]
        where = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in loc)
        where = where.replace(".[", "[")
        msg = e["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        text = f"{where}: {msg}" if where else msg
        out.append(Problem(path, line_of(node, loc), f"{prefix}: {text}" if prefix else text))
    return out
