"""Behaviours drawn from rates with a seeded RNG, and the campaign outcome each one should give."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skylift.simulator.behaviour import (
    STEP_REASONS,
    Behaviour,
    CampaignTerms,
    Fate,
    Outcome,
    Rates,
    assign,
    dialects,
    expected,
    share,
)
from skylift.simulator.protocol import Dialect


class TestAssign:
    def test_shares_are_exact(self) -> None:
        behaviours = assign(200, Rates(fail=0.05, offline=0.1, reboot=0.02), random.Random(1))
        fates = Counter(b.fate for b in behaviours)
        assert fates == {Fate.FAIL: 10, Fate.OFFLINE: 20, Fate.REBOOT: 4, Fate.SUCCEED: 166}

    def test_the_same_seed_gives_the_same_fleet(self) -> None:
        rates = Rates(fail=0.2, offline=0.1, reboot=0.1)
        assert assign(50, rates, random.Random(7)) == assign(50, rates, random.Random(7))
        assert assign(50, rates, random.Random(7)) != assign(50, rates, random.Random(8))

    def test_failing_devices_draw_each_failure_step(self) -> None:
        steps = Counter(b.fail_step for b in assign(400, Rates(fail=1.0), random.Random(3)))
        assert set(steps) == set(STEP_REASONS)

    def test_only_failing_devices_have_a_step(self) -> None:
        for behaviour in assign(100, Rates(fail=0.3, offline=0.3), random.Random(5)):
            assert (behaviour.fail_step is not None) == (behaviour.fate is Fate.FAIL)

    @given(
        count=st.integers(min_value=0, max_value=500),
        fail=st.floats(min_value=0, max_value=0.5),
        offline=st.floats(min_value=0, max_value=0.25),
        reboot=st.floats(min_value=0, max_value=0.25),
    )
    def test_every_device_gets_one_behaviour(self, count: int, fail: float, offline: float, reboot: float) -> None:
        behaviours = assign(count, Rates(fail=fail, offline=offline, reboot=reboot), random.Random(0))
        assert len(behaviours) == count
        fates = Counter(b.fate for b in behaviours)
        assert fates[Fate.OFFLINE] == share(count, offline)

    def test_rounding_is_half_up(self) -> None:
        assert [share(10, 0.05), share(10, 0.04), share(200, 0.05), share(0, 0.5)] == [1, 0, 10, 0]

    @pytest.mark.parametrize("rates", [{"fail": 1.5}, {"offline": -0.1}, {"fail": 0.6, "offline": 0.3, "reboot": 0.2}])
    def test_impossible_rates_are_refused(self, rates: dict[str, float]) -> None:
        with pytest.raises(ValueError, match="rate"):
            Rates(**rates)

    def test_a_failure_needs_a_step_of_the_seeds(self) -> None:
        with pytest.raises(ValueError, match="failure step"):
            Behaviour(Fate.FAIL, -5)
        with pytest.raises(ValueError, match="failure step"):
            Behaviour(Fate.SUCCEED, -1)


class TestDialects:
    def test_mixed_takes_each_family_in_turn(self) -> None:
        assert dialects(4, "mixed") == [Dialect.TOKEN, Dialect.PRODUCT_KEY, Dialect.EZTCLOUD, Dialect.TOKEN]

    def test_one_family(self) -> None:
        assert dialects(2, "product-key") == [Dialect.PRODUCT_KEY, Dialect.PRODUCT_KEY]


class TestExpected:
    @pytest.mark.parametrize(("step", "reason"), sorted(STEP_REASONS.items()))
    def test_a_failing_device_fails_with_its_step_reason(self, step: int, reason: str) -> None:
        assert expected(Behaviour(Fate.FAIL, step), CampaignTerms(), on_target=False) == Outcome("failed", reason)

    def test_a_failing_device_succeeds_when_the_campaign_retries(self) -> None:
        outcome = expected(Behaviour(Fate.FAIL, -2), CampaignTerms(retry_count=1), on_target=False)
        assert outcome == Outcome("succeeded")

    def test_an_offline_device_fails_offline_or_waits_for_its_connection(self) -> None:
        offline = Behaviour(Fate.OFFLINE)
        assert expected(offline, CampaignTerms(), on_target=False) == Outcome("failed", "offline")
        assert expected(offline, CampaignTerms(offline="deliver_on_connect"), on_target=False) == Outcome("pending")

    @pytest.mark.parametrize("fate", [Fate.SUCCEED, Fate.REBOOT])
    def test_others_succeed(self, fate: Fate) -> None:
        assert expected(Behaviour(fate), CampaignTerms(), on_target=False) == Outcome("succeeded")

    def test_a_device_on_the_target_is_skipped(self) -> None:
        assert expected(Behaviour(Fate.FAIL, -1), CampaignTerms(), on_target=True) == Outcome("skipped")
