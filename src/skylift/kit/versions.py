"""Firmware version parsing and ordering, free of I/O.

Devices report `v1.0.1`, `1.1`, `2.0.0`, `V3`, `1.2.0-beta.2`; the platform orders them, never the
device. Missing trailing components count as zero (`1.1 == 1.1.0`), a pre-release sorts before its
release (`1.0.0-rc.1 < 1.0.0`), build metadata after `+` is ignored for ordering.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

MAX_VERSION_LENGTH = 64

_VERSION = re.compile(
    r"""^[vV]?
    (?P<release>\d{1,9}(?:\.\d{1,9}){0,5})
    (?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?
    (?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$""",
    # ASCII: \d would also accept other scripts' digits, which devices never mean.
    re.VERBOSE | re.ASCII,
)


class InvalidVersion(ValueError):
    pass


@total_ordering
@dataclass(frozen=True, eq=False)
class Version:
    text: str
    release: tuple[int, ...]
    pre: tuple[int | str, ...]

    def _release_key(self) -> tuple[int, ...]:
        trimmed = list(self.release)
        while len(trimmed) > 1 and trimmed[-1] == 0:
            trimmed.pop()
        return tuple(trimmed)

    def _pre_key(self) -> tuple[tuple[int, int | str], ...]:
        # Numeric identifiers sort before alphanumeric ones (semver rule 11).
        return tuple((0, part) if isinstance(part, int) else (1, part) for part in self.pre)

    def sort_key(self) -> tuple[object, ...]:
        # A release (no pre-release) sorts after any of its pre-releases.
        return (self._release_key(), 0 if self.pre else 1, self._pre_key())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self.sort_key() == other.sort_key()

    def __hash__(self) -> int:
        return hash(self.sort_key())

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self.sort_key() < other.sort_key()

    def __str__(self) -> str:
        return self.text


def parse_version(text: str) -> Version:
    """Parse a version string, raising InvalidVersion with a readable reason."""
    if not isinstance(text, str):
        raise InvalidVersion("a version must be a string")
    stripped = text.strip()
    if not stripped:
        raise InvalidVersion("a version must not be empty")
    if len(stripped) > MAX_VERSION_LENGTH:
        raise InvalidVersion(f"a version is at most {MAX_VERSION_LENGTH} characters")
    match = _VERSION.match(stripped)
    if match is None:
        raise InvalidVersion(f"{stripped!r} is not a version: use numbers separated by dots, like 1.2.3 or v1.0.1")
    release = tuple(int(part) for part in match["release"].split("."))
    pre: tuple[int | str, ...] = ()
    if match["pre"]:
        pre = tuple(int(p) if p.isdigit() else p for p in match["pre"].split("."))
    return Version(text=stripped, release=release, pre=pre)


def is_version(text: str) -> bool:
    try:
        parse_version(text)
    except InvalidVersion:
        return False
    return True


def same_version(reported: str, target: str) -> bool:
    """Whether a device's reported version is the target; unparseable reports compare as text."""
    try:
        return parse_version(reported) == parse_version(target)
    except InvalidVersion:
        return reported.strip() == target.strip()
