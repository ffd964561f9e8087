"""What a simulated device sends, and how it reads the notices Skylift's dialects render."""

from __future__ import annotations

import json

import pytest

from skylift.devices.dialects import eztcloud, product_key, token
from skylift.devices.dialects.base import Notice, NoticeFile
from skylift.simulator.protocol import (
    Credentials,
    Dialect,
    FileOrder,
    NoticeError,
    Topics,
    login_for,
    parse_notice,
    progress_report,
    upgrade_request,
    version_report,
)

CREDENTIALS = Credentials(name="t-1", product_key="a1Bc", access_token="tok", device_secret="sec", device_id=7)
MD5 = "93230c3bde425a9d7984a594ac55ea1e"
SHA = "ab" * 32


def notice(module: str = "default", sign_method: str = "MD5", stream: bool = False, files: int = 1) -> Notice:
    made = [
        NoticeFile(
            name=f"fw{n}.bin",
            size=1000 + n,
            url=None if stream else f"http://h/dl/{n}?sig=x",
            md5=MD5,
            sha256=SHA,
            stream_file_id=n if stream else None,
        )
        for n in range(1, files + 1)
    ]
    return Notice(
        message_id=42,
        module=module,
        version="2.0.0",
        sign_method=sign_method,
        files=made,
        ext_data={},
        is_diff=False,
        stream_id=9 if stream else None,
    )


def body(payload: bytes) -> dict[str, object]:
    return dict(json.loads(payload))


class TestLogin:
    def test_token_device_logs_in_with_its_token(self) -> None:
        login = login_for(Dialect.TOKEN, CREDENTIALS)
        assert (login.username, login.password, login.topic_id) == ("tok", None, "tok")

    def test_product_key_device_logs_in_with_name_key_and_secret(self) -> None:
        login = login_for(Dialect.PRODUCT_KEY, CREDENTIALS)
        assert (login.username, login.password, login.topic_id) == ("t-1&a1Bc", "sec", "a1Bc/t-1")

    def test_eztcloud_device_prefers_its_token_and_falls_back_to_the_secret(self) -> None:
        assert login_for(Dialect.EZTCLOUD, CREDENTIALS).username == "tok"
        without_token = Credentials(name="t-1", product_key="a1Bc", device_secret="sec")
        assert login_for(Dialect.EZTCLOUD, without_token).username == "t-1&a1Bc"

    def test_missing_credentials_are_named(self) -> None:
        with pytest.raises(ValueError, match="no device secret"):
            login_for(Dialect.PRODUCT_KEY, Credentials(name="t-1", product_key="a1Bc", access_token="tok"))

    def test_credentials_round_trip_through_json(self) -> None:
        assert Credentials.from_json(CREDENTIALS.to_json()) == CREDENTIALS


class TestTopics:
    @pytest.mark.parametrize(
        ("dialect", "report", "progress", "ask", "notices"),
        [
            (Dialect.TOKEN, "/ota/device/inform/tok", "/ota/device/progress/tok", "/ota/device/request/tok",
             "/ota/device/upgrade/tok"),
            (Dialect.PRODUCT_KEY, "/ota/device/inform/a1Bc/t-1", "/ota/device/progress/a1Bc/t-1",
             "/ota/device/request/a1Bc/t-1", "/ota/device/upgrade/a1Bc/t-1"),
            (Dialect.EZTCLOUD, "attributes/tok", "command_reply/tok", "event_report/tok", "command_send/tok"),
        ],
    )  # fmt: skip
    def test_each_family_has_its_topics(
        self, dialect: Dialect, report: str, progress: str, ask: str, notices: str
    ) -> None:
        topics = Topics(dialect, login_for(dialect, CREDENTIALS))
        assert (topics.report, topics.progress, topics.ask, topics.notices) == (report, progress, ask, notices)
        assert topics.subscriptions() == (notices, topics.block_reply)


class TestPayloads:
    def test_version_report_leaves_out_the_default_module(self) -> None:
        assert body(version_report(Dialect.TOKEN, "1.0.0", "default", 3)) == {"id": "3", "params": {"version": "1.0.0"}}
        assert body(version_report(Dialect.PRODUCT_KEY, "1.0.0", "MCU", 3))["params"] == {
            "version": "1.0.0",
            "module": "MCU",
        }

    def test_eztcloud_reports_its_version_property(self) -> None:
        assert body(version_report(Dialect.EZTCLOUD, "1.0.0", "main", 1)) == {"version": "1.0.0"}
        assert body(version_report(Dialect.EZTCLOUD, "2.1", "MCU", 1)) == {"mcu_version": "2.1"}
        assert body(version_report(Dialect.EZTCLOUD, "2.1", "MCU", 1, "fw_ver")) == {"fw_ver": "2.1"}

    def test_progress_in_each_family_form(self) -> None:
        assert body(progress_report(Dialect.TOKEN, 50, "half", "default", 1)) == {"step": "50", "desc": "half"}
        assert body(progress_report(Dialect.PRODUCT_KEY, -3, "bad", "MCU", 4)) == {
            "id": 4,
            "params": {"step": "-3", "desc": "bad", "module": "MCU"},
        }
        assert body(progress_report(Dialect.EZTCLOUD, 100, "ok", "default", 4, command_id=1000)) == {
            "method": "otaUpgrade",
            "id": 1000,
            "result": {"step": 100, "desc": "ok"},
        }

    def test_progress_description_is_cut_to_128_characters(self) -> None:
        assert len(str(body(progress_report(Dialect.TOKEN, 1, "x" * 300, "default", 1))["desc"])) == 128

    def test_asking_for_an_upgrade(self) -> None:
        assert body(upgrade_request(Dialect.TOKEN, "1.0.0", "default", 5)) == {"id": 5, "params": {"version": "1.0.0"}}
        assert body(upgrade_request(Dialect.EZTCLOUD, "1.0.0", "MCU", 5)) == {
            "method": "otaCheck",
            "params": {"module": "MCU"},
            "id": 5,
        }


class TestNotices:
    def test_token_notice(self) -> None:
        order = parse_notice(token.render_notice(notice()))
        assert order is not None
        assert (order.version, order.module, order.stream_id, order.command_id) == ("2.0.0", "default", None, None)
        assert order.files == (FileOrder("firmware", 1001, "http://h/dl/1?sig=x", None, MD5, "md5"),)

    def test_product_key_notice_with_sha256_verifies_the_sign(self) -> None:
        order = parse_notice(product_key.render_notice(notice(module="MCU", sign_method="SHA256"), "sagoo"))
        assert order is not None
        assert order.module == "MCU"
        assert (order.files[0].algorithm, order.files[0].digest) == ("sha256", SHA)

    def test_eztcloud_command_keeps_its_id_and_verifies_the_md5(self) -> None:
        order = parse_notice(eztcloud.render_command(notice(sign_method="SHA256"), "main", 1000))
        assert order is not None
        assert (order.module, order.command_id) == ("default", 1000)
        assert (order.files[0].algorithm, order.files[0].digest) == ("md5", MD5)

    def test_mqtt_notice_names_the_stream_and_its_file(self) -> None:
        for payload in (token.render_notice(notice(stream=True)), product_key.render_notice(notice(stream=True))):
            order = parse_notice(payload)
            assert order is not None
            assert order.stream_id == 9
            assert (order.files[0].url, order.files[0].stream_file_id) == (None, 1)

    def test_several_files(self) -> None:
        order = parse_notice(token.render_notice(notice(files=2)))
        assert order is not None
        assert [(f.name, f.size, f.url) for f in order.files] == [
            ("fw1.bin", 1001, "http://h/dl/1?sig=x"),
            ("fw2.bin", 1002, "http://h/dl/2?sig=x"),
        ]

    @pytest.mark.parametrize(
        "payload",
        [
            token.render_nothing_pending(1),
            product_key.render_nothing_pending(1),
            eztcloud.render_command(None, "main", 1),
        ],
    )
    def test_nothing_pending_is_no_order(self, payload: bytes) -> None:
        assert parse_notice(payload) is None

    @pytest.mark.parametrize(
        ("payload", "problem"),
        [
            (b"not json", "not JSON"),
            (b"[]", "not a JSON object"),
            (b'{"params": 1}', "neither params nor data"),
            (b'{"params": {"size": 1, "url": "u", "md5": "m"}}', "no version"),
            (b'{"params": {"version": "2", "size": 1, "md5": "m"}}', "neither a URL nor dProtocol"),
            (b'{"params": {"version": "2", "size": 1, "url": "u"}}', "no digest"),
            (b'{"params": {"version": "2", "size": "big", "url": "u", "md5": "m"}}', "size"),
        ],
    )
    def test_malformed_notices_are_refused_with_a_reason(self, payload: bytes, problem: str) -> None:
        with pytest.raises(NoticeError, match=problem):
            parse_notice(payload)
