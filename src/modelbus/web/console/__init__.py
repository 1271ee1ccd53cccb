"""The web console: models, event listeners, runs and dead letters in a browser.

Served by the API's own app under ``/console`` (same port, same keys): :func:`routers` gives
its route groups to :func:`modelbus.web.api.routers`. Pages are server-rendered Jinja2 templates
with a little plain JavaScript (no build step), and thin: each calls the same service the
matching ``/v1`` route calls (registry, model service, listener manager, run store) with the
session's API key, checked with the API's own scope rules.

::

    auth.py          login form -> session cookie; who is looking (Viewing), CSRF (Posting)
    session.py       the signed, encrypted session cookie and its key material
    web.py           templates, errors as pages, security headers, bounded form reading
    models.py        models, versions, builds (why one failed), "try it"
    versions.py      a version: schemas, calls to copy, runners, recent errors
    snippets.py      the curl / Python / TypeScript calls of a version
    keys.py          API keys (admin): list, create, revoke
    listeners.py     event listeners: live figures, create, edit, pause, resume, delete
    listener_form.py a listener definition as form fields, and back
    history.py       the charts' data: a listener's and a model's last hour, as JSON
    flow.py          the flow map: every listener as one graph, live rates
    runs.py          look up a broker message id
    dead_letters.py  dead letters per listener: inspect, redrive
    assets.py        the stylesheet and the script
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import APIRouter


def routers() -> list[APIRouter]:
    """Every route group of the console."""
    from modelbus.web.console import (
        assets,
        auth,
        dead_letters,
        flow,
        history,
        keys,
        listeners,
        models,
        reference,
        runs,
        versions,
    )

    return [
        auth.router,
        models.router,
        versions.router,
        keys.router,
        listeners.router,
        flow.router,
        dead_letters.router,
        runs.router,
        history.router,
        reference.router,
        assets.router,
        assets.fallback,
    ]
