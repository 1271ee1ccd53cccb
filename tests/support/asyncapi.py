"""Validate AsyncAPI documents with the official ``@asyncapi/parser`` (npm), under Node.

The parser is installed once, with ``npm install --prefix``, into a cache folder outside the
repository (``$MODELBUS_TEST_CACHE`` or ``$XDG_CACHE_HOME/modelbus-tests`` or
``~/.cache/modelbus-tests``, then ``asyncapi-parser-VERSION``), under a file lock so that
parallel test workers install it once; later runs reuse it. A test using
:func:`parser_prefix` is skipped, saying why, only when Node or npm is missing or npm cannot
install the parser (no registry); anything else fails.

:func:`diagnostics` parses a document (a JSON value) and returns the parser's diagnostics:
``{"severity", "code", "message", "path"}``, severity 0 = error, 1 = warning, 2 = info.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

PARSER_VERSION = "3.6.6"
SCRIPT = Path(__file__).with_name("asyncapi_parse.cjs")
INSTALL_TIMEOUT_S = 300.0


def cache_dir() -> Path:
    """Where test tools are cached, outside the repository."""
    explicit = os.environ.get("MODELBUS_TEST_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "modelbus-tests"


def parser_prefix() -> Path:
    """The npm prefix holding ``@asyncapi/parser`` (installed on first use); skips the
    calling test when Node or npm is missing or npm cannot install it."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("AsyncAPI validation needs Node.js and npm on PATH")
    prefix = cache_dir() / f"asyncapi-parser-{PARSER_VERSION}"
    marker = prefix / "node_modules" / "@asyncapi" / "parser" / "package.json"
    prefix.mkdir(parents=True, exist_ok=True)
    with (prefix.parent / f"{prefix.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker may be installing it right now
        if not marker.exists():
            _install(npm, prefix)
    return prefix


def _install(npm: str, prefix: Path) -> None:
    try:
        done = subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(prefix),
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                f"@asyncapi/parser@{PARSER_VERSION}",
            ],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"npm could not install @asyncapi/parser in {INSTALL_TIMEOUT_S:g} s")
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        pytest.skip(f"npm cannot install @asyncapi/parser@{PARSER_VERSION}: {' | '.join(tail)}")


def diagnostics(document: Any) -> list[dict[str, Any]]:
    """The parser's diagnostics of ``document`` (see the module docstring)."""
    prefix = parser_prefix()
    done = subprocess.run(
        ["node", str(SCRIPT), str(prefix)],
        input=json.dumps(document),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found: list[dict[str, Any]] = json.loads(done.stdout)["diagnostics"]
    return found


def problems(document: Any) -> list[str]:
    """The parser's errors and warnings about ``document``, as ``path: message`` lines
    (infos, such as "a newer AsyncAPI version exists", left out)."""
    return [
        f"{d['path']}: {d['message']} ({d['code']})"
        for d in diagnostics(document)
        if d["severity"] <= 1
    ]
