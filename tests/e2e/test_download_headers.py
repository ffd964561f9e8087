"""Download responses spell their header names canonically (`Content-Length`, `ETag`), byte for byte.

Alibaba's device SDKs look for the exact bytes `Content-Length` in the response head, so these tests
read the head off a plain socket and off a TLS socket, never through an HTTP client that would
normalise the names for them.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from dialects_kit import running_tls_server, self_signed_cert, trusting
from skylift_testkit import Fleet, Server, SimDevice, firmware

IMAGE = firmware(150_000, seed=808)
SIZE = len(IMAGE)

CANONICAL = [
    b"Content-Length",
    b"Content-Type",
    b"ETag",
    b"Accept-Ranges",
    b"Last-Modified",
    b"Content-Disposition",
    b"Cache-Control",
]


@dataclass
class Target:
    """A running server and, for HTTPS, the TLS context that trusts its certificate."""

    server: Server
    tls: ssl.SSLContext | None

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.server.http_url}/api/v1",
            headers={"Authorization": f"Bearer {self.server.admin_token}"},
            verify=self.tls or True,
            timeout=30,
        )


@dataclass
class Reply:
    status_line: bytes
    head: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes

    @property
    def status(self) -> int:
        return int(self.status_line.split(b" ")[1])

    def header(self, name: bytes) -> bytes:
        values = [value for key, value in self.headers if key == name]
        assert len(values) == 1, f"{name!r} should appear once, spelled so, in:\n{self.head.decode()}"
        return values[0]


def raw_request(target: Target, method: str, url: str, *extra: str) -> Reply:
    """Send one request over a bare (or TLS-wrapped) socket and read the whole reply as bytes."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 0
    lines = [f"{method} {parts.path}?{parts.query} HTTP/1.1", f"Host: {host}:{port}", "Connection: close", *extra]
    with socket.create_connection((host, port), timeout=30) as plain:
        sock = target.tls.wrap_socket(plain, server_hostname=host) if target.tls else plain
        with sock:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            received = bytearray()
            while chunk := sock.recv(65536):
                received += chunk
    head, separator, body = bytes(received).partition(b"\r\n\r\n")
    assert separator, f"no complete response head in {bytes(received[:500])!r}"
    status_line, *header_lines = head.split(b"\r\n")
    headers = [(name, value) for name, _, value in (line.partition(b": ") for line in header_lines)]
    return Reply(status_line, head, headers, body)


def assert_canonical(reply: Reply) -> None:
    """The names the SDKs match are there in their canonical spelling, and no name is sent twice in any case."""
    assert b"\r\nContent-Length: " in reply.head
    for name in CANONICAL:
        reply.header(name)
    lowered = [name.lower() for name, _ in reply.headers]
    assert len(lowered) == len(set(lowered)), reply.head.decode()


@pytest.fixture(scope="module", params=["http", "https"])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    if request.param == "http":
        yield Target(request.getfixturevalue("server"), None)
        return
    root = tmp_path_factory.mktemp("skylift-download-headers-tls")
    cert, key = self_signed_cert(root)
    with running_tls_server(root / "data", cert, key) as server:
        yield Target(server, trusting(cert))


@pytest.fixture(scope="module")
def fleet(target: Target) -> Iterator[Fleet]:
    with target.api() as api:
        yield Fleet.create(api)


@pytest.fixture(scope="module")
def package(fleet: Fleet) -> dict[str, Any]:
    return fleet.package(IMAGE, "2.0.0")


@pytest.fixture(scope="module")
def url(fleet: Fleet, package: dict[str, Any]) -> str:
    """An operator's signed URL (no campaign behind it)."""
    response = fleet.api.post(f"/packages/{package['id']}/files/{package['files'][0]['id']}/url", json={})
    assert response.status_code == 200, response.text
    return str(response.json()["url"])


class TestWholeFile:
    def test_get_sends_canonical_names_and_the_whole_file(self, target: Target, url: str) -> None:
        reply = raw_request(target, "GET", url)
        assert reply.status == 200
        assert_canonical(reply)
        assert reply.header(b"Content-Length") == str(SIZE).encode()
        assert reply.header(b"Content-Type") == b"application/octet-stream"
        assert reply.header(b"Accept-Ranges") == b"bytes"
        assert reply.body == IMAGE

    def test_head_sends_the_same_head_without_a_body(self, target: Target, url: str) -> None:
        reply = raw_request(target, "HEAD", url)
        assert reply.status == 200
        assert_canonical(reply)
        assert reply.header(b"Content-Length") == str(SIZE).encode()
        assert reply.body == b""


class TestRanges:
    def test_a_range_gets_206_with_content_range(self, target: Target, url: str) -> None:
        reply = raw_request(target, "GET", url, "Range: bytes=1000-1999")
        assert reply.status == 206
        assert_canonical(reply)
        assert reply.header(b"Content-Range") == f"bytes 1000-1999/{SIZE}".encode()
        assert reply.header(b"Content-Length") == b"1000"
        assert reply.body == IMAGE[1000:2000]

    def test_an_open_range_resumes_to_the_end(self, target: Target, url: str) -> None:
        reply = raw_request(target, "GET", url, f"Range: bytes={SIZE - 10}-")
        assert reply.status == 206
        assert reply.header(b"Content-Range") == f"bytes {SIZE - 10}-{SIZE - 1}/{SIZE}".encode()
        assert reply.body == IMAGE[-10:]

    def test_head_with_a_range(self, target: Target, url: str) -> None:
        reply = raw_request(target, "HEAD", url, "Range: bytes=0-99")
        assert reply.status == 206
        assert_canonical(reply)
        assert reply.header(b"Content-Range") == f"bytes 0-99/{SIZE}".encode()
        assert reply.body == b""

    def test_if_range_with_the_etag_resumes_and_with_another_sends_everything(
        self, target: Target, url: str, package: dict[str, Any]
    ) -> None:
        etag = raw_request(target, "HEAD", url).header(b"ETag").decode()
        assert etag == f'"{package["files"][0]["sha256"]}"'
        resumed = raw_request(target, "GET", url, "Range: bytes=100-", f"If-Range: {etag}")
        assert resumed.status == 206
        assert resumed.body == IMAGE[100:]
        changed = raw_request(target, "GET", url, "Range: bytes=100-", 'If-Range: "another-file"')
        assert changed.status == 200
        assert changed.body == IMAGE

    def test_a_range_past_the_end_gets_416_with_content_range(self, target: Target, url: str) -> None:
        reply = raw_request(target, "GET", url, f"Range: bytes={SIZE}-")
        assert reply.status == 416
        assert reply.header(b"Content-Range") == f"bytes */{SIZE}".encode()
        assert reply.header(b"Content-Length") == b"0"


def test_a_device_that_read_the_whole_file_is_upgrading(target: Target, fleet: Fleet, package: dict[str, Any]) -> None:
    """The response still tells the campaign when the last byte went out."""
    device = fleet.device()
    sim = SimDevice.token(target.server, device).connect()
    try:
        campaign = fleet.campaign(package["id"], protocol="https" if target.tls else "http")
        reply = raw_request(target, "GET", sim.notice()["params"]["url"])
        assert_canonical(reply)
        assert reply.body == IMAGE
        fleet.wait_state(campaign["id"], device["id"], "upgrading")
    finally:
        sim.disconnect()
