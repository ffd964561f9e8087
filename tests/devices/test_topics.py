"""Routing device topics to message kinds, and the ACL for the new topics."""

from __future__ import annotations

import pytest

from skylift.devices.identity import DeviceIdentity, LoginStyle
from skylift.devices.topics import Route, may_publish, may_subscribe, route

ME = DeviceIdentity(1, 1, "a1pk", "dev", "tok123", LoginStyle.PRODUCT_KEY)


class TestRoute:
    @pytest.mark.parametrize(
        ("topic", "expected", "reply"),
        [
            ("/ota/device/inform/tok123", Route("ota", "inform", "tok123"), "/ota/device/upgrade/tok123"),
            ("/ota/device/request/a1pk/dev", Route("ota", "request", "a1pk/dev"), "/ota/device/upgrade/a1pk/dev"),
            (
                "/ota/device/download/tok123",
                Route("ota", "download", "tok123"),
                "/ota/device/download_reply/tok123",
            ),
            (
                "/sys/a1pk/dev/thing/ota/firmware/get",
                Route("sys", "firmware_get", "a1pk/dev", "thing/ota/firmware/get"),
                "/sys/a1pk/dev/thing/ota/firmware/get_reply",
            ),
            (
                "/sys/a1pk/dev/thing/file/download",
                Route("sys", "download", "a1pk/dev", "thing/file/download"),
                "/sys/a1pk/dev/thing/file/download_reply",
            ),
        ],
    )
    def test_handled_topics(self, topic: str, expected: Route, reply: str) -> None:
        assert route(topic) == expected
        assert expected.reply_topic == reply

    @pytest.mark.parametrize(
        "topic",
        [
            "/sys/a1pk/dev/thing/event/property/post",
            "/sys/a1pk/thing/file/download",
            "/sys//dev/thing/file/download",
            "attributes",
            "/ota/device/",
            "/ota/device/inform",
        ],
    )
    def test_other_topics(self, topic: str) -> None:
        assert route(topic) is None


class TestAcl:
    @pytest.mark.parametrize(
        "topic",
        [
            "/ota/device/request/tok123",
            "/ota/device/download/a1pk/dev",
            "/sys/a1pk/dev/thing/ota/firmware/get",
            "/sys/a1pk/dev/thing/file/download",
        ],
    )
    def test_a_device_publishes_its_requests(self, topic: str) -> None:
        assert may_publish(ME, topic)

    @pytest.mark.parametrize(
        "topic",
        [
            "/ota/device/download/other",
            "/sys/a1pk/other/thing/file/download",
            "/sys/a1pk/dev/thing/file/download_reply",
            "/ota/device/download_reply/tok123",
        ],
    )
    def test_but_not_others_or_replies(self, topic: str) -> None:
        assert not may_publish(ME, topic)

    @pytest.mark.parametrize(
        "topic",
        [
            "/ota/device/download_reply/tok123",
            "/ota/device/download_reply/a1pk/dev",
            "/sys/a1pk/dev/thing/file/download_reply",
            "/sys/a1pk/dev/thing/ota/firmware/get_reply",
        ],
    )
    def test_a_device_subscribes_to_its_replies(self, topic: str) -> None:
        assert may_subscribe(ME, topic)

    @pytest.mark.parametrize(
        "topic",
        ["/ota/device/download_reply/other", "/ota/device/download_reply/+", "/sys/a1pk/x/thing/file/download_reply"],
    )
    def test_but_not_to_others(self, topic: str) -> None:
        assert not may_subscribe(ME, topic)
