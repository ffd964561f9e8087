"""Process-wide settings, read once from SKYLIFT_* environment variables."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, FilePath, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from skylift.kit.sealing import Keyring, new_key

MIN_SECRET_LENGTH = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SKYLIFT_", extra="ignore")

    environment: Literal["development", "production"] = Field(
        default="development",
        description="production refuses to start unless the admin token and secret key are set (32+ characters)",
    )
    data_dir: Path = Field(default=Path("./skylift-data"), description="SQLite database, package files, secrets")
    http_host: str = Field(default="0.0.0.0", description="HTTP bind address")
    http_port: int = Field(default=8080, ge=0, le=65535, description="HTTP port (API, downloads, /docs, /metrics)")
    mqtt_host: str = Field(default="0.0.0.0", description="Bind address of the embedded MQTT broker")
    mqtt_port: int = Field(default=1883, ge=0, le=65535, description="Port of the embedded MQTT broker")
    mqtt_plain_enabled: bool = Field(default=True, description="false turns the plain MQTT port off (TLS only)")
    # MQTT over TLS on this port, with these files (by default the HTTP TLS ones).
    mqtt_tls_port: int | None = Field(default=None, ge=0, le=65535, description="MQTT over TLS on this port")
    mqtt_tls_cert_file: FilePath | None = Field(
        default=None, description="Certificate of the MQTT TLS port (default: the HTTP one)"
    )
    mqtt_tls_key_file: FilePath | None = Field(default=None, description="Its key (default: the HTTP one)")
    admin_token: str | None = Field(
        default=None, description="Bearer token of the API (default: generated once, kept in the data dir)"
    )
    secret_key: str | None = Field(
        default=None, description="Key that signs download URLs (default: generated, kept in the data dir)"
    )
    credentials_key: str | None = Field(
        default=None,
        description="Seals device credentials at rest: Fernet keys, comma-separated, the current one first "
        "(default: generated, kept in the data dir)",
    )
    public_url: str | None = Field(
        default=None, description="Base of download URLs sent to devices (default: http://<host>:<port>)"
    )
    public_https_url: str | None = Field(default=None, description="Base of https:// download URLs")
    database_url: str | None = Field(default=None, description="SQLAlchemy async URL (default: SQLite in the data dir)")
    download_url_ttl_seconds: int = Field(default=86_400, ge=1, description="Lifetime of a download URL in a notice")
    # An external Mosquitto 2.0 with Skylift's plugin in place of the embedded broker (broker/mosquitto/).
    mqtt_broker_url: str | None = Field(
        default=None,
        pattern=r"^mqtts?://[^/:@\s]+(:[0-9]{1,5})?/?$",
        description="mqtt://host:port (or mqtts://) of an external Mosquitto with Skylift's plugin "
        "(default: the embedded broker)",
    )
    mqtt_broker_username: str = Field(
        default="skylift", min_length=1, max_length=256, description="Skylift's login at the external broker"
    )
    mqtt_broker_password: str | None = Field(
        default=None,
        min_length=16,
        description="Its password, also the plugin's key for the login checks (16 characters or more)",
    )
    mqtt_max_payload_bytes: int = Field(default=65_536, ge=256, description="Larger device messages are refused")
    # The embedded broker's socket limits (see broker/limits.py).
    mqtt_connect_timeout_seconds: float = Field(
        default=10.0, gt=0, le=3600, description="A socket without CONNECT by then is closed"
    )
    mqtt_max_packet_bytes: int = Field(
        default=131_072, ge=1024, description="A packet announcing more closes its connection"
    )
    mqtt_max_connections: int = Field(default=100_000, ge=1, description="MQTT sockets at once")
    mqtt_max_connections_per_address: int = Field(default=1_000, ge=1, description="MQTT sockets from one address")
    mqtt_max_pending_connections: int = Field(default=512, ge=1, description="Sockets still waiting for CONNECT")
    # Rate limits (see broker/rates.py): far above what a healthy fleet does.
    mqtt_device_connects_per_minute: int = Field(default=30, ge=1, description="Connections of one device a minute")
    mqtt_device_messages_per_second: float = Field(
        default=200.0, gt=0, description="A device's messages are read at this pace at most"
    )
    mqtt_device_message_burst: int = Field(default=400, ge=1, description="Messages at once before the pace applies")
    mqtt_failed_logins_per_minute: int = Field(
        default=100, ge=1, description="Failed logins from one address before it is backed off"
    )
    mqtt_login_backoff_seconds: float = Field(default=60.0, gt=0, description="First back-off (doubled at each repeat)")
    mqtt_login_backoff_max_seconds: float = Field(default=900.0, gt=0, description="Longest back-off")
    # JSON bodies of the management API; package uploads stream under the run-time file size limit.
    max_json_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Larger request bodies are refused (413); uploads excepted"
    )
    engine_interval_seconds: float = Field(
        default=1.0, gt=0, le=60, description="How often the rollout engine brings campaigns up to date"
    )
    node: str = Field(
        default="main",
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="This process's name among replicas sharing one database (each replica its own)",
    )
    node_timeout_seconds: float = Field(
        default=30.0,
        ge=3,
        le=3600,
        description="A replica silent this long is taken over: its devices offline, its messages applied",
    )
    # At start, leftovers of interrupted uploads this old are swept; younger ones may be another replica's.
    storage_sweep_min_age_seconds: int = Field(
        default=3600, ge=0, description="At start, unfinished uploads this old are swept"
    )
    console_session_hours: float = Field(
        default=12.0, gt=0, le=24 * 365, description="A console session ends after this many hours without use"
    )
    log_level: str = Field(default="INFO", description="Log level")
    # Serve HTTPS on the HTTP port with this certificate (PEM, chain included) and key.
    tls_cert_file: FilePath | None = Field(default=None, description="Serve HTTPS with this PEM certificate (chain)")
    tls_key_file: FilePath | None = Field(default=None, description="Its PEM private key")

    @model_validator(mode="after")
    def _tls_needs_cert_and_key(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("SKYLIFT_TLS_CERT_FILE and SKYLIFT_TLS_KEY_FILE go together: set both or neither")
        return self

    @model_validator(mode="after")
    def _packet_holds_a_payload(self) -> Settings:
        if self.mqtt_max_packet_bytes <= self.mqtt_max_payload_bytes:
            raise ValueError("SKYLIFT_MQTT_MAX_PACKET_BYTES must be larger than SKYLIFT_MQTT_MAX_PAYLOAD_BYTES")
        return self

    @model_validator(mode="after")
    def _mqtt_listens_somewhere(self) -> Settings:
        if (self.mqtt_tls_cert_file is None) != (self.mqtt_tls_key_file is None):
            raise ValueError(
                "SKYLIFT_MQTT_TLS_CERT_FILE and SKYLIFT_MQTT_TLS_KEY_FILE go together: set both or neither"
            )
        if self.mqtt_tls_port is not None and self.mqtt_tls_files is None:
            raise ValueError(
                "SKYLIFT_MQTT_TLS_PORT needs a certificate: SKYLIFT_MQTT_TLS_CERT_FILE or SKYLIFT_TLS_CERT_FILE"
            )
        if not self.mqtt_plain_enabled and self.mqtt_tls_port is None:
            raise ValueError("with SKYLIFT_MQTT_PLAIN_ENABLED=false, set SKYLIFT_MQTT_TLS_PORT: devices need a port")
        return self

    @model_validator(mode="after")
    def _external_broker_needs_a_password(self) -> Settings:
        if self.mqtt_broker_url is not None and self.mqtt_broker_password is None:
            raise ValueError("SKYLIFT_MQTT_BROKER_URL needs SKYLIFT_MQTT_BROKER_PASSWORD (the plugin's password)")
        return self

    @property
    def external_broker(self) -> tuple[str, int, bool] | None:
        """(host, port, TLS) of the external broker, or None for the embedded one."""
        if self.mqtt_broker_url is None:
            return None
        scheme, _, rest = self.mqtt_broker_url.partition("://")
        host, _, port = rest.rstrip("/").partition(":")
        tls = scheme == "mqtts"
        return host, int(port) if port else (8883 if tls else 1883), tls

    @property
    def mqtt_tls_files(self) -> tuple[Path, Path] | None:
        """Certificate and key of the MQTT TLS port: its own, or else the HTTP ones."""
        if self.mqtt_tls_cert_file is not None and self.mqtt_tls_key_file is not None:
            return self.mqtt_tls_cert_file, self.mqtt_tls_key_file
        if self.tls_cert_file is not None and self.tls_key_file is not None:
            return self.tls_cert_file, self.tls_key_file
        return None

    @property
    def serves_tls(self) -> bool:
        return self.tls_cert_file is not None

    @model_validator(mode="after")
    def _refuse_weak_secrets_in_production(self) -> Settings:
        if self.environment != "production":
            return self
        for name in ("admin_token", "secret_key", "credentials_key"):
            value = getattr(self, name)
            if value is None or len(value) < MIN_SECRET_LENGTH:
                raise ValueError(
                    f"SKYLIFT_{name.upper()} must be set to at least {MIN_SECRET_LENGTH} characters in production"
                )
        return self

    @model_validator(mode="after")
    def _credentials_keys_are_keys(self) -> Settings:
        if self.credentials_key is not None:
            Keyring.parse(self.credentials_key)  # raises ValueError with the expected form
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'skylift.db').resolve()}"

    @property
    def resolved_public_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.http_host in ("0.0.0.0", "::", "") else self.http_host
        return f"{'https' if self.serves_tls else 'http'}://{host}:{self.http_port}"

    @property
    def resolved_public_https_url(self) -> str | None:
        """Base of https:// download URLs, or None when this deployment has no TLS endpoint."""
        if self.public_https_url:
            return self.public_https_url.rstrip("/")
        if self.resolved_public_url.startswith("https://"):
            return self.resolved_public_url
        return None

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @property
    def storage_sweep_min_age(self) -> timedelta:
        return timedelta(seconds=self.storage_sweep_min_age_seconds)


def settings_table() -> list[tuple[str, str, str]]:
    """(variable, default, description) of every setting, generated from the model: `skylift serve --help`."""
    prefix = Settings.model_config.get("env_prefix", "")
    rows = []
    for name, info in Settings.model_fields.items():
        value = info.default
        default = "unset" if value is None else str(value)
        if isinstance(value, bool):
            default = default.lower()
        elif isinstance(value, Path) and not value.is_absolute():
            default = f"./{value}"
        rows.append((f"{prefix}{name.upper()}", default, info.description or ""))
    return rows


def load_or_create_secret(path: Path, make: Callable[[], str] = lambda: secrets.token_urlsafe(32)) -> tuple[str, bool]:
    """Read a generated secret kept in the data dir, creating it on first use; True when just created."""
    if path.exists():
        return path.read_text().strip(), False
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    # Created owner-only from the start: never readable by others, not even for a moment.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(value + "\n")
    return value, True


def credentials_keyring(settings: Settings) -> Keyring:
    """SKYLIFT_CREDENTIALS_KEY, or a key generated once and kept in the data dir."""
    text = settings.credentials_key or load_or_create_secret(settings.data_dir / "credentials-key", new_key)[0]
    return Keyring.parse(text)
