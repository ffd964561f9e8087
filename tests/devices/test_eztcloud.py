"""EZtCloud (seed 003): parsing its payloads, rendering otaUpgrade, its topics and ACL, where a notice
goes, and the "latest for everyone" decision."""

from __future__ import annotations

import json

import pytest

from skylift.campaigns.latest import Candidate, upgrades_above
from skylift.campaigns.outbox import Recipient
from skylift.devices.dialects import eztcloud
from skylift.devices.dialects.base import MalformedMessage, Notice, NoticeFile, ProgressReported, UpgradeRequested
from skylift.devices.dialects.eztcloud import Noted, PropertiesReported, SubDeviceMessage
from skylift.devices.identity import DeviceIdentity, LoginStyle
from skylift.devices.notices import addressed
from skylift.devices.topics import Route, may_publish, may_read, may_subscribe, route
from skylift.kit import sealing

TOKEN_DEVICE = DeviceIdentity(1, 1, "a1pk", "dev", "tok123", LoginStyle.TOKEN)
KEY_DEVICE = DeviceIdentity(2, 1, "a1pk", "dev2", "tok456", LoginStyle.PRODUCT_KEY)


def notice(files: int = 1, module: str = "default", stream: bool = False) -> Notice:
    return Notice(
        message_id=98310,
        module=module,
        version="1.1.5",
        sign_method="MD5",
        files=[
            NoticeFile(
                name=f"f{n}.bin",
                size=1363713 + n,
                url=None if stream else f"http://xxx.com/xxx/f{n}.bin",
                md5=f"481701fa4093499eacd05b57bebc7ff{n}",
                sha256=f"sha-{n}",
                stream_file_id=n if stream else None,
            )
            for n in range(files)
        ],
        stream_id=77 if stream else None,
    )


class TestAttributes:
    def test_seed_property_report(self) -> None:
        assert eztcloud.parse_attributes(b'{"version": "1.0.0"}') == PropertiesReported({"version": "1.0.0"})

    def test_numbers_keep_the_text_the_device_sent(self) -> None:
        event = eztcloud.parse_attributes(b'{"mcu_version": 2.10, "gps_version": 3, "hw": " 1.0 "}')
        assert event == PropertiesReported({"mcu_version": "2.10", "gps_version": "3", "hw": "1.0"})

    def test_values_that_cannot_be_versions_are_left_out(self) -> None:
        payload = {"on": True, "pos": {"x": 1}, "list": [1], "none": None, "blank": " ", "long": "x" * 65, "v": "1"}
        assert eztcloud.parse_attributes(json.dumps(payload).encode()) == PropertiesReported({"v": "1"})

    @pytest.mark.parametrize("payload", [b"[]", b"not json", b'"1.0.0"', b"[" * 100_000, b"1" * 5000])
    def test_malformed(self, payload: bytes) -> None:
        with pytest.raises(MalformedMessage):
            eztcloud.parse_attributes(payload)


class TestEvent:
    def test_seed_check(self) -> None:
        event = eztcloud.parse_event(b'{"method": "otaCheck", "params": {}, "id": 1000}')
        assert event == UpgradeRequested(module=None, message_id=1000)

    def test_without_id_and_params(self) -> None:
        assert eztcloud.parse_event(b'{"method": "otaCheck"}') == UpgradeRequested(module=None, message_id=None)

    def test_a_module_may_be_named(self) -> None:
        event = eztcloud.parse_event(b'{"method": "otaCheck", "params": {"module": "MCU"}, "id": "7"}')
        assert event == UpgradeRequested(module="MCU", message_id="7")

    def test_other_events_change_nothing(self) -> None:
        assert eztcloud.parse_event(b'{"method": "alarm", "params": {"level": 3}}') == Noted("event alarm")

    @pytest.mark.parametrize(
        "payload",
        [
            b'{"params": {}}',
            b'{"method": 1}',
            b'{"method": "otaCheck", "params": []}',
            b'{"method": "otaCheck", "params": {"module": 5}}',
            b'{"method": "otaCheck", "id": {}}',
        ],
    )
    def test_malformed(self, payload: bytes) -> None:
        with pytest.raises(MalformedMessage):
            eztcloud.parse_event(payload)


class TestReply:
    @pytest.mark.parametrize(
        ("payload", "expected"),
        [
            (
                {"method": "otaUpgrade", "id": 1, "result": {"step": 50, "desc": "downloading"}},
                ProgressReported(50, "downloading", None),
            ),
            ({"id": 1, "params": {"step": "100", "module": "main"}}, ProgressReported(100, "", "main")),
            ({"step": "-3", "desc": "bad md5"}, ProgressReported(-3, "bad md5", None)),
            ({"id": 1, "result": {"code": 500, "message": "flash error"}}, ProgressReported(-1, "flash error", None)),
            ({"id": 1, "code": "E42", "module": "MCU"}, ProgressReported(-1, 'code "E42"', "MCU")),
            ({"id": 1, "result": {"success": False}}, ProgressReported(-1, "success false", None)),
        ],
    )
    def test_progress_and_failures(self, payload: dict[str, object], expected: ProgressReported) -> None:
        assert eztcloud.parse_reply(json.dumps(payload).encode()) == expected

    @pytest.mark.parametrize(
        "payload",
        [
            {"method": "otaUpgrade", "id": 1, "result": {"code": 0}},
            {"id": 1, "code": 200},
            {"id": 1, "result": {"code": "success"}},
            {"id": 1, "result": {"success": True}},
        ],
    )
    def test_acknowledgements_change_nothing(self, payload: dict[str, object]) -> None:
        assert eztcloud.parse_reply(json.dumps(payload).encode()) == Noted("command acknowledged")

    def test_replies_to_other_commands_change_nothing(self) -> None:
        assert eztcloud.parse_reply(b'{"method": "setLed", "result": {}}') == Noted("reply to setLed")

    @pytest.mark.parametrize(
        "payload",
        [
            b'{"id": 1, "result": {}}',
            b'{"id": 1, "result": {"step": 101}}',
            b'{"id": 1, "result": {"code": 1.5}}',
            b'{"id": 1, "result": {"step": 5, "desc": 3}}',
            b'{"method": 3}',
        ],
    )
    def test_malformed(self, payload: bytes) -> None:
        with pytest.raises(MalformedMessage):
            eztcloud.parse_reply(payload)


class TestGatewayEnvelopes:
    def test_seed_sub_device_check(self) -> None:
        payload = b'{"device": "DEVICE1", "event": {"method": "otaCheck", "params": {}, "id": 1000}}'
        assert eztcloud.parse_gateway_event(payload) == SubDeviceMessage("DEVICE1", UpgradeRequested(None, 1000))

    def test_sub_device_attributes(self) -> None:
        payload = b'{"device": "DEVICE1", "values": {"version": "1.0.0"}}'
        assert eztcloud.parse_gateway_attributes(payload) == SubDeviceMessage(
            "DEVICE1", PropertiesReported({"version": "1.0.0"})
        )

    @pytest.mark.parametrize("key", ["command", "reply"])
    def test_sub_device_reply(self, key: str) -> None:
        payload = json.dumps({"device": "D2", key: {"method": "otaUpgrade", "id": 9, "result": {"step": 100}}})
        assert eztcloud.parse_gateway_reply(payload.encode()) == SubDeviceMessage("D2", ProgressReported(100, "", None))

    @pytest.mark.parametrize(
        "payload",
        [
            b'{"event": {"method": "otaCheck"}}',
            b'{"device": 1, "event": {"method": "otaCheck"}}',
            b'{"device": "D", "event": "otaCheck"}',
            b'{"device": "D", "event": {"params": {}}}',
        ],
    )
    def test_malformed(self, payload: bytes) -> None:
        with pytest.raises(MalformedMessage):
            eztcloud.parse_gateway_event(payload)


class TestCommand:
    def test_the_seed_payload_exactly(self) -> None:
        assert json.loads(eztcloud.render_command(notice(), "main", 98310)) == {
            "method": "otaUpgrade",
            "params": {
                "module": "main",
                "upgrade": True,
                "version": "1.1.5",
                "url": "http://xxx.com/xxx/f0.bin",
                "size": 1363713,
                "md5": "481701fa4093499eacd05b57bebc7ff0",
            },
            "command_name": "OTA升级",
            "id": 98310,
        }

    def test_nothing_newer(self) -> None:
        assert eztcloud.command(None, "MCU", 1000) == {
            "method": "otaUpgrade",
            "params": {"module": "MCU", "upgrade": False},
            "command_name": "OTA升级",
            "id": 1000,
        }

    def test_for_a_sub_device(self) -> None:
        body = json.loads(eztcloud.render_gateway_command("DEVICE1", None, "main", 1000))
        assert body == {"device": "DEVICE1", "command": eztcloud.command(None, "main", 1000)}

    def test_several_files_and_mqtt_blocks(self) -> None:
        params = eztcloud.command(notice(files=2, stream=True), "main", 1)["params"]
        assert "url" not in params
        assert (params["dProtocol"], params["streamId"], params["streamFileId"]) == ("mqtt", 77, 0)
        assert [f["fileName"] for f in params["files"]] == ["f0.bin", "f1.bin"]

    @pytest.mark.parametrize(
        ("module", "asked", "label"),
        [
            ("default", None, "main"),
            ("default", "main", "main"),
            ("default", "default", "default"),
            ("MCU", "MCU", "MCU"),
        ],
    )
    def test_module_names(self, module: str, asked: str | None, label: str) -> None:
        assert eztcloud.module_label(module, asked) == label


class TestTopics:
    @pytest.mark.parametrize(
        ("topic", "reply"),
        [
            ("attributes/tok123", "command_send/tok123"),
            ("event_report/tok123", "command_send/tok123"),
            ("command_reply/tok123", "command_send/tok123"),
            ("gateway_attributes/tok123", "gateway_command_send/tok123"),
            ("gateway_event_report/dev&a1pk", "gateway_command_send/dev&a1pk"),
            ("gateway_command_reply/tok123", "gateway_command_send/tok123"),
        ],
    )
    def test_routes(self, topic: str, reply: str) -> None:
        where = route(topic)
        assert where is not None
        assert (where.family, where.topic_id) == ("eztcloud", topic.partition("/")[2])
        assert where.reply_topic == reply

    @pytest.mark.parametrize("topic", ["command_send/tok123", "attributes", "attributes/a/b", "telemetry/tok123"])
    def test_not_routed(self, topic: str) -> None:
        assert route(topic) is None

    def test_the_username_is_the_login(self) -> None:
        assert TOKEN_DEVICE.username == "tok123"
        assert KEY_DEVICE.username == "dev2&a1pk"

    @pytest.mark.parametrize("kind", sorted(eztcloud.PARSERS))
    def test_a_device_publishes_on_its_own_username_only(self, kind: str) -> None:
        assert may_publish(TOKEN_DEVICE, f"{kind}/tok123")
        assert may_publish(KEY_DEVICE, f"{kind}/dev2&a1pk")
        assert not may_publish(KEY_DEVICE, f"{kind}/tok456")  # its token is not the username it logged in with
        assert not may_publish(TOKEN_DEVICE, f"{kind}/other")
        assert not may_publish(TOKEN_DEVICE, f"{kind}/+")

    @pytest.mark.parametrize("kind", ["command_send", "gateway_command_send"])
    def test_a_device_subscribes_to_its_own_commands_only(self, kind: str) -> None:
        assert may_subscribe(TOKEN_DEVICE, f"{kind}/tok123")
        assert may_subscribe(KEY_DEVICE, f"{kind}/dev2&a1pk")
        for topic in (f"{kind}/other", f"{kind}/tok123/x", f"{kind}/dev2&a1pk"):
            assert not may_subscribe(TOKEN_DEVICE, topic), topic
        # Wildcards that cover its own topic are granted; delivery is checked message by message.
        for topic in (f"{kind}/+", f"{kind}/#", "+/tok123"):
            assert may_subscribe(TOKEN_DEVICE, topic), topic
        assert may_read(TOKEN_DEVICE, f"{kind}/tok123")
        assert not may_read(TOKEN_DEVICE, f"{kind}/other")
        assert not may_publish(TOKEN_DEVICE, f"{kind}/tok123")  # commands come from the platform only

    def test_route_equality(self) -> None:
        assert route("attributes/u") == Route("eztcloud", "attributes", "u")


def device(
    login_style: str = "token",
    command_topic: str | None = None,
    gateway_id: int | None = None,
    address: str | None = None,
) -> Recipient:
    """A device named `dev` with token `tok`, of product `a1pk` (Alibaba notices), as the relay claims it."""
    keyring = sealing.keyring()
    return Recipient(
        name="dev",
        login_style=login_style,
        access_token_sealed=keyring.seal("tok"),
        command_topic_sealed=None if command_topic is None else keyring.seal(command_topic),
        gateway_id=gateway_id,
        address=address,
        product_key="a1pk",
        notice_style="alibaba",
        connection_epoch=1,
    )


class TestWhereNoticesGo:
    def test_a_token_device_on_its_upgrade_topic(self) -> None:
        topic, payload = addressed(device(), notice())
        assert topic == "/ota/device/upgrade/tok"
        assert json.loads(payload)["code"] == 200

    def test_a_product_key_device_on_its_upgrade_topic(self) -> None:
        topic, payload = addressed(device(login_style="product_key"), notice())
        assert topic == "/ota/device/upgrade/a1pk/dev"
        assert json.loads(payload)["code"] == "1000"

    def test_an_eztcloud_device_on_command_send(self) -> None:
        topic, payload = addressed(device(command_topic="command_send/dev&a1pk"), notice())
        assert topic == "command_send/dev&a1pk"
        assert json.loads(payload) == eztcloud.command(notice(), "main", 98310)

    def test_a_sub_device_through_its_gateway(self) -> None:
        sub = device(gateway_id=1, address="DEVICE1", command_topic="gateway_command_send/gw-token")
        topic, payload = addressed(sub, notice(module="MCU"))
        assert topic == "gateway_command_send/gw-token"
        assert json.loads(payload) == {
            "device": "DEVICE1",
            "command": eztcloud.command(notice(module="MCU"), "MCU", 98310),
        }


class TestLatestForEveryone:
    CANDIDATES = [
        Candidate(1, "1.0.1"),
        Candidate(2, "v1.2"),
        Candidate(3, "0.9"),
        Candidate(4, "junk"),
        Candidate(5, "1.1.0"),
    ]

    def test_newest_first_and_only_above(self) -> None:
        assert [c.package_id for c in upgrades_above("1.0.0", self.CANDIDATES)] == [2, 5, 1]
        assert [c.package_id for c in upgrades_above("v1.1", self.CANDIDATES)] == [2]

    def test_nothing_above_the_newest(self) -> None:
        assert upgrades_above("1.2.0", self.CANDIDATES) == []

    @pytest.mark.parametrize("reported", [None, "", "latest", "1.x"])
    def test_an_unknown_version_gets_nothing(self, reported: str | None) -> None:
        assert upgrades_above(reported, self.CANDIDATES) == []

    def test_pre_releases_sort_before_their_release(self) -> None:
        candidates = [Candidate(1, "2.0.0-rc.1"), Candidate(2, "2.0.0")]
        assert [c.package_id for c in upgrades_above("2.0.0-beta", candidates)] == [2, 1]
