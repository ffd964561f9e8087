"""Spec for the device-in-campaign state machine (skylift.campaigns.state)."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skylift.campaigns.state import (
    FINAL,
    IN_PROGRESS,
    MAX_DESC_LENGTH,
    RETRYABLE,
    STEP_FAILURES,
    Attempt,
    Canceled,
    DeviceState,
    Downloaded,
    Event,
    FailureReason,
    Notified,
    Progressed,
    RetryRequested,
    TimedOut,
    Unreachable,
    VersionReported,
    is_valid_step,
    transition,
)

S = DeviceState
ALL_STATES = list(DeviceState)
NOT_PENDING = [s for s in DeviceState if s is not S.PENDING]
NOT_IN_PROGRESS = [s for s in DeviceState if s not in IN_PROGRESS]
NOT_FINAL = [s for s in DeviceState if s not in FINAL]
NOT_RETRYABLE = [s for s in DeviceState if s not in RETRYABLE]


def attempt_in(state: DeviceState, **fields: object) -> Attempt:
    """An attempt in `state` with fields consistent with having got there."""
    defaults: dict[str, object] = {"attempts": 1}
    if state is S.UPGRADING:
        defaults["awaiting_version_report"] = True
    if state is S.FAILED:
        defaults["failure_reason"] = FailureReason.DOWNLOAD_FAILED
    if state is S.SUCCEEDED:
        defaults["progress"] = 100
    return Attempt(state=state, **{**defaults, **fields})  # type: ignore[arg-type]


def run(attempt: Attempt, events: Iterable[Event]) -> Attempt:
    for event in events:
        attempt = transition(attempt, event)
    return attempt


class TestInitialAttempt:
    def test_defaults(self) -> None:
        attempt = Attempt()
        assert attempt.state is S.PENDING
        assert attempt.progress == 0
        assert attempt.step_desc == ""
        assert attempt.failure_reason is None
        assert attempt.attempts == 0
        assert attempt.awaiting_version_report is False

    def test_state_groups(self) -> None:
        assert IN_PROGRESS == {S.NOTIFIED, S.DOWNLOADING, S.UPGRADING}
        assert FINAL == {S.SUCCEEDED, S.FAILED, S.CANCELED, S.SKIPPED}
        assert RETRYABLE == {S.FAILED, S.CANCELED}


class TestNotify:
    def test_pending_becomes_notified(self) -> None:
        after = transition(Attempt(), Notified())
        assert after.state is S.NOTIFIED
        assert after.attempts == 1
        assert after.awaiting_version_report is False
        assert after.redeliver is False
        assert after.progress == 0
        assert after.step_desc == ""
        assert after.failure_reason is None

    def test_increments_attempts_of_a_retried_attempt(self) -> None:
        after = transition(Attempt(attempts=3), Notified())
        assert after.attempts == 4

    @pytest.mark.parametrize("state", NOT_PENDING)
    def test_only_from_pending(self, state: DeviceState) -> None:
        before = attempt_in(state)
        assert transition(before, Notified()) is before


class TestUnreachable:
    def test_pending_fails_offline(self) -> None:
        after = transition(Attempt(), Unreachable())
        assert after.state is S.FAILED
        assert after.failure_reason == "offline"
        assert after.failure_reason == FailureReason.OFFLINE
        assert after.attempts == 1
        assert after.awaiting_version_report is False

    def test_keeps_a_given_reason(self) -> None:
        after = transition(Attempt(attempts=2), Unreachable(reason="timeout"))
        assert after.state is S.FAILED
        assert after.failure_reason == "timeout"
        assert after.attempts == 3

    @pytest.mark.parametrize("state", NOT_PENDING)
    def test_only_from_pending(self, state: DeviceState) -> None:
        before = attempt_in(state)
        assert transition(before, Unreachable()) is before


class TestProgress:
    @pytest.mark.parametrize("state", [S.NOTIFIED, S.DOWNLOADING])
    @pytest.mark.parametrize("step", [0, 1, 42, 99])
    def test_moves_to_downloading(self, state: DeviceState, step: int) -> None:
        after = transition(attempt_in(state, progress=0), Progressed(step, "fetching"))
        assert after.state is S.DOWNLOADING
        assert after.progress == step
        assert after.step_desc == "fetching"
        assert after.awaiting_version_report is False
        assert after.failure_reason is None

    @pytest.mark.parametrize("step", [1, 50, 99])
    def test_stays_upgrading_when_upgrading(self, step: int) -> None:
        after = transition(attempt_in(S.UPGRADING, progress=10), Progressed(step, "flashing"))
        assert after.state is S.UPGRADING
        assert after.progress == step
        assert after.step_desc == "flashing"

    @pytest.mark.parametrize("state", sorted(IN_PROGRESS))
    def test_step_100_succeeds_for_a_token_device(self, state: DeviceState) -> None:
        after = transition(attempt_in(state, progress=70), Progressed(100, "done"))
        assert after.state is S.SUCCEEDED
        assert after.progress == 100
        assert after.step_desc == "done"
        assert after.awaiting_version_report is False
        assert after.failure_reason is None

    @pytest.mark.parametrize("state", sorted(IN_PROGRESS))
    def test_step_100_of_a_product_key_device_awaits_its_version_report(self, state: DeviceState) -> None:
        after = transition(attempt_in(state, progress=70), Progressed(100, "downloaded", done_at_100=False))
        assert after.state is S.UPGRADING
        assert after.progress == 100
        assert after.step_desc == "downloaded"
        assert after.awaiting_version_report is True
        assert after.failure_reason is None

    def test_a_product_key_device_failing_its_digest_check_after_100_fails(self) -> None:
        # Alibaba's C SDK reports 100 when the last byte arrives and -3 when the MD5 then does not match.
        attempt = run(Attempt(), [Notified(), Progressed(100, done_at_100=False), Progressed(-3, "md5 mismatch")])
        assert attempt.state is S.FAILED
        assert attempt.failure_reason == FailureReason.VERIFICATION_FAILED

    def test_a_product_key_device_succeeds_by_reporting_the_target(self) -> None:
        attempt = run(Attempt(), [Notified(), Progressed(100, done_at_100=False), VersionReported("1.1.0", "1.1.0")])
        assert attempt.state is S.SUCCEEDED
        assert attempt.progress == 100

    @pytest.mark.parametrize(
        ("step", "reason"),
        [
            (-1, "upgrade failed"),
            (-2, "download failed"),
            (-3, "verification failed"),
            (-4, "flashing failed"),
        ],
    )
    @pytest.mark.parametrize("state", sorted(IN_PROGRESS))
    def test_negative_steps_fail(self, state: DeviceState, step: int, reason: str) -> None:
        after = transition(attempt_in(state, progress=40), Progressed(step, "broken"))
        assert after.state is S.FAILED
        assert after.failure_reason == reason
        assert after.step_desc == "broken"
        assert after.progress == 40
        assert after.awaiting_version_report is False

    def test_step_failures_table(self) -> None:
        assert STEP_FAILURES == {
            -1: FailureReason.UPGRADE_FAILED,
            -2: FailureReason.DOWNLOAD_FAILED,
            -3: FailureReason.VERIFICATION_FAILED,
            -4: FailureReason.FLASHING_FAILED,
        }

    def test_desc_is_truncated(self) -> None:
        after = transition(attempt_in(S.DOWNLOADING), Progressed(10, "x" * 500))
        assert after.step_desc == "x" * MAX_DESC_LENGTH
        assert MAX_DESC_LENGTH == 128

    def test_desc_at_the_limit_is_kept(self) -> None:
        desc = "y" * MAX_DESC_LENGTH
        assert transition(attempt_in(S.DOWNLOADING), Progressed(10, desc)).step_desc == desc

    @pytest.mark.parametrize("step", [-1, 100])
    def test_desc_is_truncated_on_final_steps(self, step: int) -> None:
        after = transition(attempt_in(S.UPGRADING), Progressed(step, "z" * 200))
        assert after.step_desc == "z" * MAX_DESC_LENGTH

    @pytest.mark.parametrize("step", [-100, -5, 101, 1000])
    @pytest.mark.parametrize("state", sorted(IN_PROGRESS))
    def test_invalid_steps_are_ignored(self, state: DeviceState, step: int) -> None:
        before = attempt_in(state, progress=30)
        assert transition(before, Progressed(step, "?")) is before

    @pytest.mark.parametrize("state", NOT_IN_PROGRESS)
    @pytest.mark.parametrize("step", [-1, 0, 50, 100])
    def test_ignored_outside_progress_states(self, state: DeviceState, step: int) -> None:
        before = attempt_in(state)
        assert transition(before, Progressed(step, "late")) is before

    @pytest.mark.parametrize(
        ("step", "valid"),
        [(-5, False), (-4, True), (-1, True), (0, True), (1, True), (100, True), (101, False)],
    )
    def test_is_valid_step(self, step: int, valid: bool) -> None:
        assert is_valid_step(step) is valid


class TestDownloaded:
    @pytest.mark.parametrize("state", [S.NOTIFIED, S.DOWNLOADING])
    def test_moves_to_upgrading(self, state: DeviceState) -> None:
        before = attempt_in(state, progress=80, step_desc="fetching")
        after = transition(before, Downloaded())
        assert after.state is S.UPGRADING
        assert after.progress == 80
        assert after.step_desc == "fetching"
        assert after.attempts == before.attempts
        assert after.awaiting_version_report is True

    @pytest.mark.parametrize("state", [S.PENDING, S.UPGRADING, *sorted(FINAL)])
    def test_ignored_elsewhere(self, state: DeviceState) -> None:
        before = attempt_in(state)
        assert transition(before, Downloaded()) is before


class TestVersionReport:
    @pytest.mark.parametrize("state", sorted(IN_PROGRESS))
    @pytest.mark.parametrize(
        ("reported", "target"),
        [("1.1.0", "1.1.0"), ("v1.1", "1.1.0"), ("1.1.0+build.3", "V1.1"), ("xxxxxxxx", "xxxxxxxx")],
    )
    def test_target_version_succeeds(self, state: DeviceState, reported: str, target: str) -> None:
        after = transition(attempt_in(state, progress=20), VersionReported(reported, target))
        assert after.state is S.SUCCEEDED
        assert after.progress == 100
        assert after.awaiting_version_report is False
        assert after.failure_reason is None

    @pytest.mark.parametrize("state", [S.NOTIFIED, S.DOWNLOADING])
    def test_another_version_before_the_download_is_a_restart(self, state: DeviceState) -> None:
        # A device that reboots (or whose boot report crossed the notice) is not failed: its notice is due again.
        before = attempt_in(state, progress=40, step_desc="fetching")
        after = transition(before, VersionReported("1.0.0", "1.1.0"))
        assert after.state is S.NOTIFIED
        assert after.redeliver is True
        assert after.progress == 0
        assert after.step_desc == "restarted on 1.0.0"
        assert after.failure_reason is None
        assert after.attempts == before.attempts

    def test_another_version_after_the_download_fails(self) -> None:
        after = transition(attempt_in(S.UPGRADING), VersionReported("1.0.0", "1.1.0"))
        assert after.state is S.FAILED
        assert after.failure_reason == "version mismatch"
        assert after.failure_reason == FailureReason.VERSION_MISMATCH
        assert after.awaiting_version_report is False

    def test_another_version_after_step_100_of_a_product_key_device_fails(self) -> None:
        attempt = run(Attempt(), [Notified(), Progressed(100, done_at_100=False), VersionReported("1.0.0", "1.1.0")])
        assert attempt.state is S.FAILED
        assert attempt.failure_reason == FailureReason.VERSION_MISMATCH

    def test_a_pre_release_is_not_the_target(self) -> None:
        after = transition(attempt_in(S.UPGRADING), VersionReported("1.1.0-rc.1", "1.1.0"))
        assert after.state is S.FAILED
        assert after.failure_reason == FailureReason.VERSION_MISMATCH

    def test_progress_after_a_restart_means_the_device_is_on_it(self) -> None:
        restarted = run(Attempt(), [Notified(), VersionReported("1.0.0", "1.1.0")])
        assert restarted.redeliver is True
        assert transition(restarted, Progressed(5)).redeliver is False

    @pytest.mark.parametrize("state", sorted(IN_PROGRESS))
    def test_later_matching_report_still_succeeds(self, state: DeviceState) -> None:
        after = transition(attempt_in(state, awaiting_version_report=False), VersionReported("v1.1", "1.1.0"))
        assert after.state is S.SUCCEEDED
        assert after.progress == 100

    def test_reports_after_the_final_one_are_ignored(self) -> None:
        failed = run(Attempt(), [Notified(), Downloaded(), VersionReported("1.0.0", "1.1.0")])
        assert transition(failed, VersionReported("1.1.0", "1.1.0")) is failed
        assert transition(failed, VersionReported("0.9", "1.1.0")) is failed
        succeeded = run(Attempt(), [Notified(), VersionReported("1.1.0", "1.1.0")])
        assert transition(succeeded, VersionReported("1.0.0", "1.1.0")) is succeeded

    @pytest.mark.parametrize("state", NOT_IN_PROGRESS)
    @pytest.mark.parametrize("reported", ["1.1.0", "1.0.0"])
    def test_ignored_outside_progress_states(self, state: DeviceState, reported: str) -> None:
        before = attempt_in(state)
        assert transition(before, VersionReported(reported, "1.1.0")) is before


class TestCancel:
    @pytest.mark.parametrize("state", NOT_FINAL)
    def test_non_final_is_canceled(self, state: DeviceState) -> None:
        before = attempt_in(state, progress=30, attempts=2)
        after = transition(before, Canceled())
        assert after.state is S.CANCELED
        assert after.failure_reason is None
        assert after.awaiting_version_report is False
        assert after.attempts == 2

    @pytest.mark.parametrize("state", sorted(FINAL))
    def test_final_is_kept(self, state: DeviceState) -> None:
        before = attempt_in(state)
        assert transition(before, Canceled()) is before


class TestRetry:
    @pytest.mark.parametrize("state", sorted(RETRYABLE))
    def test_back_to_pending(self, state: DeviceState) -> None:
        before = attempt_in(state, progress=60, step_desc="broken", attempts=3)
        after = transition(before, RetryRequested())
        assert after.state is S.PENDING
        assert after.progress == 0
        assert after.step_desc == ""
        assert after.failure_reason is None
        assert after.awaiting_version_report is False
        assert after.attempts == 3

    @pytest.mark.parametrize("state", NOT_RETRYABLE)
    def test_ignored_elsewhere(self, state: DeviceState) -> None:
        before = attempt_in(state)
        assert transition(before, RetryRequested()) is before

    def test_a_retry_starts_a_new_attempt(self) -> None:
        failed = run(Attempt(), [Notified(), Progressed(30), Progressed(-2, "timeout")])
        renotified = run(failed, [RetryRequested(), Notified()])
        assert renotified.state is S.NOTIFIED
        assert renotified.attempts == 2
        assert renotified.awaiting_version_report is False


class TestFinalStates:
    EVENTS = [
        Notified(),
        Unreachable(),
        Progressed(50),
        Progressed(100),
        Progressed(-1),
        Downloaded(),
        VersionReported("1.0", "1.0"),
        VersionReported("0.9", "1.0"),
        Canceled(),
    ]

    @pytest.mark.parametrize("state", sorted(FINAL))
    @pytest.mark.parametrize("event", EVENTS, ids=repr)
    def test_events_on_final_states_are_no_ops(self, state: DeviceState, event: Event) -> None:
        before = attempt_in(state)
        assert transition(before, event) is before


class TestScenarios:
    def test_happy_path(self) -> None:
        attempt = Attempt()
        seen = []
        for event in [
            Notified(),
            Progressed(10, "downloading"),
            Progressed(90, "downloading"),
            Downloaded(),
            Progressed(95, "flashing"),
            VersionReported("v2.0", "2.0.0"),
        ]:
            attempt = transition(attempt, event)
            seen.append(attempt.state)
        assert seen == [S.NOTIFIED, S.DOWNLOADING, S.DOWNLOADING, S.UPGRADING, S.UPGRADING, S.SUCCEEDED]
        assert attempt.progress == 100
        assert attempt.attempts == 1
        assert attempt.failure_reason is None

    def test_offline_then_retry_then_success(self) -> None:
        attempt = run(Attempt(), [Unreachable(), RetryRequested(), Notified(), Progressed(100)])
        assert attempt.state is S.SUCCEEDED
        assert attempt.attempts == 2


# --- properties -------------------------------------------------------------------------------------------------------

VERSIONS = ["1.0", "v1.0.0", "1.1", "1.1.0-rc.1", "xxxxxxxx", ""]

events = st.one_of(
    st.just(Notified()),
    st.builds(Unreachable, reason=st.sampled_from(list(FailureReason))),
    st.builds(
        Progressed,
        step=st.one_of(st.integers(min_value=-6, max_value=102), st.integers()),
        desc=st.text(max_size=200),
        done_at_100=st.booleans(),
    ),
    st.just(Downloaded()),
    st.builds(VersionReported, version=st.sampled_from(VERSIONS), target_version=st.sampled_from(VERSIONS)),
    st.just(Canceled()),
    st.just(RetryRequested()),
)

attempts = st.builds(
    Attempt,
    state=st.sampled_from(ALL_STATES),
    progress=st.integers(min_value=0, max_value=100),
    step_desc=st.text(max_size=MAX_DESC_LENGTH),
    failure_reason=st.one_of(st.none(), st.sampled_from(list(FailureReason))),
    attempts=st.integers(min_value=0, max_value=1000),
    awaiting_version_report=st.booleans(),
)


def applies(attempt: Attempt, event: Event) -> bool:
    """Whether `event` changes an attempt in this state, restated from the rules."""
    state = attempt.state
    match event:
        case Notified() | Unreachable():
            return state is S.PENDING
        case Progressed(step=step):
            return state in IN_PROGRESS and (step in STEP_FAILURES or 0 <= step <= 100)
        case Downloaded():
            return state in (S.NOTIFIED, S.DOWNLOADING)
        case VersionReported():
            # The target succeeds, another version fails after the download and is a restart before it.
            return state in IN_PROGRESS
        case Canceled():
            return state not in FINAL
        case RetryRequested():
            return state in RETRYABLE
    raise AssertionError(event)


class TestProperties:
    @given(st.lists(events, max_size=40))
    def test_succeeded_or_failed_only_left_by_retry(self, sequence: list[Event]) -> None:
        attempt = Attempt()
        for event in sequence:
            after = transition(attempt, event)
            if attempt.state in (S.SUCCEEDED, S.FAILED) and not isinstance(event, RetryRequested):
                assert after is attempt
            if after.state is not attempt.state and attempt.state in (S.SUCCEEDED, S.FAILED):
                assert isinstance(event, RetryRequested)
            attempt = after

    @given(st.lists(events, max_size=40))
    def test_attempts_never_decrease_and_grow_by_at_most_one(self, sequence: list[Event]) -> None:
        attempt = Attempt()
        for event in sequence:
            after = transition(attempt, event)
            assert 0 <= after.attempts - attempt.attempts <= 1
            if after.attempts > attempt.attempts:
                assert isinstance(event, Notified | Unreachable)
            attempt = after

    @given(st.lists(events, max_size=40))
    def test_progress_and_desc_stay_in_bounds(self, sequence: list[Event]) -> None:
        attempt = Attempt()
        for event in sequence:
            attempt = transition(attempt, event)
            assert 0 <= attempt.progress <= 100
            assert len(attempt.step_desc) <= MAX_DESC_LENGTH
            if attempt.state is S.SUCCEEDED:
                assert attempt.progress == 100
            if attempt.state is S.PENDING:
                assert attempt.progress == 0

    @given(st.lists(events, max_size=40))
    def test_reachable_attempts_are_consistent(self, sequence: list[Event]) -> None:
        attempt = Attempt()
        for event in sequence:
            attempt = transition(attempt, event)
            assert (attempt.failure_reason is not None) == (attempt.state is S.FAILED)
            if attempt.awaiting_version_report:
                assert attempt.state is S.UPGRADING
            if attempt.redeliver:
                assert attempt.state is S.NOTIFIED

    @given(st.lists(events, max_size=40))
    def test_non_applying_events_return_the_identical_object(self, sequence: list[Event]) -> None:
        attempt = Attempt()
        for event in sequence:
            after = transition(attempt, event)
            if applies(attempt, event):
                assert after is not attempt
            else:
                assert after is attempt
            attempt = after

    @given(attempts, events)
    def test_identity_rule_holds_for_any_attempt(self, attempt: Attempt, event: Event) -> None:
        after = transition(attempt, event)
        assert (after is attempt) == (not applies(attempt, event))
        assert isinstance(after.state, DeviceState)
        assert 0 <= after.progress <= 100

    @given(attempts, events)
    def test_transition_does_not_mutate_its_input(self, attempt: Attempt, event: Event) -> None:
        snapshot = Attempt(**vars(attempt))
        transition(attempt, event)
        assert attempt == snapshot


class TestTimedOut:
    @pytest.mark.parametrize("state", sorted(IN_PROGRESS))
    def test_a_silent_device_fails_as_timeout(self, state: DeviceState) -> None:
        after = transition(Attempt(state=state, attempts=1, awaiting_version_report=True), TimedOut())
        assert after.state is S.FAILED
        assert after.failure_reason == "timeout"
        assert after.attempts == 1

    @pytest.mark.parametrize("state", [S.PENDING, *sorted(FINAL)])
    def test_ignored_when_not_under_way(self, state: DeviceState) -> None:
        before = Attempt(state=state)
        assert transition(before, TimedOut()) is before
