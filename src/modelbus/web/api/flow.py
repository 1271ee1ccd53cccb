"""The flow map's data: ``GET /v1/flow``, every listener as one graph.

Sources -> listeners -> model versions -> sinks, with pipelines where one listener's output
is another's source, each node's state and each edge's messages and rate: see
:mod:`modelbus.listeners.flow`. Any valid key may read it (as listener statuses); every URL
is shown by its shape (``scheme://host/***?name=***``). The console's flow page draws the same graph
(:mod:`modelbus.web.console.flow`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from modelbus.listeners import flow
from modelbus.web.api.auth import Key
from modelbus.web.api.context import services
from modelbus.web.api.errors import responses
from modelbus.web.api.listeners import status_out

router = APIRouter(tags=["listeners"])


def rate_meter(request: Request) -> flow.RateMeter:
    """The app's meter of edge rates (one per app, made on first use: readings taken for
    the API and the console alike)."""
    state = request.app.state
    meter = getattr(state, "flow_rates", None)
    if not isinstance(meter, flow.RateMeter):
        meter = state.flow_rates = flow.RateMeter()
    return meter


async def flow_graph(request: Request) -> flow.FlowGraph:
    """The flow graph of every listener now, its rates from this app's earlier readings."""
    running = services(request)
    # whole: two URLs are joined by the place they name (flow.place_key), which their shapes
    # do not say; flow.build shows every URL by its shape only
    listeners = [
        (info.definition, await status_out(running, info.definition))
        for info in await running.listeners.list()
    ]
    return flow.build(listeners, rates=rate_meter(request))


@router.get(
    "/v1/flow",
    summary="Every listener as one graph: sources, listeners, model versions, sinks, pipelines",
    response_model=flow.FlowGraph,
    responses=responses(),
)
async def get_flow(request: Request, key: Key) -> flow.FlowGraph:
    """The flow map: a node per place (queue, topic, folder; two URLs naming the same place
    are one node, so pipelines show), per listener (state, and why while degraded) and per
    listener's model version (resolved now); an edge per hop with the messages it carried
    (summed over the live nodes) and its rate in messages per second (null on the first
    reading). Nodes carry a layered layout (`layer`, `row`). URLs are shown by their shape."""
    return await flow_graph(request)
