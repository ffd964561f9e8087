"""A device's side of Alibaba's MQTT file download, read against the replies Skylift's server code frames."""

from __future__ import annotations

import json

import pytest

from skylift.devices.dialects.base import BlockRequested
from skylift.devices.mqtt_blocks import block_reply, error_reply
from skylift.simulator.blocks import BlockError, block_request, crc16_ibm, parse_block_reply


def served(data: bytes, offset: int = 0, token: str = "tok", message_id: str = "5") -> bytes:
    request = BlockRequested(message_id=message_id, file_token=token, stream_id=1, file_id=2, offset=offset, size=9)
    return block_reply(request, file_length=100, offset=offset, data=data)


class TestBlockRequest:
    def test_is_alibabas_request(self) -> None:
        assert json.loads(block_request(5, "tok", 12, 3, 65536, 1024)) == {
            "id": "5",
            "version": "1.0",
            "params": {
                "fileToken": "tok",
                "fileInfo": {"streamId": 12, "fileId": 3},
                "fileBlock": {"size": 1024, "offset": 65536},
            },
        }


class TestBlockReply:
    def test_reads_a_served_block(self) -> None:
        block = parse_block_reply(served(b"123456789", offset=40), "tok")
        assert (block.message_id, block.file_length, block.offset, block.data) == ("5", 100, 40, b"123456789")

    def test_crc_is_crc16_ibm(self) -> None:
        assert crc16_ibm(b"123456789") == 0xBB3D

    def test_a_corrupted_block_is_refused(self) -> None:
        payload = bytearray(served(b"123456789"))
        payload[-3] ^= 0xFF  # the last data byte
        with pytest.raises(BlockError, match="CRC"):
            parse_block_reply(bytes(payload), "tok")

    def test_a_refusal_says_why(self) -> None:
        refusal = error_reply(BlockRequested("5", "tok", 1, 2, 500, 9), "offset 500 is outside the file")
        with pytest.raises(BlockError, match="400 offset 500"):
            parse_block_reply(refusal, "tok")

    def test_another_file_token_is_refused(self) -> None:
        with pytest.raises(BlockError, match="another file token"):
            parse_block_reply(served(b"abc"), "other")

    @pytest.mark.parametrize(
        "payload", [b"", b"\x00", b"\x00\x05nojson", served(b"123456789")[:-1]], ids=["empty", "short", "json", "cut"]
    )
    def test_malformed_replies_are_refused(self, payload: bytes) -> None:
        with pytest.raises(BlockError):
            parse_block_reply(payload, "tok")
