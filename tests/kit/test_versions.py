"""Spec for firmware version parsing and ordering (skylift.kit.versions)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skylift.kit.versions import MAX_VERSION_LENGTH, InvalidVersion, Version, is_version, parse_version, same_version

# The grammar allows 1 to 6 release components of 1 to 9 digits each.
MAX_COMPONENTS = 6
components = st.integers(min_value=0, max_value=999_999_999)
releases = st.lists(components, min_size=1, max_size=MAX_COMPONENTS)
# With pre-release and build parts, keep components short so that "v" + text fits in MAX_VERSION_LENGTH:
# 6 * 5 digits + 5 dots + "-" + 2 * 6 + 1 + "+" + 2 * 6 + 1 + "v" = 64.
short_releases = st.lists(st.integers(min_value=0, max_value=99_999), min_size=1, max_size=MAX_COMPONENTS)
identifiers = st.from_regex(r"[0-9A-Za-z]{1,6}", fullmatch=True)
pre_releases = st.lists(identifiers, min_size=0, max_size=2)
builds = st.lists(identifiers, min_size=0, max_size=2)


def release_text(release: Sequence[int]) -> str:
    return ".".join(str(part) for part in release)


def version_text(release: Sequence[int], pre: Sequence[str] = (), build: Sequence[str] = ()) -> str:
    text = release_text(release)
    if pre:
        text += "-" + ".".join(pre)
    if build:
        text += "+" + ".".join(build)
    return text


def padded(release: list[int]) -> tuple[int, ...]:
    return tuple(release) + (0,) * (MAX_COMPONENTS - len(release))


class TestParse:
    @pytest.mark.parametrize(
        ("text", "release", "pre"),
        [
            ("v1.0.1", (1, 0, 1), ()),
            ("V2", (2,), ()),
            ("1.1", (1, 1), ()),
            ("2.0.0", (2, 0, 0), ()),
            ("1.2.0-beta.2", (1, 2, 0), ("beta", 2)),
            ("1.0.0+build.5", (1, 0, 0), ()),
            ("1.0.0-rc.1+build.5", (1, 0, 0), ("rc", 1)),
            ("0", (0,), ()),
            ("1.2.3.4.5.6", (1, 2, 3, 4, 5, 6), ()),
            ("999999999.0", (999_999_999, 0), ()),
        ],
    )
    def test_accepts_device_versions(self, text: str, release: tuple[int, ...], pre: tuple[int | str, ...]) -> None:
        version = parse_version(text)
        assert version.release == release
        assert version.pre == pre
        assert version.text == text
        assert str(version) == text

    def test_surrounding_whitespace_is_stripped(self) -> None:
        version = parse_version("  v1.0.1\n")
        assert version.text == "v1.0.1"
        assert version == parse_version("1.0.1")

    def test_numeric_pre_release_identifiers_become_ints(self) -> None:
        assert parse_version("1.0.0-alpha.10.x1").pre == ("alpha", 10, "x1")

    def test_accepts_exactly_the_maximum_length(self) -> None:
        text = "1.0.0+" + "a" * (MAX_VERSION_LENGTH - len("1.0.0+"))
        assert len(text) == MAX_VERSION_LENGTH
        assert parse_version(text).release == (1, 0, 0)

    def test_is_version(self) -> None:
        assert is_version("v1.0.1")
        assert not is_version("abc")


class TestRefuse:
    @pytest.mark.parametrize(
        "text",
        [
            "",
            "   ",
            "abc",
            "1..2",
            "1.a",
            "-1",
            "1.0.0-",
            "1.0.0+",
            "1.0.",
            ".1",
            "v",
            "vv1",
            "1.0.0-rc..1",
            "1.2.3.4.5.6.7",
            "1234567890",
            "1.0 .1",
            "1,0",
            "1.0.0-rc_1",
        ],
    )
    def test_refuses_garbage(self, text: str) -> None:
        with pytest.raises(InvalidVersion):
            parse_version(text)

    def test_refuses_over_long_text(self) -> None:
        text = "1.0.0+" + "a" * (MAX_VERSION_LENGTH + 1 - len("1.0.0+"))
        assert len(text) == MAX_VERSION_LENGTH + 1
        with pytest.raises(InvalidVersion, match="at most"):
            parse_version(text)

    @pytest.mark.parametrize("value", [None, 1, 1.0, b"1.0", ["1", "0"]])
    def test_refuses_non_string_input(self, value: object) -> None:
        with pytest.raises(InvalidVersion, match="string"):
            parse_version(value)  # type: ignore[arg-type]

    def test_invalid_version_is_a_value_error(self) -> None:
        assert issubclass(InvalidVersion, ValueError)

    def test_error_names_the_input(self) -> None:
        with pytest.raises(InvalidVersion, match="'1.a'"):
            parse_version("1.a")

    @pytest.mark.parametrize("text", ["\u0661.\u0662", "1.\uff12", "\u0967.0"])
    def test_refuses_non_ascii_digits(self, text: str) -> None:
        # Arabic-Indic, fullwidth and Devanagari digits: int() would read them, devices never mean them.
        with pytest.raises(InvalidVersion):
            parse_version(text)


class TestOrdering:
    @pytest.mark.parametrize(
        ("lower", "higher"),
        [
            ("1.9.9", "1.10.0"),
            ("1.0.0", "1.0.1"),
            ("1.1", "1.1.1"),
            ("0.9", "1"),
            ("1.0.0-rc.1", "1.0.0"),
            ("1.0-rc.1", "1.0.0"),
            ("1.0.0", "1.0.1-alpha"),
            ("1.0.0-1", "1.0.0-alpha"),
            ("1.0.0-alpha.1", "1.0.0-alpha.beta"),
            ("1.0.0-rc.2", "1.0.0-rc.10"),
            ("1.0.0-rc", "1.0.0-rc.1"),
        ],
    )
    def test_strictly_lower(self, lower: str, higher: str) -> None:
        low, high = parse_version(lower), parse_version(higher)
        assert low < high
        assert high > low
        assert low <= high
        assert high >= low
        assert low != high

    def test_semver_precedence_chain(self) -> None:
        chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
        ]
        versions = [parse_version(text) for text in chain]
        assert sorted(reversed(versions)) == versions
        for low, high in itertools.pairwise(versions):
            assert low < high

    @pytest.mark.parametrize(
        ("left", "right"),
        [
            ("v1.0.1", "1.0.1"),
            ("V1.0.1", "v1.0.1"),
            ("1.1", "1.1.0"),
            ("1", "1.0.0.0.0.0"),
            ("0", "0.0"),
            ("01.2", "1.2"),
            ("1.0.0+build.5", "1.0.0"),
            ("1.0.0+a", "1.0.0+b"),
            ("1.0-rc.1", "1.0.0-rc.1"),
        ],
    )
    def test_equal(self, left: str, right: str) -> None:
        a, b = parse_version(left), parse_version(right)
        assert a == b
        assert not a < b
        assert not b < a
        assert hash(a) == hash(b)

    def test_a_pre_release_is_not_its_release(self) -> None:
        assert parse_version("1.0.0-rc.1") != parse_version("1.0.0")

    def test_never_equal_to_a_plain_string(self) -> None:
        assert parse_version("1.0") != "1.0"

    def test_equal_versions_collapse_in_a_set(self) -> None:
        assert len({parse_version(t) for t in ["1.1", "v1.1.0", "1.1.0+b", "V1.1"]}) == 1


class TestSameVersion:
    @pytest.mark.parametrize(
        ("reported", "target"),
        [
            ("v1.1", "1.1.0"),
            ("1.0.0+build.7", "1.0.0"),
            (" 2.0 ", "2"),
            ("xxxxxxxx", "xxxxxxxx"),
            (" xxxxxxxx ", "xxxxxxxx"),
        ],
    )
    def test_same(self, reported: str, target: str) -> None:
        assert same_version(reported, target)

    @pytest.mark.parametrize(
        ("reported", "target"),
        [
            ("1.1", "1.2"),
            ("1.0.0-rc.1", "1.0.0"),
            ("xxxxxxxx", "1.0.0"),
            ("1.0.0", "xxxxxxxx"),
            ("xxxxxxxx", "yyyyyyyy"),
            ("", "1.0"),
        ],
    )
    def test_different(self, reported: str, target: str) -> None:
        assert not same_version(reported, target)


class TestProperties:
    @given(releases, releases)
    def test_release_order_matches_zero_padded_tuples(self, left: list[int], right: list[int]) -> None:
        a, b = parse_version(release_text(left)), parse_version(release_text(right))
        assert (a < b) == (padded(left) < padded(right))
        assert (a == b) == (padded(left) == padded(right))
        assert (a > b) == (padded(left) > padded(right))

    @given(releases, releases)
    def test_exactly_one_of_lt_eq_gt(self, left: list[int], right: list[int]) -> None:
        a, b = parse_version(release_text(left)), parse_version(release_text(right))
        assert [a < b, a == b, a > b].count(True) == 1

    @given(releases, releases, releases)
    def test_order_is_transitive(self, x: list[int], y: list[int], z: list[int]) -> None:
        a, b, c = sorted(parse_version(release_text(r)) for r in (x, y, z))
        assert a <= b <= c
        assert a <= c

    @given(short_releases, pre_releases, builds)
    def test_str_round_trips(self, release: list[int], pre: list[str], build: list[str]) -> None:
        version = parse_version(version_text(release, pre, build))
        again = parse_version(str(version))
        assert again == version
        assert again.text == version.text
        assert again.release == version.release
        assert again.pre == version.pre

    @given(short_releases, pre_releases, builds, st.sampled_from(["v", "V"]))
    def test_leading_v_never_changes_equality(
        self, release: list[int], pre: list[str], build: list[str], prefix: str
    ) -> None:
        text = version_text(release, pre, build)
        plain, prefixed = parse_version(text), parse_version(prefix + text)
        assert plain == prefixed
        assert hash(plain) == hash(prefixed)
        assert same_version(prefix + text, text)

    @given(
        short_releases.filter(lambda r: len(r) < MAX_COMPONENTS),
        st.integers(min_value=1, max_value=MAX_COMPONENTS - 1),
        pre_releases,
        builds,
    )
    def test_trailing_zero_components_never_change_equality(
        self, release: list[int], extra: int, pre: list[str], build: list[str]
    ) -> None:
        extended = release + [0] * min(extra, MAX_COMPONENTS - len(release))
        short = parse_version(version_text(release, pre, build))
        long = parse_version(version_text(extended, pre, build))
        assert short == long
        assert hash(short) == hash(long)

    @given(short_releases, pre_releases, builds, builds)
    def test_build_metadata_never_changes_equality(
        self, release: list[int], pre: list[str], build: list[str], other_build: list[str]
    ) -> None:
        first = parse_version(version_text(release, pre, build))
        assert first == parse_version(version_text(release, pre, other_build))

    @given(short_releases, st.lists(identifiers, min_size=1, max_size=2))
    def test_pre_release_sorts_before_its_release(self, release: list[int], pre: list[str]) -> None:
        assert parse_version(version_text(release, pre)) < parse_version(version_text(release))

    @given(st.text(max_size=80))
    def test_parse_either_succeeds_or_raises_invalid_version(self, text: str) -> None:
        try:
            version = parse_version(text)
        except InvalidVersion:
            assert not is_version(text)
        else:
            assert isinstance(version, Version)
            assert is_version(text)
            assert len(version.text) <= MAX_VERSION_LENGTH


class TestSemverIdentifiers:
    @pytest.mark.parametrize("text", ["1.0.0-beta-2", "1.0.0+build-5", "2.1.0-rc-1+exp.sha-5114f85"])
    def test_hyphens_inside_identifiers_are_accepted(self, text: str) -> None:
        assert str(parse_version(text)) == text

    def test_a_hyphenated_pre_release_sorts_before_its_release(self) -> None:
        assert parse_version("1.0.0-beta-2") < parse_version("1.0.0")

    def test_ordering_against_something_else_is_a_type_error(self) -> None:
        with pytest.raises(TypeError):
            _ = parse_version("1.0.0") < 5  # type: ignore[operator]
