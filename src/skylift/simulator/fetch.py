"""Fetching a package file as a device does: one HTTP GET, two ranged GETs (a resumed download), or MQTT blocks.

The bytes are hashed as they arrive and then dropped: a simulated device keeps no firmware, only its digest.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import httpx

from skylift.simulator.blocks import BLOCK_SIZE, BlockError, block_request, parse_block_reply
from skylift.simulator.protocol import FileOrder

# Called with the number of bytes received so far (of this file).
OnBytes = Callable[[int], Awaitable[None]]
# Broken connections a download resumes after, before it fails.
RESUMES = 3
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class Download(StrEnum):
    FULL = "full"  # one GET
    RANGE = "range"  # the first half, then the rest with `Range` and `If-Range`: a resumed download
    SKIP = "skip"  # no download at all (the device says it has the file)


class DownloadFailed(Exception):
    """The file could not be fetched (or the device was told to give up): progress step -2."""


class BlockLink(Protocol):
    """The device's MQTT connection, as a block download needs it."""

    async def publish(self, topic: str, payload: bytes) -> None: ...

    async def next_block(self) -> bytes: ...


@dataclass(frozen=True)
class Fetched:
    digest: str  # hex of the file's digest in the notice's algorithm
    size: int


def hasher(algorithm: str) -> hashlib._Hash:
    return hashlib.sha256() if algorithm == "sha256" else hashlib.md5()


def download_client(connections: int = 8) -> httpx.AsyncClient:
    """The HTTP client devices download with. Idle connections are dropped after 1 s, before the server
    (uvicorn: 5 s) closes them: a request sent on a connection the server is closing fails."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=1.0)
    return httpx.AsyncClient(timeout=httpx.Timeout(120.0, connect=10.0), limits=limits)


async def fetch_url(
    http: httpx.AsyncClient, file: FileOrder, mode: Download, on_bytes: OnBytes, give_up: bool = False
) -> Fetched:
    """GET the file; with `mode` RANGE the first request stops halfway and a second one resumes (`Range`,
    `If-Range`), as after an interrupted download. A broken connection is resumed where it broke, up to
    RESUMES times. With `give_up`, stop after the first chunk."""
    assert file.url is not None
    digest = hasher(file.algorithm)
    received = 0
    stop_at = file.size // 2 if mode is Download.RANGE and file.size >= 2 else None
    etag: str | None = None
    broken = 0
    while True:
        headers = {}
        if received > 0 or stop_at is not None:
            headers["Range"] = f"bytes={received}-" + ("" if stop_at is None else str(stop_at - 1))
            if etag is not None:
                headers["If-Range"] = etag
        try:
            async with http.stream("GET", file.url, headers=headers) as response:
                _check_status(response, received, ranged="Range" in headers)
                etag = response.headers.get("ETag", etag)
                async for chunk in response.aiter_bytes():
                    digest.update(chunk)
                    received += len(chunk)
                    await on_bytes(received)
                    if give_up:
                        raise DownloadFailed(f"download interrupted at byte {received} (simulated)")
        except httpx.TransportError as exc:
            broken += 1
            if broken > RESUMES:
                raise DownloadFailed(f"download failed: {type(exc).__name__}: {exc}") from None
            continue
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise DownloadFailed(f"download failed: {type(exc).__name__}: {exc}") from None
        if stop_at is None or received < stop_at:
            break
        stop_at = None  # the second half
    if received != file.size:
        raise DownloadFailed(f"received {received} bytes where the notice said {file.size}")
    return Fetched(digest.hexdigest(), received)


def _check_status(response: httpx.Response, start: int, ranged: bool) -> None:
    if not ranged:
        if response.status_code != 200:
            raise DownloadFailed(f"download answered HTTP {response.status_code}")
        return
    if response.status_code != 206:
        raise DownloadFailed(f"a ranged download answered HTTP {response.status_code}, not 206")
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
    if match is None or int(match.group(1)) != start:
        raise DownloadFailed(f"Content-Range {response.headers.get('Content-Range')!r} does not start at {start}")


async def fetch_blocks(
    link: BlockLink,
    request_topic: str,
    stream_id: int,
    file: FileOrder,
    next_id: Callable[[], int],
    on_bytes: OnBytes,
    give_up: bool = False,
) -> Fetched:
    """Ask for the file block by block over MQTT, checking each block's CRC and offset."""
    assert file.stream_file_id is not None
    digest = hasher(file.algorithm)
    token = f"sim{stream_id}.{file.stream_file_id}"
    offset = 0
    while offset < file.size:
        message_id = next_id()
        size = min(BLOCK_SIZE, file.size - offset)
        await link.publish(
            request_topic, block_request(message_id, token, stream_id, file.stream_file_id, offset, size)
        )
        block = None
        while block is None:
            try:
                block = parse_block_reply(await link.next_block(), token)
            except BlockError as exc:
                raise DownloadFailed(f"block at offset {offset}: {exc}") from None
            if block.message_id != str(message_id):
                block = None  # a late answer to an earlier request
        if block.offset != offset or not block.data:
            raise DownloadFailed(f"asked for offset {offset}, got {len(block.data)} bytes at {block.offset}")
        digest.update(block.data)
        offset += len(block.data)
        await on_bytes(offset)
        if give_up and offset < file.size:
            raise DownloadFailed(f"block download abandoned at byte {offset} (simulated)")
    return Fetched(digest.hexdigest(), offset)
