"""Package files over MQTT in blocks, in Alibaba's format (campaigns whose protocol is mqtt).

A reply is one binary payload: a 2-byte big-endian header length, the JSON header, the block's
bytes, then their CRC-16/IBM (poly 0x8005 reflected, init 0), 2 bytes: big-endian on
`/ota/device/download_reply/{id}`, low byte first on `/sys/{pk}/{dn}/thing/file/download_reply` (see
`crc_order`). A request that cannot be served gets only the length and a JSON header with code 400
(no data, no CRC).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anycrc

from skylift.campaigns import attempts
from skylift.db.session import Database
from skylift.devices.dialects.base import BlockRequested, MessageId, dump_payload
from skylift.devices.identity import DeviceIdentity
from skylift.packages.storage import LocalStorage

log = logging.getLogger(__name__)

# Larger requests are served this much (the header's bSize says so); a device continues from there.
MAX_BLOCK_SIZE = 64 * 1024
_CRC16_IBM = anycrc.Model("CRC16-ARC")  # CRC-16/IBM is catalogued as CRC-16/ARC


ByteOrder = Literal["big", "little"]


def crc16_ibm(data: bytes) -> int:
    return int(_CRC16_IBM.calc(data))


def crc_order(family: str) -> ByteOrder:
    """How a reply's CRC is written, by the request's topic family. Alibaba's Link SDK 4 takes the CRC
    of a `/sys/.../thing/file/download_reply` low byte first (its mqtt_download component reads
    `p[0] | p[1] << 8`, older releases a native `uint16_t` on little-endian chips), so that is what
    Alibaba's platform sends and what devices built on it check; the seeds' `/ota/device/...` topics
    keep SPEC's big-endian."""
    return "little" if family == "sys" else "big"


def frame(header: dict[str, Any], data: bytes | None = None, order: ByteOrder = "big") -> bytes:
    """Length-prefixed JSON header, then (for a served block) the data and its CRC."""
    head = dump_payload(header)
    body = len(head).to_bytes(2, "big") + head
    if data is None:
        return body
    return body + data + crc16_ibm(data).to_bytes(2, order)


def _echo_id(message_id: MessageId | None) -> MessageId:
    return message_id if message_id is not None else ""


def block_reply(request: BlockRequested, file_length: int, offset: int, data: bytes, order: ByteOrder = "big") -> bytes:
    header = {
        "code": 200,
        "data": {"fileToken": request.file_token, "fileLength": file_length, "bSize": len(data), "bOffset": offset},
        "id": _echo_id(request.message_id),
        "message": "success",
    }
    return frame(header, data, order)


def error_reply(request: BlockRequested, message: str, code: int = 400) -> bytes:
    return frame({"code": code, "id": _echo_id(request.message_id), "message": message})


def block_span(offset: int, size: int, file_length: int) -> tuple[int, int] | str:
    """(offset, size) to send, clamped to MAX_BLOCK_SIZE and the end of the file, or why not."""
    if size <= 0:
        return "block size must be positive"
    if offset < 0 or (offset >= file_length and not offset == file_length == 0):
        return f"offset {offset} is outside the file (0..{max(file_length - 1, 0)})"
    return offset, min(size, MAX_BLOCK_SIZE, file_length - offset)


def read_block(path: Path, offset: int, size: int) -> bytes:
    """Just the block: seek and read, never the whole file (run in a worker thread)."""
    with path.open("rb") as file:
        file.seek(offset)
        return file.read(size)


@dataclass(frozen=True)
class Served:
    payload: bytes
    # (attempt id, attempt number) when this block carried the file's last byte.
    finished: tuple[int, int] | None = None


async def serve(
    database: Database, storage: LocalStorage, identity: DeviceIdentity, request: BlockRequested, order: ByteOrder
) -> Served:
    """Answer one block request of a device for a file of its own open attempt; `order` is the CRC's."""
    async with database.transaction() as session:
        source = await attempts.block_source(session, identity.device_id, request.stream_id, request.file_id)
    if source is None:
        return Served(error_reply(request, "no such stream or file in an open upgrade of this device"))
    span = block_span(request.offset, request.size, source.size)
    if isinstance(span, str):
        return Served(error_reply(request, span))
    offset, size = span
    try:
        data = await asyncio.to_thread(read_block, storage.path(source.storage_key), offset, size)
    except OSError:
        log.exception("reading block %s+%s of %s failed", offset, size, source.storage_key)
        data = b""
    if len(data) != size:
        log.error("package file %s is shorter than recorded (%s bytes)", source.storage_key, source.size)
        return Served(error_reply(request, "the file cannot be read", code=500))
    finished = (source.attempt_id, source.attempt_number) if offset + size >= source.size else None
    return Served(block_reply(request, source.size, offset, data, order), finished)
