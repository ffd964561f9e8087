"""Every capability's models in one place, so that Alembic's metadata is complete (app assembly, not db/)."""

from skylift.campaigns.models import Campaign, CampaignDevice
from skylift.db.base import Base
from skylift.devices.models import InboxMessage
from skylift.packages.models import Package, PackageFile
from skylift.registry.models import Device, DeviceVersion, Module, Product
from skylift.system.models import ApiToken, AuditEvent, SystemParameter, User, UserSession

__all__ = [
    "ApiToken",
    "AuditEvent",
    "Base",
    "Campaign",
    "CampaignDevice",
    "Device",
    "DeviceVersion",
    "InboxMessage",
    "Module",
    "Package",
    "PackageFile",
    "Product",
    "SystemParameter",
    "User",
    "UserSession",
]
