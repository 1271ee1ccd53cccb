"""The HTTP API: one module per route group, each exposing a ``router``.

:func:`routers` lists them in the order :func:`modelbus.web.app.create_app` includes them; a new
route group (listeners, runs, dead letters...) is a new module added to that list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the route modules are imported when the app is built, not before
    from fastapi import APIRouter


def routers() -> list[APIRouter]:
    """Every route group of the API."""
    from modelbus.web import console
    from modelbus.web.api import (
        algorithmia,
        algorithms,
        dead_letters,
        event_listeners,
        flow,
        health,
        history,
        hooks,
        invocations,
        keys,
        listeners,
        metrics,
        models,
        nodes,
        oip,
        runs,
    )

    return [
        health.router,
        models.router,
        invocations.router,
        keys.router,
        listeners.router,
        event_listeners.router,
        flow.router,
        runs.router,
        dead_letters.router,
        metrics.router,
        history.router,
        nodes.router,
        hooks.router,
        algorithms.router,
        algorithmia.router,
        oip.router,
        *console.routers(),
    ]
