"""Swagger UI and ReDoc load nothing from outside the service: their pages, and what their
scripts load by themselves (which the docs' content security policy would block anyway)."""

from __future__ import annotations

import re

import httpx
import pytest

from movietickets.middleware.security_headers import DOCS_CSP

# URLs in the pages: attributes, and the scripts' own settings (spec URLs, redirects).
PAGE_URL = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|url:\s*'([^']+)'""")
# What a script or a style sheet loads without being asked: an image or script `src`, a CSS
# `url(...)` or `@import`, with an absolute address.
LOADED_FROM_OUTSIDE = re.compile(
    r"""src\s*[:=]\s*["'`](?:https?:)?//|url\(\s*["']?(?:https?:)?//|@import\s+["']?(?:https?:)?//"""
)


def referenced(html: str) -> list[str]:
    return [first or second for first, second in PAGE_URL.findall(html)]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_reference_only_the_service_itself(
    anonymous_client: httpx.AsyncClient, page: str
) -> None:
    response = await anonymous_client.get(page)
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == DOCS_CSP
    urls = referenced(response.text)
    assert "/openapi.json" in urls
    for url in urls:
        assert not re.match(r"(?:https?:)?//", url), f"{page} references {url}"
        asset = await anonymous_client.get(url)
        assert asset.status_code == 200, url
        if url.endswith((".js", ".css")):
            found = LOADED_FROM_OUTSIDE.search(asset.text)
            assert found is None, (
                f"{url} loads {asset.text[found.start() : found.end() + 60]!r}" if found else ""
            )


async def test_swagger_ui_sends_the_document_to_no_online_validator(
    anonymous_client: httpx.AsyncClient,
) -> None:
    # Swagger UI's default shows a badge image from validator.swagger.io, carrying the
    # document's URL, whenever the service is not on localhost.
    html = (await anonymous_client.get("/docs")).text
    assert '"validatorUrl": null' in html


async def test_redoc_draws_no_logo_from_a_cdn(anonymous_client: httpx.AsyncClient) -> None:
    html = (await anonymous_client.get("/redoc")).text
    (bundle_url,) = [url for url in referenced(html) if url.endswith("redoc.standalone.js")]
    bundle = await anonymous_client.get(bundle_url)
    assert bundle.status_code == 200
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert bundle.text.count("cdn.redoc.ly") == 0
