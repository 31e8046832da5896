"""Kubernetes label-selector semantics, exactly as the API server applies them.

- ``matchLabels`` and ``matchExpressions`` are ANDed; an empty selector (``{}``) selects everything.
- ``In``: the label is present and its value is one of ``values`` (``values`` must be non-empty).
- ``NotIn``: the label is absent, or its value is not one of ``values`` (``values`` non-empty).
- ``Exists`` / ``DoesNotExist``: on the key only; ``values`` must be empty.
- Keys: an optional DNS-1123 subdomain prefix (<= 253 chars) and ``/``, then a name of <= 63
  characters of ``[A-Za-z0-9._-]`` beginning and ending with an alphanumeric.
- Values: empty, or <= 63 characters of ``[A-Za-z0-9._-]`` beginning and ending alphanumeric.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gitedge.core.fleet.base import Model
from gitedge.errors import SelectorError

_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)


@functools.lru_cache(maxsize=4096)
def key_problem(key: str) -> str | None:
    """Why ``key`` is not a valid label key, or None when it is (cached: keys repeat)."""
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix:
            return f"label key {key!r}: prefix before '/' must not be empty"
        if len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix):
            return (
                f"label key {key!r}: prefix must be a DNS-1123 subdomain (lowercase, <= 253 chars)"
            )
    if not name:
        return f"label key {key!r}: name part must not be empty"
    if len(name) > 63:
        return f"label key {key!r}: name part must be at most 63 characters"
    if not _NAME.match(name):
        return (
            f"label key {key!r}: name part must consist of alphanumerics, '-', '_' or '.', "
            "and begin and end with an alphanumeric"
        )
    return None


@functools.lru_cache(maxsize=4096)
def value_problem(value: str) -> str | None:
    """Why ``value`` is not a valid label value, or None when it is (cached: values repeat)."""
    if value == "":
        return None
    if len(value) > 63:
        return f"label value {value!r}: must be at most 63 characters"
    if not _NAME.match(value):
        return (
            f"label value {value!r}: must consist of alphanumerics, '-', '_' or '.', "
            "and begin and end with an alphanumeric"
        )
    return None


def check_labels(labels: Mapping[str, str]) -> Mapping[str, str]:
    """Validate a label map; raises ValueError naming the first bad key or value."""
    for key, value in labels.items():
        problem = key_problem(key) or value_problem(value)
        if problem:
            raise ValueError(problem)
    return labels


Operator = Literal["In", "NotIn", "Exists", "DoesNotExist"]


class Requirement(Model):
    """One ``matchExpressions`` entry."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    @field_validator("key")
    @classmethod
    def _key(cls, key: str) -> str:
        problem = key_problem(key)
        if problem:
            raise ValueError(problem)
        return key

    @model_validator(mode="after")
    def _values(self) -> Requirement:
        if self.operator in ("In", "NotIn"):
            if not self.values:
                raise ValueError(f"operator {self.operator} on {self.key!r} needs non-empty values")
            for v in self.values:
                problem = value_problem(v)
                if problem:
                    raise ValueError(problem)
        elif self.values:
            raise ValueError(f"operator {self.operator} on {self.key!r} takes no values")
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "In":
            return present and labels[self.key] in self.values
        if self.operator == "NotIn":
            return not present or labels[self.key] not in self.values
        if self.operator == "Exists":
            return present
        return not present


class LabelSelector(Model):
    """A Kubernetes ``metav1.LabelSelector``."""

    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: tuple[Requirement, ...] = ()

    @field_validator("match_labels")
    @classmethod
    def _labels(cls, labels: dict[str, str]) -> dict[str, str]:
        check_labels(labels)
        return labels

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when ``labels`` satisfy every part of the selector (``{}`` selects all)."""
        for key, value in self.match_labels.items():
            if labels.get(key) != value:
                return False
        return all(req.matches(labels) for req in self.match_expressions)

    def __str__(self) -> str:
        """The selector in ``kubectl -l`` syntax (``everything`` for the empty selector)."""
        parts = [f"{k}={v}" for k, v in sorted(self.match_labels.items())]
        for r in self.match_expressions:
            if r.operator == "Exists":
                parts.append(r.key)
            elif r.operator == "DoesNotExist":
                parts.append(f"!{r.key}")
            else:
                op = "in" if r.operator == "In" else "notin"
                parts.append(f"{r.key} {op} ({','.join(r.values)})")
        return ",".join(parts) or "everything"


def parse_selector(text: str) -> LabelSelector:
    """Parse ``kubectl -l`` syntax (``env=prod,region in (a,b),!legacy,tier!=db``)."""
    labels: dict[str, str] = {}
    exprs: list[Requirement] = []
    for raw in _split_top_level(text):
        part = raw.strip()
        if not part:
            continue
        try:
            m = re.fullmatch(r"(\S+)\s+(in|notin)\s+\(([^)]*)\)", part)
            if m:
                op: Operator = "In" if m.group(2) == "in" else "NotIn"
                vals = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
                exprs.append(Requirement(key=m.group(1), operator=op, values=vals))
            elif "!=" in part:
                k, v = (s.strip() for s in part.split("!=", 1))
                exprs.append(Requirement(key=k, operator="NotIn", values=(v,)))
            elif "=" in part:
                k, v = (s.strip() for s in part.split("==" if "==" in part else "=", 1))
                check_labels({k: v})
                labels[k] = v
            elif part.startswith("!"):
                exprs.append(Requirement(key=part[1:].strip(), operator="DoesNotExist"))
            else:
                exprs.append(Requirement(key=part, operator="Exists"))
        except ValueError as e:
            hint = ""
            m = re.fullmatch(r"(\S+)\s+(in|notin)\s+([^(].*)", part)
            if m:  # kubectl's set form needs its parentheses
                hint = f"; write {m.group(1)} {m.group(2)} ({m.group(3).strip()})"
            raise SelectorError(f"selector {text!r}: {_first_line(e)}{hint}") from None
    return LabelSelector(match_labels=labels, match_expressions=tuple(exprs))


def _split_top_level(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def _first_line(e: Exception) -> str:
    """The human part of a pydantic/ValueError message."""
    text = str(e)
    for line in text.splitlines():
        if "Value error," in line:
            return line.split("Value error,", 1)[1].split("[type=", 1)[0].strip()
    return text.splitlines()[0] if text else type(e).__name__
