"""Every JSON payload to devices is compact and UTF-8 (Link SDK 4's reader needs `"key":value`)."""

from __future__ import annotations

import json

import pytest

from skylift.devices import mqtt_blocks
from skylift.devices.dialects import alink, eztcloud, product_key, token
from skylift.devices.dialects.base import Notice, NoticeFile


def url_notice(module: str = "MCU", files: int = 1) -> Notice:
    return Notice(
        message_id=1507707025,
        module=module,
        version="2.0.0",
        sign_method="MD5",
        files=[
            NoticeFile(
                name=f"固件{n}.bin",
                size=1000 + n,
                url=f"https://ota.example.com/dl/{n}/f.bin?expires=1&signature=ab",
                md5="5eb63bbbe01eeed093cb22bb8f5acdc3",
                sha256="b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
            )
            for n in range(1, files + 1)
        ],
        ext_data={"说明": "夜间升级", "k": [1, 2]},
    )


def assert_compact(payload: bytes) -> None:
    value = json.loads(payload)
    assert payload == json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    assert b"\\u" not in payload  # UTF-8, not escaped
    assert b'": ' not in payload
    assert b'", "' not in payload


RENDERED = {
    "token notice": lambda n: token.render_notice(n),
    "token nothing pending": lambda n: token.render_nothing_pending(7),
    "alibaba notice": lambda n: product_key.render_notice(n, "alibaba"),
    "sagoo notice": lambda n: product_key.render_notice(n, "sagoo"),
    "product-key nothing pending": lambda n: product_key.render_nothing_pending(7),
    "firmware/get_reply": lambda n: alink.render_get_reply(7, n),
    "eztcloud command": lambda n: eztcloud.render_command(n, "main", 7),
    "eztcloud gateway command": lambda n: eztcloud.render_gateway_command("DEVICE1", n, "main", 7),
}


@pytest.mark.parametrize("files", [1, 2])
@pytest.mark.parametrize("kind", sorted(RENDERED))
def test_payloads_to_devices_are_compact(kind: str, files: int) -> None:
    payload = RENDERED[kind](url_notice(files=files))
    assert_compact(payload)


def test_a_notice_reads_as_link_sdk_4_expects() -> None:
    payload = product_key.render_notice(url_notice(module="default"), "alibaba")
    for needle in (b'"version":"2.0.0"', b'"size":1001', b'"url":"https://', b'"sign":"5eb6', b'"signMethod":"Md5"'):
        assert needle in payload


def test_block_reply_header_is_compact() -> None:
    framed = mqtt_blocks.frame({"code": 200, "data": {"fileToken": "t", "bSize": 2}, "id": "1", "message": "success"})
    length = int.from_bytes(framed[:2], "big")
    assert_compact(framed[2 : 2 + length])
