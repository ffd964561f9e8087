"""TLS settings: Skylift serving HTTPS itself changes the URLs it hands out."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from skylift.config import Settings


@pytest.fixture
def pem_files(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("cert")
    key.write_text("key")
    return cert, key


def test_without_tls_urls_are_http() -> None:
    settings = Settings(http_host="0.0.0.0", http_port=8080)
    assert not settings.serves_tls
    assert settings.resolved_public_url == "http://127.0.0.1:8080"
    assert settings.resolved_public_https_url is None


def test_with_tls_the_server_hands_out_https_urls(pem_files: tuple[Path, Path]) -> None:
    cert, key = pem_files
    settings = Settings(http_host="10.0.0.5", http_port=8443, tls_cert_file=cert, tls_key_file=key)
    assert settings.serves_tls
    assert settings.resolved_public_url == "https://10.0.0.5:8443"
    assert settings.resolved_public_https_url == "https://10.0.0.5:8443"


def test_an_explicit_public_https_url_still_wins(pem_files: tuple[Path, Path]) -> None:
    cert, key = pem_files
    settings = Settings(tls_cert_file=cert, tls_key_file=key, public_https_url="https://ota.example/")
    assert settings.resolved_public_https_url == "https://ota.example"


def test_cert_and_key_go_together(pem_files: tuple[Path, Path]) -> None:
    with pytest.raises(ValidationError, match="go together"):
        Settings(tls_cert_file=pem_files[0])


def test_the_files_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        Settings(tls_cert_file=tmp_path / "missing.pem", tls_key_file=tmp_path / "missing.key")
