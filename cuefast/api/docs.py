"""The API docs UI: Swagger UI at ``/docs``, its assets served from a Python package (no CDN).

Litestar's ``SwaggerRenderPlugin`` renders the page (the schema inline) and would load Swagger
UI from a CDN; here it is pointed at ``/docs/assets/…``, which serves the files shipped by
the ``swagger-ui-py`` package (PyPI), so a browser without internet access renders the docs.
The files are read once, on the first request, and kept in memory (about 2 MB); only the
ones the page references are served. ``/docs`` is exempt from rate limiting (§3.7).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from litestar import Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.params import FromPath

from cuefast.errors import NotFound

log = logging.getLogger(__name__)

ASSETS_PATH = "/docs/assets"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui-standalone-preset.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
_cache: dict[str, bytes] = {}


def assets_dir() -> Path | None:
    """Where the installed ``swagger_ui`` package keeps Swagger UI (without importing it)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def _asset(name: str) -> bytes:
    if name not in ASSETS:
        raise NotFound()
    if name not in _cache:
        folder = assets_dir()
        if folder is None:
            log.error("swagger-ui-py is not installed: /docs cannot load Swagger UI")
            raise NotFound()
        _cache[name] = (folder / name).read_bytes()
    return _cache[name]


def render_plugin() -> SwaggerRenderPlugin:
    return SwaggerRenderPlugin(
        js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        css_url=f"{ASSETS_PATH}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>",
    )


def routes() -> list[HTTPRouteHandler]:
    @get(f"{ASSETS_PATH}/{{name:str}}", include_in_schema=False, sync_to_thread=False)
    def asset(name: FromPath[str]) -> Response[bytes]:
        return Response(
            _asset(name),
            media_type=ASSETS[name],
            headers={"Cache-Control": "public, max-age=86400"},
        )

    return [asset]
