"""The dialects' new payloads: requests, block requests, MQTT notices, "nothing pending" and get_reply."""

from __future__ import annotations

import json

import pytest

from skylift.devices.dialects import alink, ota, product_key, token
from skylift.devices.dialects.base import BlockRequested, MalformedMessage, Notice, NoticeFile, UpgradeRequested


def stream_notice(files: int = 1) -> Notice:
    return Notice(
        message_id=1507707025,
        module="MCU",
        version="2.0.0",
        sign_method="MD5",
        files=[
            NoticeFile(name=f"f{n}.bin", size=432945 + n, url=None, md5=f"md5-{n}", sha256=f"sha-{n}", stream_file_id=n)
            for n in range(1, files + 1)
        ],
        stream_id=1234565,
    )


class TestParseRequest:
    def test_seed_004_request(self) -> None:
        event = ota.parse_request(b'{"id": 1, "params": {"version": "1.0.1", "module": "MCU"}}')
        assert event == UpgradeRequested(module="MCU", message_id=1)

    def test_without_params_it_asks_for_the_default_module(self) -> None:
        assert ota.parse_request(b'{"id": "5"}') == UpgradeRequested(module=None, message_id="5")

    @pytest.mark.parametrize(
        "payload",
        [b'{"params": []}', b'{"id": {}, "params": {}}', b'{"id": true}', b'{"params": {"module": 3}}', b"[]"],
    )
    def test_malformed(self, payload: bytes) -> None:
        with pytest.raises(MalformedMessage):
            ota.parse_request(payload)

    def test_alibaba_firmware_get(self) -> None:
        event = alink.parse_firmware_get(b'{"id": "123", "version": "1.0", "params": {"module": "MCU"}}')
        assert event == UpgradeRequested(module="MCU", message_id="123")


class TestParseBlockRequest:
    def test_alibaba_format(self) -> None:
        payload = json.dumps(
            {
                "id": "123456",
                "version": "1.0",
                "params": {
                    "fileToken": "1bb8***",
                    "fileInfo": {"streamId": 1234565, "fileId": 1},
                    "fileBlock": {"size": 256, "offset": 2},
                },
            }
        ).encode()
        assert ota.parse_block_request(payload) == BlockRequested("123456", "1bb8***", 1234565, 1, 2, 256)
        assert alink.PARSERS["download"](payload) == ota.parse_block_request(payload)

    @pytest.mark.parametrize(
        "params",
        [
            {"fileInfo": {"streamId": 1, "fileId": 1}},
            {"fileInfo": {"streamId": "x", "fileId": 1}, "fileBlock": {"size": 1, "offset": 0}},
            {"fileInfo": {"streamId": 1, "fileId": 1}, "fileBlock": {"size": 1.5, "offset": 0}},
            {"fileInfo": {"streamId": 2**70, "fileId": 1}, "fileBlock": {"size": 1, "offset": 0}},
            {"fileInfo": [], "fileBlock": {"size": 1, "offset": 0}},
        ],
    )
    def test_malformed(self, params: dict[str, object]) -> None:
        with pytest.raises(MalformedMessage):
            ota.parse_block_request(json.dumps({"id": "1", "params": params}).encode())


class TestMqttNotices:
    def test_token_notice_carries_the_stream_instead_of_a_url(self) -> None:
        params = json.loads(token.render_notice(stream_notice()))["params"]
        assert params == {
            "version": "2.0.0",
            "size": 432946,
            "streamFileId": 1,
            "md5": "md5-1",
            "sign": "md5-1",
            "dProtocol": "mqtt",
            "streamId": 1234565,
            "signMethod": "Md5",
            "module": "MCU",
        }

    def test_product_key_notice_as_alibaba_documents_it(self) -> None:
        notice = json.loads(product_key.render_notice(stream_notice()))
        assert notice["code"] == "1000"
        assert notice["data"] == {
            "version": "2.0.0",
            "size": 432946,
            "streamFileId": 1,
            "md5": "md5-1",
            "sign": "md5-1",
            "dProtocol": "mqtt",
            "streamId": 1234565,
            "signMethod": "Md5",
            "module": "MCU",
        }

    def test_several_files_each_name_their_stream_file(self) -> None:
        data = json.loads(product_key.render_notice(stream_notice(files=2)))["data"]
        assert data["streamId"] == 1234565
        assert [f["streamFileId"] for f in data["files"]] == [1, 2]
        assert all("fileUrl" not in f for f in data["files"])


class TestNothingPending:
    def test_token(self) -> None:
        assert json.loads(token.render_nothing_pending(7)) == {"id": "7", "code": 200, "params": {}}

    @pytest.mark.parametrize(("style", "code"), [("alibaba", "1000"), ("sagoo", "200")])
    def test_product_key(self, style: str, code: str) -> None:
        body = json.loads(product_key.render_nothing_pending(7, style))
        assert body == {"code": code, "data": {}, "id": 7, "message": "success"}

    def test_get_reply(self) -> None:
        assert json.loads(alink.render_get_reply("9", None)) == {
            "code": 200,
            "data": {},
            "id": "9",
            "message": "success",
        }

    def test_get_reply_carries_the_notice_data(self) -> None:
        notice = stream_notice()
        reply = json.loads(alink.render_get_reply("9", notice, "sagoo"))
        assert reply["code"] == 200
        assert reply["data"] == product_key.notice_data(notice, "sagoo")
        assert reply["data"]["signMethod"] == "MD5"


class TestLinkSdk4BlockRequest:
    def test_its_trailing_comma_is_forgiven(self) -> None:
        # Link SDK 4 writes `"fileInfo":{"streamId":S,"fileId":F,}` (aiot_mqtt_download_api.c).
        payload = (
            b'{"id":"7","version":"1.0","params":{"fileToken":"default",'
            b'"fileInfo":{"streamId":1234565,"fileId":1,},"fileBlock":{"size":256,"offset":512}}}'
        )
        event = ota.parse_block_request(payload)
        assert (event.stream_id, event.file_id, event.offset, event.size) == (1234565, 1, 512, 256)
        assert event.message_id == "7"

    def test_commas_inside_strings_are_left_alone(self) -> None:
        payload = (
            b'{"id":"a,}\\",]","params":{"fileToken":",}",'
            b'"fileInfo":{"streamId":1,"fileId":2,},"fileBlock":{"size":1,"offset":0}}}'
        )
        event = ota.parse_block_request(payload)
        assert (event.message_id, event.file_token) == ('a,}",]', ",}")

    @pytest.mark.parametrize("payload", [b'{"params":{,}}', b"{,}", b'{"a":1,,}'])
    def test_other_broken_json_is_still_malformed(self, payload: bytes) -> None:
        with pytest.raises(MalformedMessage):
            ota.parse_block_request(payload)

    def test_only_block_requests_are_forgiving(self) -> None:
        with pytest.raises(MalformedMessage):
            ota.parse_inform(b'{"id":"1","params":{"version":"1.0",}}')
