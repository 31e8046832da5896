"""The agent's logs: JSON lines in the cluster (stderr not a terminal), readable lines on a
terminal; every message scrubbed of credentials and cut short. Standard library only, so a pass's
process and the agent's parent set it up without loading the scheduler."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from gitedge.errors import scrub

__all__ = ["setup_logging"]


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub(record.getMessage(), limit=2000),
        }
        return json.dumps(doc)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        return f"{when} {record.levelname.lower():<7} {scrub(record.getMessage(), limit=2000)}"


def setup_logging(*, json_logs: bool | None = None, level: int = logging.INFO) -> None:
    """JSON lines in the cluster (stderr not a terminal), readable lines on a terminal."""
    use_json = (not sys.stderr.isatty()) if json_logs is None else json_logs
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if use_json else _TextFormatter())
    root = logging.getLogger("gitedge")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
