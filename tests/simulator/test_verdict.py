"""Judging a simulated fleet against the campaign's per-device results."""

from __future__ import annotations

from typing import Any

from skylift.simulator.behaviour import Behaviour, Fate, Outcome
from skylift.simulator.fleet import DeviceSpec
from skylift.simulator.protocol import Credentials, Dialect
from skylift.simulator.verdict import NOT_IN_CAMPAIGN, judge, judgement, outcome_counts, settled

CAMPAIGN: dict[str, Any] = {"id": 1, "state": "running", "version": "2.0.0", "offline": "fail", "retry_count": 0}


def spec(index: int, behaviour: Behaviour) -> DeviceSpec:
    credentials = Credentials(name=f"d{index}", product_key="pk", access_token=f"t{index}", device_id=index + 100)
    return DeviceSpec(index, credentials, Dialect.TOKEN, behaviour)


def row(index: int, state: str, reason: str | None = None) -> dict[str, Any]:
    return {"device_id": index + 100, "state": state, "failure_reason": reason}


FLEET = [spec(0, Behaviour()), spec(1, Behaviour(Fate.FAIL, -3)), spec(2, Behaviour(Fate.OFFLINE))]


class TestJudge:
    def test_every_device_as_expected(self) -> None:
        rows = [row(0, "succeeded"), row(1, "failed", "verification failed"), row(2, "failed", "offline")]
        verdicts = judge(FLEET, rows, CAMPAIGN, "1.0.0")
        assert all(v.ok for v in verdicts)
        assert settled(CAMPAIGN, verdicts)
        result = judgement(verdicts)
        assert result.unexpected == []
        assert result.expected_counts == result.actual_counts == {"failed": 2, "succeeded": 1}
        assert result.expected_reasons == {"offline": 1, "verification failed": 1}

    def test_a_device_that_failed_otherwise_is_unexpected(self) -> None:
        rows = [row(0, "failed", "timeout"), row(1, "failed", "download failed")]
        result = judgement(judge(FLEET, rows, CAMPAIGN, "1.0.0"))
        assert [(v.spec.index, str(v.actual)) for v in result.unexpected] == [
            (0, "failed (timeout)"),
            (1, "failed (download failed)"),
            (2, "not in the campaign"),
        ]
        assert result.to_json()["unexpected"][0] == {
            "device_id": 100,
            "name": "d0",
            "dialect": "token",
            "behaviour": "succeed",
            "expected": "succeeded",
            "actual": "failed (timeout)",
        }

    def test_devices_already_on_the_target_are_skipped(self) -> None:
        verdicts = judge(FLEET[:1], [row(0, "skipped")], CAMPAIGN, "v2.0")
        assert verdicts[0].expected == Outcome("skipped")
        assert verdicts[0].ok


class TestSettled:
    def test_not_while_a_device_is_under_way(self) -> None:
        rows = [row(0, "downloading"), row(1, "failed", "verification failed"), row(2, "failed", "offline")]
        assert not settled(CAMPAIGN, judge(FLEET, rows, CAMPAIGN, "1.0.0"))

    def test_offline_devices_waiting_for_their_connection_end_nothing(self) -> None:
        campaign = {**CAMPAIGN, "offline": "deliver_on_connect"}
        rows = [row(0, "succeeded"), row(1, "failed", "verification failed"), row(2, "pending")]
        verdicts = judge(FLEET, rows, campaign, "1.0.0")
        assert all(v.ok for v in verdicts)
        assert settled(campaign, verdicts)

    def test_a_campaign_that_ended_or_waits_for_an_operator(self) -> None:
        verdicts = judge(FLEET, [row(0, "pending")], CAMPAIGN, "1.0.0")
        for state in ("finished", "canceled", "aborted", "paused"):
            assert settled({**CAMPAIGN, "state": state}, verdicts)
        assert not settled(CAMPAIGN, verdicts)


def test_counts_by_state_and_reason() -> None:
    outcomes = [Outcome("failed", "offline"), Outcome("succeeded"), Outcome("failed", "offline"), NOT_IN_CAMPAIGN]
    assert outcome_counts(outcomes) == ({"failed": 2, "not in the campaign": 1, "succeeded": 1}, {"offline": 2})
