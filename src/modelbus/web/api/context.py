"""Reaching the running server's services from a request."""

from __future__ import annotations

from fastapi import Request

from modelbus.web.server import Services


def services(request: Request) -> Services:
    """The services the app's lifespan opened (see :func:`modelbus.web.server.open_services`)."""
    found: Services = request.app.state.services
    return found
