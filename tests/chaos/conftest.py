"""Fixtures of the chaos suite: the report every test adds its tables to, printed as the
tests go (with ``-s``) and again together at the end of the session, by the hooks in
tests/conftest.py: under pytest-xdist the tests run in worker processes, so every table is
also written to the folder ``MODELBUS_CHAOS_REPORT_DIR`` that the main process made, and the
main process prints them all. (``modelbus serve`` processes get no MODELBUS_* setting of
this one: tests/support/server.py clean_env.)"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPORT_DIR = "MODELBUS_CHAOS_REPORT_DIR"


@pytest.fixture
def report() -> Iterator[list[str]]:
    """Append a finished table: it is printed now and in the session's summary."""
    tables: list[str] = []
    yield tables
    folder = os.environ.get(REPORT_DIR)
    for text in tables:
        print("\n" + text)
        if folder:
            Path(folder, f"{uuid.uuid4().hex}.txt").write_text(text)
