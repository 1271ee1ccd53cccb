"""The model registry: models, their immutable versions and builds, and version resolution.

``push`` stores a model folder (or an uploaded archive) by content hash, builds it once, and
records a version:

- ``version="1.2.3"``: that version, unless it exists: with the same content the push is a
  no-op returning it; with other content it raises :class:`VersionConflict` naming the
  existing build.
- ``bump="major"|"minor"|"patch"``: the next version after the model's highest one (from
  0.0.0 for a new model); a no-op when the highest version already has this content.
- neither: **an unpublished build, callable only by its hash** (``owner/name@sha256:...`` or
  a unique prefix of 8+ hex digits). Nothing callers see by version changes until someone
  publishes on purpose, so an accidental push is harmless.
- ``publish=False`` with a version: the version is recorded but not served by version
  specs until :meth:`Registry.publish`; it is callable by hash.

Artifacts (:mod:`modelbus.registry.artifacts`): a push puts the build's archive in the
artifact store before recording anything; a node resolving a build it has no copy of
downloads it (hash checked), unpacks it, and builds its environment there on first use,
keeping that build's log in the store under the node's name (``BuildInfo.node_logs``).
A store that cannot be reached fails the push or the resolution with
:class:`ArtifactUnavailable` (transient); an archive the store lost, with
:class:`ArtifactMissing` naming the version and the store.

Resolution (``owner/name@spec`` -> a build ready to run) is cached in memory. Exact
versions and full hashes never change meaning, so they stay cached for
``IMMUTABLE_CACHE_S``; ``latest`` and wildcards for ``cache_ttl_s`` (default 5 s): a version
published through another node is served here at most that long after. Pushes and publishes
made through this registry take effect here at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Row, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from modelbus.client.refs import ModelRef
from modelbus.errors import (
    ArtifactError,
    ArtifactUnavailable,
    BuildError,
    BuildNotFound,
    Conflict,
    InvalidInput,
    ModelNotFound,
    VersionConflict,
    VersionNotFound,
    VersionSpecError,
)
from modelbus.registry.artifacts import LocalArtifacts
from modelbus.registry.artifacts.status import StoreMonitor, StoreStatus
from modelbus.registry.builds import Builder, BuildLog, BuildOutcome, ProgressCallback
from modelbus.registry.launch import RunnerSpec, install_runtime, python_argv, runner_env
from modelbus.registry.manifest import MANIFEST_FILE, Manifest, check_model_name
from modelbus.registry.versioning import BUMPS, ZERO, Bump, HashRef, Version, VersionSpec, parse_ref
from modelbus.store import schema
from modelbus.store.database import Database

BuildStatus = Literal["building", "ready", "failed"]
IMMUTABLE_CACHE_S = 600.0
MAX_CACHE_ENTRIES = 4096
# Reading the node logs of a build from the store, for GET /v1/builds/{hash}.
NODE_LOGS_TIMEOUT_S = 10.0

log = logging.getLogger("modelbus.registry")


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelInfo:
    """A model. ``latest_version`` is its highest published version, if any. ``details``:
    what a management client said about it beyond its description (stored as given)."""

    owner: str
    name: str
    description: str
    created_at: float
    latest_version: str | None
    details: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class VersionInfo:
    """One version number of a model and the build it names. ``details``: what its
    publisher said about it (release notes, sample input...), stored as given."""

    owner: str
    name: str
    version: str
    build_hash: str
    published: bool
    created_at: float
    details: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class BuildInfo:
    """One build (one content hash). ``log`` is ``None`` in listings; :meth:`Registry.get_build`
    fills it. ``versions`` are the version numbers pointing at it, highest first.
    ``node_logs`` (from :meth:`Registry.get_build` too): the environment builds that nodes
    ran for it on first use, node name -> log; ``None`` when the artifact store could not
    be read."""

    hash: str
    owner: str
    name: str
    status: BuildStatus
    env_hash: str | None
    manifest: Manifest
    created_at: float
    finished_at: float | None
    versions: tuple[str, ...]
    log: str | None = None
    node_logs: dict[str, str] | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class PushResult:
    """What a push did.

    ``version`` is ``None`` for an unpublished build (callable by hash only). ``created`` is
    false for a no-op (this content was pushed before with this outcome). ``built`` is true
    when a build ran now, ``env_reused`` when it found its environment already built.
    """

    owner: str
    name: str
    version: str | None
    build_hash: str
    published: bool
    created: bool
    built: bool
    env_reused: bool
    log: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ResolvedVersion:
    """A model reference resolved to a build that can run now.

    ``version`` is ``None`` for a build no version number points at.
    """

    owner: str
    name: str
    version: str | None
    build_hash: str
    manifest: Manifest
    runner_spec: RunnerSpec

    @property
    def label(self) -> str:
        """The version number, or the build hash when there is none (for results, logs)."""
        return self.version or self.build_hash


@dataclass(frozen=True, slots=True)
class _Cached:
    value: ResolvedVersion
    expires_at: float


class Registry:
    """Models, versions and builds over a :class:`Database`, artifacts and a builder.

    One per server process. ``artifacts``: this node's view of the artifact store (default:
    the folder store in ``data_dir``). ``node``: this node's name in the build logs it
    stores (default: the host name). All methods are coroutines; they raise the errors named
    in their docstrings (all from :mod:`modelbus.errors`).
    """

    def __init__(
        self,
        db: Database,
        data_dir: Path,
        *,
        artifacts: LocalArtifacts | None = None,
        builder: Builder | None = None,
        cache_ttl_s: float = 5.0,
        node: str | None = None,
    ) -> None:
        self.db = db
        self.data_dir = data_dir.absolute()
        self.artifacts = artifacts or LocalArtifacts(data_dir)
        self.store_monitor = StoreMonitor(self.artifacts.store)
        self.builder = builder or Builder(data_dir)
        self.node = node or socket.gethostname()
        self.cache_ttl_s = cache_ttl_s
        self._cache: dict[tuple[str, str, str], _Cached] = {}
        self._runtime_dir: Path | None = None

    # --- push and publish -------------------------------------------------------------------

    async def push(
        self,
        source: Path | bytes,
        *,
        version: str | None = None,
        bump: Bump | None = None,
        publish: bool = True,
        progress: ProgressCallback | None = None,
        expect_model: tuple[str, str] | None = None,
    ) -> PushResult:
        """Store, build and (optionally) version a model folder or uploaded archive.

        ``source`` is a folder (CLI, local) or archive bytes (HTTP upload: tar, tar.gz...).
        Owner and name come from its manifest; ``expect_model`` (owner, name) refuses an
        archive whose manifest names another model (checked once it is safely unpacked, in
        a thread, like every check of an archive). See the module docstring for what
        ``version``/``bump``/``publish`` do. ``progress`` receives build log lines.

        Raises :class:`ManifestError`, :class:`ArchiveError`, :class:`VersionSpecError`,
        :class:`InvalidInput` (both version and bump), :class:`VersionConflict` (checked
        before building), :class:`BuildError` (the log is kept with the build), and
        :class:`ArtifactUnavailable` when the archive cannot be put in the artifact store
        (nothing is recorded then).
        """
        target = _target(version, bump)
        log = BuildLog(progress)
        digest, manifest, model_dir = await self._store(source, expect_model)
        await log.add(f"stored {manifest.owner}/{manifest.name} as {digest}")
        if target is not None:
            await self._check_no_conflict(manifest, target, digest)
        build, outcome = await self._ensure_build(digest, manifest, model_dir, log)
        if target is None and bump is None:
            return _push_result(build, outcome, None, created=outcome is not None)
        info, created = await self._assign(manifest, digest, target, bump, publish)
        await log.add(f"{'recorded' if created else 'already had'} version {info.version}")
        return _push_result(build, outcome, info, created=created)

    async def publish(
        self,
        owner: str,
        name: str,
        *,
        build: str | None = None,
        version: str | None = None,
        bump: Bump | None = None,
        details: dict[str, Any] | None = None,
    ) -> VersionInfo:
        """Publish a version, so version specs (``latest``, ``1.*``...) serve it.

        - ``version`` alone, existing unpublished: it is published.
        - otherwise ``build`` (a hash or unique prefix; default: the model's most recent ready
          build) gets ``version`` or the next ``bump`` version, published.

        ``details`` (release notes...) are stored with the version, replacing earlier ones.

        Idempotent for a version already published on that build. Raises
        :class:`ModelNotFound`, :class:`BuildNotFound`, :class:`VersionConflict`,
        :class:`Conflict` (the build failed), :class:`VersionSpecError`, :class:`InvalidInput`.
        """
        target = _target(version, bump)
        if target is None and bump is None:
            raise InvalidInput("give the version to publish, or a bump (major, minor, patch)")
        await self.get_model(owner, name)
        row = await self._pick_build(owner, name, build, target)
        if row.status != "ready":
            raise Conflict(f"build {row.hash} is {row.status}: only a ready build can be published")
        manifest = Manifest.from_json(row.manifest)
        info, _ = await self._assign(manifest, row.hash, target, bump, True, details)
        return info

    # --- models without a push ------------------------------------------------------------

    async def create_model(
        self, owner: str, name: str, *, description: str = "", details: dict[str, Any] | None
    ) -> ModelInfo:
        """Record a model that has no build yet (a push or publish gives it versions later).

        Raises :class:`InvalidInput` for a malformed owner or name, :class:`Conflict` when
        the model exists.
        """
        check_model_name(owner, name)
        async with self.db.write() as conn:
            if await _find_model_row(conn, owner, name) is not None:
                raise Conflict(f"model {owner}/{name} exists already")
            await conn.execute(
                schema.models.insert().values(
                    owner=owner,
                    name=name,
                    description=description,
                    details=details,
                    created_at=time.time(),
                )
            )
        return await self.get_model(owner, name)

    async def update_model(
        self,
        owner: str,
        name: str,
        *,
        description: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> ModelInfo:
        """Change a model's description and/or details (``None``: unchanged).

        Raises :class:`ModelNotFound`.
        """
        changes: dict[str, Any] = {}
        if description is not None:
            changes["description"] = description
        if details is not None:
            changes["details"] = details
        async with self.db.write() as conn:
            await _model_row(conn, owner, name)
            if changes:
                m = schema.models.c
                await conn.execute(
                    update(schema.models).where(m.owner == owner, m.name == name).values(changes)
                )
        return await self.get_model(owner, name)

    async def delete_model(self, owner: str, name: str) -> None:
        """Forget a model, its versions and its builds. Its archives stay in the artifact
        store (they are content-addressed and may be shared); runners already started for it
        stop when their pools idle out. Raises :class:`ModelNotFound`.
        """
        async with self.db.write() as conn:
            await _model_row(conn, owner, name)
            for table in (schema.versions, schema.builds, schema.models):
                await conn.execute(
                    delete(table).where(table.c.owner == owner, table.c.name == name)
                )
        self.invalidate(owner, name)

    # --- queries ----------------------------------------------------------------------------

    async def list_models(self) -> list[ModelInfo]:
        """Every model, sorted by owner then name."""
        async with self.db.read() as conn:
            models = (await conn.execute(select(schema.models))).all()
            published = await _published_versions(conn)
        return sorted(
            (_model_info(m, published.get((m.owner, m.name), [])) for m in models),
            key=lambda m: (m.owner, m.name),
        )

    async def get_model(self, owner: str, name: str) -> ModelInfo:
        """One model; raises :class:`ModelNotFound`."""
        async with self.db.read() as conn:
            row = await _model_row(conn, owner, name)
            published = await _published_versions(conn, owner, name)
        return _model_info(row, published.get((owner, name), []))

    async def list_versions(self, owner: str, name: str) -> list[VersionInfo]:
        """All version numbers of a model (published or not), highest first.

        Raises :class:`ModelNotFound`.
        """
        async with self.db.read() as conn:
            await _model_row(conn, owner, name)
            rows = await _version_rows(conn, owner, name)
        return [_version_info(r) for r in _sorted_versions(rows)]

    async def list_builds(self, owner: str, name: str) -> list[BuildInfo]:
        """All builds of a model, newest first, without their logs.

        Raises :class:`ModelNotFound`.
        """
        async with self.db.read() as conn:
            await _model_row(conn, owner, name)
            query = schema.builds.select().where(
                schema.builds.c.owner == owner, schema.builds.c.name == name
            )
            builds = (await conn.execute(query.order_by(schema.builds.c.created_at.desc()))).all()
            versions = await _version_rows(conn, owner, name)
        return [_build_info(b, versions, with_log=False) for b in builds]

    async def get_build(self, ref: str) -> BuildInfo:
        """One build, with its log, by hash (``sha256:<hex>``) or a unique hex prefix.

        Its ``node_logs`` are read from the artifact store (``None`` if it cannot be read
        now). Raises :class:`BuildNotFound`, or :class:`VersionSpecError` for a malformed or
        ambiguous hash.
        """
        hash_ref = HashRef.parse(ref)
        async with self.db.read() as conn:
            row = await _one_build(conn, hash_ref, None, None)
            versions = await _version_rows(conn, row.owner, row.name)
        info = _build_info(row, versions, with_log=True)
        return replace(info, node_logs=await self._node_logs(row.hash))

    async def artifact_status(self) -> StoreStatus:
        """Whether this node can reach the artifact store (checked at most every few
        seconds; see :mod:`modelbus.registry.artifacts.status`). Never raises."""
        return await self.store_monitor.status()

    # --- resolution -------------------------------------------------------------------------

    async def resolve(self, ref: ModelRef) -> ResolvedVersion:
        """The build ``ref`` names, ready to run (unpacked; environment built if missing).

        Raises :class:`ModelNotFound`, :class:`VersionNotFound` (naming the published
        versions), :class:`VersionSpecError`, :class:`BuildError` when the environment
        has to be built on this node and that fails, and, when this node has no copy of the
        build yet, :class:`ArtifactUnavailable` (the store cannot be reached),
        :class:`ArtifactMissing` or :class:`ArtifactCorrupt`, naming the version and store.
        """
        key = (ref.owner, ref.name, ref.spec)
        cached = self._cache.get(key)
        if cached is not None and cached.expires_at > time.monotonic():
            return cached.value
        spec = parse_ref(ref.spec)
        row, version = await self._lookup(ref.owner, ref.name, spec)
        resolved = await self._materialize(row, version)
        immutable = spec.complete if isinstance(spec, HashRef) else spec.exact
        self._remember(key, resolved, IMMUTABLE_CACHE_S if immutable else self.cache_ttl_s)
        return resolved

    async def manifest_of(self, ref: ModelRef) -> tuple[str, Manifest]:
        """The version label ``ref`` names now (its number, or the build hash) and that
        build's manifest, read from the store alone: unlike :meth:`resolve`, nothing is
        unpacked or built. Raises :class:`ModelNotFound`, :class:`VersionNotFound` or
        :class:`VersionSpecError`."""
        row, version = await self._lookup(ref.owner, ref.name, parse_ref(ref.spec))
        return version or row.hash, Manifest.from_json(row.manifest, source=f"build {row.hash}")

    def invalidate(self, owner: str | None = None, name: str | None = None) -> None:
        """Forget cached resolutions (of one model, or all); the next resolve reads the store."""
        for key in [k for k in self._cache if owner is None or k[:2] == (owner, name)]:
            del self._cache[key]

    # --- internals: push --------------------------------------------------------------------

    async def _store(
        self, source: Path | bytes, expect_model: tuple[str, str] | None
    ) -> tuple[str, Manifest, Path]:
        """Store the artifact; return its hash, manifest and unpacked folder."""
        try:
            if isinstance(source, bytes):
                check = functools.partial(_check_uploaded_manifest, expect_model=expect_model)
                digest = await asyncio.to_thread(self.artifacts.add_archive, source, check=check)
            else:
                await asyncio.to_thread(Manifest.load, source)  # fail fast, before packing
                digest = await asyncio.to_thread(self.artifacts.add_folder, source)
        except ArtifactUnavailable as exc:
            self.store_monitor.failed(exc)
            raise
        model_dir = await asyncio.to_thread(self.artifacts.model_dir, digest)
        manifest = await asyncio.to_thread(Manifest.load, model_dir)
        return digest, manifest, model_dir

    async def _check_no_conflict(self, manifest: Manifest, target: Version, digest: str) -> None:
        async with self.db.read() as conn:
            row = await _version_row(conn, manifest.owner, manifest.name, target)
        if row is not None and row.build_hash != digest:
            raise _conflict(manifest.owner, manifest.name, target, row.build_hash)

    async def _ensure_build(
        self, digest: str, manifest: Manifest, model_dir: Path, log: BuildLog
    ) -> tuple[Row[Any], BuildOutcome | None]:
        """The build row, building first unless a ready build exists (outcome None then)."""
        async with self.db.read() as conn:
            row = await _build_row(conn, digest)
        if row is not None and row.status == "ready":
            await log.add(f"build {digest} exists and is ready: not rebuilding")
            return row, None
        await self._start_build(digest, manifest)
        try:
            outcome = await self.builder.build(manifest, model_dir, progress=log.add)
        except BuildError as exc:
            await self._finish_build(digest, "failed", exc.log, None)
            raise
        except BaseException:
            await asyncio.shield(self._finish_build(digest, "failed", "interrupted", None))
            raise
        row = await self._finish_build(digest, "ready", outcome.log, outcome.env_hash)
        return row, outcome

    async def _start_build(self, digest: str, manifest: Manifest) -> None:
        now = time.time()
        async with self.db.write() as conn:
            await self._upsert_model(conn, manifest, now)
            values = {"status": "building", "log": "", "finished_at": None, "env_hash": None}
            stmt = self.db.insert(schema.builds).values(
                hash=digest,
                owner=manifest.owner,
                name=manifest.name,
                manifest=manifest.to_json(),
                created_at=now,
                **values,
            )
            await conn.execute(stmt.on_conflict_do_update(index_elements=["hash"], set_=values))

    async def _finish_build(
        self, digest: str, status: BuildStatus, log: str, env_hash: str | None
    ) -> Row[Any]:
        async with self.db.write() as conn:
            await conn.execute(
                update(schema.builds)
                .where(schema.builds.c.hash == digest)
                .values(status=status, log=log, env_hash=env_hash, finished_at=time.time())
            )
            row = await _build_row(conn, digest)
        assert row is not None
        return row

    async def _upsert_model(self, conn: AsyncConnection, manifest: Manifest, now: float) -> None:
        description = manifest.model.description
        stmt = self.db.insert(schema.models).values(
            owner=manifest.owner, name=manifest.name, description=description, created_at=now
        )
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["owner", "name"], set_={"description": description}
            )
        )

    async def _assign(
        self,
        manifest: Manifest,
        digest: str,
        target: Version | None,
        bump: Bump | None,
        publish: bool,
        details: dict[str, Any] | None = None,
    ) -> tuple[VersionInfo, bool]:
        """Give ``digest`` a version number (``target`` or the next ``bump``).

        Returns the version and whether it is new. Serialized per model across nodes, so
        two concurrent bumps get different numbers.
        """
        owner, name = manifest.owner, manifest.name
        async with self.db.write() as conn:
            await self.db.lock(conn, f"modelbus:versions:{owner}/{name}")
            rows = _sorted_versions(await _version_rows(conn, owner, name))
            if target is None:
                assert bump is not None
                if rows and rows[0].build_hash == digest:
                    target = Version.parse(rows[0].version)  # same content again: no-op
                else:
                    target = (Version.parse(rows[0].version) if rows else ZERO).bump(bump)
            info, created = await _record_version(
                conn, owner, name, target, digest, publish, details
            )
        self.invalidate(owner, name)
        return info, created

    async def _pick_build(
        self, owner: str, name: str, build: str | None, target: Version | None
    ) -> Row[Any]:
        async with self.db.read() as conn:
            if build is not None:
                return await _one_build(conn, HashRef.parse(build), owner, name)
            if target is not None:
                existing = await _version_row(conn, owner, name, target)
                if existing is not None:
                    row = await _build_row(conn, existing.build_hash)
                    assert row is not None
                    return row
            query = (
                schema.builds.select()
                .where(
                    schema.builds.c.owner == owner,
                    schema.builds.c.name == name,
                    schema.builds.c.status == "ready",
                )
                .order_by(schema.builds.c.created_at.desc())
                .limit(1)
            )
            latest = (await conn.execute(query)).first()
        if latest is None:
            raise BuildNotFound(f"{owner}/{name} has no successful build to publish")
        return latest

    # --- internals: resolution --------------------------------------------------------------

    async def _lookup(
        self, owner: str, name: str, spec: VersionSpec | HashRef
    ) -> tuple[Row[Any], str | None]:
        """The ready build row ``spec`` names, and the version number to report."""
        async with self.db.read() as conn:
            await _model_row(conn, owner, name)
            versions = await _version_rows(conn, owner, name)
            version: str | None
            if isinstance(spec, HashRef):
                row = await _one_build(conn, spec, owner, name, not_found=VersionNotFound)
                named = [v.version for v in _sorted_versions(versions) if v.build_hash == row.hash]
                version = named[0] if named else None
            else:
                version = _best_published(owner, name, spec, versions)
                match = next(v for v in versions if v.version == version)
                found = await _build_row(conn, match.build_hash)
                assert found is not None  # versions.build_hash is a foreign key
                row = found
        if row.status != "ready":
            raise VersionNotFound(
                f"{owner}/{name} build {row.hash} is {row.status}, not ready (see the build's log)"
            )
        return row, version

    async def _materialize(self, row: Row[Any], version: str | None) -> ResolvedVersion:
        manifest = Manifest.from_json(row.manifest, source=f"build {row.hash}")
        model_dir = await self._model_dir(row, version)
        spec = await self._runner_spec(row.hash, manifest, model_dir)
        return ResolvedVersion(
            owner=row.owner,
            name=row.name,
            version=version,
            build_hash=row.hash,
            manifest=manifest,
            runner_spec=spec,
        )

    async def _model_dir(self, row: Row[Any], version: str | None) -> Path:
        """The build's unpacked folder; artifact errors name the version they were for."""
        try:
            return await asyncio.to_thread(self.artifacts.model_dir, row.hash)
        except ArtifactError as exc:
            if isinstance(exc, ArtifactUnavailable):
                self.store_monitor.failed(exc)
            label = f"{row.owner}/{row.name} {version or row.hash}"
            raise type(exc)(f"cannot fetch {label} on node {self.node}: {exc.message}") from exc

    async def _node_logs(self, digest: str) -> dict[str, str] | None:
        try:
            async with asyncio.timeout(NODE_LOGS_TIMEOUT_S):
                return await asyncio.to_thread(self.artifacts.store.logs, digest)
        except ArtifactUnavailable as exc:
            self.store_monitor.failed(exc)
        except TimeoutError:
            pass
        log.warning("the node build logs of %s cannot be read from the artifact store", digest)
        return None

    async def _runner_spec(self, digest: str, manifest: Manifest, model_dir: Path) -> RunnerSpec:
        runtime, serving = manifest.runtime, manifest.serving
        if runtime.kind == "exec":
            assert runtime.command is not None
            program, *args = runtime.command
            if "/" in program:  # a program inside the model folder: make it absolute
                program = str(model_dir / program)
            argv = (program, *args)
            env = runner_env(model_dir=model_dir, runtime_dir=None, extra=runtime.env)
        else:
            assert runtime.entrypoint is not None
            python = await self._python_for(digest, manifest)
            argv = python_argv(
                python,
                entrypoint=runtime.entrypoint,
                load=runtime.load,
                apply_batch=runtime.apply_batch,
                adk=runtime.kind == "adk",
            )
            runtime_dir = await self._runtime()
            env = runner_env(model_dir=model_dir, runtime_dir=runtime_dir, extra=runtime.env)
        return RunnerSpec(
            key=digest,
            argv=argv,
            cwd=model_dir,
            env=env,
            timeout_s=serving.timeout_s,
            min_runners=serving.min_runners,
            max_runners=serving.max_runners,
            idle_timeout_s=serving.idle_timeout_s,
            memory_limit_mb=serving.memory_limit_mb or None,
            input_schema=manifest.schemas.input,
            output_schema=manifest.schemas.output,
        )

    async def _python_for(self, digest: str, manifest: Manifest) -> str:
        requirements = manifest.runtime.requirements
        if not requirements:
            return sys.executable
        env_hash = self.builder.env_hash(requirements)
        if self.builder.env_ready(env_hash):
            return str(self.builder.env_python(env_hash))
        # Built on another node, or the environment was removed: build it here, once, and
        # keep the log where every node can show it.
        header = f"== environment of {manifest.owner}/{manifest.name} ({digest}) on {self.node}"
        try:
            outcome = await self.builder.ensure_env(requirements)
        except BuildError as exc:
            await self._keep_node_log(digest, f"{header}\n{exc.log}\nerror: {exc.message}\n")
            raise
        if not outcome.env_reused:
            await self._keep_node_log(digest, f"{header}\n{outcome.log}\n")
        assert outcome.python is not None
        return outcome.python

    async def _keep_node_log(self, digest: str, text: str) -> None:
        """Put this node's build log in the store; a store that is down costs only the log."""
        try:
            await asyncio.to_thread(self.artifacts.store.put_log, digest, self.node, text)
        except ArtifactUnavailable as exc:
            self.store_monitor.failed(exc)
            log.warning("the build log of %s was not stored: %s", digest, exc.message)

    async def _runtime(self) -> Path:
        if self._runtime_dir is None:
            self._runtime_dir = await asyncio.to_thread(install_runtime, self.data_dir)
        return self._runtime_dir

    def _remember(self, key: tuple[str, str, str], value: ResolvedVersion, ttl_s: float) -> None:
        if len(self._cache) >= MAX_CACHE_ENTRIES:
            for old in list(self._cache)[: MAX_CACHE_ENTRIES // 4]:
                del self._cache[old]
        self._cache[key] = _Cached(value, time.monotonic() + ttl_s)


# --- helpers: arguments and results ---------------------------------------------------------


def _target(version: str | None, bump: Bump | None) -> Version | None:
    if version is not None and bump is not None:
        raise InvalidInput("give either a version or a bump, not both")
    if bump is not None and bump not in BUMPS:
        raise VersionSpecError(f"not a version bump: {bump!r} (expected major, minor or patch)")
    return Version.parse(version) if version is not None else None


def _check_uploaded_manifest(folder: Path, *, expect_model: tuple[str, str] | None) -> None:
    manifest = Manifest.load(folder, label=f"{MANIFEST_FILE} in the uploaded archive")
    found = (manifest.owner, manifest.name)
    if expect_model is not None and found != expect_model:
        raise InvalidInput(
            f"the archive holds model {found[0]}/{found[1]}, "
            f"but was pushed to {expect_model[0]}/{expect_model[1]}"
        )


def _conflict(owner: str, name: str, version: Version, existing_hash: str) -> VersionConflict:
    return VersionConflict(
        f"{owner}/{name} {version} already exists with other content (build {existing_hash}); "
        f"versions are immutable: push as a new version, e.g. {version.bump('patch')}"
    )


def _push_result(
    build: Row[Any], outcome: BuildOutcome | None, info: VersionInfo | None, *, created: bool
) -> PushResult:
    return PushResult(
        owner=build.owner,
        name=build.name,
        version=info.version if info else None,
        build_hash=build.hash,
        published=info.published if info else False,
        created=created,
        built=outcome is not None,
        env_reused=outcome.env_reused if outcome else True,
        log=outcome.log if outcome else build.log,
    )


# --- helpers: rows --------------------------------------------------------------------------


async def _model_row(conn: AsyncConnection, owner: str, name: str) -> Row[Any]:
    row = await _find_model_row(conn, owner, name)
    if row is None:
        raise ModelNotFound(f"no model {owner}/{name}")
    return row


async def _find_model_row(conn: AsyncConnection, owner: str, name: str) -> Row[Any] | None:
    query = schema.models.select().where(
        schema.models.c.owner == owner, schema.models.c.name == name
    )
    return (await conn.execute(query)).first()


async def _version_rows(conn: AsyncConnection, owner: str, name: str) -> list[Row[Any]]:
    v = schema.versions.c
    return list(
        (await conn.execute(schema.versions.select().where(v.owner == owner, v.name == name))).all()
    )


async def _version_row(
    conn: AsyncConnection, owner: str, name: str, version: Version
) -> Row[Any] | None:
    v = schema.versions.c
    query = schema.versions.select().where(
        v.owner == owner, v.name == name, v.version == str(version)
    )
    return (await conn.execute(query)).first()


async def _published_versions(
    conn: AsyncConnection, owner: str | None = None, name: str | None = None
) -> dict[tuple[str, str], list[Row[Any]]]:
    v = schema.versions.c
    query = schema.versions.select().where(v.published.is_(True))
    if owner is not None:
        query = query.where(v.owner == owner, v.name == name)
    grouped: dict[tuple[str, str], list[Row[Any]]] = {}
    for row in (await conn.execute(query)).all():
        grouped.setdefault((row.owner, row.name), []).append(row)
    return grouped


async def _build_row(conn: AsyncConnection, digest: str) -> Row[Any] | None:
    query = schema.builds.select().where(schema.builds.c.hash == digest)
    return (await conn.execute(query)).first()


async def _one_build(
    conn: AsyncConnection,
    ref: HashRef,
    owner: str | None,
    name: str | None,
    not_found: type[BuildNotFound] | type[VersionNotFound] = BuildNotFound,
) -> Row[Any]:
    """The single build whose hash starts with ``ref`` (of ``owner/name`` when given)."""
    b = schema.builds.c
    query = schema.builds.select().where(b.hash.like(ref.like_pattern)).limit(2)
    if owner is not None:
        query = query.where(b.owner == owner, b.name == name)
    rows = (await conn.execute(query)).all()
    where = f" of {owner}/{name}" if owner else ""
    if not rows:
        raise not_found(f"no build{where} with hash {ref}")
    if len(rows) > 1:
        raise VersionSpecError(f"build hash {ref} is ambiguous{where}: give more hex digits")
    return rows[0]


async def _record_version(
    conn: AsyncConnection,
    owner: str,
    name: str,
    target: Version,
    digest: str,
    publish: bool,
    details: dict[str, Any] | None,
) -> tuple[VersionInfo, bool]:
    existing = await _version_row(conn, owner, name, target)
    if existing is not None:
        if existing.build_hash != digest:
            raise _conflict(owner, name, target, existing.build_hash)
        changes: dict[str, Any] = {"published": True} if publish else {}
        if details is not None:
            changes["details"] = details
        if changes:
            v = schema.versions.c
            await conn.execute(
                update(schema.versions)
                .where(v.owner == owner, v.name == name, v.version == str(target))
                .values(changes)
            )
            existing = await _version_row(conn, owner, name, target)
        assert existing is not None
        return _version_info(existing), False
    info = VersionInfo(
        owner=owner,
        name=name,
        version=str(target),
        build_hash=digest,
        published=publish,
        created_at=time.time(),
        details=details,
    )
    await conn.execute(
        schema.versions.insert().values(
            owner=owner,
            name=name,
            version=info.version,
            major=target.major,
            minor=target.minor,
            patch=target.patch,
            build_hash=digest,
            published=publish,
            created_at=info.created_at,
            details=details,
        )
    )
    return info, True


def _sorted_versions(rows: Iterable[Row[Any]]) -> list[Row[Any]]:
    """Highest version first."""
    return sorted(rows, key=lambda r: (r.major, r.minor, r.patch), reverse=True)


def _best_published(owner: str, name: str, spec: VersionSpec, versions: list[Row[Any]]) -> str:
    published = {Version(r.major, r.minor, r.patch) for r in versions if r.published}
    best = spec.best(published)
    if best is not None:
        return str(best)
    if not published:
        hint = " (unpublished builds are callable by hash: owner/name@sha256:...)"
        raise VersionNotFound(f"{owner}/{name} has no published version yet{hint}")
    listed = ", ".join(str(v) for v in sorted(published)[-20:])
    raise VersionNotFound(
        f"{owner}/{name} has no published version matching {spec}; published: {listed}"
    )


def _model_info(row: Row[Any], published: list[Row[Any]]) -> ModelInfo:
    latest = _sorted_versions(published)[0].version if published else None
    return ModelInfo(
        owner=row.owner,
        name=row.name,
        description=row.description,
        created_at=row.created_at,
        latest_version=latest,
        details=row.details,
    )


def _version_info(row: Row[Any]) -> VersionInfo:
    return VersionInfo(
        owner=row.owner,
        name=row.name,
        version=row.version,
        build_hash=row.build_hash,
        published=bool(row.published),
        created_at=row.created_at,
        details=row.details,
    )


def _build_info(row: Row[Any], versions: list[Row[Any]], *, with_log: bool) -> BuildInfo:
    named = tuple(v.version for v in _sorted_versions(versions) if v.build_hash == row.hash)
    return BuildInfo(
        hash=row.hash,
        owner=row.owner,
        name=row.name,
        status=row.status,
        env_hash=row.env_hash,
        manifest=Manifest.from_json(row.manifest, source=f"build {row.hash}"),
        created_at=row.created_at,
        finished_at=row.finished_at,
        versions=named,
        log=row.log if with_log else None,
    )
