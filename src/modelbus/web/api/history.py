"""History routes: the last hour of a listener's or a model's figures, per step, summed over
every node (:mod:`modelbus.web.history`), as the console's charts show them.

``GET /v1/listeners/{name}/history`` needs any valid key (as a listener's status);
``GET /v1/models/{owner}/{name}/history`` a key that may see the model (manage models, or
call it). ``window_s`` (at most 3600) and ``step_s`` choose the steps; the last step is the
last one every node has sampled (up to one sampling interval, 5 s by default, behind).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from modelbus.client.schemas import ListenerHistoryOut, ModelHistoryOut, VersionHistoryOut
from modelbus.errors import InvalidInput
from modelbus.web.api.auth import Key, Reader
from modelbus.web.api.context import services
from modelbus.web.api.errors import responses
from modelbus.web.history import (
    DEFAULT_STEP_S,
    HISTORY_WINDOW_S,
    History,
    ListenerHistory,
    ModelHistory,
)
from modelbus.web.series import Grid

router = APIRouter(tags=["history"])

WindowS = Annotated[
    float,
    Query(ge=10, le=HISTORY_WINDOW_S, description="How far back, in seconds (at most an hour)."),
]
StepS = Annotated[float, Query(ge=1, le=600, description="Seconds per step (at most the window).")]


def grid_of(history: History, window_s: float, step_s: float) -> Grid:
    """The steps asked for; raises InvalidInput when the step is longer than the window."""
    try:
        return history.grid(window_s, step_s)
    except ValueError as exc:
        raise InvalidInput(f"window_s={window_s:g}, step_s={step_s:g}: {exc}") from None


def listener_history_out(name: str, found: ListenerHistory) -> ListenerHistoryOut:
    grid, series = found.grid, found.series
    return ListenerHistoryOut(
        name=name,
        start=grid.start,
        end=grid.end,
        step_s=grid.step_s,
        times=series.times,
        received_per_s=series.rates["received"],
        succeeded_per_s=series.rates["succeeded"],
        retried_per_s=series.rates["retried"],
        dead_lettered_per_s=series.rates["dead_lettered"],
        in_flight=series.in_flight,
        backlog=series.backlog,
        latency_p50_s=series.latency_p50_s,
        latency_p99_s=series.latency_p99_s,
        totals=series.totals,
    )


def model_history_out(model: str, found: ModelHistory) -> ModelHistoryOut:
    grid = found.grid
    return ModelHistoryOut(
        model=model,
        start=grid.start,
        end=grid.end,
        step_s=grid.step_s,
        times=grid.times(),
        versions=[
            VersionHistoryOut(
                version=v.version,
                calls_per_s=v.calls_per_s,
                errors_per_s=v.errors_per_s,
                duration_mean_s=v.duration_mean_s,
                totals=v.totals,
            )
            for v in found.versions
        ],
    )


@router.get(
    "/v1/listeners/{name}/history",
    summary="A listener's last hour: rates, in flight, backlog, latency p50/p99, per step",
    response_model=ListenerHistoryOut,
    responses=responses(400, 404),
)
async def listener_history(
    request: Request,
    name: str,
    key: Key,
    window_s: WindowS = HISTORY_WINDOW_S,
    step_s: StepS = DEFAULT_STEP_S,
) -> ListenerHistoryOut:
    running = services(request)
    info = await running.listeners.get(name)
    grid = grid_of(running.history, window_s, step_s)
    return listener_history_out(info.name, await running.history.listener(info.name, grid))


@router.get(
    "/v1/models/{owner}/{name}/history",
    summary="A model's last hour per version: calls, errors and mean duration, per step",
    response_model=ModelHistoryOut,
    responses=responses(400, 404),
)
async def model_history(
    request: Request,
    owner: str,
    name: str,
    key: Reader,
    window_s: WindowS = HISTORY_WINDOW_S,
    step_s: StepS = DEFAULT_STEP_S,
) -> ModelHistoryOut:
    running = services(request)
    model = await running.registry.get_model(owner, name)
    full = f"{model.owner}/{model.name}"
    grid = grid_of(running.history, window_s, step_s)
    return model_history_out(full, await running.history.model(full, grid))
