"""dir:// folders stay under the operator's roots and out of the data directory (issue 14.4):
checked when the connector is made (definition time) and again, resolved, when it opens."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelbus.connectors import (
    ConnectorContext,
    ConnectorPolicy,
    OutMessage,
    make_sink,
    make_source,
)
from modelbus.connectors.directory import DirectorySource, check_folder, make_reader
from modelbus.errors import ConnectorConfigError, ConnectorError, DefinitionError


def context(tmp_path: Path, roots: tuple[Path, ...] | None) -> ConnectorContext:
    return ConnectorContext(
        listener="roots",
        data_dir=tmp_path / "srv" / "data",
        policy=ConnectorPolicy(dir_roots=roots),
    )


@pytest.mark.parametrize("roots", [None, "tmp"])
@pytest.mark.parametrize("where", ["srv/data", "srv", ".", "srv/data/queues"])
def test_the_data_directory_its_parents_and_its_inside_are_refused(
    tmp_path: Path, where: str, roots: str | None
) -> None:
    ctx = context(tmp_path, None if roots is None else (tmp_path,))
    folder = tmp_path / where
    folder.mkdir(parents=True, exist_ok=True)
    with pytest.raises(DefinitionError, match="data directory"):
        make_source(f"dir://{folder}", ctx)
    with pytest.raises(DefinitionError, match="data directory"):
        make_sink(f"dir://{folder}", ctx)


def test_a_folder_outside_the_roots_is_refused_naming_the_roots_and_the_setting(
    tmp_path: Path,
) -> None:
    root = tmp_path / "drop"
    ctx = context(tmp_path, (root,))
    with pytest.raises(DefinitionError) as refused:
        make_source(f"dir://{tmp_path / 'elsewhere'}", ctx)
    assert str(root) in refused.value.message
    assert "--dir-roots" in refused.value.message and "MODELBUS_DIR_ROOTS" in refused.value.message
    with pytest.raises(DefinitionError, match="--dir-roots"):
        make_sink(f"dir://{root}/../elsewhere", ctx)  # '..' is resolved first
    assert check_folder(root / "in" / "box", ctx) == root / "in" / "box"
    assert check_folder(root, ctx) == root


def test_a_symlink_into_the_data_directory_is_refused(tmp_path: Path) -> None:
    ctx = context(tmp_path, (tmp_path / "drop",))
    (tmp_path / "srv" / "data").mkdir(parents=True)
    (tmp_path / "drop").mkdir()
    (tmp_path / "drop" / "link").symlink_to(tmp_path / "srv" / "data")
    with pytest.raises(DefinitionError, match="data directory"):
        make_source(f"dir://{tmp_path / 'drop' / 'link'}", ctx)


def test_a_root_placed_inside_the_data_directory_allows_that_folder_only(tmp_path: Path) -> None:
    data = tmp_path / "srv" / "data"
    ctx = context(tmp_path, (tmp_path, data / "inbox"))  # the demo's way
    assert check_folder(data / "inbox", ctx) == data / "inbox"
    with pytest.raises(DefinitionError, match="data directory"):
        check_folder(data / "artifacts", ctx)


async def test_a_folder_swapped_for_a_symlink_is_refused_when_it_opens(tmp_path: Path) -> None:
    ctx = context(tmp_path, (tmp_path / "drop",))
    inbox, outbox = tmp_path / "drop" / "inbox", tmp_path / "drop" / "outbox"
    inbox.mkdir(parents=True)
    source = make_source(f"dir://{inbox}?poll_ms=50", ctx)
    sink = make_sink(f"dir://{outbox}", ctx)
    assert isinstance(source, DirectorySource)
    inbox.rmdir()
    inbox.symlink_to(tmp_path / "srv", target_is_directory=True)  # the data dir's parent
    (tmp_path / "outside").mkdir()
    outbox.symlink_to(tmp_path / "outside", target_is_directory=True)  # outside the roots
    (tmp_path / "srv" / "data").mkdir(parents=True)
    (tmp_path / "srv" / "data" / "secret.key").write_text("k")
    with pytest.raises(ConnectorConfigError, match="data directory"):
        await source.open()
    with pytest.raises(ConnectorConfigError, match="--dir-roots"):
        await sink.open()
    with pytest.raises(ConnectorError, match="data directory"):
        make_reader(f"dir://{inbox}", ctx)


async def test_the_sink_does_not_write_through_a_symlink_leading_out(tmp_path: Path) -> None:
    ctx = context(tmp_path, (tmp_path / "drop",))
    outbox = tmp_path / "drop" / "outbox"
    sink = make_sink(f"dir://{outbox}", ctx)
    await sink.open()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outbox / "scans").symlink_to(outside, target_is_directory=True)
    message = OutMessage(id="r1", body=b"{}", attributes={"key": "scans/a.png"})
    with pytest.raises(ConnectorError, match="leads out") as refused:
        await sink.publish([message])
    assert refused.value.permanent
    assert os.listdir(outside) == []


def test_a_context_built_without_a_policy_has_the_empty_one(tmp_path: Path) -> None:
    assert ConnectorContext(listener="x", data_dir=tmp_path).policy == ConnectorPolicy()
