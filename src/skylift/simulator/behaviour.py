"""What each simulated device is told to do, and what a campaign should then say about it (pure)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from skylift.simulator.protocol import Dialect

# The seeds' failure steps and the failure reasons Skylift records for them.
STEP_REASONS: dict[int, str] = {
    -1: "upgrade failed",
    -2: "download failed",
    -3: "verification failed",
    -4: "flashing failed",
}
OFFLINE_REASON = "offline"


class Fate(StrEnum):
    SUCCEED = "succeed"
    FAIL = "fail"  # reports a failure step at the matching point of its upgrade
    OFFLINE = "offline"  # never connects
    REBOOT = "reboot"  # restarts once after its notice, before downloading, then upgrades


@dataclass(frozen=True)
class Behaviour:
    fate: Fate = Fate.SUCCEED
    fail_step: int | None = None  # -1..-4 when the fate is FAIL

    def __post_init__(self) -> None:
        if (self.fate is Fate.FAIL) != (self.fail_step in STEP_REASONS):
            raise ValueError("a failing device needs a failure step (-1..-4), and only a failing one")

    @property
    def label(self) -> str:
        return f"fail {self.fail_step}" if self.fate is Fate.FAIL else self.fate.value


@dataclass(frozen=True)
class Rates:
    """Shares of the fleet, each 0..1; whatever they leave succeeds."""

    fail: float = 0.0
    offline: float = 0.0
    reboot: float = 0.0

    def __post_init__(self) -> None:
        for name, value in (("fail", self.fail), ("offline", self.offline), ("reboot", self.reboot)):
            if not 0 <= value <= 1:
                raise ValueError(f"the {name} rate must be between 0 and 1")
        if self.fail + self.offline + self.reboot > 1:
            raise ValueError("the fail, offline and reboot rates add up to more than 1")


def share(count: int, rate: float) -> int:
    """How many of `count` devices a rate picks: rounded half up, so 5 % of 200 is exactly 10."""
    return int(count * rate + 0.5)


def assign(count: int, rates: Rates, rng: random.Random) -> list[Behaviour]:
    """Behaviours for `count` devices: exact shares of each fate at positions and failure steps drawn from `rng`."""
    offline = share(count, rates.offline)
    failing = min(share(count, rates.fail), count - offline)
    rebooting = min(share(count, rates.reboot), count - offline - failing)
    fates = [Fate.OFFLINE] * offline + [Fate.FAIL] * failing + [Fate.REBOOT] * rebooting
    fates += [Fate.SUCCEED] * (count - len(fates))
    rng.shuffle(fates)
    steps = sorted(STEP_REASONS)
    return [Behaviour(fate, rng.choice(steps) if fate is Fate.FAIL else None) for fate in fates]


def dialects(count: int, dialect: str) -> list[Dialect]:
    """One dialect for all, or `mixed`: token, product-key and EZtCloud devices in turn."""
    if dialect == "mixed":
        order = list(Dialect)
        return [order[i % len(order)] for i in range(count)]
    return [Dialect(dialect)] * count


@dataclass(frozen=True)
class CampaignTerms:
    """What of a campaign decides how its devices should end."""

    offline: str = "fail"  # or "deliver_on_connect"
    retry_count: int = 0


@dataclass(frozen=True)
class Outcome:
    state: str
    failure_reason: str | None = None

    def __str__(self) -> str:
        return self.state if self.failure_reason is None else f"{self.state} ({self.failure_reason})"


def expected(behaviour: Behaviour, terms: CampaignTerms, on_target: bool) -> Outcome:
    """How a device should end in a campaign: a failing device fails with its step's reason (only its first
    attempt fails, so automatic retries make it succeed), an offline one fails `offline` or stays pending
    for its connection, a device already on the target is skipped, every other one succeeds."""
    if behaviour.fate is Fate.OFFLINE:
        return Outcome("failed", OFFLINE_REASON) if terms.offline == "fail" else Outcome("pending")
    if on_target:
        return Outcome("skipped")
    if behaviour.fate is Fate.FAIL and terms.retry_count == 0:
        assert behaviour.fail_step is not None
        return Outcome("failed", STEP_REASONS[behaviour.fail_step])
    return Outcome("succeeded")
