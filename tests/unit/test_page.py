"""``GET /`` and ``/static/{name}``: the audition page's files, their types and caching,
open without the API key (the page asks for it); other paths under /static are 404s.

Every server here has an API key (``serve``): the page's routes answer without it."""

from __future__ import annotations

from fastkokoro_wyoming.http_api.page import load_static
from tests.support.http import serve  # a real server with an API key, tiny engine

TYPES = {
    "/": "text/html",
    "/static/index.html": "text/html",
    "/static/app.js": "text/javascript",
    "/static/player.js": "text/javascript",
    "/static/phonemes.js": "text/javascript",
    "/static/style.css": "text/css",
}


def test_the_package_carries_the_page():
    assert {"index.html", "app.js", "player.js", "phonemes.js", "style.css"} <= set(load_static())


async def test_files_have_their_types_and_revalidate():
    async with serve() as (base, session):
        for path, content_type in TYPES.items():
            async with session.get(base + path) as r:
                assert r.status == 200, path
                assert r.content_type == content_type, path
                assert r.charset == "utf-8", path
                assert r.headers["Cache-Control"] == "no-cache"
                assert r.headers["X-Content-Type-Options"] == "nosniff"
                etag = r.headers["ETag"]
                body = await r.read()
            assert body, path
            async with session.get(base + path, headers={"If-None-Match": etag}) as r:
                assert r.status == 304, path
                assert await r.read() == b""
        async with session.get(base + "/") as r:
            csp = r.headers["Content-Security-Policy"]
            page = await r.text()
        assert "default-src 'self'" in csp and "media-src 'self' blob:" in csp
        assert 'src="/static/app.js"' in page and "http" not in page.split("<body")[0]


async def test_unknown_static_files_are_404_json():
    async with serve() as (base, session):
        for path in ["/static/nope.js", "/static/..%2Fpage.py", "/static/..%2F__init__.py"]:
            async with session.get(base + path) as r:
                assert r.status == 404, path
                assert (await r.json())["error"]["code"] == "not_found"


async def test_the_page_is_open_even_with_the_catalog_closed():
    async with serve(public_catalog=False) as (base, session):
        for path in TYPES:
            async with session.get(base + path) as r:
                assert r.status == 200, path
        async with session.get(base + "/v1/audio/voices") as r:
            assert r.status == 401  # what the page then asks the key for
        async with session.get(base + "/static/nope.js") as r:
            assert r.status == 404  # an open route: a missing file is not a key problem
