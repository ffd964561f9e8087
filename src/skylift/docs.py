"""`/docs` (Swagger UI) and `/redoc`, served from files shipped with the package: no CDN, no internet needed."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_ROUTE = "/docs-assets"
ASSETS = Path(str(files("skylift") / "docs_assets"))


def install_docs(app: FastAPI) -> None:
    """Mount the vendored Swagger UI and Redoc files and the two pages that use them (the app is built with
    `docs_url=None, redoc_url=None`)."""
    app.mount(ASSETS_ROUTE, StaticFiles(directory=ASSETS), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - API",
            swagger_js_url=f"{ASSETS_ROUTE}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_ROUTE}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_ROUTE}/favicon.png",
            # The online validator badge would send the schema's address to an outside service.
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - API",
            redoc_js_url=f"{ASSETS_ROUTE}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_ROUTE}/favicon.png",
            with_google_fonts=False,
        )
