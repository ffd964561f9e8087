"""Which Range headers a download answers itself with one zero-copy range (the rest go Starlette's way)."""

from __future__ import annotations

import pytest

from skylift.devices.downloads import single_range

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", (0, 100)),
        ("bytes=500-", (500, 1000)),
        ("bytes=990-5000", (990, 1000)),
        ("bytes=-10", (990, 1000)),
        ("bytes=-5000", (0, 1000)),
        (" bytes=999-999 ", (999, 1000)),
    ],
)
def test_one_satisfiable_range_is_sent_as_it_asks(header: str, expected: tuple[int, int]) -> None:
    assert single_range(header, SIZE) == expected


@pytest.mark.parametrize(
    "header", ["bytes=1000-", "bytes=5-3", "bytes=-0", "bytes=0-9,20-29", "items=0-9", "bytes=-", "bytes=a-b"]
)
def test_anything_else_is_left_to_the_general_way(header: str) -> None:
    assert single_range(header, SIZE) is None


def test_an_empty_file_has_no_range() -> None:
    assert single_range("bytes=0-", 0) is None
