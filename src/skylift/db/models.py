"""Every capability's models, imported in one place so metadata is complete for migrations."""

from skylift.campaigns.models import Campaign, CampaignDevice
from skylift.db.base import Base
from skylift.packages.models import Package, PackageFile
from skylift.registry.models import Device, DeviceVersion, Module, Product
from skylift.system.models import AuditEvent, SystemParameter

__all__ = [
    "AuditEvent",
    "Base",
    "Campaign",
    "CampaignDevice",
    "Device",
    "DeviceVersion",
    "Module",
    "Package",
    "PackageFile",
    "Product",
    "SystemParameter",
]
