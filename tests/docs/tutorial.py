"""docs/tutorial.md as a script: its fenced ``bash`` blocks, in order, for one of its targets.

A block runs on both targets unless the line before its fence is a marker:

    <!-- tutorial: aws -->      only on AWS (never run by the tests)
    <!-- tutorial: local -->    only on the local stand-in (moto's server)

Other fences (``sh``, ``toml``...) are prose: shown, never run. A ``text`` block that comes
next after a ``bash`` block (before any other fence) is what that block prints: each of its
lines must be found in one line of the output, ``...`` standing for anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

TUTORIAL = Path(__file__).resolve().parents[2] / "docs" / "tutorial.md"
TARGETS = ("aws", "local")
_MARKER = re.compile(r"<!--\s*tutorial:\s*(\S+)\s*-->")
_FENCE = re.compile(r"^```(\S*)\s*$")
# The ports the page uses for moto and modelbus, replaced by free ones when it is run.
MOTO_PORT, SERVER_PORT = 5000, 8470


@dataclass(frozen=True, kw_only=True, slots=True)
class Block:
    """One ``bash`` block: where it starts (1-based line of its fence) and for which targets."""

    line: int
    code: str
    targets: tuple[str, ...]
    expected: tuple[str, ...] = ()


def blocks(text: str) -> list[Block]:
    """Every ``bash`` block of ``text``; ValueError for an unknown marker or an open fence."""
    found: list[Block] = []
    lines = text.splitlines()
    marker: str | None = None
    last_fence: str | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        mark = _MARKER.fullmatch(line.strip())
        fence = _FENCE.match(line)
        if mark:
            if mark[1] not in TARGETS:
                raise ValueError(f"line {index + 1}: unknown target {mark[1]!r}")
            marker = mark[1]
        elif fence:
            end = next((i for i in range(index + 1, len(lines)) if lines[i] == "```"), None)
            if end is None:
                raise ValueError(f"line {index + 1}: the fence is never closed")
            body = lines[index + 1 : end]
            if fence[1] == "bash":
                targets = (marker,) if marker else TARGETS
                found.append(Block(line=index + 1, code="\n".join(body), targets=targets))
            elif fence[1] == "text" and found and last_fence == "bash" and not marker:
                found[-1] = replace(found[-1], expected=tuple(x for x in body if x.strip()))
            elif marker:
                raise ValueError(f"line {index + 1}: a marker before a {fence[1]!r} block")
            marker = None
            last_fence = fence[1]
            index = end
        elif line.strip() and marker:
            raise ValueError(f"line {index + 1}: text between a marker and its block")
        index += 1
    return found


def script(target: str, *, moto_port: int, server_port: int, text: str | None = None) -> str:
    """The blocks of ``target`` as one bash script that stops at the first failing command,
    with the page's ports replaced, between lines ``@@start LINE`` and ``@@block LINE`` (with
    the script's seconds so far, to see where the time goes)."""
    parts = ["set -euo pipefail"]
    for block in blocks(text if text is not None else TUTORIAL.read_text()):
        if target not in block.targets:
            continue
        code = re.sub(rf"\b{MOTO_PORT}\b", str(moto_port), block.code)
        code = re.sub(rf"\b{SERVER_PORT}\b", str(server_port), code)
        end = f'echo "@@block {block.line} ${{SECONDS}}s"'
        parts += [f"echo '@@start {block.line}'", code, end]
    return "\n".join(parts) + "\n"


def outputs(log: str) -> dict[int, str]:
    """What each block printed (stdout and stderr), by the line of its fence."""
    found: dict[int, str] = {}
    for match in re.finditer(r"^@@start (\d+)\n(.*?)^@@block \1 \d+s$", log, re.M | re.S):
        found[int(match[1])] = match[2]
    return found


def shows(output: str, expected: str) -> bool:
    """Whether one line of ``output`` has the pieces of ``expected`` (split at ``...``), in
    order."""
    pieces = [piece.strip() for piece in expected.split("...") if piece.strip()]
    for line in output.splitlines():
        at = 0
        for piece in pieces:
            at = line.find(piece, at)
            if at < 0:
                break
            at += len(piece)
        else:
            return True
    return False
