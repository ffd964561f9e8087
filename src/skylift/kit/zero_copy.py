"""Zero-copy file responses for uvicorn's h11 protocol: the ASGI "Zero Copy Send" extension.

uvicorn hands every body chunk through Python (read into memory, framed by h11, written to the socket),
which holds a download at a fraction of what the kernel's `sendfile` does. Its h11 protocol is kept
for the canonical header names device SDKs need (kit/canonical_headers.py); this subclass adds the
`http.response.zerocopysend` extension to plain (non-TLS) connections:
`{"type": "http.response.zerocopysend", "file": <a file with fileno()>, "offset": int, "count": int,
"more_body": bool}`. The head still goes through h11 (so keep-alive and Content-Length bookkeeping stay
h11's); the body goes from the page cache to the socket with `os.sendfile`, in a worker thread that
waits for the socket with poll(2), on a duplicate of the socket's descriptor, so that a connection
closed meanwhile can never be mistaken for another one that reuses its number.
A client that takes nothing for `SEND_TIMEOUT_SECONDS` is disconnected, as nginx's `send_timeout` does.
"""

from __future__ import annotations

import asyncio
import os
import select
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

EXTENSION = "http.response.zerocopysend"
SEND_TIMEOUT_SECONDS = 60.0
_POLL_MS = 1000  # how often a waiting transfer looks whether its connection was closed meanwhile
_THREADS = 256  # transfers at once; more wait for a thread

_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="sendfile")
    return _executor


class _Length:
    """Stands for `count` body bytes in h11's bookkeeping (h11 only asks for their length)."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count


def send_file_range(out_fd: int, in_fd: int, offset: int, count: int, closed: Any) -> None:
    """Send `count` bytes of `in_fd` from `offset` to the non-blocking socket `out_fd` (blocking this thread).

    `closed()` says the connection went away meanwhile; a peer that takes nothing for the send timeout,
    a closed connection or a file shorter than promised raise ConnectionError."""
    poller = select.poll()
    poller.register(out_fd, select.POLLOUT)
    end = offset + count
    progress_at = time.monotonic()
    while offset < end:
        if closed():
            raise ConnectionError("the connection was closed during the transfer")
        try:
            sent = os.sendfile(out_fd, in_fd, offset, end - offset)
        except BlockingIOError:
            poller.poll(_POLL_MS)
            if time.monotonic() - progress_at > SEND_TIMEOUT_SECONDS:
                raise ConnectionError("the client took nothing for the send timeout") from None
            continue
        if sent == 0:
            raise ConnectionError("the file is shorter than the response announced")
        offset += sent
        progress_at = time.monotonic()


class _ZeroCopyCycle(RequestResponseCycle):
    """uvicorn's request/response cycle, which also takes `http.response.zerocopysend`."""

    async def send(self, message: Any) -> None:
        if message["type"] != EXTENSION:
            await super().send(message)
            return
        if not self.response_started or self.response_complete:
            raise RuntimeError(f"{EXTENSION} is a response body: it comes after the start, before the end")
        if self.disconnected:
            return
        count = int(message["count"])
        more_body = bool(message.get("more_body", False))
        if self.scope["method"] != "HEAD" and count > 0:
            await self._send_file(message["file"], int(message.get("offset") or 0), count)
            if self.disconnected:
                return
        await super().send({"type": "http.response.body", "body": b"", "more_body": more_body})

    async def _send_file(self, file: Any, offset: int, count: int) -> None:
        # Everything written before (the head) must be on the wire before the body bypasses the transport.
        while self.transport.get_write_buffer_size() and not self.transport.is_closing():
            await asyncio.sleep(0.001)
        placeholder: Any = _Length(count)
        pieces = self.conn.send_with_data_passthrough(h11.Data(data=placeholder)) or []
        sock = self.transport.get_extra_info("socket")
        out_fd = os.dup(sock.fileno())
        try:
            for piece in pieces:
                if isinstance(piece, _Length):
                    await asyncio.get_running_loop().run_in_executor(
                        _pool(), send_file_range, out_fd, file.fileno(), offset, count, self._closed
                    )
                else:  # chunked framing around the data, were the response chunked
                    self.transport.write(piece)
                    while self.transport.get_write_buffer_size() and not self.transport.is_closing():
                        await asyncio.sleep(0.001)
        except OSError:
            # The client went away (or stalled): the response cannot be finished on this connection.
            self.disconnected = True
            self.transport.close()
        finally:
            os.close(out_fd)

    def _closed(self) -> bool:
        return bool(self.disconnected or self.transport.is_closing())


class ZeroCopyH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the zero-copy send extension on plain connections (not TLS)."""

    def handle_events(self) -> None:
        previous = self.cycle
        super().handle_events()
        cycle = self.cycle
        # A new cycle's task has been created but has not run yet: it starts with the extension.
        if cycle is not None and cycle is not previous and self._zero_copy_possible():
            cycle.__class__ = _ZeroCopyCycle
            cycle.scope.setdefault("extensions", {})[EXTENSION] = {}

    def _zero_copy_possible(self) -> bool:
        transport = self.transport
        if transport is None or transport.get_extra_info("sslcontext") is not None:
            return False
        sock = transport.get_extra_info("socket")
        return sock is not None and hasattr(sock, "fileno")
