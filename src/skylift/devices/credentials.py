"""Checking device credentials: MQTT CONNECT (plain or Alibaba-signed) and the HTTP device API."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from skylift.db.chunks import id_chunks
from skylift.devices.identity import DeviceIdentity, LoginStyle
from skylift.kit import sealing
from skylift.registry.models import Device, Product

MAX_CREDENTIAL_LENGTH = 256
# Alibaba's signed login: `signmethod=` in the client id names the HMAC that made the password.
SIGN_METHODS = {"hmacsha1": "sha1", "hmacsha256": "sha256", "hmacmd5": "md5"}
# HTTP devices sign a timestamp; one further than this from the server's clock is refused.
HTTP_SIGNATURE_WINDOW_MS = 5 * 60 * 1000


@dataclass(frozen=True)
class SignedClientId:
    """`{cid}|securemode=N,signmethod=hmacsha1,timestamp=T|` split into its parts."""

    client_id: str
    sign_method: str
    timestamp: str | None


def client_id_params(client_id: str | None) -> tuple[str, dict[str, str]]:
    """`{cid}|k=v,k=v|` → (cid, {k: v}): the parameter block Alibaba's SDKs append to their client id.

    Names are lower-cased, names and values trimmed; a client id without `|` has no parameters."""
    cid, bar, rest = (client_id or "").partition("|")
    params: dict[str, str] = {}
    if not bar:
        return cid, params
    for item in rest.partition("|")[0].split(","):
        key, sep, value = item.partition("=")
        if sep:
            params[key.strip().lower()] = value.strip()
    return cid, params


def parse_signed_client_id(client_id: str | None) -> SignedClientId | None:
    """The signing parameters of an Alibaba SDK client id, or None when it names no sign method."""
    cid, params = client_id_params(client_id)
    sign_method = params.get("signmethod", "").lower()
    if not sign_method:
        return None
    return SignedClientId(client_id=cid, sign_method=sign_method, timestamp=params.get("timestamp") or None)


def wants_auto_subscribe(client_id: str | None) -> bool:
    """`_ss=1` in the parameter block: the device never subscribes and expects the platform to."""
    return client_id_params(client_id)[1].get("_ss") == "1"


def sign_content(client_id: str, device_name: str, product_key: str, timestamp: str | None) -> str:
    """What Alibaba's device SDK signs: the parameters sorted by name, each name followed by its value."""
    content = f"clientId{client_id}deviceName{device_name}productKey{product_key}"
    return content + f"timestamp{timestamp}" if timestamp is not None else content


def hmac_hex(secret: str, content: str, sign_method: str) -> str | None:
    digest = SIGN_METHODS.get(sign_method)
    if digest is None:
        return None
    return hmac.new(secret.encode(), content.encode(), digest).hexdigest()


def _same(given: str, expected: str) -> bool:
    # Constant time; compare_digest refuses non-ASCII str, so it gets bytes.
    return hmac.compare_digest(given.encode(), expected.encode())


def password_matches(device: Device, password: str, client_id: str | None) -> bool:
    """The device secret itself, or the HMAC password of Alibaba's signed login."""
    if _same(password, device.device_secret):
        return True
    signed = parse_signed_client_id(client_id)
    if signed is None:
        return False
    content = sign_content(signed.client_id, device.name, device.product.product_key, signed.timestamp)
    expected = hmac_hex(device.device_secret, content, signed.sign_method)
    # Hex digests are case-insensitive; SDKs differ in the case they send.
    return expected is not None and _same(password.lower(), expected)


def http_signature(secret: str, device_name: str, product_key: str, timestamp: str) -> str:
    """The `X-Sign` an HTTP device sends: hex HMAC-SHA256 of its secret over its names and the time."""
    content = f"deviceName{device_name}productKey{product_key}timestamp{timestamp}"
    return hmac.new(secret.encode(), content.encode(), hashlib.sha256).hexdigest()


def identity_for(device: Device, style: LoginStyle, auto_subscribe: bool = False) -> DeviceIdentity:
    """Who a device is, as it logged in (its product must be loaded)."""
    return DeviceIdentity(
        device_id=device.id,
        product_id=device.product_id,
        product_key=device.product.product_key,
        name=device.name,
        access_token=device.access_token,
        login_style=style,
        auto_subscribe=auto_subscribe,
    )


async def _by_key(session: AsyncSession, product_key: str, device_name: str) -> Device | None:
    device: Device | None = await session.scalar(
        select(Device)
        .join(Product, Product.id == Device.product_id)
        .where(Product.product_key == product_key, Device.name == device_name, Device.enabled.is_(True))
        .options(joinedload(Device.product))
    )
    return device


async def by_token(session: AsyncSession, access_token: str) -> DeviceIdentity | None:
    if not access_token or len(access_token) > MAX_CREDENTIAL_LENGTH:
        return None
    digests = sealing.keyring().digests(access_token)
    return _token_identity(await _by_digests(session, digests), digests)


def _token_identity(devices: dict[str, Device], digests: Sequence[str]) -> DeviceIdentity | None:
    """The token device among `devices` with one of the digests of its token, if any."""
    found = [devices[digest] for digest in digests if digest in devices]
    return identity_for(found[0], LoginStyle.TOKEN) if found else None


@dataclass(frozen=True)
class Login:
    """What an MQTT CONNECT presents."""

    username: str | None
    password: str | None
    client_id: str | None


async def authenticate_many(session: AsyncSession, logins: Sequence[Login]) -> list[DeviceIdentity | None]:
    """`authenticate` for many CONNECTs at once (a fleet connecting): the token logins among them are
    looked up in one query; the answers come in the order of `logins`."""
    tokens = {
        login.username
        for login in logins
        if login.username and "&" not in login.username and len(login.username) <= MAX_CREDENTIAL_LENGTH
    }
    found = await _by_tokens(session, tokens)
    answers: list[DeviceIdentity | None] = []
    for login in logins:
        if login.username in tokens:
            answers.append(found.get(login.username))
        else:
            answers.append(await authenticate(session, login.username, login.password, login.client_id))
    return answers


async def _by_tokens(session: AsyncSession, tokens: Iterable[str]) -> dict[str, DeviceIdentity]:
    """The enabled token devices whose access token is one of `tokens`, by token, in one query (per chunk)."""
    keyring = sealing.keyring()
    digests = {token: keyring.digests(token) for token in tokens if 0 < len(token) <= MAX_CREDENTIAL_LENGTH}
    devices = await _by_digests(session, sorted({digest for each in digests.values() for digest in each}))
    identities = {token: _token_identity(devices, each) for token, each in digests.items()}
    return {token: identity for token, identity in identities.items() if identity is not None}


async def _by_digests(session: AsyncSession, digests: Sequence[str]) -> dict[str, Device]:
    """The enabled devices whose stored access-token digest is one of `digests`, by that digest."""
    found: dict[str, Device] = {}
    for chunk in id_chunks(digests):
        devices = await session.scalars(
            select(Device)
            .where(Device.token_digest.in_(chunk), Device.enabled.is_(True))
            .options(joinedload(Device.product))
        )
        found.update((device.token_digest, device) for device in devices)
    return found


async def authenticate(
    session: AsyncSession, username: str | None, password: str | None, client_id: str | None
) -> DeviceIdentity | None:
    """Token devices: username = access token. Product-key devices: `DeviceName&ProductKey` + secret or HMAC."""
    if not username or len(username) > MAX_CREDENTIAL_LENGTH:
        return None
    if "&" in username:
        device_name, _, product_key = username.partition("&")
        device = await _by_key(session, product_key, device_name)
        if device is None or not password or len(password) > MAX_CREDENTIAL_LENGTH:
            return None
        if not password_matches(device, password, client_id):
            return None
        return identity_for(device, LoginStyle.PRODUCT_KEY, auto_subscribe=wants_auto_subscribe(client_id))
    return await by_token(session, username)


async def authenticate_signed(
    session: AsyncSession, product_key: str, device_name: str, timestamp: str, sign: str, now: datetime
) -> DeviceIdentity | None:
    """An HTTP product-key device: `X-Sign` over its names and a millisecond timestamp close to now."""
    if any(not value or len(value) > MAX_CREDENTIAL_LENGTH for value in (product_key, device_name, timestamp, sign)):
        return None
    if not (timestamp.isascii() and timestamp.isdigit()):
        return None
    if abs(int(now.timestamp() * 1000) - int(timestamp)) > HTTP_SIGNATURE_WINDOW_MS:
        return None
    device = await _by_key(session, product_key, device_name)
    if device is None:
        return None
    expected = http_signature(device.device_secret, device_name, product_key, timestamp)
    return identity_for(device, LoginStyle.PRODUCT_KEY) if _same(sign.lower(), expected) else None


async def sub_device(session: AsyncSession, gateway_id: int, address: str) -> DeviceIdentity | None:
    """The gateway's sub-device at `address`, or None: a gateway speaks for its own sub-devices only."""
    device = await session.scalar(
        select(Device)
        .where(Device.gateway_id == gateway_id, Device.address == address, Device.enabled.is_(True))
        .options(joinedload(Device.product))
    )
    # A sub-device never logs in itself; its identity is that of its token.
    return identity_for(device, LoginStyle.TOKEN) if device is not None else None


async def identities_named(session: AsyncSession, names: Sequence[str]) -> dict[str, DeviceIdentity]:
    """The enabled devices that `names` name, by name: an access token, `DeviceName&ProductKey` (a login
    username) or `ProductKey/DeviceName` (a topic id). For an external broker, whose plugin checked the
    login and lets each device use its own topics only; tokens are looked up together."""
    tokens = {name for name in names if "&" not in name and "/" not in name}
    found = await _by_tokens(session, tokens)
    for name in names:
        if name in tokens or len(name) > MAX_CREDENTIAL_LENGTH:
            continue
        if "&" in name:
            device_name, _, product_key = name.partition("&")
        else:
            product_key, _, device_name = name.partition("/")
        device = await _by_key(session, product_key, device_name) if product_key and device_name else None
        if device is not None:
            found[name] = identity_for(device, LoginStyle.PRODUCT_KEY)
    return found
