"""amqtt plugins (loaded by dotted path) that tie the embedded broker to the device hub."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BasePlugin, BaseTopicPlugin
from amqtt.session import Session

from skylift.devices.hub import DeviceHub
from skylift.devices.identity import DeviceIdentity
from skylift.devices.topics import may_publish, may_read, may_subscribe

IDENTITY_KEY = "skylift_identity"


def identity_of(session: Session | None) -> DeviceIdentity | None:
    if session is None:
        return None
    identity = session.attributes.get(IDENTITY_KEY)
    return identity if isinstance(identity, DeviceIdentity) else None


@dataclass
class HubConfig:
    hub: Any = None


class DeviceAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]
    """A CONNECT is accepted only with a registered device's credentials."""

    Config = HubConfig

    async def authenticate(self, *, session: Session) -> bool | None:
        if identity_of(session) is not None:
            return True  # already checked when the CONNECT arrived (see SkyliftBroker)
        hub: DeviceHub = self.config.hub
        identity = await hub.authenticate(session.username, session.password, session.client_id)
        if identity is None:
            return False
        session.attributes[IDENTITY_KEY] = identity
        return True


class DeviceTopicPlugin(BaseTopicPlugin):  # type: ignore[misc]
    """A device publishes only on its own topics, and subscribes with filters that can match one of them
    (wildcards included); what reaches it is checked per message (`may_read`, see SkyliftBroker)."""

    Config = HubConfig

    async def topic_filtering(
        self, *, session: Session | None = None, topic: str | None = None, action: Action | None = None
    ) -> bool | None:
        identity = identity_of(session)
        if identity is None or topic is None:
            return False
        if action == Action.PUBLISH:
            return may_publish(identity, topic)
        if action == Action.RECEIVE:
            return may_read(identity, topic)
        return may_subscribe(identity, topic)


class DeviceMessagePlugin(BasePlugin[Any]):  # type: ignore[misc]
    """Tells the hub of every granted subscription (device messages enter through intake.py)."""

    Config = HubConfig

    async def on_broker_client_subscribed(self, *, client_id: str, topic: str, qos: int) -> None:
        identity = identity_of(self.context.get_session(client_id))
        if identity is not None:
            hub: DeviceHub = self.config.hub
            hub.subscribed(identity, topic)
