"""Broker sessions made cheap for a fleet: a small state object in place of amqtt's state machine, a
subscription table that does not format itself, and a record of the sessions that left.

amqtt checks every session once a second for one to clean up; with 10,000 devices connected that is
30 ms a second spent on the ones that are there. Here a session that disconnects is recorded in
`LEFT`, and the broker looks at those only (see `SkyliftBroker._session_monitor`).
"""

from __future__ import annotations

import weakref
from typing import Any

from amqtt.session import Session
from transitions import MachineError

# Sessions that disconnected and have not connected again, by id() (a Session is not hashable); weak,
# so a session the broker dropped leaves by itself.
LEFT: weakref.WeakValueDictionary[int, Session] = weakref.WeakValueDictionary()


def sessions_to_drop(sessions: dict[str, tuple[Session, Any]]) -> list[str]:
    """The client ids of a broker's sessions that left and keep nothing (clean or anonymous ones), as
    amqtt's monitor finds them, but looking at the sessions that left only."""
    dropped = []
    for session in list(LEFT.values()):
        registered = sessions.get(session.client_id)
        if registered is None or registered[0] is not session:
            continue  # another broker's, or already replaced
        if session.transitions.state == "disconnected" and (session.is_anonymous or session.clean_session):
            dropped.append(session.client_id)
    return dropped


class SessionStates:
    """A broker session's state: new, connected or disconnected, as amqtt's `Session.transitions` has it.

    amqtt builds a `transitions.Machine` for every session, about 15 KiB each, a quarter of what a
    connected device costs; this keeps the same three states, transitions and enter hooks in a few
    bytes (installed on every amqtt Session by `_init_session_states`)."""

    __slots__ = ("_session", "state")

    def __init__(self, session: Session) -> None:
        self._session = session
        self.state = "new"

    def connect(self) -> None:
        if self.state == "connected":
            raise MachineError(f"a session cannot connect from state {self.state}")
        self.state = "connected"
        LEFT.pop(id(self._session), None)
        self._session._on_enter_connected()

    def disconnect(self) -> None:
        self.state = "disconnected"
        LEFT[id(self._session)] = self._session
        self._session._on_enter_disconnected()

    def is_connected(self) -> bool:
        return self.state == "connected"

    def is_disconnected(self) -> bool:
        return self.state == "disconnected"

    def is_new(self) -> bool:
        return self.state == "new"


def _init_session_states(session: Session) -> None:
    session.transitions = SessionStates(session)


Session._init_states = _init_session_states


class Subscriptions(dict[str, list[tuple[Session, int]]]):
    """amqtt's filter -> subscribers table. amqtt logs `repr()` of it after every SUBSCRIBE, debug level or
    not: the whole fleet's subscriptions formatted once per device, a cost that grows with the fleet."""

    def __repr__(self) -> str:
        return f"<{len(self)} topic filters>"
