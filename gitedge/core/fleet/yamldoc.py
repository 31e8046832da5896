"""Safe YAML for untrusted fleet repos: line numbers, no arbitrary tags, bounded expansion.

PyYAML's composer (libyaml when available) builds the node graph; this module turns nodes into
plain Python values itself, so that it can:

- accept only the YAML 1.1 core tags (str, int, float, bool, null, timestamp, map, seq, merge);
- cap alias expansion (a "billion laughs" file fails fast instead of eating the agent's memory);
- refuse duplicate mapping keys (PyYAML silently keeps the last one);
- keep each document's node tree, so validation errors are mapped back to ``path:line``.
"""

from __future__ import annotations

import difflib
import functools
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import yaml

from gitedge.errors import Problem, YamlProblem

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

try:  # libyaml is ~10x faster; the pure-Python composer behaves the same
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - PyYAML wheels ship libyaml
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

MAX_NODES = 200_000  # per file, counting every alias expansion
MAX_DEPTH = 64
MAX_PROBLEMS = 20  # validation problems told per document (a list of 60,000 bad items in 40
# files was 2.4 million problems: 1.4 GiB and 29 s for a 5 MB repo)

_T = "tag:yaml.org,2002:"
_STR, _SEQ, _MAP, _MERGE, _NULL = (_T + t for t in ("str", "seq", "map", "merge", "null"))
_SCALAR_NODE = yaml.ScalarNode
_SCALAR_TAGS = {_T + t for t in ("str", "int", "float", "bool", "null", "timestamp")}
_constructor = yaml.SafeLoader("")  # only its scalar constructors are used; they read the node
_SCALAR = yaml.SafeLoader.yaml_constructors
_resolve = yaml.resolver.Resolver().resolve  # the function and tables SafeLoader resolves with


class _Loader(_BaseLoader):
    """PyYAML's safe composer, with its implicit-tag resolver memoized for one file.

    The composer calls ``resolve`` for every node, and for a plain scalar that tries a list of
    regexes; fleet files repeat the same keys and values thousands of times. ``resolve`` reads
    only its arguments and class-level tables (the implicit resolvers, and the path resolvers,
    of which SafeLoader has none), so caching it by its arguments gives exactly SafeLoader's
    tags. With no path resolvers, ``descend_resolver``/``ascend_resolver`` have nothing to do.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.resolve = functools.lru_cache(maxsize=None)(_resolve)  # type: ignore[method-assign]

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        pass

    def ascend_resolver(self) -> None:
        pass


class Stream:
    """A YAML file whose node trees are composed again, once, only when a line is asked for.

    Node trees (a node and two marks per scalar) serve only to put line numbers on problems.
    Keeping them for a whole repo costs more than parsing it: millions of live objects that every
    garbage collection walks. Composing is deterministic, so the trees composed here are the ones
    the values were converted from.
    """

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._nodes: list[yaml.Node] | None = None

    def node(self, index: int) -> yaml.Node:
        """The root node of the ``index``-th document (counting empty documents too)."""
        if self._nodes is None:
            self._nodes = list(yaml.compose_all(self._data.decode("utf-8"), Loader=_Loader))
        return self._nodes[index]


@dataclass(frozen=True)
class Document:
    """One YAML document: its value, its first line, and where to find its node tree."""

    value: Any
    line: int
    stream: Stream = field(repr=False, compare=False)
    index: int = 0

    @property
    def node(self) -> yaml.Node:
        """The document's node tree, for line lookups (composed again on first use)."""
        return self.stream.node(self.index)


Parsed = tuple[list[tuple[Any, int, int]], list[Problem]]
"""(value, line, index in the stream) of each non-empty document, or the file's problems."""


def parse_documents(data: bytes, *, path: str) -> tuple[list[Document], list[Problem]]:
    """Parse every document of a YAML stream; problems name ``path`` and the line."""
    return documents(data, parse_values((data, path)))


class ParsedStream(Protocol):
    """Parse results taken in file order with next(); ``close()`` ends early."""

    def __next__(self) -> tuple[list[Document], list[Problem]]: ...

    def close(self) -> None: ...


ParseMany = Callable[[Sequence[tuple[bytes, str]]], ParsedStream]
"""Parses ``(data, path)`` pairs: :func:`parse_serial` here, or in forked workers
(:func:`gitedge.adapters.yamlworkers.parse_many`)."""


class parse_serial:  # noqa: N801 - used as a function: a ParseMany
    """:func:`parse_documents` over ``(data, path)`` pairs, in this process, one at a time."""

    def __init__(self, files: Sequence[tuple[bytes, str]]) -> None:
        self._files = iter(files)

    def __next__(self) -> tuple[list[Document], list[Problem]]:
        data, path = next(self._files)
        return documents(data, parse_values((data, path)))

    def close(self) -> None:
        self._files = iter(())


def documents(data: bytes, parsed: Parsed) -> tuple[list[Document], list[Problem]]:
    values, problems = parsed
    stream = Stream(data)
    return [Document(value, line, stream, index) for value, line, index in values], problems


def parse_values(file: tuple[bytes, str]) -> Parsed:
    """Parse one file to plain values (picklable: it may run in a worker process)."""
    data, path = file
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return [], [Problem(path, 0, f"not valid UTF-8 (byte {e.start})")]
    if len(text) > MAX_NODES:  # fewer characters than that cannot hold more nodes than that
        crowded = _crowded(text)
        if crowded is not None:
            msg = f"more than {MAX_NODES} YAML nodes in this file (counted before they are built)"
            return [], [Problem(path, crowded, msg)]
    convert = _converter()
    values: list[tuple[Any, int, int]] = []
    try:
        for index, node in enumerate(yaml.compose_all(text, Loader=_Loader)):
            # an empty document (e.g. after a trailing '---') has no value
            if not (type(node) is yaml.ScalarNode and node.tag == _NULL):
                values.append((convert(node, 0), _line(node), index))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 0
        msg = f"YAML syntax error: {e.problem or e.context}"
        lines = text.splitlines()
        bad_line = lines[mark.line] if mark and mark.line < len(lines) else ""
        if "\t" in bad_line:
            msg += (
                f" (a tab at column {bad_line.index(chr(9)) + 1}: YAML indents with spaces only; "
                "replace the tab with spaces)"
            )
        return [], [Problem(path, line, msg)]
    except yaml.YAMLError as e:
        return [], [Problem(path, 0, f"YAML error: {e}")]
    except YamlProblem as e:
        return [], [Problem(path, e.line, e.message)]
    return values, []


_NODE_EVENTS = (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent)


def _crowded(text: str) -> int | None:
    """The line where ``text`` passes :data:`MAX_NODES` nodes, or None (also when it is not
    valid YAML: composing it says why). The composer builds every node (and two marks each)
    before the converter can count them: 1 MiB of ``0,`` is 524,000 nodes, 170 MiB, and an
    unsigned commit's trust file is parsed. Parser events are counted first, one at a time,
    at a sixth of the time of composing."""
    n = 0
    try:
        for event in yaml.parse(text, Loader=_BaseLoader):
            if isinstance(event, _NODE_EVENTS):
                n += 1
                if n > MAX_NODES:
                    mark = event.start_mark
                    return mark.line + 1 if mark is not None else 0
    except yaml.YAMLError:
        return None
    return None


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _converter() -> Callable[[yaml.Node, int], Any]:
    """A node -> value converter for one file, holding the file's node budget and scalar cache.

    Every converted node, each alias expansion included, spends one unit of the budget. The
    cache holds constructed non-string scalars by (tag, text): files repeat the same numbers,
    booleans and dates, and PyYAML's scalar constructors read nothing but the text. Lines are
    computed only for problems.
    """
    budget = MAX_NODES
    scalars: dict[tuple[str, str], Any] = {}

    def convert(node: yaml.Node, depth: int) -> Any:
        nonlocal budget
        budget -= 1
        if budget < 0:
            raise YamlProblem(
                _line(node), f"document expands to more than {MAX_NODES} nodes (alias bomb?)"
            )
        if depth > MAX_DEPTH:
            raise YamlProblem(
                _line(node), f"nesting deeper than {MAX_DEPTH} levels (recursive alias?)"
            )
        kind, tag = type(node), node.tag
        if kind is yaml.ScalarNode:
            return node.value if tag == _STR else scalar(node)
        if kind is yaml.SequenceNode and tag == _SEQ:
            return [convert(item, depth + 1) for item in node.value]
        if kind is yaml.MappingNode and tag == _MAP:
            return mapping(node, depth)
        raise YamlProblem(_line(node), f"YAML tag {tag!r} is not allowed")

    def scalar(node: yaml.Node) -> Any:
        key = (node.tag, node.value)
        if key in scalars:
            return scalars[key]
        if node.tag not in _SCALAR_TAGS:
            raise YamlProblem(_line(node), f"YAML tag {node.tag!r} is not allowed")
        try:
            value = scalars[key] = _SCALAR[node.tag](_constructor, node)
        except (ValueError, yaml.YAMLError) as e:
            kind = node.tag.rsplit(":", 1)[-1]
            raise YamlProblem(_line(node), f"bad {kind} value {node.value!r}: {e}") from None
        return value

    def mapping(node: yaml.Node, depth: int) -> dict[Any, Any]:
        # Plain-string keys and values, nearly every entry of a fleet file, are taken here
        # without a call; they spend the budget all the same, and nest no deeper than a call
        # would check (``inline`` is false at the last allowed level).
        nonlocal budget
        out: dict[Any, Any] = {}
        merged: dict[Any, Any] = {}
        inline = depth < MAX_DEPTH
        for key_node, value_node in node.value:
            key_tag = key_node.tag
            if key_tag == _STR and inline and type(key_node) is _SCALAR_NODE:
                budget -= 1
                key = key_node.value
            elif key_tag == _MERGE:
                for source in _merge_sources(value_node):
                    for k, v in convert(source, depth + 1).items():
                        merged.setdefault(k, v)
                continue
            else:
                key = convert(key_node, depth + 1)
                if isinstance(key, (list, dict)):
                    raise YamlProblem(_line(key_node), "mapping keys must be scalars")
            if key in out:  # until the merge below, ``out`` holds only the explicit keys
                raise YamlProblem(_line(key_node), f"duplicate key {key!r}")
            if value_node.tag == _STR and inline and type(value_node) is _SCALAR_NODE:
                budget -= 1
                out[key] = value_node.value
            else:
                out[key] = convert(value_node, depth + 1)
        if budget < 0:
            raise YamlProblem(
                _line(node), f"document expands to more than {MAX_NODES} nodes (alias bomb?)"
            )
        for k, v in merged.items():
            out.setdefault(k, v)
        return out

    return convert


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
    return _node_at(node, loc).start_mark.line + 1


def _node_at(node: yaml.Node, loc: Sequence[int | str]) -> yaml.Node:
    """The deepest node along ``loc``."""
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
    return current


def _string_hint(node: yaml.Node, loc: Sequence[int | str]) -> str:
    """What to write when YAML read a number, a boolean or a date where text belongs (``1.30``
    is the number 1.3): the text as written, quoted; a K3s version in its full form."""
    at = _node_at(node, loc)
    if not isinstance(at, yaml.ScalarNode) or at.style:
        return ""
    raw = at.value
    named = [p for p in loc if isinstance(p, str)]
    if named and named[-1].lower().endswith(("version", "versions")):
        return (
            f"; YAML read {raw} as a number: a K3s version is a full release in quotes, "
            'e.g. "v1.31.2+k3s1"'
        )
    return f'; YAML read {raw} as a number or boolean, not text: quote it ("{raw}")'


def _unwrap(t: Any) -> Any:
    """The model (or container) inside ``Annotated[...]`` and ``X | None``."""
    from pydantic import BaseModel  # lazy: pydantic is only needed when a file has problems

    while True:
        origin = typing.get_origin(t)
        if origin is typing.Annotated:
            t = typing.get_args(t)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(t) if a is not type(None)]
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            t = (models or args)[0]
        else:
            return t


def _fields_at(model: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """The field names (as written in YAML) of the model found along ``loc`` from ``model``."""
    from pydantic import BaseModel  # lazy: pydantic is only needed when a file has problems

    t: Any = model
    for part in loc:
        t = _unwrap(t)
        origin, args = typing.get_origin(t), typing.get_args(t)
        if isinstance(t, type) and issubclass(t, BaseModel) and isinstance(part, str):
            by_name = {(f.alias or n): f for n, f in t.model_fields.items()}
            if part not in by_name:
                return []
            t = by_name[part].annotation
        elif origin in (list, tuple) and isinstance(part, int) and args:
            t = args[0]
        elif origin is dict and len(args) == 2:
            t = args[1]
        else:
            return []
    t = _unwrap(t)
    if isinstance(t, type) and issubclass(t, BaseModel):
        return [f.alias or n for n, f in t.model_fields.items()]
    return []


def validation_problems(
    err: ValidationError,
    *,
    path: str,
    node: yaml.Node,
    prefix: str = "",
    skip: int = 0,
    model: type[BaseModel] | None = None,
) -> list[Problem]:
    """Turn a pydantic ValidationError into ``path:line: prefix: field: message`` problems.

    ``skip`` drops leading location parts that are not in the YAML (e.g. a wrapper model).
    """
    out = []
    for e in err.errors(include_url=False)[:MAX_PROBLEMS]:
        loc = [p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        loc = loc[skip:]
        where = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in loc)
        where = where.replace(".[", "[")
        msg = e["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
            if model is not None and loc and isinstance(loc[-1], str):
                known = _fields_at(model, loc[:-1])
                close = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6)
                msg += (
                    f"; did you mean {close[0]!r}?"
                    if close
                    else (f"; this level takes {', '.join(known)}" if known else "")
                )
        elif e["type"] == "string_type":
            msg += _string_hint(node, loc)
        text = f"{where}: {msg}" if where else msg
        out.append(Problem(path, line_of(node, loc), f"{prefix}: {text}" if prefix else text))
    if err.error_count() > MAX_PROBLEMS:
        more = f"and {err.error_count() - MAX_PROBLEMS} more problem(s) in this document"
        out.append(Problem(path, out[-1].line, f"{prefix}: {more}" if prefix else more))
    return out
