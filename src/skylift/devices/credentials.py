"""Checking MQTT CONNECT credentials against the registry."""

from __future__ import annotations

import hmac

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from skylift.devices.identity import DeviceIdentity, LoginStyle
from skylift.registry.models import Device, Product

MAX_CREDENTIAL_LENGTH = 256


def _identity(device: Device, style: LoginStyle) -> DeviceIdentity:
    return DeviceIdentity(
        device_id=device.id,
        product_id=device.product_id,
        product_key=device.product.product_key,
        name=device.name,
        access_token=device.access_token,
        login_style=style,
    )


async def authenticate(
    session: AsyncSession, username: str | None, password: str | None, client_id: str | None
) -> DeviceIdentity | None:
    """Token devices: username = access token. Product-key devices: `DeviceName&ProductKey` + secret."""
    if not username or len(username) > MAX_CREDENTIAL_LENGTH:
        return None
    if "&" in username:
        device_name, _, product_key = username.partition("&")
        device = await session.scalar(
            select(Device)
            .join(Product, Product.id == Device.product_id)
            .where(Product.product_key == product_key, Device.name == device_name)
            .options(selectinload(Device.product))
        )
        if device is None or not password or not hmac.compare_digest(password, device.device_secret):
            return None
        return _identity(device, LoginStyle.PRODUCT_KEY)
    device = await session.scalar(
        select(Device).where(Device.access_token == username).options(selectinload(Device.product))
    )
    return _identity(device, LoginStyle.TOKEN) if device is not None else None
