"""Parsing JSON that came from outside (HTTP bodies, broker messages, model results).

:func:`loads` is :func:`json.loads` that fails only with :class:`ValueError`: a document
nested deeper than the interpreter's recursion limit (``[[[[...`` a few thousand times, a few
kilobytes) makes the standard parser raise :class:`RecursionError`, which callers that treat
"not JSON" as a normal case do not expect. Such a document is simply not JSON to modelbus.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["loads"]


def loads(data: str | bytes | bytearray) -> Any:
    """The JSON value in ``data``; raises :class:`ValueError` (``json.JSONDecodeError`` or
    ``UnicodeDecodeError`` as ``json.loads`` does, or a plain ValueError for a document
    nested too deeply to parse). Never raises RecursionError."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
