"""Where package files live. Local files by default; the interface is what an object store needs too."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from pathlib import Path
from typing import Protocol

# Hash and write in the worker thread in slices of this size to keep the event loop free.
WRITE_BATCH = 1024 * 1024


class UploadSink(Protocol):
    size: int

    async def write(self, data: bytes) -> None: ...
    async def finish(self) -> None: ...
    def digests(self) -> tuple[str, str]: ...
    async def commit(self) -> str: ...
    async def abort(self) -> None: ...


class LocalUploadSink:
    """Streams one uploaded file to a temporary file, hashing as it goes; commit moves it in place."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._key = f"{uuid.uuid4().hex}.bin"
        self._temp = root / ".incoming" / self._key
        self._temp.parent.mkdir(parents=True, exist_ok=True)
        self._file = self._temp.open("wb")
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._sha256 = hashlib.sha256()
        self._pending = bytearray()
        self.size = 0

    def _write_sync(self, data: bytes) -> None:
        self._md5.update(data)
        self._sha256.update(data)
        self._file.write(data)

    async def write(self, data: bytes) -> None:
        self.size += len(data)
        self._pending += data
        if len(self._pending) >= WRITE_BATCH:
            await self._flush()

    async def _flush(self) -> None:
        if self._pending:
            chunk, self._pending = bytes(self._pending), bytearray()
            await asyncio.to_thread(self._write_sync, chunk)

    def digests(self) -> tuple[str, str]:
        if self._pending:
            raise RuntimeError("digests read before the upload was finished")
        return self._md5.hexdigest(), self._sha256.hexdigest()

    async def finish(self) -> None:
        await self._flush()
        await asyncio.to_thread(self._close_synced)

    def _close_synced(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    async def commit(self) -> str:
        target = self._root / self._key
        await asyncio.to_thread(os.replace, self._temp, target)
        return self._key

    async def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._temp.unlink(missing_ok=True)


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        # Uploads interrupted by a crash leave only temporary files behind.
        incoming = self.root / ".incoming"
        if incoming.exists():
            for leftover in incoming.iterdir():
                leftover.unlink(missing_ok=True)

    def open_upload(self) -> UploadSink:
        return LocalUploadSink(self.root)

    def path(self, key: str) -> Path:
        return self.root / key

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)
