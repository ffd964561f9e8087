"""Routing device topics to message kinds, topic filters, and what a device may publish, subscribe and read."""

from __future__ import annotations

import pytest

from skylift.devices import topics
from skylift.devices.identity import DeviceIdentity, LoginStyle
from skylift.devices.topics import (
    Route,
    auto_subscriptions,
    may_publish,
    may_read,
    may_subscribe,
    route,
    topic_matches,
)

ME = DeviceIdentity(1, 1, "a1pk", "dev", "tok123", LoginStyle.PRODUCT_KEY)
TOKEN_ME = DeviceIdentity(1, 1, "a1pk", "dev", "tok123", LoginStyle.TOKEN)


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
        [
            "/ota/device/download_reply/other",
            "/sys/a1pk/x/thing/file/download_reply",
            "/ota/device/download_reply/a1pk/other",
            "/sys/a1pk/dev",
            "/sys/a1pk/dev/",
        ],
    )
    def test_but_not_to_others(self, topic: str) -> None:
        assert not may_subscribe(ME, topic)
        assert not may_read(ME, topic)


class TestTopicMatches:
    @pytest.mark.parametrize(
        ("topic_filter", "topic"),
        [
            ("a/b", "a/b"),
            ("a/+", "a/b"),
            ("+/+", "a/b"),
            ("a/#", "a/b/c"),
            ("a/#", "a"),  # `#` also matches the parent level
            ("#", "a/b"),
            ("/ota/device/upgrade/+/+", "/ota/device/upgrade/a1pk/dev"),
            ("/ota/device/+/a1pk/dev", "/ota/device/download_reply/a1pk/dev"),
            ("/sys/+/+/thing/ota/firmware/get_reply", "/sys/a1pk/dev/thing/ota/firmware/get_reply"),
            ("+/b", "x/b"),
        ],
    )
    def test_matching(self, topic_filter: str, topic: str) -> None:
        assert topic_matches(topic_filter, topic)

    @pytest.mark.parametrize(
        ("topic_filter", "topic"),
        [
            ("a/b", "a/c"),
            ("a/+", "a/b/c"),
            ("a/+", "a"),
            ("+", "/a"),  # the empty first level is a level of its own
            ("/ota/device/upgrade/+", "/ota/device/upgrade/a1pk/dev"),
            ("#", "$SYS/broker"),
            ("+/broker", "$SYS/broker"),
        ],
    )
    def test_not_matching(self, topic_filter: str, topic: str) -> None:
        assert not topic_matches(topic_filter, topic)


class TestReading:
    @pytest.mark.parametrize(
        "topic",
        [
            "/ota/device/upgrade/a1pk/dev",
            "/ota/device/upgrade/tok123",  # both forms of its id
            "/ota/device/download_reply/a1pk/dev",
            "/sys/a1pk/dev/thing/ota/firmware/get_reply",
            "/sys/a1pk/dev/thing/file/download_reply",
            "command_send/dev&a1pk",
            "gateway_command_send/dev&a1pk",
        ],
    )
    def test_what_the_platform_sends_it(self, topic: str) -> None:
        assert may_read(ME, topic)
        assert may_subscribe(ME, topic)

    @pytest.mark.parametrize(
        "topic",
        [
            "/ota/device/request/a1pk/dev",  # Alibaba's C SDK 3.x subscribes here
            "/ota/device/inform/tok123",
            "/ota/device/progress/a1pk/dev",
            "/ota/device/download/a1pk/dev",
            "/sys/a1pk/dev/thing/ota/firmware/get",
            "/sys/a1pk/dev/thing/event/property/post",
            "attributes/dev&a1pk",
            "event_report/dev&a1pk",
        ],
    )
    def test_its_uplink_topics_may_be_subscribed_but_are_never_echoed(self, topic: str) -> None:
        assert may_subscribe(ME, topic)
        assert not may_read(ME, topic)

    @pytest.mark.parametrize(
        "topic",
        [
            "/ota/device/upgrade/a1pk/other",
            "/ota/device/upgrade/tok999",
            "/ota/device/unknown/a1pk/dev",
            "/sys/a1pk/other/thing/ota/firmware/get_reply",
            "/sys/a1pk/devx/thing/file/download_reply",
            "command_send/tok123",  # EZtCloud topics carry the username it logged in with
            "command_send/other&a1pk",
            "anything/else",
            "",
        ],
    )
    def test_nothing_of_anyone_else(self, topic: str) -> None:
        assert not may_read(ME, topic)
        assert not may_subscribe(ME, topic)

    def test_a_token_login_reads_its_token_username(self) -> None:
        assert may_read(TOKEN_ME, "command_send/tok123")
        assert not may_read(TOKEN_ME, "command_send/dev&a1pk")


class TestWildcardSubscriptions:
    @pytest.mark.parametrize(
        "topic_filter",
        [
            "#",
            "+/+",  # command_send/{username}
            "/ota/device/upgrade/+/+",
            "/ota/device/upgrade/+",  # its token form
            "/ota/device/+/a1pk/dev",
            "/ota/device/#",
            "/sys/+/+/thing/ota/firmware/get_reply",
            "/sys/a1pk/dev/#",
            "/sys/a1pk/dev/+",
            "/sys/#",
            "/sys/a1pk/+/thing/#",
            "command_send/+",
        ],
    )
    def test_granted_when_it_can_match_one_of_its_topics(self, topic_filter: str) -> None:
        assert may_subscribe(ME, topic_filter)

    @pytest.mark.parametrize(
        "topic_filter",
        [
            "/ota/device/upgrade/a1pk/other/#",
            "/ota/device/upgrade/+/other",
            "/ota/device/upgrade/+/+/+",
            "/sys/a1pk/other/#",
            "/sys/+/other/thing/ota/firmware/get_reply",
            "/sys/+/+",
            "other/+",
            "+/+/+",
            "$SYS/#",
        ],
    )
    def test_refused_when_it_cannot(self, topic_filter: str) -> None:
        assert not may_subscribe(ME, topic_filter)


class TestAutoSubscriptions:
    def test_the_downlink_topics_in_the_product_key_form(self) -> None:
        assert set(auto_subscriptions(ME)) == {
            "/ota/device/upgrade/a1pk/dev",
            "/sys/a1pk/dev/thing/ota/firmware/get_reply",
            "/ota/device/download_reply/a1pk/dev",
            "/sys/a1pk/dev/thing/file/download_reply",
        }

    def test_each_one_is_readable(self) -> None:
        assert all(may_read(ME, topic) and may_subscribe(ME, topic) for topic in auto_subscriptions(ME))


class TestRedact:
    @pytest.mark.parametrize(
        ("line", "secret", "logged"),
        [
            ("not on /ota/device/progress/AbC-12_x; dropped", "AbC-12_x", "/ota/device/progress/***; dropped"),
            ("malformed report on attributes/tok123: not JSON", "tok123", "attributes/***: not JSON"),
            ("sent on gateway_command_send/tok9", "tok9", "gateway_command_send/***"),
            ("filter '/ota/device/upgrade/tok8' refused", "tok8", "'/ota/device/upgrade/***'"),
        ],
    )
    def test_token_topics_lose_their_token(self, line: str, secret: str, logged: str) -> None:
        assert logged in topics.redact(line)
        assert secret not in topics.redact(line)

    @pytest.mark.parametrize(
        "line", ["/ota/device/upgrade/a1pk/dev-1", "/sys/a1pk/dev-1/thing/ota/firmware/get", "/ota/device/upgrade/+/+"]
    )
    def test_product_key_topics_and_filters_are_kept(self, line: str) -> None:
        assert topics.redact(line) == line
