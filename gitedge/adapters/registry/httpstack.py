"""requests and urllib3, loaded once the way the registry client wants them.

Import them from here (``from gitedge.adapters.registry.httpstack import requests``), so that
whichever module comes first, requests is loaded without a character-detection module.
"""

from __future__ import annotations

import sys
import warnings


def _load_requests_without_charset_detection() -> None:
    """Load requests, when nothing has yet, without a character-detection module.

    requests picks one at import (chardet, else charset_normalizer) for the ``Response.text``
    of bodies that declare no charset. This client never decodes a body that way (manifests
    and blobs stay bytes, error bodies are JSON read from ``r.raw``), and charset_normalizer 3
    walks every codec on import: ~50 ms CPU, a sixth of a ``gitedge mirror`` no-op run.
    requests runs without one (``apparent_encoding`` None, ``text`` decoded as UTF-8), after a
    warning we silence. Others may still import charset_normalizer later.
    """
    if "requests" in sys.modules or "charset_normalizer" in sys.modules:
        return
    sys.modules["charset_normalizer"] = None  # type: ignore[assignment]  # import fails
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Unable to find acceptable character detection")
            import requests  # noqa: F401  # in here: only while charset_normalizer is blocked
    finally:
        del sys.modules["charset_normalizer"]


_load_requests_without_charset_detection()

import requests  # noqa: E402
import urllib3  # noqa: E402

__all__ = ["requests", "urllib3"]
