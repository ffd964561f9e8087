"""Rate limits at the broker (pure: the caller passes `now`, in monotonic seconds).

- A device may connect `connects_per_minute` times a minute; a firmware stuck in a reconnect loop
  is then answered "server unavailable" until the minute has passed.
- A device's messages are read at up to `messages_per_second` (bursts of `message_burst`); above
  that its connection is read more slowly, so nothing it sent is acknowledged and then dropped.
- A client address that fails `failed_logins_per_minute` logins in a minute is backed off: for
  `backoff_seconds`, doubling at each repeat up to `max_backoff_seconds`, its CONNECTs are refused
  before any credential is looked at, so guessing costs the attacker time and the server nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MINUTE = 60.0
# Entries idle this long are forgotten (the dictionaries stay as small as the live fleet).
IDLE_SECONDS = 2 * 3600.0
SWEEP_EVERY = 1000  # calls


@dataclass(frozen=True)
class RateLimits:
    connects_per_minute: int = 30
    messages_per_second: float = 200.0
    message_burst: int = 400
    failed_logins_per_minute: int = 20
    backoff_seconds: float = 60.0
    max_backoff_seconds: float = 900.0


@dataclass(slots=True)
class TokenBucket:
    rate: float
    capacity: float
    tokens: float
    at: float

    def take(self, now: float) -> float:
        """Take one token; returns how long to wait before using it (0 when one was there)."""
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


@dataclass(slots=True)
class Window:
    """Events in the last `period` seconds. A list, not a deque: one is kept per connected device and holds
    a few times at most (a deque allocates 600 bytes up front)."""

    period: float
    times: list[float] = field(default_factory=list)

    def add(self, now: float) -> int:
        self.times.append(now)
        return self.count(now)

    def count(self, now: float) -> int:
        times = self.times
        expired = 0
        while expired < len(times) and times[expired] <= now - self.period:
            expired += 1
        if expired:
            del times[:expired]
        return len(times)


@dataclass
class _Backoff:
    failures: Window
    until: float = 0.0
    seconds: float = 0.0
    seen: float = 0.0


class RateGate:
    def __init__(self, limits: RateLimits) -> None:
        self.limits = limits
        self._connects: dict[int, Window] = {}
        self._messages: dict[int, TokenBucket] = {}
        self._logins: dict[str, _Backoff] = {}
        self._calls = 0

    def may_connect(self, device_id: int, now: float) -> bool:
        """Counts a connection of the device; False when it is one too many this minute."""
        self._sweep(now)
        window = self._connects.setdefault(device_id, Window(MINUTE))
        if window.count(now) >= self.limits.connects_per_minute:
            return False
        window.add(now)
        return True

    def message_delay(self, device_id: int, now: float) -> float:
        """Seconds to wait before reading the device's next message (0: read it now)."""
        bucket = self._messages.get(device_id)
        if bucket is None:
            capacity = float(self.limits.message_burst)
            bucket = self._messages[device_id] = TokenBucket(self.limits.messages_per_second, capacity, capacity, now)
        return bucket.take(now)

    def login_backed_off(self, address: str, now: float) -> bool:
        entry = self._logins.get(address)
        return entry is not None and now < entry.until

    def login_failed(self, address: str, now: float) -> None:
        self._sweep(now)
        entry = self._logins.setdefault(address, _Backoff(Window(MINUTE)))
        if now - entry.seen > self.limits.max_backoff_seconds * 2:
            entry.seconds = 0.0  # quiet for long enough: the next back-off starts small again
        entry.seen = now
        if entry.failures.add(now) >= self.limits.failed_logins_per_minute:
            entry.seconds = min(
                self.limits.max_backoff_seconds, entry.seconds * 2 if entry.seconds else self.limits.backoff_seconds
            )
            entry.until = now + entry.seconds
            entry.failures.times.clear()

    def _sweep(self, now: float) -> None:
        self._calls += 1
        if self._calls % SWEEP_EVERY:
            return
        for device_id in [d for d, w in self._connects.items() if not w.count(now)]:
            del self._connects[device_id]
        for device_id in [d for d, b in self._messages.items() if now - b.at > IDLE_SECONDS]:
            del self._messages[device_id]
        for address in [a for a, e in self._logins.items() if now - e.seen > IDLE_SECONDS and now >= e.until]:
            del self._logins[address]
