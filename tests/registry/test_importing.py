"""Reading an import: CSV or JSON rows, before they are checked against the fleet."""

from __future__ import annotations

import pytest

from skylift.kit.errors import BadRequest, Invalid, UnsupportedMediaType
from skylift.registry.importing import MAX_ROWS, parse

NOT_AN_OBJECT = "a device is an object: {name, tags, gateway, address}"


def csv_rows(text: str) -> list[object]:
    return list(parse("text/csv; charset=utf-8", text.encode()))


class TestCsv:
    def test_columns_in_any_order_tags_split_and_blank_lines_skipped(self) -> None:
        rows = csv_rows("Address,NAME,gateway,tags\r\n\r\nS1,sub,12, a ; b ;\r\n,gw,,\r\n")
        assert rows == [{"address": "S1", "name": "sub", "gateway": 12, "tags": ["a", "b"]}, {"name": "gw", "tags": []}]

    def test_a_gateway_by_name_stays_text(self) -> None:
        assert csv_rows("name,gateway,address\nx,gw-1,A\n") == [{"name": "x", "gateway": "gw-1", "address": "A"}]

    def test_quoted_cells_and_a_byte_order_mark(self) -> None:
        assert csv_rows('\ufeffname,tags\n"a,b","x;y"\n') == [{"name": "a,b", "tags": ["x", "y"]}]

    def test_a_row_longer_than_the_header_is_wrong_by_itself(self) -> None:
        rows = csv_rows("name\nx,y\n")
        assert isinstance(rows[0], str)
        assert "2 cells" in rows[0]

    @pytest.mark.parametrize("header", ["tags,address", "name,name", "name,colour"])
    def test_the_header_must_name_known_columns(self, header: str) -> None:
        with pytest.raises(Invalid) as refused:
            csv_rows(f"{header}\nx,y\n")
        assert refused.value.field == "header"

    def test_no_device_is_not_an_import(self) -> None:
        with pytest.raises(Invalid):
            csv_rows("name\n\n")

    def test_too_many_rows(self) -> None:
        with pytest.raises(Invalid, match=str(MAX_ROWS)):
            csv_rows("name\n" + "x\n" * (MAX_ROWS + 1))


class TestJsonAndTypes:
    def test_an_array_of_objects(self) -> None:
        assert parse("application/json", b'[{"name": "x"}, 3]') == [{"name": "x"}, NOT_AN_OBJECT]

    @pytest.mark.parametrize(
        ("body", "error"), [(b"{", BadRequest), (b'{"name": "x"}', Invalid), (b"\xff", BadRequest)]
    )
    def test_what_is_not_an_array(self, body: bytes, error: type[Exception]) -> None:
        with pytest.raises(error):
            parse("application/json", body)

    def test_other_types_are_refused(self) -> None:
        with pytest.raises(UnsupportedMediaType):
            parse("application/xml", b"<x/>")
        with pytest.raises(UnsupportedMediaType):
            parse(None, b"name\nx\n")
