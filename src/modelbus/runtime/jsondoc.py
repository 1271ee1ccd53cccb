"""Parsing JSON that came from outside (HTTP bodies, broker messages, model results).

:func:`loads` is :func:`json.loads` that fails only with :class:`ValueError`: a document
nested deeper than the interpreter's recursion limit (``[[[[...`` a few thousand times, a few
kilobytes) makes the standard parser raise :class:`RecursionError`, which callers that treat
"not JSON" as a normal case do not expect. Such a document is simply not JSON to modelbus.
Neither is one whose strings hold a lone surrogate (``"\ud800"``: an escape JSON allows,
naming no character): no UTF-8 text can carry it, so it would fail later, deep inside,
wherever the value is encoded again.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

__all__ = ["loads", "refuse_surrogates"]


def loads(data: str | bytes | bytearray) -> Any:
    """The JSON value in ``data``; raises :class:`ValueError` (``json.JSONDecodeError`` or
    ``UnicodeDecodeError`` as ``json.loads`` does, or a plain ValueError for a document
    nested too deeply to parse). Never raises RecursionError."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise
    except ValueError:
        # int() refuses thousands of digits, telling the reader to call
        # sys.set_int_max_str_digits(): advice for the server, not for whoever sent it.
        limit = sys.get_int_max_str_digits()
        raise ValueError(f"a number of more than {limit} digits: send it as a string") from None
    escape = _SURROGATE_ESCAPE if isinstance(data, str) else _SURROGATE_ESCAPE_BYTES
    if escape.search(data):  # type: ignore[arg-type]
        refuse_surrogates(value)
    return value


# A \uD800-\uDFFF escape: only then can a parsed string hold a surrogate (quick check).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def refuse_surrogates(value: Any) -> None:
    """Raise ValueError when a string (or key) in ``value`` holds a lone surrogate (a pair
    written as two escapes is decoded into one character, and is fine)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str) and (found := _SURROGATE.search(item)):
            raise ValueError(
                f"JSON text holds a lone surrogate (\\u{ord(found[0]):04x}), which is not a "
                "character: send valid Unicode"
            )
