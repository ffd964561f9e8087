"""Bring package storage back in line with the database at start.

A crash between storing an upload and committing its package leaves a file that no package
references; a crash mid-upload leaves a temporary file. Replicas may share the storage, and a
file another replica is receiving or is about to commit is not referenced yet either, so only
files older than a safe age are touched: unfinished uploads are removed, unreferenced package
files are moved into `orphaned/` (never deleted: a start against the wrong database must not
destroy firmware), and files a package references again are brought back from there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select

from skylift.db.session import Database
from skylift.kit.metrics import STORAGE_SWEPT_BYTES, STORAGE_SWEPT_FILES
from skylift.packages.models import PackageFile
from skylift.packages.storage import ORPHANED, LocalStorage, StoredFile

log = logging.getLogger(__name__)


@dataclass
class SweepPlan:
    remove: list[StoredFile] = field(default_factory=list)  # unfinished uploads
    move_aside: list[StoredFile] = field(default_factory=list)  # package files no package references
    restore: list[str] = field(default_factory=list)  # referenced keys found in orphaned/
    missing: list[str] = field(default_factory=list)  # referenced keys found nowhere
    too_young: int = 0  # leftovers spared because another replica may still be working on them


def plan_sweep(
    stored: Iterable[StoredFile], orphaned: set[str], referenced: set[str], now: datetime, min_age: timedelta
) -> SweepPlan:
    """What to do with each file; a file modified less than `min_age` before `now` is left alone."""
    plan = SweepPlan()
    present: set[str] = set()
    for file in stored:
        if not file.incoming:
            present.add(file.key)
        if not file.incoming and file.key in referenced:
            continue
        if now - file.modified < min_age:
            plan.too_young += 1
        elif file.incoming:
            plan.remove.append(file)
        else:
            plan.move_aside.append(file)
    for key in sorted(referenced - present):
        (plan.restore if key in orphaned else plan.missing).append(key)
    return plan


async def reconcile_storage(database: Database, storage: LocalStorage, min_age: timedelta) -> SweepPlan:
    """Sweep leftovers of interrupted uploads out of the storage; log and count what was done.

    Ages are measured on the storage's own clock, the one that stamped the files.
    """
    now = await asyncio.to_thread(storage.now)
    # List the files before reading the references: a file committed in between is then referenced.
    stored = await asyncio.to_thread(storage.scan)
    orphaned = await asyncio.to_thread(storage.orphaned_keys)
    async with database.transaction() as session:
        referenced = set((await session.scalars(select(PackageFile.storage_key))).all())
    plan = plan_sweep(stored, orphaned, referenced, now, min_age)
    await asyncio.to_thread(_apply, storage, plan)
    _report(plan, min_age)
    return plan


def _apply(storage: LocalStorage, plan: SweepPlan) -> None:
    # A file already gone was handled by another replica starting at the same time.
    for file in plan.remove:
        storage.remove_incoming(file.key)
    for file in list(plan.move_aside):
        try:
            storage.move_aside(file.key)
        except FileNotFoundError:
            plan.move_aside.remove(file)
    for key in list(plan.restore):
        try:
            storage.restore(key)
        except FileNotFoundError:
            plan.restore.remove(key)
            plan.missing.append(key)
    # Committed by another replica after the listing: not missing.
    plan.missing = [key for key in plan.missing if not storage.path(key).exists()]


def _report(plan: SweepPlan, min_age: timedelta) -> None:
    for kind, files in (("incoming", plan.remove), ("orphaned", plan.move_aside)):
        STORAGE_SWEPT_FILES.labels(kind).inc(len(files))
        STORAGE_SWEPT_BYTES.labels(kind).inc(sum(f.size for f in files))
    if plan.remove:
        log.info(
            "storage: removed %d unfinished upload(s), %d bytes", len(plan.remove), sum(f.size for f in plan.remove)
        )
    if plan.move_aside:
        log.warning(
            "storage: moved %d package file(s) that no package references, %d bytes, into %s/ (%s); "
            "delete them once checked",
            len(plan.move_aside),
            sum(f.size for f in plan.move_aside),
            ORPHANED,
            ", ".join(f.key for f in plan.move_aside[:10]),
        )
    if plan.restore:
        log.warning("storage: brought %d referenced package file(s) back from %s/", len(plan.restore), ORPHANED)
    if plan.missing:
        log.error(
            "storage: %d package file(s) recorded in the database are missing from storage (%s)",
            len(plan.missing),
            ", ".join(plan.missing[:10]),
        )
    if plan.too_young:
        log.info(
            "storage: left %d unreferenced file(s) younger than %d s alone (uploads possibly in progress elsewhere)",
            plan.too_young,
            min_age.total_seconds(),
        )
