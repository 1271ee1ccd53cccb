"""The console's static files (its stylesheet and script, and the charting library vendored
under ``static/vendor/`` by ``scripts/vendor-uplot``), served from the package, and the page
for an unknown console path."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from modelbus.errors import NotFound
from modelbus.web.console.auth import Viewing
from modelbus.web.console.web import PREFIX, SECURITY_HEADERS, ConsoleRoute

router = APIRouter(prefix=PREFIX, include_in_schema=False)
# Included after every other console route: an unknown console page is a page too.
fallback = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)

STATIC_DIR = Path(__file__).parent / "static"
# Only these names are served: nothing else under the package can be reached by a path.
FILES = {
    path.relative_to(STATIC_DIR).as_posix(): path
    for path in STATIC_DIR.rglob("*")
    if path.suffix in (".css", ".js")
}
MEDIA_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


@router.get("/static/{name:path}")
async def static_file(name: str) -> FileResponse:
    path = FILES.get(name)
    if path is None:
        raise NotFound(f"no console file {name!r}")
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=headers)


@fallback.get("/{rest:path}")
async def unknown_page(rest: str, viewer: Viewing) -> None:
    raise NotFound(f"there is no console page /console/{rest}")
