"""Alibaba's file download over MQTT, from the device's side: block requests and their binary replies (pure)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import anycrc

from skylift.simulator.protocol import dump

# The largest block Skylift serves; a device asks for it and takes whatever `bSize` says came.
BLOCK_SIZE = 64 * 1024
_CRC16_IBM = anycrc.Model("CRC16-ARC")  # CRC-16/IBM: poly 0x8005 reflected, init 0, no final xor


class BlockError(ValueError):
    """A reply that is refused, malformed, for another request, or whose CRC does not match."""


def crc16_ibm(data: bytes) -> int:
    return int(_CRC16_IBM.calc(data))


def block_request(message_id: int, file_token: str, stream_id: int, file_id: int, offset: int, size: int) -> bytes:
    """`{"id", "version": "1.0", "params": {"fileToken", "fileInfo": {...}, "fileBlock": {...}}}`."""
    return dump(
        {
            "id": str(message_id),
            "version": "1.0",
            "params": {
                "fileToken": file_token,
                "fileInfo": {"streamId": stream_id, "fileId": file_id},
                "fileBlock": {"size": size, "offset": offset},
            },
        }
    )


def _whole(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BlockError(f"{key} must be a whole number")
    return value


@dataclass(frozen=True)
class Block:
    message_id: str
    file_length: int
    offset: int
    data: bytes


def parse_block_reply(payload: bytes, file_token: str) -> Block:
    """2-byte big-endian header length, JSON header, `bSize` bytes, their CRC-16/IBM (2 bytes big-endian)."""
    if len(payload) < 2:
        raise BlockError("the reply is shorter than its length prefix")
    length = int.from_bytes(payload[:2], "big")
    try:
        header: dict[str, Any] = json.loads(payload[2 : 2 + length])
    except ValueError as exc:
        raise BlockError(f"the reply's header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise BlockError("the reply's header is not a JSON object")
    if header.get("code") != 200:
        raise BlockError(f"refused: {header.get('code')} {header.get('message')}")
    data = header.get("data")
    if not isinstance(data, dict) or data.get("fileToken") != file_token:
        raise BlockError("the reply answers another file token")
    size, offset, file_length = (_whole(data, key) for key in ("bSize", "bOffset", "fileLength"))
    rest = payload[2 + length :]
    if len(rest) != size + 2:
        raise BlockError(f"the reply carries {len(rest) - 2} bytes where bSize says {size}")
    block, crc = rest[:size], int.from_bytes(rest[size:], "big")
    if crc16_ibm(block) != crc:
        raise BlockError(f"CRC mismatch at offset {offset}")
    return Block(str(header.get("id", "")), file_length, offset, block)
