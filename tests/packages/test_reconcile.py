"""Spec for reconciling package storage with the database (skylift.packages.reconcile, storage)."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skylift.kit.errors import Conflict
from skylift.packages.reconcile import plan_sweep
from skylift.packages.storage import LocalStorage, StoredFile

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def stored(key: str, age: timedelta, incoming: bool = False, size: int = 10) -> StoredFile:
    return StoredFile(key, size, NOW - age, incoming)


class TestTheAgeRule:
    def test_an_unreferenced_package_file_older_than_the_age_is_moved_aside(self) -> None:
        plan = plan_sweep([stored("a.bin", HOUR + timedelta(seconds=1))], set(), set(), NOW, HOUR)
        assert [f.key for f in plan.move_aside] == ["a.bin"]
        assert plan.remove == []

    def test_an_unreferenced_package_file_younger_than_the_age_is_left_alone(self) -> None:
        # Another replica may have moved it in place and not yet committed its package.
        plan = plan_sweep([stored("a.bin", HOUR - timedelta(seconds=1))], set(), set(), NOW, HOUR)
        assert plan.move_aside == []
        assert plan.too_young == 1

    def test_the_age_is_inclusive(self) -> None:
        plan = plan_sweep([stored("a.bin", HOUR), stored("b.bin", HOUR, incoming=True)], set(), set(), NOW, HOUR)
        assert [f.key for f in plan.move_aside] == ["a.bin"]
        assert [f.key for f in plan.remove] == ["b.bin"]

    def test_an_unfinished_upload_older_than_the_age_is_removed(self) -> None:
        plan = plan_sweep([stored("u.bin", 2 * HOUR, incoming=True)], set(), set(), NOW, HOUR)
        assert [f.key for f in plan.remove] == ["u.bin"]
        assert plan.move_aside == []

    def test_an_upload_still_being_written_is_left_alone(self) -> None:
        plan = plan_sweep([stored("u.bin", timedelta(seconds=5), incoming=True)], set(), set(), NOW, HOUR)
        assert plan.remove == []
        assert plan.too_young == 1

    def test_a_file_modified_in_the_future_is_young(self) -> None:
        # Clocks of replicas and a shared file server differ; a skewed time must not make a file old.
        plan = plan_sweep([stored("a.bin", -HOUR)], set(), set(), NOW, HOUR)
        assert plan.too_young == 1

    def test_an_age_of_zero_sweeps_everything_unreferenced(self) -> None:
        files = [stored("a.bin", timedelta(0)), stored("u.bin", timedelta(0), incoming=True)]
        plan = plan_sweep(files, set(), set(), NOW, timedelta(0))
        assert ([f.key for f in plan.move_aside], [f.key for f in plan.remove]) == (["a.bin"], ["u.bin"])


class TestReferencedFiles:
    def test_a_referenced_file_is_kept_however_old(self) -> None:
        plan = plan_sweep([stored("a.bin", 1000 * HOUR)], set(), {"a.bin"}, NOW, timedelta(0))
        assert plan.move_aside == []
        assert plan.too_young == 0

    def test_a_referenced_file_found_aside_is_brought_back(self) -> None:
        plan = plan_sweep([], {"a.bin"}, {"a.bin"}, NOW, HOUR)
        assert plan.restore == ["a.bin"]
        assert plan.missing == []

    def test_a_referenced_file_found_nowhere_is_reported_missing(self) -> None:
        plan = plan_sweep([], set(), {"a.bin"}, NOW, HOUR)
        assert plan.missing == ["a.bin"]


ages = st.integers(min_value=-10_000, max_value=10_000).map(lambda s: timedelta(seconds=s))


@given(
    files=st.lists(st.tuples(st.sampled_from("abcdef"), ages, st.booleans()), max_size=12),
    referenced=st.sets(st.sampled_from("abcdef")),
    min_age=st.integers(min_value=0, max_value=5000).map(lambda s: timedelta(seconds=s)),
)
def test_nothing_referenced_or_young_is_ever_touched(
    files: list[tuple[str, timedelta, bool]], referenced: set[str], min_age: timedelta
) -> None:
    found = [stored(f"{key}.bin", age, incoming) for key, age, incoming in files]
    keys = {f"{key}.bin" for key in referenced}
    plan = plan_sweep(found, set(), keys, NOW, min_age)
    for file in [*plan.remove, *plan.move_aside]:
        assert NOW - file.modified >= min_age
    assert all(f.key not in keys for f in plan.move_aside)
    assert all(f.incoming for f in plan.remove)
    assert all(not f.incoming for f in plan.move_aside)


class TestLocalStorage:
    def test_scan_finds_package_files_and_uploads_but_not_dot_files(self, tmp_path: Path) -> None:
        storage = LocalStorage(tmp_path)
        (tmp_path / "a.bin").write_bytes(b"12345")
        (tmp_path / ".nfs0001").write_bytes(b"x")
        (tmp_path / ".incoming").mkdir()
        (tmp_path / ".incoming" / "u.bin").write_bytes(b"123")
        os.utime(tmp_path / "a.bin", (NOW.timestamp(), NOW.timestamp()))
        found = sorted(storage.scan(), key=lambda f: f.key)
        assert found == [StoredFile("a.bin", 5, NOW, False), StoredFile("u.bin", 3, found[1].modified, True)]

    def test_moved_aside_and_back(self, tmp_path: Path) -> None:
        storage = LocalStorage(tmp_path)
        (tmp_path / "a.bin").write_bytes(b"x")
        storage.move_aside("a.bin")
        assert storage.orphaned_keys() == {"a.bin"}
        assert storage.scan() == []
        storage.restore("a.bin")
        assert [f.key for f in storage.scan()] == ["a.bin"]


class TestUploadSink:
    def test_abort_after_commit_removes_the_stored_file(self, tmp_path: Path) -> None:
        # The package row failed to commit after its file was moved in place.
        async def scenario() -> None:
            sink = LocalStorage(tmp_path).open_upload()
            await sink.write(b"firmware")
            await sink.finish()
            await sink.commit()
            assert (tmp_path / sink.key).read_bytes() == b"firmware"
            await sink.abort()
            await sink.abort()

        asyncio.run(scenario())
        assert [p for p in tmp_path.rglob("*") if p.is_file()] == []

    def test_an_upload_swept_while_idle_is_refused_cleanly(self, tmp_path: Path) -> None:
        # Another replica's start removed the temporary file of an upload idle for longer than the age.
        async def scenario() -> None:
            storage = LocalStorage(tmp_path)
            sink = storage.open_upload()
            await sink.write(b"firmware")
            await sink.finish()
            storage.remove_incoming(sink.key)
            with pytest.raises(Conflict):
                await sink.commit()

        asyncio.run(scenario())
