"""The topic rules Skylift hands Mosquitto's plugin say exactly what `may_publish`, `may_read` and
`may_subscribe` say. The rules are read here as the plugin reads them (skylift_rules.c)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from skylift.devices.identity import DeviceIdentity, LoginStyle
from skylift.devices.topics import (
    EZTCLOUD_KINDS,
    OTA_KINDS,
    SYS_METHODS,
    broker_rules,
    may_publish,
    may_read,
    may_subscribe,
    topic_matches,
)
from skylift.devices.topics import _matches_below as matches_below  # what skylift_rules.c's matches_below ports

DEVICES = [
    DeviceIdentity(1, 1, "a1Key", "dev-1", "tok1", LoginStyle.TOKEN),
    DeviceIdentity(2, 1, "a1Key", "dev-2", "tok2", LoginStyle.PRODUCT_KEY),
]


def rule_matches(rule: Any, topic: str) -> bool:
    if isinstance(rule, str):
        return rule == topic
    prefix = rule["prefix"]
    if not topic.startswith(prefix) or len(topic) == len(prefix):
        return False
    if "without_suffix" in rule:
        return not topic.endswith(rule["without_suffix"])
    return "suffix" not in rule or topic.endswith(rule["suffix"])


def plugin_may_subscribe(rules: dict[str, Any], topic_filter: str) -> bool:
    wildcard = "+" in topic_filter or "#" in topic_filter
    for rule in rules["own"]:
        if not wildcard:
            if rule_matches(rule, topic_filter):
                return True
        elif isinstance(rule, str):
            if topic_matches(topic_filter, rule):
                return True
        elif matches_below(topic_filter, rule["prefix"].rstrip("/")):
            return True
    return False


def topics_around(identity: DeviceIdentity, other: DeviceIdentity) -> list[str]:
    """Every topic shape a device meets, its own and another's, up and down."""
    topics = []
    for who in (identity, other):
        for kind in sorted(OTA_KINDS) + ["bogus"]:
            topics += [f"/ota/device/{kind}/{topic_id}" for topic_id in who.topic_ids]
        topics += [f"{kind}/{who.username}" for kind in sorted(EZTCLOUD_KINDS)]
        for method in sorted(SYS_METHODS) + ["thing/event/property/post"]:
            topics += [f"/sys/{who.key_path}/{method}", f"/sys/{who.key_path}/{method}_reply"]
        topics += [f"/sys/{who.key_path}/", f"/sys/{who.key_path}"]
    return topics


def test_publish_and_read_agree_on_every_topic_shape() -> None:
    for identity, other in (DEVICES, DEVICES[::-1]):
        rules = broker_rules(identity)
        for topic in topics_around(identity, other):
            if topic.endswith("/"):
                continue  # an empty last level: the plugin refuses what the broker-side check allows
            assert any(rule_matches(r, topic) for r in rules["publish"]) == may_publish(identity, topic), topic
            assert any(rule_matches(r, topic) for r in rules["read"]) == may_read(identity, topic), topic


FILTERS = [
    "#",
    "+/#",
    "/ota/#",
    "/ota/device/+/+",
    "/ota/device/upgrade/+/+",
    "/ota/device/+/tok1",
    "/ota/device/+/tok2",
    "/sys/#",
    "/sys/a1Key/dev-1/#",
    "/sys/a1Key/+/thing/#",
    "/sys/+/dev-2/thing/ota/firmware/get_reply",
    "/sys/a1Key/dev-1",
    "command_send/+",
    "+/tok1",
    "$SYS/#",
]


def test_subscriptions_agree_on_the_filters_sdks_use_and_others() -> None:
    for identity, other in (DEVICES, DEVICES[::-1]):
        rules = broker_rules(identity)
        for topic_filter in FILTERS + topics_around(identity, other):
            if topic_filter.endswith("/"):
                continue
            assert plugin_may_subscribe(rules, topic_filter) == may_subscribe(identity, topic_filter), topic_filter


LEVEL = st.sampled_from(["+", "#", "ota", "device", "upgrade", "tok1", "tok2", "a1Key", "dev-1", "sys", "x", ""])


@given(st.lists(LEVEL, min_size=1, max_size=7), st.sampled_from(DEVICES))
def test_subscriptions_agree_on_any_filter(levels: list[str], identity: DeviceIdentity) -> None:
    topic_filter = "/".join(levels)
    if "#" in levels[:-1] or topic_filter.endswith("/"):
        return  # not a valid filter (the broker refuses it before any check), or an empty last level
    assert plugin_may_subscribe(broker_rules(identity), topic_filter) == may_subscribe(identity, topic_filter)
