"""An upload is hashed and written in a worker thread while its next slice is received, one slice at a time."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from pathlib import Path

from skylift.packages.storage import INCOMING, WRITE_BATCH, LocalUploadSink


def _held(sink: LocalUploadSink) -> threading.Event:
    """The sink's worker waits for the returned event before it hashes and writes each slice."""
    release = threading.Event()
    write = sink._write_sync

    def held_write(data: bytes) -> None:
        assert release.wait(10)
        write(data)

    sink._write_sync = held_write  # type: ignore[method-assign]
    return release


def test_the_next_slice_is_received_while_the_last_is_hashed(tmp_path: Path) -> None:
    first, second, last = b"a" * WRITE_BATCH, b"b" * WRITE_BATCH, b"tail"

    async def scenario() -> tuple[str, str, Path]:
        sink = LocalUploadSink(tmp_path)
        release = _held(sink)
        await asyncio.wait_for(sink.write(first), 1)  # handed to the worker, not waited for
        writing = asyncio.ensure_future(sink.write(second))
        await asyncio.sleep(0.1)
        assert not writing.done()  # one slice in the worker at a time
        release.set()
        await asyncio.wait_for(writing, 10)
        await sink.write(last)
        await sink.finish()
        md5, sha256 = sink.digests()
        await sink.commit()
        return md5, sha256, tmp_path / sink.key

    md5, sha256, stored = asyncio.run(scenario())
    content = first + second + last
    assert stored.read_bytes() == content
    assert md5 == hashlib.md5(content, usedforsecurity=False).hexdigest()
    assert sha256 == hashlib.sha256(content).hexdigest()


def test_digests_are_refused_while_a_slice_is_in_the_worker(tmp_path: Path) -> None:
    async def scenario() -> str:
        sink = LocalUploadSink(tmp_path)
        release = _held(sink)
        await sink.write(b"x" * WRITE_BATCH)
        try:
            sink.digests()
        except RuntimeError as exc:
            return str(exc)
        finally:
            release.set()
            await sink.finish()
        return "no error"

    assert "before the upload was finished" in asyncio.run(scenario())


def test_an_abort_waits_for_the_worker_and_leaves_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        sink = LocalUploadSink(tmp_path)
        release = _held(sink)
        await sink.write(b"x" * WRITE_BATCH)
        aborting = asyncio.ensure_future(sink.abort())
        await asyncio.sleep(0.1)
        assert not aborting.done()
        release.set()
        await asyncio.wait_for(aborting, 10)

    asyncio.run(scenario())
    assert list((tmp_path / INCOMING).iterdir()) == []
    assert [path.name for path in tmp_path.iterdir()] == [INCOMING]
