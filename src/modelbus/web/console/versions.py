"""A model version's page: its input and output schemas, ready-to-copy calls (curl, Python,
TypeScript), its runners now and its recent errors.

Runner figures are the per-version pool families of ``/metrics``
(:mod:`modelbus.runtime.metrics`), read from the app's registry, so they count every process
of this node (with ``serve --workers N``, each worker's pools too, from
:mod:`modelbus.web.figures`). Recent errors are the model service's in-memory list
(:class:`modelbus.runtime.service.RecentErrors`) of this API process: calls over HTTP, "try
it", jobs, and listeners running in this process.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry

from modelbus.errors import VersionNotFound
from modelbus.runtime.service import RECENT_ERRORS_PER_MODEL, RecentError
from modelbus.web.api.context import services
from modelbus.web.console.auth import Viewing
from modelbus.web.console.models import check_reader
from modelbus.web.console.snippets import KEY_VARIABLE, example_input, snippets
from modelbus.web.console.web import PREFIX, ConsoleRoute, render
from modelbus.web.server import Services

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)

# Sample name (in /metrics) -> RunnerFigures field.
FIGURES = {
    "modelbus_version_runners": "alive",
    "modelbus_version_runners_busy": "busy",
    "modelbus_version_queued": "queued",
    "modelbus_version_invocations_total": "invocations",
    "modelbus_version_errors_total": "errors",
}


@dataclass(kw_only=True, slots=True)
class RunnerFigures:
    """One process's pool of a build: runners alive and busy, inputs queued, and the
    inputs run and failed since that process started."""

    worker: str
    alive: float = 0
    busy: float = 0
    queued: float = 0
    invocations: float = 0
    errors: float = 0


def runner_figures(metrics: CollectorRegistry, build_hash: str) -> list[RunnerFigures]:
    """The pools of ``build_hash`` in the figures of ``metrics``, one per process (the
    ``worker`` label; ``"0"`` without one), by worker. Blocking (may read worker files)."""
    found: dict[str, RunnerFigures] = {}
    for family in metrics.collect():
        for sample in family.samples:
            field = FIGURES.get(sample.name)
            if field is None or sample.labels.get("build") != build_hash:
                continue
            worker = sample.labels.get("worker", "0")
            row = found.setdefault(worker, RunnerFigures(worker=worker))
            setattr(row, field, getattr(row, field) + sample.value)
    return [found[w] for w in sorted(found, key=lambda w: (len(w), w))]


async def recent_errors(svc: Services, owner: str, name: str, spec: str) -> list[RecentError]:
    """The last :data:`RECENT_ERRORS_PER_MODEL` errors of version ``spec`` of ``owner/name``,
    newest first: what every node's listeners met (their run records that keep an error:
    retrying or dead-lettered), and this process's calls over HTTP, "try it" and jobs."""
    mine = [
        e
        for e in svc.models.recent_errors.of(owner, name)
        if e.version == spec and e.listener is None
    ]
    listeners = [
        info.name
        for info in await svc.listeners.list()
        if (info.definition.ref.owner, info.definition.ref.name) == (owner, name)
    ]
    failed = await svc.listeners.runs.failed_runs(listeners, spec, RECENT_ERRORS_PER_MODEL)
    theirs = [
        RecentError(
            at=run.updated_at,
            version=run.version,
            error_type=str(run.error.get("type", "Error")),
            message=str(run.error.get("message", "")),
            listener=run.listener,
        )
        for run in failed
        if run.error is not None
    ]
    errors = sorted(mine + theirs, key=lambda e: e.at, reverse=True)
    return errors[:RECENT_ERRORS_PER_MODEL]


@router.get("/models/{owner}/{name}/versions/{version}")
async def version_page(
    request: Request, owner: str, name: str, version: str, viewer: Viewing
) -> Response:
    check_reader(viewer, owner, name)
    svc = services(request)
    model = await svc.registry.get_model(owner, name)
    found = next(
        (v for v in await svc.registry.list_versions(owner, name) if v.version == version), None
    )
    if found is None:
        raise VersionNotFound(f"{owner}/{name} has no version {version}")
    build = await svc.registry.get_build(found.build_hash)
    spec = version if found.published else found.build_hash
    schemas = build.manifest.schemas
    base_url = str(request.base_url).rstrip("/")
    runners = await asyncio.to_thread(runner_figures, svc.metrics, build.hash)
    errors = await recent_errors(svc, owner, name, spec)
    return render(
        request,
        "version.html",
        viewer=viewer,
        model=model,
        version=found,
        build=build,
        spec=spec,
        input_schema=schemas.input,
        output_schema=schemas.output,
        snippets=snippets(base_url, owner, name, spec, example_input(schemas.input)),
        key_variable=KEY_VARIABLE,
        serving=build.manifest.serving,
        runners=runners,
        warm=any(r.alive > 0 for r in runners),
        errors=errors,
    )
