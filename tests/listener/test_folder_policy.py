"""The listener manager enforces where dir:// folders may be (issue 14.4): at create and
apply, checked or not, and in the runtimes it starts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from modelbus.config import Settings
from modelbus.connectors import ConnectorPolicy
from modelbus.errors import DefinitionError
from modelbus.listeners.lifecycle import ListenerRuntime
from modelbus.listeners.manager import ListenerManager, ManagerOptions

from .conftest import FAST, Env, eventually


@pytest.fixture
def queue_kind() -> str:
    return "local"


@pytest.fixture
async def manager(env: Env, engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[ListenerManager]:
    mgr = ListenerManager(
        engine=engine,
        invoker=env.invoker,
        data_dir=env.data_dir,
        registry=CollectorRegistry(),
        runs=env.runs,
        options=ManagerOptions(
            sync_interval_s=None, stop_deadline_s=2, runtime=FAST, dir_roots=(tmp_path / "drop",)
        ),
    )
    await mgr.start()
    yield mgr
    await mgr.stop()


@pytest.mark.parametrize("check", [True, False])
async def test_the_data_directory_is_refused_checked_or_not(
    env: Env, manager: ListenerManager, check: bool
) -> None:
    env.invoker.register("acme/echo", lambda v: v)
    env.data_dir.mkdir(parents=True, exist_ok=True)
    (env.data_dir / "secret.key").write_text("not for models")
    reading = env.definition(source=f"dir://{env.data_dir}")
    with pytest.raises(DefinitionError, match="data directory"):
        await manager.create(reading, check=check)
    writing = env.definition(source=env.url("in"), outputs=[f"dir://{env.data_dir}/queues"])
    with pytest.raises(DefinitionError, match="data directory"):
        await manager.apply([writing], check=check)
    assert await manager.list() == []


async def test_a_folder_outside_the_roots_is_refused_naming_them(
    env: Env, manager: ListenerManager, tmp_path: Path
) -> None:
    env.invoker.register("acme/echo", lambda v: v)
    (tmp_path / "etc").mkdir()
    outside = env.definition(source=f"dir://{tmp_path / 'etc'}")
    with pytest.raises(DefinitionError) as refused:
        await manager.create(outside, check=False)
    assert str(tmp_path / "drop") in refused.value.message
    assert "MODELBUS_DIR_ROOTS" in refused.value.message


async def test_a_folder_under_a_root_runs_and_its_runtime_rechecks_on_open(
    env: Env, manager: ListenerManager, tmp_path: Path
) -> None:
    env.invoker.register("acme/echo", lambda v: v)
    inbox = tmp_path / "drop" / "inbox"
    inbox.mkdir(parents=True)
    info = await manager.create(env.definition(source=f"dir://{inbox}?poll_ms=50"))

    async def running() -> bool:
        return (await manager.status(info.name)).state == "running"

    await eventually(running)
    await manager.pause(info.name)
    inbox.rmdir()
    inbox.symlink_to(env.data_dir, target_is_directory=True)  # swapped while paused
    await manager.resume(info.name)

    async def refused() -> bool:
        status = await manager.status(info.name)
        reasons = " ".join([status.last_error or "", *status.problems.values()])
        return status.state != "running" and "data directory" in reasons

    await eventually(refused)


def test_a_runtime_holds_its_connectors_to_the_policy_it_is_given(env: Env, tmp_path: Path) -> None:
    outside = tmp_path / "etc"
    outside.mkdir()
    definition = env.definition(source=f"dir://{outside}")

    def runtime(policy: ConnectorPolicy | None) -> ListenerRuntime:
        return ListenerRuntime(
            definition,
            invoker=env.invoker,
            runs=env.writer,
            metrics=env.metrics.listener(definition.name),
            data_dir=env.data_dir,
            options=FAST,
            policy=policy,
        )

    with pytest.raises(DefinitionError, match="MODELBUS_DIR_ROOTS"):
        runtime(ConnectorPolicy(dir_roots=(tmp_path / "drop",)))
    assert runtime(None).definition is definition  # no roots configured: any folder


@pytest.mark.parametrize(
    ("database", "workers", "claims"),
    [("sqlite", 1, False), ("sqlite", 2, True), ("postgresql", 1, True)],
)
def test_serve_claims_runs_only_where_another_replica_can_exist(
    tmp_path: Path, database: str, workers: int, claims: bool
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'modelbus.sqlite'}"
        if database == "sqlite"
        else "postgresql://postgres@127.0.0.1:5432/test"
    )
    settings = Settings.from_env(
        {"MODELBUS_DATA_DIR": str(tmp_path), "MODELBUS_DATABASE_URL": url}, workers=workers
    )
    assert ManagerOptions.from_settings(settings).runtime.claim_runs is claims
