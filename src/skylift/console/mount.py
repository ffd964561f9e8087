"""The console as a sub-app of its own: its pages, its static files, and what it answers on errors."""

from __future__ import annotations

from importlib import import_module

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from skylift.console import auth, web
from skylift.context import AppContext
from skylift.kit.errors import SkyliftError

# One module per page (console/pages/), each with its `router`.
PAGES = (
    "sign_in",
    "overview",
    "products",
    "modules",
    "device_import",
    "devices",
    "packages",
    "campaigns",
    "campaign",
    "settings",
    "audit",
    "users",
    "account",
)


def _wants_html(request: Request) -> bool:
    return request.headers.get(auth.CSRF_HEADER) is None


def build_console(context: AppContext) -> FastAPI:
    console = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, dependencies=[Depends(auth.check_csrf)])
    console.state.skylift = context
    console.mount("/static", StaticFiles(packages=[("skylift.console", "static")]), name="static")
    for name in PAGES:
        console.include_router(import_module(f"skylift.console.pages.{name}").router)

    @console.exception_handler(auth.SignInRequired)
    async def _sign_in(request: Request, _: Exception) -> Response:
        if not _wants_html(request):
            return PlainTextResponse("sign in first", status_code=401)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(web.url("/sign-in", next=target), status_code=303)

    @console.exception_handler(auth.NotAllowed)
    async def _not_allowed(request: Request, exc: Exception) -> Response:
        return web.refused(request, exc, 403)

    @console.exception_handler(auth.CsrfRefused)
    async def _csrf(request: Request, exc: Exception) -> Response:
        return web.refused(request, exc, 403)

    @console.exception_handler(SkyliftError)
    async def _error(request: Request, exc: SkyliftError) -> Response:
        # What a page did not catch itself: a missing object, mostly.
        message = web.catalog_of(request).translate(exc.message)
        return web.render(request, "refused.html", status=exc.status_code, message=message)

    @console.exception_handler(RequestValidationError)
    async def _bad_address(request: Request, _: Exception) -> Response:
        # A path that names no object (/devices/abc): as any unknown page.
        message = web.catalog_of(request).gettext("There is no such page.")
        return web.render(request, "refused.html", status=404, message=message)

    @console.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        catalog = web.catalog_of(request)
        message = catalog.gettext("There is no such page.") if exc.status_code == 404 else str(exc.detail)
        return web.render(request, "refused.html", status=exc.status_code, message=message)

    return console


def install_console(app: FastAPI, context: AppContext) -> None:
    """Mount the console at /console, and send visitors of / there."""
    app.mount(web.PREFIX, build_console(context))

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(f"{web.PREFIX}/", status_code=307)
