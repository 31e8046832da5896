"""What every command shares: reading its files and its ``--now``, printing ``-o json|yaml``.

Light on purpose: ``mirror`` uses it, and a no-op re-mirror is mostly interpreter start-up
(tests/test_mirror.py names the libraries it must not load). A site's AgentConfig and state are
read by :mod:`gitedge.cli.siteconfig`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gitedge.adapters.localfiles import read_bounded
from gitedge.errors import UsageError


def parse_now(text: str | None) -> datetime:
    if not text:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--now {text!r}: expected ISO 8601, e.g. 2026-11-23T01:30:00Z") from None
    if value.tzinfo is None:
        raise UsageError(f"--now {text!r}: give a time zone, e.g. 2026-11-23T01:30:00Z")
    return value


MAX_INPUT_BYTES = 1 << 20  # a cluster file or an agent config, like any fleet file


def read_file(path: str, what: str) -> bytes:
    """A regular file of at most 1 MiB (a FIFO, a device, a bigger file: a UsageError)."""
    try:
        return read_bounded(path, limit=MAX_INPUT_BYTES)
    except OSError as e:
        raise UsageError(f"{what} {path}: {e.strerror}") from None


def cluster_files(path: str) -> dict[str, bytes]:
    p = Path(path)
    if p.is_dir():
        files = sorted(q for q in p.iterdir() if q.suffix in (".yaml", ".yml") and q.is_file())
        return {str(q): read_file(str(q), "--clusters") for q in files}
    return {path: read_file(path, "--clusters")}


def structured(doc: Any, output: str) -> str:
    """A document as ``-o json`` or ``-o yaml`` prints it (the same fields, either way)."""
    if output == "yaml":
        import yaml  # only for -o yaml: `mirror -o json` and text output load no YAML parser

        return str(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)).rstrip("\n")
    return json.dumps(doc, indent=2)


def counted(n: int, noun: str) -> str:
    """``1 window``, ``2 windows``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
