"""The registry on SQLite and PostgreSQL: push, versions, builds, resolution."""

from __future__ import annotations

import io
import os
import shutil
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from modelbus.client.refs import ModelRef
from modelbus.errors import (
    BuildError,
    BuildNotFound,
    Conflict,
    InvalidInput,
    ManifestError,
    ModelNotFound,
    VersionConflict,
    VersionNotFound,
    VersionSpecError,
)
from modelbus.registry.catalog import Registry
from modelbus.store.database import Database

MakeModel = Callable[..., Path]
SIX = 'entrypoint = "model:apply"\nrequirements = ["six==1.17.0"]'


def ref(text: str) -> ModelRef:
    return ModelRef.parse(text)


def variant(make_model: MakeModel, n: int, **kwargs: object) -> Path:
    """A ``tests/hello`` folder whose content differs with ``n``."""
    return make_model(files={"model.py": f"def apply(x):\n    return {n}\n"}, **kwargs)


@pytest.fixture
def registry(db: Database, tmp_path: Path) -> Registry:
    return Registry(db, tmp_path / "data", cache_ttl_s=0.0)


async def test_push_a_version_and_resolve_it(registry: Registry, make_model: MakeModel) -> None:
    folder = make_model(
        description="says hello", extra="[serving]\ntimeout_s = 7\nmax_runners = 3\n"
    )
    result = await registry.push(folder, version="1.0.0")
    assert (result.owner, result.name, result.version) == ("tests", "hello", "1.0.0")
    assert result.created and result.published and result.built
    assert result.build_hash.startswith("sha256:")

    model = await registry.get_model("tests", "hello")
    assert (model.description, model.latest_version) == ("says hello", "1.0.0")
    assert [m.name for m in await registry.list_models()] == ["hello"]
    versions = await registry.list_versions("tests", "hello")
    assert [(v.version, v.build_hash, v.published) for v in versions] == [
        ("1.0.0", result.build_hash, True)
    ]

    resolved = await registry.resolve(ref("tests/hello"))
    assert (resolved.version, resolved.build_hash, resolved.label) == (
        "1.0.0",
        result.build_hash,
        "1.0.0",
    )
    spec = resolved.runner_spec
    assert spec.key == result.build_hash
    assert spec.argv == (sys.executable, "-m", "modelbus_runner", "model:apply")
    assert spec.cwd == registry.artifacts.models_dir / result.build_hash.removeprefix("sha256:")
    assert (spec.cwd / "model.py").is_file()
    runtime_dir, model_dir = spec.env["PYTHONPATH"].split(":")
    assert model_dir == str(spec.cwd) and (Path(runtime_dir) / "modelbus_runner").is_dir()
    assert (spec.timeout_s, spec.max_runners, spec.min_runners) == (7.0, 3, 0)
    assert spec.memory_limit_mb is None


async def test_same_content_same_version_is_a_no_op(
    registry: Registry, make_model: MakeModel
) -> None:
    folder = make_model()
    first = await registry.push(folder, version="1.0.0")
    again = await registry.push(folder, version="1.0.0")
    assert (again.version, again.build_hash) == ("1.0.0", first.build_hash)
    assert not again.created and not again.built
    assert len(await registry.list_builds("tests", "hello")) == 1


async def test_other_content_same_version_is_a_conflict_naming_the_build(
    registry: Registry, make_model: MakeModel
) -> None:
    first = await registry.push(variant(make_model, 1), version="1.0.0")
    with pytest.raises(VersionConflict, match=first.build_hash) as info:
        await registry.push(variant(make_model, 2), version="1.0.0")
    assert "1.0.1" in str(info.value)  # suggests the next number
    builds = await registry.list_builds("tests", "hello")
    assert [b.hash for b in builds] == [first.build_hash]  # refused before building


async def test_bumps(registry: Registry, make_model: MakeModel) -> None:
    pushed = [
        await registry.push(variant(make_model, 1), bump="minor"),
        await registry.push(variant(make_model, 2), bump="patch"),
        await registry.push(variant(make_model, 3), bump="major"),
        await registry.push(variant(make_model, 4), bump="minor"),
    ]
    assert [p.version for p in pushed] == ["0.1.0", "0.1.1", "1.0.0", "1.1.0"]
    same = await registry.push(variant(make_model, 4), bump="major")
    assert (same.version, same.created) == ("1.1.0", False)
    with pytest.raises(InvalidInput, match="not both"):
        await registry.push(variant(make_model, 5), version="9.0.0", bump="patch")
    with pytest.raises(VersionSpecError, match="expected major, minor or patch"):
        await registry.push(variant(make_model, 5), bump="huge")  # type: ignore[arg-type]
    with pytest.raises(VersionSpecError, match=r"MAJOR\.MINOR\.PATCH"):
        await registry.push(variant(make_model, 5), version="1.2")


async def test_push_without_version_is_an_unpublished_build_callable_by_hash(
    registry: Registry, make_model: MakeModel
) -> None:
    result = await registry.push(make_model())
    assert result.version is None and not result.published and result.created
    with pytest.raises(VersionNotFound, match="no published version yet"):
        await registry.resolve(ref("tests/hello"))
    hex_digest = result.build_hash.removeprefix("sha256:")
    for spec in (result.build_hash, hex_digest[:8], hex_digest.upper()[:12]):
        resolved = await registry.resolve(ref(f"tests/hello@{spec}"))
        assert (resolved.build_hash, resolved.version) == (result.build_hash, None)
        assert resolved.label == result.build_hash
    with pytest.raises(VersionNotFound, match="no build of tests/hello with hash"):
        await registry.resolve(ref("tests/hello@00000000"))
    (build,) = await registry.list_builds("tests", "hello")
    assert (build.hash, build.status, build.versions, build.log) == (
        result.build_hash,
        "ready",
        (),
        None,
    )
    again = await registry.push(make_model())
    assert (again.build_hash, again.created) == (result.build_hash, False)


async def test_unpublished_version_then_publish(registry: Registry, make_model: MakeModel) -> None:
    await registry.push(variant(make_model, 1), version="1.0.0")
    hidden = await registry.push(variant(make_model, 2), version="2.0.0", publish=False)
    assert (hidden.version, hidden.published) == ("2.0.0", False)
    assert (await registry.resolve(ref("tests/hello"))).version == "1.0.0"
    with pytest.raises(VersionNotFound, match=r"published: 1\.0\.0$"):
        await registry.resolve(ref("tests/hello@2.0.0"))
    by_hash = await registry.resolve(ref(f"tests/hello@{hidden.build_hash}"))
    assert by_hash.version == "2.0.0"

    info = await registry.publish("tests", "hello", version="2.0.0")
    assert (info.version, info.published, info.build_hash) == ("2.0.0", True, hidden.build_hash)
    assert (await registry.resolve(ref("tests/hello"))).version == "2.0.0"
    assert (await registry.publish("tests", "hello", version="2.0.0")).published  # idempotent


async def test_publish_a_build_with_a_bump(registry: Registry, make_model: MakeModel) -> None:
    await registry.push(variant(make_model, 1), version="1.4.2")
    build = await registry.push(variant(make_model, 2))
    latest_build = await registry.push(variant(make_model, 3))
    info = await registry.publish("tests", "hello", bump="minor")  # default: newest build
    assert (info.version, info.build_hash) == ("1.5.0", latest_build.build_hash)
    prefix = build.build_hash.removeprefix("sha256:")[:10]
    info = await registry.publish("tests", "hello", build=prefix, version="3.0.0")
    assert (info.version, info.build_hash) == ("3.0.0", build.build_hash)
    with pytest.raises(VersionConflict):
        await registry.publish("tests", "hello", build=prefix, version="1.5.0")
    with pytest.raises(InvalidInput, match="give the version to publish"):
        await registry.publish("tests", "hello")
    with pytest.raises(ModelNotFound):
        await registry.publish("tests", "nobody", bump="patch")
    assert [b.versions for b in await registry.list_builds("tests", "hello")] == [
        ("1.5.0",),
        ("3.0.0",),
        ("1.4.2",),
    ]


async def test_resolution_of_specs(registry: Registry, make_model: MakeModel) -> None:
    for n, version in enumerate(["1.0.0", "1.2.0", "1.2.5", "1.10.0", "2.0.0"]):
        await registry.push(variant(make_model, n), version=version)
    expected = {
        "latest": "2.0.0",
        "1.*": "1.10.0",
        "1.2.*": "1.2.5",
        "1.0.0": "1.0.0",
        "2.*": "2.0.0",
    }
    for spec, version in expected.items():
        assert (await registry.resolve(ref(f"tests/hello@{spec}"))).version == version
    with pytest.raises(VersionNotFound, match=r"matching 3\.\*; published: 1\.0\.0, 1\.2\.0"):
        await registry.resolve(ref("tests/hello@3.*"))
    with pytest.raises(ModelNotFound, match="no model tests/other"):
        await registry.resolve(ref("tests/other"))
    with pytest.raises(VersionSpecError):
        await registry.resolve(ref("tests/hello@1.x"))
    assert [v.version for v in await registry.list_versions("tests", "hello")] == [
        "2.0.0",
        "1.10.0",
        "1.2.5",
        "1.2.0",
        "1.0.0",
    ]


async def test_another_node_publishing_is_seen(
    db: Database, database_url: str, tmp_path: Path, make_model: MakeModel
) -> None:
    """Two nodes share the database (and here the data dir, standing in for shared artifacts)."""
    here = Registry(db, tmp_path / "data", cache_ttl_s=0.0)
    other_db = await Database.open(database_url)
    try:
        there = Registry(other_db, tmp_path / "data")
        await there.push(variant(make_model, 1), version="1.0.0")
        assert (await here.resolve(ref("tests/hello"))).version == "1.0.0"
        await there.push(variant(make_model, 2), version="1.1.0")
        assert (await here.resolve(ref("tests/hello"))).version == "1.1.0"
    finally:
        await other_db.close()


async def test_own_pushes_invalidate_the_cache_at_once(
    db: Database, tmp_path: Path, make_model: MakeModel
) -> None:
    registry = Registry(db, tmp_path / "data", cache_ttl_s=3600.0)
    await registry.push(variant(make_model, 1), version="1.0.0")
    first = await registry.resolve(ref("tests/hello"))
    assert await registry.resolve(ref("tests/hello")) is first  # cached
    await registry.push(variant(make_model, 2), version="1.1.0")
    assert (await registry.resolve(ref("tests/hello"))).version == "1.1.0"


async def test_push_an_uploaded_archive(registry: Registry, make_model: MakeModel) -> None:
    folder = make_model()
    upload = io.BytesIO()
    with tarfile.open(fileobj=upload, mode="w:gz") as tar:
        tar.add(folder, arcname=".")
    from_archive = await registry.push(upload.getvalue(), version="1.0.0")
    from_folder = await registry.push(folder, version="1.0.0")
    assert from_archive.build_hash == from_folder.build_hash and not from_folder.created


async def test_push_refuses_a_bad_manifest_early(registry: Registry, make_model: MakeModel) -> None:
    folder = make_model(runtime='entrypoint = "nope"')
    with pytest.raises(ManifestError, match="entrypoint"):
        await registry.push(folder, version="1.0.0")
    assert not registry.artifacts.archives_dir.exists()


async def test_failed_build_keeps_its_log(registry: Registry, make_model: MakeModel) -> None:
    folder = make_model(files={"model.py": "def other(x):\n    return x\n"})
    with pytest.raises(BuildError, match="defines no 'apply'") as info:
        await registry.push(folder, version="1.0.0")
    (build,) = await registry.list_builds("tests", "hello")
    assert build.status == "failed" and build.log is None
    stored = await registry.get_build(build.hash)
    assert stored.log == info.value.log and "defines no 'apply'" in stored.log
    assert await registry.list_versions("tests", "hello") == []
    with pytest.raises(VersionNotFound, match="is failed, not ready"):
        await registry.resolve(ref(f"tests/hello@{build.hash}"))
    with pytest.raises(BuildNotFound):
        await registry.get_build("sha256:" + "0" * 64)
    with pytest.raises(Conflict, match="only a ready build can be published"):
        await registry.publish("tests", "hello", build=build.hash, version="1.0.0")


async def test_exec_models(registry: Registry, make_model: MakeModel) -> None:
    runtime = 'kind = "exec"\ncommand = ["sh", "runner.sh"]\nenv = { GREETING = "hi" }'
    result = await registry.push(
        make_model(runtime=runtime, files={"runner.sh": ""}), version="0.1.0"
    )
    spec = (await registry.resolve(ref("tests/hello@0.*"))).runner_spec
    assert spec.argv == ("sh", "runner.sh")
    assert spec.env["PYTHONPATH"] == str(spec.cwd) and spec.env["GREETING"] == "hi"
    assert spec.key == result.build_hash

    script = 'kind = "exec"\ncommand = ["./run.sh", "--fast"]'
    folder = make_model("script", runtime=script, files={"run.sh": "#!/bin/sh\n"})
    (folder / "run.sh").chmod(0o755)
    await registry.push(folder, version="1.0.0")
    spec = (await registry.resolve(ref("tests/script"))).runner_spec
    assert spec.argv == (str(spec.cwd / "run.sh"), "--fast")
    assert os.access(spec.argv[0], os.X_OK)  # the executable bit survives packing


@pytest.mark.slow
async def test_versions_with_the_same_requirements_share_one_env(
    registry: Registry, make_model: MakeModel
) -> None:
    first = await registry.push(variant(make_model, 1, runtime=SIX), version="1.0.0")
    second = await registry.push(variant(make_model, 2, runtime=SIX), version="1.0.1")
    assert first.built and not first.env_reused
    assert second.built and second.env_reused and "reusing environment" in second.log
    build = await registry.get_build(second.build_hash)
    assert (
        build.env_hash and build.env_hash == (await registry.get_build(first.build_hash)).env_hash
    )
    spec = (await registry.resolve(ref("tests/hello@1.0.0"))).runner_spec
    assert spec.argv[0] == str(registry.builder.env_python(build.env_hash))

    # A node whose environment is gone (another machine, a cleaned disk) rebuilds it.
    shutil.rmtree(registry.builder.env_dir(build.env_hash))
    registry.invalidate()
    spec = (await registry.resolve(ref("tests/hello@1.0.1"))).runner_spec
    assert spec.argv[0] == str(registry.builder.env_python(build.env_hash))
    assert registry.builder.env_ready(build.env_hash)


async def test_an_upload_with_a_bad_manifest_is_refused_before_storing(
    registry: Registry, make_model: MakeModel
) -> None:
    folder = make_model(extra="[serving]\nmax_runners = 0\n")
    upload = io.BytesIO()
    with tarfile.open(fileobj=upload, mode="w:gz") as tar:
        tar.add(folder, arcname=".")
    with pytest.raises(
        ManifestError, match=r"^modelbus\.toml in the uploaded archive: \[serving\]"
    ):
        await registry.push(upload.getvalue(), version="1.0.0")
    assert not registry.artifacts.archives_dir.exists()
