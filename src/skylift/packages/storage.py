"""Where package files live. Local files by default; the interface is what an object store needs too.

Layout of the storage root: `<key>` are stored package files, `.incoming/<key>` uploads still being
received, `orphaned/<key>` package files that no package referenced when the storage was reconciled."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from skylift.kit.errors import Conflict

# Hash and write in a worker thread in slices of this size, one slice at a time, while the event loop
# receives the next: at most two slices of an upload are in memory.
WRITE_BATCH = 1024 * 1024
INCOMING = ".incoming"
ORPHANED = "orphaned"
CLOCK = ".clock"  # touched to read the storage's own time; dot files are never swept


class UploadSink(Protocol):
    key: str
    size: int

    async def write(self, data: bytes) -> None: ...
    async def finish(self) -> None: ...
    def digests(self) -> tuple[str, str]: ...
    async def commit(self) -> None: ...
    async def abort(self) -> None: ...


class LocalUploadSink:
    """Streams one uploaded file to a temporary file, hashing as it goes; commit moves it in place.

    Hashing and writing a slice runs in a worker thread while the next slice is received (hashlib and
    file writes let go of the GIL), so an upload goes at the pace of the slower of the two, not of both.

    Commit happens just before the package row commits, so a stored file without its row exists only
    between the two, or after a crash there; reconciling the storage at start takes care of those."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self.key = f"{uuid.uuid4().hex}.bin"
        self._temp = root / INCOMING / self.key
        self._temp.parent.mkdir(parents=True, exist_ok=True)
        self._file = self._temp.open("wb")
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._sha256 = hashlib.sha256()
        self._pending = bytearray()
        self._writing: asyncio.Future[None] | None = None  # the slice being hashed and written
        self._committed = False
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
        """Wait for the slice in the worker to be done, then hand it the pending one and return."""
        await self._written()
        if self._pending:
            chunk, self._pending = bytes(self._pending), bytearray()
            self._writing = asyncio.ensure_future(asyncio.to_thread(self._write_sync, chunk))

    async def _written(self) -> None:
        writing, self._writing = self._writing, None
        if writing is not None:
            await writing

    def digests(self) -> tuple[str, str]:
        if self._pending or self._writing is not None:
            raise RuntimeError("digests read before the upload was finished")
        return self._md5.hexdigest(), self._sha256.hexdigest()

    async def finish(self) -> None:
        await self._flush()
        await self._written()
        await asyncio.to_thread(self._close_synced)

    def _close_synced(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    async def commit(self) -> None:
        try:
            await asyncio.to_thread(os.replace, self._temp, self._root / self.key)
        except FileNotFoundError:
            # Another replica's start swept it: the upload sat idle for longer than the sweep age.
            raise Conflict(
                "the upload's temporary file was removed before it could be stored; send the upload again",
                field="file",
            ) from None
        self._committed = True

    async def abort(self) -> None:
        """Remove what this upload stored, wherever it is now; safe to call more than once."""
        writing, self._writing = self._writing, None
        if writing is not None:
            await asyncio.gather(writing, return_exceptions=True)  # the file is not closed under the worker
        if not self._file.closed:
            self._file.close()
        self._temp.unlink(missing_ok=True)
        if self._committed:
            (self._root / self.key).unlink(missing_ok=True)
            self._committed = False


@dataclass(frozen=True)
class StoredFile:
    """One file found in the storage: a package file (`incoming=False`) or an unfinished upload."""

    key: str
    size: int
    modified: datetime
    incoming: bool = False


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def open_upload(self) -> UploadSink:
        return LocalUploadSink(self.root)

    def path(self, key: str) -> Path:
        return self.root / key

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)

    def scan(self) -> list[StoredFile]:
        """Package files and unfinished uploads, with their sizes and modification times (blocking)."""
        return [*_files_in(self.root, incoming=False), *_files_in(self.root / INCOMING, incoming=True)]

    def now(self) -> datetime:
        """The storage's own time: the modification time it gives a file touched now.

        File ages are measured against this, not the server's clock, because the storage sets every
        file's modification time itself (a file server's clock on shared storage). The marker is
        written, not touched: a touch may carry the process's idea of now, a write never does.
        """
        marker = self.root / CLOCK
        marker.unlink(missing_ok=True)
        marker.write_bytes(b"")
        return datetime.fromtimestamp(marker.stat().st_mtime, UTC)

    def orphaned_keys(self) -> set[str]:
        return {stored.key for stored in _files_in(self.root / ORPHANED, incoming=False)}

    def remove_incoming(self, key: str) -> None:
        (self.root / INCOMING / key).unlink(missing_ok=True)

    def move_aside(self, key: str) -> None:
        """Move a package file no package references into `orphaned/`, where an operator can inspect it."""
        (self.root / ORPHANED).mkdir(exist_ok=True)
        os.replace(self.root / key, self.root / ORPHANED / key)

    def restore(self, key: str) -> None:
        """Bring a package file back from `orphaned/` (a package references it again)."""
        os.replace(self.root / ORPHANED / key, self.root / key)


def _files_in(folder: Path, *, incoming: bool) -> list[StoredFile]:
    found: list[StoredFile] = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return found
    for entry in entries:
        # Dot files are not ours (e.g. `.nfs*` files that NFS keeps for a deleted file still open).
        if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
            continue
        try:
            stat = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # gone since the listing: committed or removed by another process
        modified = datetime.fromtimestamp(stat.st_mtime, UTC)
        found.append(StoredFile(entry.name, stat.st_size, modified, incoming))
    return found
