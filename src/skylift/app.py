"""Builds the ASGI app; its lifespan starts the database, storage, device hub and embedded broker."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException

from skylift import __version__
from skylift.broker.embedded import EmbeddedBroker, Listener
from skylift.broker.limits import ConnectionLimits, open_files_limit
from skylift.broker.mosquitto.events import ExternalBroker
from skylift.broker.mosquitto.link import BrokerAddress
from skylift.broker.mosquitto.login import router as broker_login_router
from skylift.broker.rates import RateLimits
from skylift.campaigns import actions as campaign_actions
from skylift.campaigns import outbox
from skylift.campaigns import results as campaign_results
from skylift.campaigns.deletion_endpoints import router as deletions_router
from skylift.campaigns.endpoints import package_results_router
from skylift.campaigns.endpoints import router as campaigns_router
from skylift.campaigns.engine import RolloutEngine
from skylift.config import Settings, credentials_keyring, load_or_create_secret
from skylift.console.mount import install_console
from skylift.context import AppContext
from skylift.db.migrate import upgrade_to_head
from skylift.db.session import Database, is_busy
from skylift.deps import ADMIN_REFUSAL, PRINCIPAL, authenticate
from skylift.devices import nodes
from skylift.devices.downloads import router as downloads_router
from skylift.devices.http_api import router as device_api_router
from skylift.devices.hub import DeviceHub
from skylift.devices.nodes import NodeKeeper
from skylift.devices.notices import Notifier
from skylift.devices.relay import NoticeRelay
from skylift.docs import install_docs
from skylift.kit import sealing
from skylift.kit.errors import SkyliftError, error_responses
from skylift.kit.guards import RequestGuard
from skylift.kit.signing import UrlSigner
from skylift.kit.strict import reject_nul_characters, reject_unknown_query
from skylift.packages.endpoints import router as packages_router
from skylift.packages.reconcile import reconcile_storage
from skylift.packages.storage import LocalStorage
from skylift.registry.endpoints import router as registry_router
from skylift.registry.service import check_credentials_key, reseal_credentials
from skylift.system.endpoints import audit_router
from skylift.system.endpoints import router as settings_router
from skylift.system.user_endpoints import router as users_router

log = logging.getLogger("skylift")


def _error(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message, "field": field}})


def _field_of(location: tuple[Any, ...] | list[Any]) -> str | None:
    parts = [str(p) for p in location if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


def install_error_handlers(app: FastAPI) -> None:
    """Every error, expected or not, is answered as `{"error": {"code", "message", "field"}}`."""

    @app.exception_handler(SkyliftError)
    async def _skylift_error(_: Request, exc: SkyliftError) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content=exc.as_body())

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        unknown = [_field_of(e.get("loc", ())) or "?" for e in exc.errors() if e.get("type") == "extra_forbidden"]
        if unknown:
            plural = "s" if len(unknown) > 1 else ""
            return _error(422, "invalid", f"unknown field{plural}: {', '.join(unknown)}", unknown[0])
        first = exc.errors()[0]
        field = _field_of(first.get("loc", ()))
        message = str(first.get("msg", "invalid input")).removeprefix("Value error, ")
        return _error(422, "invalid", f"{field}: {message}" if field else message, field)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = _error(exc.status_code, _HTTP_CODES.get(exc.status_code, "http_error"), str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(Exception)
    async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        if is_busy(exc):
            # The database stayed locked longer than a request waits: nothing was done, try again.
            log.warning("database busy answering %s %s", request.method, request.url.path)
            response = _error(503, "busy", "the database is busy; nothing was changed, try again shortly")
            response.headers["Retry-After"] = "1"
            return response
        # The last resort: the server logs the traceback too; the client gets JSON, not a text page.
        log.error("unexpected %s answering %s %s", type(exc).__name__, request.method, request.url.path)
        return _error(500, "internal_error", "the server failed to answer this request; it has been logged")


def protect_data_dir(data_dir: Path) -> None:
    """The data dir is the owner's alone: the directory 0700, the database and key files in it 0600."""
    # What this process creates from now on (the database, its journal, package files) is owner-only.
    os.umask(0o077)
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    for path in data_dir.iterdir():
        if path.is_file() and not path.is_symlink():
            path.chmod(0o600)


def build_context(settings: Settings) -> tuple[AppContext, bool]:
    """Collaborators of this process; True when the admin token was generated just now."""
    protect_data_dir(settings.data_dir)
    sealing.use(credentials_keyring(settings))
    created = False
    admin_token = settings.admin_token
    if admin_token is None:
        admin_token, created = load_or_create_secret(settings.data_dir / "admin-token")
    secret = settings.secret_key or load_or_create_secret(settings.data_dir / "secret-key")[0]
    context = AppContext(
        settings=settings,
        database=Database(settings.resolved_database_url),
        storage=LocalStorage(settings.files_dir),
        signer=UrlSigner(secret),
        admin_token=admin_token,
        verification_of=campaign_results.verification_out,
        package_switched=campaign_actions.package_switched,
    )
    return context, created


def mqtt_listeners(settings: Settings) -> list[Listener]:
    listeners = []
    if settings.mqtt_plain_enabled:
        listeners.append(Listener("default", settings.mqtt_host, settings.mqtt_port))
    if settings.mqtt_tls_port is not None:
        listeners.append(Listener("tls", settings.mqtt_host, settings.mqtt_tls_port, settings.mqtt_tls_files))
    return listeners


def device_broker(
    settings: Settings, listeners: Sequence[Listener], hub: DeviceHub, limits: ConnectionLimits, rates: RateLimits
) -> EmbeddedBroker | ExternalBroker:
    """The embedded broker on `listeners`, or the link to an external Mosquitto that runs Skylift's plugin."""
    external = settings.external_broker
    if external is None:
        return EmbeddedBroker(listeners, hub, limits, rates)
    host, port, tls = external
    password = settings.mqtt_broker_password or ""
    address = BrokerAddress(host, port, settings.mqtt_broker_username, password, f"skylift-{settings.node}", tls)
    return ExternalBroker(address, hub)


def create_app(settings: Settings | None = None, context: AppContext | None = None) -> FastAPI:
    if context is None:
        context, _ = build_context(settings or Settings())
    settings = context.settings

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await upgrade_to_head(context.database)
        incarnation = secrets.token_hex(16)  # this process, among those that ever ran as this node
        async with context.database.transaction() as session:
            await nodes.start(session, settings.node, incarnation, context.clock.now())
            await check_credentials_key(session)
            if sealing.keyring().has_old_keys:
                log.info("%d devices' credentials resealed with the current key", await reseal_credentials(session))
        await reconcile_storage(context.database, context.storage, settings.storage_sweep_min_age)
        hub = DeviceHub(
            context.database,
            Notifier(settings, context.signer),
            settings.mqtt_max_payload_bytes,
            context.storage,
            context.clock,
            settings.node,
        )
        limits = ConnectionLimits(
            settings.mqtt_connect_timeout_seconds,
            settings.mqtt_max_packet_bytes,
            settings.mqtt_max_connections,
            settings.mqtt_max_connections_per_address,
            settings.mqtt_max_pending_connections,
        ).within_descriptors(open_files_limit())
        rates = RateLimits(
            settings.mqtt_device_connects_per_minute,
            settings.mqtt_device_messages_per_second,
            settings.mqtt_device_message_burst,
            settings.mqtt_failed_logins_per_minute,
            settings.mqtt_login_backoff_seconds,
            max(settings.mqtt_login_backoff_max_seconds, settings.mqtt_login_backoff_seconds),
        )
        listeners = mqtt_listeners(settings)
        broker = device_broker(settings, listeners, hub, limits, rates)
        hub.attach_publisher(broker.publish, broker.disconnect)
        engine = RolloutEngine(context.database, settings.engine_interval_seconds, context.clock)
        relay = NoticeRelay(
            context.database, hub.notifier, hub.publish, context.clock, settings.engine_interval_seconds, settings.node
        )
        keeper = NodeKeeper(
            context.database,
            hub.inbox,
            broker.disconnect,
            context.clock,
            settings.node,
            incarnation,
            settings.node_timeout_seconds,
            settings.engine_interval_seconds,
        )
        hub.wake_engine = engine.wake
        # A device that begins to listen may get a notice waiting for it (relay), or join one (engine).
        hub.on_listening += [lambda _product: relay.wake(), engine.wake]
        context.database.on_signal(outbox.NOTICES_DUE, relay.wake)
        await hub.inbox.start()  # messages acknowledged before a crash are applied before any new one
        await broker.start()
        context.hub = hub
        context.engine = engine
        engine.start()
        relay.start()
        keeper.start()
        if settings.public_url is None:
            log.warning(
                "SKYLIFT_PUBLIC_URL is not set: download URLs sent to devices start with %s, "
                "which only this machine can reach",
                settings.resolved_public_url,
            )
        app.state.ready = True
        log.info(
            "Skylift %s: HTTP on %s, MQTT on %s",
            __version__,
            settings.resolved_public_url,
            f"the external broker {settings.mqtt_broker_url}"
            if isinstance(broker, ExternalBroker)
            else ", ".join(
                f"{listener.host}:{listener.port}{' (TLS)' if listener.tls_files else ''}" for listener in listeners
            ),
        )
        try:
            yield
        finally:
            app.state.ready = False
            await keeper.stop()
            await engine.stop()
            await relay.stop()
            await broker.stop()
            await hub.drain()
            await context.database.dispose()

    app = FastAPI(
        title="Skylift",
        version=__version__,
        summary="Over-the-air firmware updates for IoT fleets",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    install_docs(app)
    app.state.skylift = context
    app.state.ready = False
    install_error_handlers(app)
    app.add_middleware(
        RequestGuard,
        protected_prefix="/api/",
        authenticate=lambda token: authenticate(context, token),
        principal_key=PRINCIPAL,
        max_body_bytes=settings.max_json_body_bytes,
        refusal=ADMIN_REFUSAL,
    )

    api = APIRouter(
        prefix="/api/v1",
        responses=error_responses(401, 403, 404, 409, 422),
        # A misspelt filter must not answer the whole list as if it had filtered.
        dependencies=[Depends(reject_unknown_query), Depends(reject_nul_characters)],
    )
    routers = (
        registry_router,
        packages_router,
        package_results_router,
        campaigns_router,
        deletions_router,
        settings_router,
        audit_router,
        users_router,
    )
    for router in routers:
        api.include_router(router)
    app.include_router(api)
    app.include_router(
        downloads_router, responses=error_responses(403, 404, 410, 422), dependencies=[Depends(reject_nul_characters)]
    )
    app.include_router(device_api_router, dependencies=[Depends(reject_nul_characters)])
    app.include_router(broker_login_router)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> JSONResponse:
        if not app.state.ready:
            return _error(503, "starting", "Skylift is starting")
        async with context.database.sessionmaker() as session:
            await session.execute(text("SELECT 1"))
        return JSONResponse({"status": "ok", "version": __version__})

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest().decode(), media_type=CONTENT_TYPE_LATEST)

    install_console(app, context)
    return app
