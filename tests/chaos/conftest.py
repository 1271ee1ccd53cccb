"""Fixtures of the chaos suite: the report every test adds its tables to, printed as the
tests go (with ``-s``) and again together at the end of the session. (``modelbus serve``
processes get no MODELBUS_* setting of this one: tests/support/server.py clean_env.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

REPORT: list[str] = []


@pytest.fixture
def report() -> Iterator[list[str]]:
    """Append a finished table: it is printed now and in the session's summary."""
    tables: list[str] = []
    yield tables
    for text in tables:
        print("\n" + text)
    REPORT.extend(tables)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORT:
        terminalreporter.section("chaos accounting")
        for text in REPORT:
            terminalreporter.write_line(text)
