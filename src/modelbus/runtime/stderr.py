"""What a runner writes on stderr, made fit for the server's log.

Models and their libraries write colour codes, progress bars and tracebacks; the server's
log lines are the operator's. :func:`clean` strips terminal escape sequences (ANSI colours,
cursor moves, window titles) and shows any other control character escaped (``\\x07``), so a
runner's line can neither colour nor rewrite the server's log. :class:`TracebackLines`
tells which lines belong to a Python traceback: those are logged at DEBUG (the error
itself reaches the caller and the run record, with its stack trace), the rest at INFO.
"""

from __future__ import annotations

import logging
import re

__all__ = ["TracebackLines", "clean"]

# CSI (ESC [ ... final byte), OSC (ESC ] ... BEL or ESC \), and two-byte ESC sequences.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[@-Z\\-_]"
    r"|\x9b[0-?]*[ -/]*[@-~]"
)
_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")

_STARTS = (
    "Traceback (most recent call last):",
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
    "Exception Group Traceback (most recent call last):",
)


def clean(line: str) -> str:
    """``line`` without terminal escape sequences; other control characters (but tab)
    written as ``\\xNN``; a carriage return (a progress bar redrawing itself) keeps only
    what was drawn last."""
    line = _ESCAPES.sub("", line)
    if "\r" in line:
        line = line.rstrip("\r").rsplit("\r", 1)[-1]
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", line)


class TracebackLines:
    """Follows one stream's lines and gives the log level of each: DEBUG for the lines of a
    Python traceback (from its ``Traceback (most recent call last):`` header through the
    exception line that ends it, chained tracebacks included), INFO for the others."""

    def __init__(self) -> None:
        self._inside = False  # between a header and the exception line
        self._after = False  # just after an exception line: a chained traceback may follow

    def level(self, line: str) -> int:
        """The level to log ``line`` at (lines must be given in order)."""
        stripped = line.strip()
        if stripped in _STARTS:
            self._inside, self._after = True, False
            return logging.DEBUG
        if self._inside:
            if line[:1] in (" ", "\t", "") or stripped.startswith(("^", "~")):
                return logging.DEBUG
            self._inside, self._after = False, True  # the exception line
            return logging.DEBUG
        if self._after and not stripped:
            return logging.DEBUG
        self._after = False
        return logging.INFO
