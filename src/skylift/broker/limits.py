"""What one MQTT socket may cost before and after it has logged in.

amqtt 0.12 waits for a CONNECT forever, reads a packet of any announced length whole before it
looks at it, and accepts sockets until the process runs out of file descriptors, at which point
the HTTP API starves with it. Skylift bounds all three:

- a socket that has not finished its CONNECT within `connect_timeout_seconds` is closed;
- a packet that announces more than `max_packet_bytes` closes the connection before its body is
  read (`GatedReader` counts the bytes, see intake.py);
- sockets are capped in total and per client address, and sockets still waiting for their CONNECT
  are capped too: when that cap is reached the oldest of them is closed to make room, so silent
  sockets cannot keep a device out.

The total cap never exceeds the process's descriptor limit minus a reserve for the HTTP API, the
database and package files (`open_files_limit` raises the soft limit to the hard one at start).
"""

from __future__ import annotations

import dataclasses
import logging
import resource
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from skylift.kit import metrics

log = logging.getLogger(__name__)

# Descriptors kept out of the MQTT listener's reach: HTTP connections, the database, package files.
DESCRIPTOR_RESERVE = 256


@dataclass(frozen=True)
class ConnectionLimits:
    connect_timeout_seconds: float = 10.0
    max_packet_bytes: int = 131_072
    max_connections: int = 100_000
    max_per_address: int = 1_000
    max_pending: int = 512

    def within_descriptors(self, open_files: int) -> ConnectionLimits:
        """These limits, with the total capped to what `open_files` descriptors can carry."""
        room = max(open_files - DESCRIPTOR_RESERVE, 16)
        if self.max_connections <= room:
            return self
        log.warning("MQTT connections capped at %d by the open-files limit (%d)", room, open_files)
        return dataclasses.replace(
            self,
            max_connections=room,
            max_per_address=min(self.max_per_address, room),
            max_pending=min(self.max_pending, room),
        )


class PacketTooLarge(Exception):
    """A packet announced more bytes than the broker reads; its connection is closed unread."""


def open_files_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
    if wanted > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-files limit from %d to %d: %s", soft, wanted, exc)
    return int(soft)


class ConnectionGate:
    """Counts the broker's sockets; says which may stay. Every socket admitted is released once."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.open = 0
        self._by_address: Counter[str] = Counter()
        self._pending: dict[int, Callable[[], None]] = {}  # oldest first: token -> close that socket
        self._next_token = 0

    def admit(self, address: str, close: Callable[[], None]) -> int | None:
        """A token for a new socket from `address`, or None when it must be closed at once."""
        if self.open >= self.limits.max_connections:
            return self._refuse("too many connections", address)
        if self._by_address[address] >= self.limits.max_per_address:
            return self._refuse("too many connections from one address", address)
        if len(self._pending) >= self.limits.max_pending:
            oldest = next(iter(self._pending))
            self._pending.pop(oldest)()
            metrics.REFUSED_CONNECTIONS.labels(reason="displaced while waiting for CONNECT").inc()
        token = self._next_token
        self._next_token += 1
        self._pending[token] = close
        self.open += 1
        self._by_address[address] += 1
        return token

    def logged_in(self, token: int) -> None:
        """The socket's CONNECT is done: it no longer counts as waiting."""
        self._pending.pop(token, None)

    def release(self, token: int, address: str) -> None:
        self._pending.pop(token, None)
        self.open -= 1
        self._by_address[address] -= 1
        if self._by_address[address] <= 0:
            del self._by_address[address]

    def pending(self) -> int:
        return len(self._pending)

    @staticmethod
    def _refuse(reason: str, address: str) -> None:
        metrics.REFUSED_CONNECTIONS.labels(reason=reason).inc()
        log.debug("refused an MQTT connection from %s: %s", address, reason)
        return None
