"""Fixtures of the AWS connector tests: one moto_server per session, fake credentials."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from modelbus.connectors.base import ConnectorContext

from .kit import REGION
from .motoserver import MotoServer, fake_credentials

ClientFactory = Callable[[str], AbstractAsyncContextManager[Any]]


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    """One real moto_server for the session (state persists: use unique names)."""
    with MotoServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _aws_environment() -> Iterator[None]:
    with fake_credentials():
        yield


@pytest.fixture
def ctx(tmp_path: Path) -> ConnectorContext:
    return ConnectorContext(listener="aws-test", data_dir=tmp_path)


@pytest.fixture
async def client(moto: MotoServer) -> AsyncIterator[ClientFactory]:
    """``async with client("sqs") as sqs:`` a plain aiobotocore client on moto, for setting
    up and inspecting what the connectors under test did."""
    from aiobotocore.session import get_session

    session = get_session()

    def factory(service: str) -> AbstractAsyncContextManager[Any]:
        return session.create_client(  # type: ignore[no-any-return]
            service, region_name=REGION, endpoint_url=moto.endpoint_url
        )

    yield factory
