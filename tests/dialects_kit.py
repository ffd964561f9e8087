"""Test helpers for the device dialects: Alibaba's signed login, MQTT block replies, HTTP devices, TLS.

Checks here are written independently of the server's code (a bitwise CRC, hmac straight from the
stdlib), so that a test compares Skylift against the protocol, not against itself.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import json
import re
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from skylift_testkit import Server, SimDevice, running_server

SIGN_DIGESTS = {"hmacsha1": hashlib.sha1, "hmacsha256": hashlib.sha256, "hmacmd5": hashlib.md5}


# --- Alibaba's signed MQTT login --------------------------------------------------------------------


def signed_login(
    device: dict[str, Any], method: str, client_id: str = "sdk-client-1", timestamp: str | None = None
) -> tuple[str, str]:
    """(MQTT client id, password) as Alibaba's device SDK makes them."""
    params = f"securemode=2,signmethod={method}" + (f",timestamp={timestamp}" if timestamp else "")
    content = f"clientId{client_id}deviceName{device['name']}productKey{device['product_key']}"
    if timestamp:
        content += f"timestamp{timestamp}"
    password = hmac.new(device["device_secret"].encode(), content.encode(), SIGN_DIGESTS[method]).hexdigest()
    return f"{client_id}|{params}|", password


def signed_device(server: Server, device: dict[str, Any], method: str, **kwargs: Any) -> SimDevice:
    client_id, password = signed_login(device, method, **kwargs)
    return SimDevice.product_key(server, device, password=password, client_id=client_id)


# --- MQTT block download ----------------------------------------------------------------------------


def crc16_ibm(data: bytes) -> int:
    """CRC-16/IBM (ARC) bit by bit: poly 0x8005 reflected (0xA001), init 0, no final xor."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


@dataclass
class BlockReply:
    header: dict[str, Any]
    data: bytes
    crc: int | None

    @property
    def code(self) -> int:
        return int(self.header["code"])


def parse_block_reply(payload: bytes, crc_order: Literal["big", "little"] = "big") -> BlockReply:
    """2-byte big-endian header length, JSON header, then bSize bytes and a 2-byte CRC (big-endian on the
    /ota/ topics; low byte first on /sys/, as Link SDK 4 reads it)."""
    length = int.from_bytes(payload[:2], "big")
    header = json.loads(payload[2 : 2 + length])
    rest = payload[2 + length :]
    if header["code"] != 200:
        assert rest == b"", "an error reply carries no data"
        return BlockReply(header, b"", None)
    size = header["data"]["bSize"]
    assert len(rest) == size + 2, (len(rest), size)
    return BlockReply(header, rest[:size], int.from_bytes(rest[size:], crc_order))


def block_request(stream_id: int, file_id: int, offset: int, size: int, message_id: str = "1") -> dict[str, Any]:
    return {
        "id": message_id,
        "version": "1.0",
        "params": {
            "fileToken": "tok-1",
            "fileInfo": {"streamId": stream_id, "fileId": file_id},
            "fileBlock": {"size": size, "offset": offset},
        },
    }


def next_raw(sim: SimDevice, topic: str, timeout: float = 10) -> bytes:
    received_topic, payload = sim.messages.get(timeout=timeout)
    assert received_topic == topic, received_topic
    return bytes(payload)


# --- HTTP devices -----------------------------------------------------------------------------------


def http_sign(secret: str, device_name: str, product_key: str, timestamp: str) -> str:
    content = f"deviceName{device_name}productKey{product_key}timestamp{timestamp}"
    return hmac.new(secret.encode(), content.encode(), hashlib.sha256).hexdigest()


def signed_headers(device: dict[str, Any], now_ms: int | None = None, secret: str | None = None) -> dict[str, str]:
    timestamp = str(int(time.time() * 1000) if now_ms is None else now_ms)
    return {
        "X-Product-Key": device["product_key"],
        "X-Device-Name": device["name"],
        "X-Timestamp": timestamp,
        "X-Sign": http_sign(secret or device["device_secret"], device["name"], device["product_key"], timestamp),
    }


def bearer(device: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {device['access_token']}"}


# --- TLS --------------------------------------------------------------------------------------------


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost (it is its own CA), and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "skylift-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def trusting(cert_path: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert_path))


@contextmanager
def running_tls_server(data_dir: Path, cert_path: Path, key_path: Path) -> Iterator[Server]:
    """`skylift serve` with TLS on its HTTP port; waits for https://.../healthz (trusting the test CA)."""
    tls_env = {"SKYLIFT_TLS_CERT_FILE": str(cert_path), "SKYLIFT_TLS_KEY_FILE": str(key_path)}
    with running_server(data_dir, tls=trusting(cert_path), **tls_env) as server:
        yield server


# --- EZtCloud devices and gateways (seed 003) -------------------------------------------------------


class EztDevice:
    """An EZtCloud device (or gateway): topics carry the MQTT username it logged in with."""

    def __init__(self, server: Server, device: dict[str, Any], product_key_login: bool = False) -> None:
        if product_key_login:
            self.sim = SimDevice.product_key(server, device)
            self.username = f"{device['name']}&{device['product_key']}"
        else:
            self.sim = SimDevice.token(server, device)
            self.username = device["access_token"]
        self.device = device

    def connect(self, listen: bool = True, gateway: bool = False) -> EztDevice:
        """Connect; subscribe to `command_send/{username}` (and `gateway_command_send/...` for a gateway)."""
        self.sim.connect(subscribe=False)
        if listen:
            assert not self.sim.subscribe(f"command_send/{self.username}")[0].is_failure
        if gateway:
            assert not self.sim.subscribe(f"gateway_command_send/{self.username}")[0].is_failure
        return self

    def publish(self, kind: str, payload: dict[str, Any] | bytes) -> None:
        self.sim.publish(f"{kind}/{self.username}", payload)

    def command(self, timeout: float = 10) -> dict[str, Any]:
        topic, body = self.sim.next_message(timeout)
        assert topic == f"command_send/{self.username}", topic
        return body

    def gateway_command(self, timeout: float = 10) -> dict[str, Any]:
        topic, body = self.sim.next_message(timeout)
        assert topic == f"gateway_command_send/{self.username}", topic
        return body

    def disconnect(self) -> None:
        self.sim.disconnect()


def malformed_total(server: Server) -> float:
    """Device messages refused so far (malformed, or a gateway acting for a device not its own)."""
    text = httpx.get(f"{server.http_url}/metrics").text
    return sum(float(v) for v in re.findall(r"^skylift_device_malformed_messages_total\{[^}]*\} (\S+)$", text, re.M))
