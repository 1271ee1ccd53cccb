from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .kits import BrokerKit, all_kits


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kit_class" in metafunc.fixturenames:
        kits = all_kits()
        metafunc.parametrize("kit_class", kits, ids=[k.name for k in kits])


@pytest.fixture
async def kit(kit_class: type[BrokerKit], tmp_path: Path) -> AsyncIterator[BrokerKit]:
    reason = kit_class.unavailable()
    if reason:
        pytest.skip(f"{kit_class.name}: {reason}")
    instance = kit_class(tmp_path)
    await instance.start()
    try:
        yield instance
    finally:
        await instance.stop()
