"""``GET /``: the voice-audition page, served from static files inside the package.

The page is plain HTML, CSS and JavaScript (``fastkokoro_wyoming/static/``): no CDN and
no build step, so it works offline and ships in the wheel as it is. The files are read
once when the app is built (they are small), and each is served with an ETag and
``Cache-Control: no-cache``: a browser revalidates and gets a 304 while the package is
unchanged, and never keeps a stale script after an upgrade.

The routes are open without the API key (``errors.PAGE_PATHS``): the files hold no data,
and the page itself asks for the key when a request it makes answers 401.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType

from aiohttp import web

from fastkokoro_wyoming.http_api.errors import ApiError

CONTENT_TYPES: Mapping[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Strict: the page loads only its own files; fetches go to this server (connect-src) and
# the audio comes from a MediaSource or a Blob URL (media-src blob:).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; connect-src 'self' blob:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)


@dataclass(frozen=True)
class StaticFile:
    """One file of the page as it is sent: bytes, content type and validator."""

    body: bytes
    content_type: str
    etag: str


def load_static() -> Mapping[str, StaticFile]:
    """Every file of ``fastkokoro_wyoming/static`` whose type the page serves, by name."""
    files = {}
    for entry in (resources.files("fastkokoro_wyoming") / "static").iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in CONTENT_TYPES:
            body = entry.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            files[entry.name] = StaticFile(body, CONTENT_TYPES[suffix], etag)
    return MappingProxyType(files)


def _respond(request: web.Request, file: StaticFile) -> web.Response:
    headers = {
        "Cache-Control": "no-cache",
        "ETag": file.etag,
        "X-Content-Type-Options": "nosniff",
    }
    if file.content_type.startswith("text/html"):
        headers["Content-Security-Policy"] = CSP
        headers["Referrer-Policy"] = "no-referrer"
    if file.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=file.body, headers={**headers, "Content-Type": file.content_type})


def _handlers(
    files: Mapping[str, StaticFile],
) -> tuple[Callable[[web.Request], Awaitable[web.Response]], ...]:
    async def index(request: web.Request) -> web.Response:
        """``GET /``: the page itself."""
        return _respond(request, files["index.html"])

    async def static(request: web.Request) -> web.Response:
        """``GET /static/{name}``: one of the page's files; only names in the package."""
        file = files.get(request.match_info["name"])
        if file is None:
            raise ApiError(404, "No such file.", code="not_found")
        return _respond(request, file)

    return index, static


def add_page_routes(app: web.Application) -> None:
    """Register ``GET /`` and ``GET /static/{name}`` (both open: ``errors.PAGE_PATHS``)."""
    index, static = _handlers(load_static())
    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
