"""Swagger UI at /docs loads without a CDN (issue 13, item 4): the page and every asset it
references come from the server itself (the swagger-ui-py package's files)."""

from __future__ import annotations

import re

from tests.conftest import Api, assert_error

_REFS = re.compile(r"""(?:src|href)\s*=\s*['"]([^'"]+)['"]""")


async def test_docs_page_and_every_asset_it_references_are_served_locally(api: Api) -> None:
    for page in ("/docs", "/docs/swagger"):
        res = await api.client.get(page)
        assert res.status_code == 200, page
        assert res.headers["content-type"].startswith("text/html")
        html = res.text
        assert "://" not in html.split("<body", 1)[0], "the page head names an absolute URL"
        refs = _REFS.findall(html)
        assert len(refs) >= 4, refs  # css, bundle, preset, favicon
        for ref in refs:
            assert ref.startswith("/docs/assets/"), ref
            asset = await api.client.get(ref)
            assert asset.status_code == 200, ref
            assert len(asset.content) > 100, ref
        assert "SwaggerUIBundle" in html and '"openapi":"3.1.0"' in html


async def test_assets_content_types_and_unknown_assets(api: Api) -> None:
    js = await api.client.get("/docs/assets/swagger-ui-bundle.js")
    assert js.headers["content-type"].startswith("text/javascript")
    css = await api.client.get("/docs/assets/swagger-ui.css")
    assert css.headers["content-type"].startswith("text/css")
    for name in ("swagger-editor-bundle.js", "..%2Fcore.py", "nope"):
        assert_error(await api.client.get(f"/docs/assets/{name}"), 404, "http_error", "Not Found")
