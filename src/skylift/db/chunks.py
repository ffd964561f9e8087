"""Long id lists cut to a size one `IN (...)` statement takes on every database Skylift runs on."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

IDS_PER_STATEMENT = 500


def id_chunks(ids: Sequence[T], size: int = IDS_PER_STATEMENT) -> Iterator[Sequence[T]]:
    """`ids` in consecutive slices of at most `size`, in order."""
    for start in range(0, len(ids), size):
        yield ids[start : start + size]
