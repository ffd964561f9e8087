"""The device-in-campaign state machine, free of I/O.

An attempt moves pending → notified → downloading → upgrading → succeeded | failed, and can be
canceled. Success and failure are final for an attempt; a retry starts a new attempt.

`upgrading` means the device has the whole file (the server sent its last byte, or the device
reported step 100) and its next version report decides the attempt. Token devices (seed 002) also
succeed at step 100; product-key devices (seed 004, Alibaba and SagooIOT SDKs) only by reporting
the target version, since Alibaba's C SDK reports 100 before it checks the file's digest. A version
report other than the target before `upgrading` means the device restarted (or its boot report
crossed the notice): the attempt stays open and its notice is due again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from skylift.kit.versions import same_version

MAX_DESC_LENGTH = 128


class DeviceState(StrEnum):
    PENDING = "pending"
    NOTIFIED = "notified"
    DOWNLOADING = "downloading"
    UPGRADING = "upgrading"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    SKIPPED = "skipped"  # already on the target version when targeted: never re-flashed


IN_PROGRESS = frozenset({DeviceState.NOTIFIED, DeviceState.DOWNLOADING, DeviceState.UPGRADING})
FINAL = frozenset({DeviceState.SUCCEEDED, DeviceState.FAILED, DeviceState.CANCELED, DeviceState.SKIPPED})
RETRYABLE = frozenset({DeviceState.FAILED, DeviceState.CANCELED})


class FailureReason(StrEnum):
    UPGRADE_FAILED = "upgrade failed"
    DOWNLOAD_FAILED = "download failed"
    VERIFICATION_FAILED = "verification failed"
    FLASHING_FAILED = "flashing failed"
    VERSION_MISMATCH = "version mismatch"
    OFFLINE = "offline"
    TIMEOUT = "timeout"


# The seeds' negative progress steps.
STEP_FAILURES = {
    -1: FailureReason.UPGRADE_FAILED,
    -2: FailureReason.DOWNLOAD_FAILED,
    -3: FailureReason.VERIFICATION_FAILED,
    -4: FailureReason.FLASHING_FAILED,
}


@dataclass(frozen=True)
class Attempt:
    state: DeviceState = DeviceState.PENDING
    progress: int = 0
    step_desc: str = ""
    failure_reason: str | None = None
    attempts: int = 0
    awaiting_version_report: bool = False  # the device has the file: its next version report decides
    # Set by a transition only: the device restarted since its notice, which is due again.
    redeliver: bool = False


@dataclass(frozen=True)
class Notified:
    """The upgrade notice was handed to the broker for the device."""


@dataclass(frozen=True)
class Unreachable:
    """The notice could not be sent (the device is offline)."""

    reason: str = FailureReason.OFFLINE


@dataclass(frozen=True)
class Progressed:
    step: int
    desc: str = ""
    # Whether step 100 completes the attempt: true for token devices (seed 002), false for product-key
    # devices (seed 004), whose step 100 means "downloaded" and whose version report decides.
    done_at_100: bool = True


@dataclass(frozen=True)
class Downloaded:
    """The server finished sending the whole package file to the device."""


@dataclass(frozen=True)
class VersionReported:
    version: str
    target_version: str


@dataclass(frozen=True)
class TimedOut:
    """The device stayed silent longer than the campaign's timeout after its last sign of life."""


@dataclass(frozen=True)
class Canceled:
    pass


@dataclass(frozen=True)
class RetryRequested:
    pass


Event = Notified | Unreachable | Progressed | Downloaded | VersionReported | TimedOut | Canceled | RetryRequested


def is_valid_step(step: int) -> bool:
    return step in STEP_FAILURES or 0 <= step <= 100


def transition(attempt: Attempt, event: Event) -> Attempt:
    """The attempt after `event`; the same object when the event does not apply in this state."""
    state = attempt.state
    match event:
        case Notified():
            if state is not DeviceState.PENDING:
                return attempt
            return Attempt(state=DeviceState.NOTIFIED, attempts=attempt.attempts + 1)
        case Unreachable(reason=reason):
            if state is not DeviceState.PENDING:
                return attempt
            return replace(attempt, state=DeviceState.FAILED, failure_reason=reason, attempts=attempt.attempts + 1)
        case Progressed(step=step, desc=desc, done_at_100=done_at_100):
            if state not in IN_PROGRESS or not is_valid_step(step):
                return attempt
            desc = desc[:MAX_DESC_LENGTH]
            if step in STEP_FAILURES:
                return _ended(attempt, DeviceState.FAILED, failure_reason=STEP_FAILURES[step], step_desc=desc)
            if step == 100 and done_at_100:
                return _ended(attempt, DeviceState.SUCCEEDED, progress=100, step_desc=desc)
            # A device that reports progress is working on its notice: nothing is due again.
            if step == 100:
                return replace(
                    attempt,
                    state=DeviceState.UPGRADING,
                    progress=100,
                    step_desc=desc,
                    awaiting_version_report=True,
                    redeliver=False,
                )
            # Once the device has the whole file it is flashing; progress keeps counting.
            next_state = DeviceState.UPGRADING if state is DeviceState.UPGRADING else DeviceState.DOWNLOADING
            return replace(attempt, state=next_state, progress=step, step_desc=desc, redeliver=False)
        case Downloaded():
            if state not in (DeviceState.NOTIFIED, DeviceState.DOWNLOADING):
                return attempt
            return replace(attempt, state=DeviceState.UPGRADING, awaiting_version_report=True, redeliver=False)
        case VersionReported(version=version, target_version=target):
            if state not in IN_PROGRESS:
                return attempt
            if same_version(version, target):
                return _ended(attempt, DeviceState.SUCCEEDED, progress=100)
            if state is DeviceState.UPGRADING:
                return _ended(attempt, DeviceState.FAILED, failure_reason=FailureReason.VERSION_MISMATCH)
            # A (re)start before the device had the file: the notice is due again, nothing is judged.
            return replace(
                attempt,
                state=DeviceState.NOTIFIED,
                progress=0,
                step_desc=f"restarted on {version}"[:MAX_DESC_LENGTH],
                redeliver=True,
            )
        case TimedOut():
            if state not in IN_PROGRESS:
                return attempt
            return _ended(attempt, DeviceState.FAILED, failure_reason=FailureReason.TIMEOUT)
        case Canceled():
            if state in FINAL:
                return attempt
            return _ended(attempt, DeviceState.CANCELED)
        case RetryRequested():
            if state not in RETRYABLE:
                return attempt
            return Attempt(state=DeviceState.PENDING, attempts=attempt.attempts)
    return attempt


def _ended(
    attempt: Attempt,
    state: DeviceState,
    failure_reason: str | None = None,
    step_desc: str | None = None,
    progress: int | None = None,
) -> Attempt:
    """A final state: nothing more is awaited or due."""
    return replace(
        attempt,
        state=state,
        failure_reason=failure_reason,
        step_desc=attempt.step_desc if step_desc is None else step_desc,
        progress=attempt.progress if progress is None else progress,
        awaiting_version_report=False,
        redeliver=False,
    )
