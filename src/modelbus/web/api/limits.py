"""The request body size limit, applied to every request before any route runs.

Routes that read their body themselves (:func:`modelbus.web.api.payloads.read_body`) check the
limit as bytes arrive, but FastAPI reads the whole body of a route with a JSON model
*before* its dependencies run, so without this a client with no API key at all could make
the server buffer a body of any size. :class:`BodyLimit` wraps the ASGI app: a request
declaring a larger ``Content-Length`` is answered ``413`` at once, and one that streams more
(chunked) is cut off as soon as it passes the limit and answered ``413``, whatever the route
was doing with the body.

The limit is ``Settings.max_body_bytes``, except on routes whose endpoint was marked with
:func:`allow_body` (pushing a model archive takes up to 1 GiB): only such a route may take
more, and it is looked up only when a body passes the default limit, so ordinary requests
pay nothing for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelbus.errors import PayloadTooLarge
from modelbus.web.api.errors import error_response

__all__ = ["BodyLimit", "allow_body"]

F = TypeVar("F", bound=Callable[..., Any])
_ATTRIBUTE = "modelbus_max_body_bytes"


def allow_body(max_bytes: int) -> Callable[[F], F]:
    """Mark a route's endpoint as taking bodies up to ``max_bytes`` (more than the default)."""

    def mark(endpoint: F) -> F:
        setattr(endpoint, _ATTRIBUTE, max_bytes)
        return endpoint

    return mark


def _routes(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
    for route in routes:
        # FastAPI keeps included routers as wrappers around the original router.
        inner = getattr(route, "original_router", None)
        yield from _routes(inner.routes) if inner is not None else (route,)


class BodyLimit:
    """ASGI middleware refusing request bodies over a limit (see the module docstring).

    ``routes`` gives the app's routes (read when a body passes ``default_bytes``)."""

    def __init__(
        self, app: ASGIApp, *, default_bytes: int, routes: Callable[[], list[BaseRoute]]
    ) -> None:
        self.app = app
        self.default_bytes = default_bytes
        self._routes = routes

    def allowance(self, scope: Scope) -> int:
        """The limit for this request: the default, or what its route allows."""
        for route in _routes(self._routes()):
            match, _ = route.matches(scope)
            if match is Match.FULL:
                endpoint = getattr(route, "endpoint", None)
                return max(self.default_bytes, getattr(endpoint, _ATTRIBUTE, 0))
        return self.default_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.default_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            limit = self.allowance(scope)
            if declared > limit:
                await _refuse(limit, scope)(scope, receive, send)
                return
        await _Limited(self, scope, limit).run(receive, send)


class _Limited:
    """One request under the limit: counts the body as the app reads it."""

    def __init__(self, owner: BodyLimit, scope: Scope, limit: int) -> None:
        self.owner, self.scope, self.limit = owner, scope, limit
        self.received = 0
        self.refused = False
        self.started = False
        self.raised_limit = limit > owner.default_bytes

    async def run(self, receive: Receive, send: Send) -> None:
        async def limited_receive() -> Message:
            if self.refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
                if self.received > self.limit and not self.raised_limit:
                    self.limit, self.raised_limit = self.owner.allowance(self.scope), True
                if self.received > self.limit:
                    self.refused = True
                    # The app sees the client go away; the 413 below is the answer.
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if self.refused and not self.started:
                return  # whatever the app answers to the cut-off body, the answer is 413
            if message["type"] == "http.response.start":
                self.started = True
            await send(message)

        try:
            await self.owner.app(self.scope, limited_receive, guarded_send)
        except Exception:
            if not self.refused or self.started:
                raise
        if self.refused and not self.started:
            await _refuse(self.limit, self.scope)(self.scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def _refuse(limit: int, scope: Scope) -> ASGIApp:
    return error_response(
        PayloadTooLarge(f"request body is larger than the limit of {limit} bytes"),
        path=scope.get("path", ""),
    )
