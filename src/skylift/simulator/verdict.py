"""How each simulated device ended in a campaign, against how its behaviour says it should have (pure)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from skylift.kit.versions import InvalidVersion, same_version
from skylift.simulator.behaviour import CampaignTerms, Outcome, expected
from skylift.simulator.fleet import DeviceSpec

FINAL_CAMPAIGN_STATES = frozenset({"finished", "canceled", "aborted"})
FINAL_DEVICE_STATES = frozenset({"succeeded", "failed", "canceled", "skipped"})
NOT_IN_CAMPAIGN = Outcome("not in the campaign")


@dataclass(frozen=True)
class Verdict:
    spec: DeviceSpec
    expected: Outcome
    actual: Outcome

    @property
    def ok(self) -> bool:
        return self.expected == self.actual


def terms_of(campaign: dict[str, Any]) -> CampaignTerms:
    return CampaignTerms(offline=str(campaign.get("offline", "fail")), retry_count=int(campaign.get("retry_count", 0)))


def on_target(boot_version: str, campaign: dict[str, Any]) -> bool:
    try:
        return same_version(boot_version, str(campaign["version"]))
    except InvalidVersion:
        return False


def judge(
    specs: list[DeviceSpec], rows: list[dict[str, Any]], campaign: dict[str, Any], boot_version: str
) -> list[Verdict]:
    """One verdict per device: its expected outcome and what `GET /campaigns/{id}/devices` says."""
    by_id = {int(row["device_id"]): row for row in rows}
    terms, already = terms_of(campaign), on_target(boot_version, campaign)
    verdicts = []
    for spec in specs:
        row = by_id.get(spec.credentials.device_id) if spec.credentials.device_id is not None else None
        actual = NOT_IN_CAMPAIGN if row is None else Outcome(str(row["state"]), row.get("failure_reason"))
        verdicts.append(Verdict(spec, expected(spec.behaviour, terms, already), actual))
    return verdicts


def settled(campaign: dict[str, Any], verdicts: list[Verdict]) -> bool:
    """Nothing more is coming: the campaign ended or waits for an operator, or every device that can end
    has ended and the rest wait for a connection that never comes."""
    if campaign["state"] in FINAL_CAMPAIGN_STATES or campaign["state"] == "paused":
        return True
    for verdict in verdicts:
        if verdict.expected.state == "pending":
            if verdict.actual.state != "pending":
                return False
        elif verdict.actual.state not in FINAL_DEVICE_STATES:
            return False
    return True


def outcome_counts(outcomes: list[Outcome]) -> tuple[dict[str, int], dict[str, int]]:
    """(devices per state, failed devices per failure reason)."""
    states = Counter(o.state for o in outcomes)
    reasons = Counter(o.failure_reason for o in outcomes if o.state == "failed" and o.failure_reason)
    return dict(sorted(states.items())), dict(sorted(reasons.items()))


@dataclass(frozen=True)
class Judgement:
    verdicts: list[Verdict]
    expected_counts: dict[str, int]
    expected_reasons: dict[str, int]
    actual_counts: dict[str, int]
    actual_reasons: dict[str, int]

    @property
    def unexpected(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.ok]

    def to_json(self) -> dict[str, Any]:
        return {
            "expected": {"counts": self.expected_counts, "failure_reasons": self.expected_reasons},
            "actual": {"counts": self.actual_counts, "failure_reasons": self.actual_reasons},
            "unexpected": [
                {
                    "device_id": v.spec.credentials.device_id,
                    "name": v.spec.credentials.name,
                    "dialect": v.spec.dialect.value,
                    "behaviour": v.spec.behaviour.label,
                    "expected": str(v.expected),
                    "actual": str(v.actual),
                }
                for v in self.unexpected
            ],
        }


def judgement(verdicts: list[Verdict]) -> Judgement:
    expected_counts, expected_reasons = outcome_counts([v.expected for v in verdicts])
    actual_counts, actual_reasons = outcome_counts([v.actual for v in verdicts])
    return Judgement(verdicts, expected_counts, expected_reasons, actual_counts, actual_reasons)
