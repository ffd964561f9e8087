"""Broker sessions keep amqtt's three states without a `transitions.Machine` each."""

from __future__ import annotations

import pytest
from amqtt.session import Session
from transitions import MachineError

from skylift.broker.sessions import SessionStates, sessions_to_drop


def test_every_amqtt_session_gets_the_light_states() -> None:
    assert isinstance(Session().transitions, SessionStates)


def test_connect_disconnect_and_reconnect() -> None:
    session = Session()
    assert session.transitions.state == "new"
    session.transitions.connect()
    assert session.transitions.is_connected()
    assert session.last_connect_time is not None
    session.transitions.disconnect()
    assert session.transitions.state == "disconnected"
    assert session.last_disconnect_time is not None
    session.transitions.connect()
    assert session.transitions.is_connected()


def test_a_connected_session_cannot_connect_again() -> None:
    # amqtt's broker reads this as "already connected" and takes the older connection over.
    session = Session()
    session.transitions.connect()
    with pytest.raises(MachineError):
        session.transitions.connect()


def test_disconnecting_a_new_or_disconnected_session_is_allowed() -> None:
    session = Session()
    session.transitions.disconnect()
    session.transitions.disconnect()
    assert session.transitions.state == "disconnected"


def test_only_sessions_that_left_and_keep_nothing_are_dropped() -> None:
    def session(client_id: str, clean: bool) -> Session:
        made = Session()
        made.client_id = client_id
        made.clean_session = clean
        made.username = "device"
        made.transitions.connect()
        return made

    stays, leaves, keeps, replaced = (
        session("stays", True),
        session("leaves", True),
        session("keeps", False),
        session("replaced", True),
    )
    for left in (leaves, keeps, replaced):
        left.transitions.disconnect()
    newer = session("replaced", True)  # the device came back on a new session
    sessions = {s.client_id: (s, None) for s in (stays, leaves, keeps, newer)}
    assert sessions_to_drop(sessions) == ["leaves"]
    leaves.transitions.connect()  # it came back before the monitor looked
    assert sessions_to_drop(sessions) == []
