"""What `skylift serve` checks and says before it starts: its settings, and ports that are free."""

from __future__ import annotations

import socket

from pydantic import ValidationError

from skylift.config import Settings, settings_table


def settings_epilog() -> str:
    """Every SKYLIFT_* setting with its default, generated from the Settings model."""
    rows = settings_table()
    name_width = max(len(name) for name, _, _ in rows)
    default_width = max(len(default) for _, default, _ in rows)
    lines = [f"{name:<{name_width}}  {default:<{default_width}}  {text}" for name, default, text in rows]
    return "Settings (environment variables) and their defaults:\n\n" + "\n".join(lines)


class StartupError(Exception):
    """A reason not to start, said in one line."""


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"SKYLIFT_{'_'.join(str(p) for p in e['loc']).upper() or '...'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise StartupError(f"invalid settings: {problems}") from None


def _listeners(settings: Settings) -> list[tuple[str, str, int, str]]:
    wanted = [("HTTP", settings.http_host, settings.http_port, "SKYLIFT_HTTP_PORT")]
    if settings.external_broker is not None:
        return wanted  # devices connect to the external broker
    if settings.mqtt_plain_enabled:
        wanted.append(("MQTT", settings.mqtt_host, settings.mqtt_port, "SKYLIFT_MQTT_PORT"))
    if settings.mqtt_tls_port is not None:
        wanted.append(("MQTT over TLS", settings.mqtt_host, settings.mqtt_tls_port, "SKYLIFT_MQTT_TLS_PORT"))
    return wanted


def check_ports(settings: Settings) -> None:
    """Raise StartupError if a port Skylift listens on is taken (checked before anything starts)."""
    for what, host, port, variable in _listeners(settings):
        if port == 0:
            continue  # any free port
        try:
            family, kind, _, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)[0]
            with socket.socket(family, kind) as probe:
                # As the servers bind: a port left in TIME_WAIT by a previous run is free.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(address)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise StartupError(
                f"cannot listen for {what} on {host}:{port}: {reason.lower()} (set {variable})"
            ) from None
