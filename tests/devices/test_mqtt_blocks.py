"""Block replies for downloads over MQTT: CRC-16/IBM, the binary frame, and which span is served."""

from __future__ import annotations

import binascii
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialects_kit import crc16_ibm as reference_crc
from dialects_kit import parse_block_reply
from skylift.devices.dialects.base import BlockRequested
from skylift.devices.mqtt_blocks import (
    MAX_BLOCK_SIZE,
    block_reply,
    block_span,
    crc16_ibm,
    crc_order,
    error_reply,
    frame,
    read_block,
)


def request(message_id: str | int | None = "9") -> BlockRequested:
    return BlockRequested(message_id=message_id, file_token="t", stream_id=1, file_id=2, offset=0, size=256)


class TestCrc16Ibm:
    @pytest.mark.parametrize(
        ("data", "crc"),
        [(b"123456789", 0xBB3D), (b"", 0x0000), (b"\x00", 0x0000), (b"A", 0x30C0)],
    )
    def test_known_values(self, data: bytes, crc: int) -> None:
        assert crc16_ibm(data) == crc
        assert reference_crc(data) == crc

    @given(st.binary(max_size=2048))
    def test_matches_the_bitwise_definition(self, data: bytes) -> None:
        assert crc16_ibm(data) == reference_crc(data)

    def test_is_not_ccitt(self) -> None:
        assert crc16_ibm(b"123456789") != binascii.crc_hqx(b"123456789", 0)


class TestFrame:
    def test_layout(self) -> None:
        payload = frame({"code": 200}, b"abc")
        header = b'{"code":200}'
        assert payload[:2] == len(header).to_bytes(2, "big")
        assert payload[2 : 2 + len(header)] == header
        assert payload[2 + len(header) : -2] == b"abc"
        assert payload[-2:] == crc16_ibm(b"abc").to_bytes(2, "big")

    def test_a_sys_topic_reply_carries_its_crc_as_link_sdk_4_reads_it(self) -> None:
        assert crc_order("sys") == "little"
        assert crc_order("ota") == "big"
        payload = block_reply(request(), file_length=9, offset=0, data=b"123456789", order=crc_order("sys"))
        assert payload[-2] | payload[-1] << 8 == 0xBB3D  # the SDK's own read of the last two bytes
        assert payload[-2:] == b"\x3d\xbb"
        # Everything before the CRC is the same in either order; the header length stays big-endian.
        assert payload[:-2] == block_reply(request(), file_length=9, offset=0, data=b"123456789")[:-2]

    def test_block_reply_header(self) -> None:
        reply = parse_block_reply(block_reply(request(), file_length=1000, offset=512, data=b"x" * 10))
        assert reply.header == {
            "code": 200,
            "data": {"fileToken": "t", "fileLength": 1000, "bSize": 10, "bOffset": 512},
            "id": "9",
            "message": "success",
        }
        assert reply.data == b"x" * 10
        assert reply.crc == reference_crc(b"x" * 10)

    def test_error_reply_has_no_data_and_no_crc(self) -> None:
        payload = error_reply(request(7), "nope")
        length = int.from_bytes(payload[:2], "big")
        assert len(payload) == 2 + length
        assert json.loads(payload[2:]) == {"code": 400, "id": 7, "message": "nope"}

    def test_a_request_without_id_is_answered_with_an_empty_id(self) -> None:
        assert parse_block_reply(error_reply(request(None), "nope")).header["id"] == ""


class TestBlockSpan:
    def test_a_block_inside_the_file(self) -> None:
        assert block_span(0, 256, 1000) == (0, 256)

    def test_the_last_block_is_cut_at_the_end(self) -> None:
        assert block_span(900, 256, 1000) == (900, 100)

    def test_larger_blocks_are_clamped_to_64_kib(self) -> None:
        assert block_span(0, 1_000_000, 10_000_000) == (0, MAX_BLOCK_SIZE)

    @pytest.mark.parametrize(("offset", "size"), [(1000, 10), (5000, 10), (-1, 10), (0, 0), (0, -5)])
    def test_refused(self, offset: int, size: int) -> None:
        assert isinstance(block_span(offset, size, 1000), str)

    def test_an_empty_file_has_one_empty_block(self) -> None:
        assert block_span(0, 256, 0) == (0, 0)

    @given(st.integers(-(2**63), 2**63), st.integers(-(2**63), 2**63), st.integers(0, 2**40))
    def test_a_served_span_is_always_inside_the_file(self, offset: int, size: int, length: int) -> None:
        span = block_span(offset, size, length)
        if not isinstance(span, str):
            start, count = span
            assert 0 <= start <= length
            assert 0 <= count <= MAX_BLOCK_SIZE
            assert start + count <= length


def test_read_block_reads_only_the_block(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(256)) * 4)
    assert read_block(path, 250, 10) == bytes(range(250, 256)) + bytes(range(4))
    assert read_block(path, 1020, 10) == bytes(range(252, 256))
