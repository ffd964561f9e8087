"""Errors of campaigns; the app's one handler renders every SkyliftError as `{"error": {...}}`."""

from __future__ import annotations

from skylift.kit.errors import Conflict, Invalid, NotFound


class CampaignNotFound(NotFound):
    """No such campaign, or the device is not in it."""


class CampaignConflict(Conflict):
    """The campaign's state (or its package's) does not allow the action now."""


class CampaignInvalid(Invalid):
    """The campaign as asked for cannot exist: no matching device, an unsupported protocol."""
