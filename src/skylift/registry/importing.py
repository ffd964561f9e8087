"""Bulk import of devices (a spreadsheet's CSV, or a JSON array): all of them, or none.

Every row is checked before any device is created, and every wrong row is reported (row, field,
message). Devices are then created one by one through the same function as `POST /devices`, gateways
before their sub-devices, so a file may register a gateway and the devices behind it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Column, ColumnDefault, insert, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from skylift.db.base import table_of
from skylift.db.chunks import id_chunks
from skylift.db.session import grew
from skylift.kit.errors import BadRequest, Conflict, Invalid, ItemError, UnsupportedMediaType
from skylift.registry.models import Device, Product
from skylift.registry.schemas import DeviceCreate, ImportRow
from skylift.registry.service import get_product, new_device, ready_to_show

MAX_ROWS = 10_000
COLUMNS = ("name", "tags", "gateway", "address")
CSV_TYPES = ("text/csv", "application/csv", "text/plain")


# A row that is wrong before its fields can be read: the message says why.
RawRow = dict[str, Any] | str


def parse(content_type: str | None, body: bytes) -> list[RawRow]:
    """The rows of a CSV or JSON body as raw objects, before they are checked."""
    kind = (content_type or "").split(";")[0].strip().lower()
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest("the import is not UTF-8 text", field="body") from None
    if kind == "application/json":
        rows = _json_rows(text)
    elif kind in CSV_TYPES:
        rows = list(_csv_rows(text))
    else:
        raise UnsupportedMediaType(
            f"send the devices as text/csv (name,tags,gateway,address) or application/json, not {kind or 'nothing'}",
            field="body",
        )
    if not rows:
        raise Invalid("the import holds no device", field="body")
    if len(rows) > MAX_ROWS:
        raise Invalid(f"an import holds at most {MAX_ROWS} devices; split the file", field="body")
    return rows


def _json_rows(text: str) -> list[RawRow]:
    try:
        rows = json.loads(text)
    except (ValueError, RecursionError):
        raise BadRequest("the import is not valid JSON", field="body") from None
    if not isinstance(rows, list):
        raise Invalid("a JSON import is an array of devices", field="body")
    return [row if isinstance(row, dict) else "a device is an object: {name, tags, gateway, address}" for row in rows]


def _csv_rows(text: str) -> Iterator[RawRow]:
    try:
        lines = [line for line in csv.reader(io.StringIO(text, newline="")) if any(cell.strip() for cell in line)]
    except csv.Error as exc:
        raise BadRequest(f"the import is not valid CSV: {exc}", field="body") from None
    if not lines:
        return
    header = [cell.strip().lower() for cell in lines[0]]
    unknown = [column for column in header if column not in COLUMNS]
    if unknown or "name" not in header or len(set(header)) != len(header):
        raise Invalid(
            f"the first line names the columns, among {','.join(COLUMNS)} (name required, each once); "
            f"got {','.join(header)}",
            field="header",
        )
    for line in lines[1:]:
        if any(cell.strip() for cell in line[len(header) :]):
            yield f"{len(line)} cells, but the header names {len(header)} columns"
            continue
        row: dict[str, Any] = {}
        for column, cell in zip(header, line, strict=False):
            cell = cell.strip()
            if column == "tags":
                row["tags"] = [tag.strip() for tag in cell.split(";") if tag.strip()]
            elif cell:
                row[column] = int(cell) if column == "gateway" and cell.isdecimal() and len(cell) < 20 else cell
        yield row


@dataclass
class _Planned:
    row: int
    data: ImportRow
    gateway_row: int | None = None  # a gateway created by this import, by its row
    gateway_id: int | None = None  # a gateway registered already


async def import_devices(session: AsyncSession, product_id: int, raw_rows: list[RawRow]) -> list[Device]:
    """Create every device of the import, in row order, or raise `Invalid` listing every wrong row."""
    errors: list[ItemError] = []
    planned: list[_Planned] = []
    for number, raw in enumerate(raw_rows, start=1):
        if isinstance(raw, str):
            errors.append(ItemError(row=number, field=None, message=raw))
            continue
        try:
            planned.append(_Planned(number, ImportRow.model_validate(raw)))
        except ValidationError as exc:
            fields: set[str | None] = set()
            for error in exc.errors():
                field = ".".join(str(part) for part in error["loc"][:1]) or None
                if field in fields:
                    continue  # one message per field (a union answers once for each of its kinds)
                fields.add(field)
                message = "unexpected column" if error["type"] == "extra_forbidden" else error["msg"]
                errors.append(ItemError(row=number, field=field, message=message.removeprefix("Value error, ")))
    errors += await _check_together(session, product_id, planned)
    if errors:
        errors.sort(key=lambda e: e.row)
        rows = sorted({e.row for e in errors})
        shown = ", ".join(str(r) for r in rows[:20]) + (" ..." if len(rows) > 20 else "")
        raise Invalid(f"{len(rows)} row(s) are wrong (rows {shown}); nothing was imported", errors=errors)
    product = await get_product(session, product_id)
    created: dict[int, Device] = {}
    # Gateways first: a sub-device names its gateway's id when it is created. Each group is one INSERT.
    for of_new_gateways in (False, True):
        group = []
        for plan in planned:
            if (plan.gateway_row is not None) != of_new_gateways:
                continue
            gateway = await _gateway_of(session, plan, created)
            data = DeviceCreate(
                product_id=product_id,
                name=plan.data.name,
                tags=plan.data.tags,
                gateway_id=gateway.id if gateway is not None else None,
                address=plan.data.address if gateway is not None else None,
            )
            created[plan.row] = new_device(product, data, gateway)
            group.append(created[plan.row])
        await _insert_devices(session, product, group)
    return [created[plan.row] for plan in planned]


async def _insert_devices(session: AsyncSession, product: Product, devices: list[Device]) -> None:
    """Insert many new devices of `product` (their names free in it) at once, and give each its id.

    The ORM inserts the rows of a self-referencing table (a sub-device names its gateway) one statement
    each: 5,000 devices took 16 s and held SQLite's write lock as long. The devices stay outside the
    session; what they show needs no query."""
    if not devices:
        return
    table = table_of(Device)
    columns = {attribute.key: attribute.columns[0] for attribute in inspect(Device).column_attrs}
    rows = []
    for device in devices:
        row = {}
        for key, column in columns.items():
            if key in device.__dict__:
                row[column.key] = device.__dict__[key]
            elif isinstance(column, Column) and isinstance(column.default, ColumnDefault):
                # What the ORM would fill in at a flush (`created_at`, flags): the device shows it too.
                value = column.default.arg(None) if column.default.is_callable else column.default.arg
                row[column.key] = value
                set_committed_value(device, key, value)
        rows.append(row)
    try:
        # One executemany; a RETURNING in row order would have SQLite insert one row per statement.
        await session.execute(insert(table), rows)
        grew(session, table.name, len(rows))
    except IntegrityError as exc:
        raise Conflict("the devices could not be registered; try again", field="name") from exc
    by_name = {device.name: device for device in devices}
    for chunk in id_chunks(list(by_name)):
        found = await session.execute(
            select(Device.name, Device.id).where(
                Device.product_id == product.id, Device.name.in_(chunk), Device.deleted_at.is_(None)
            )
        )
        for name, device_id in found.tuples():
            by_name[name].id = device_id
    ready_to_show(product, devices)


async def _gateway_of(session: AsyncSession, plan: _Planned, created: dict[int, Device]) -> Device | None:
    """The row's gateway, as `_place` resolved it (a registered one is in the session's identity map)."""
    if plan.gateway_row is not None:
        return created[plan.gateway_row]
    if plan.gateway_id is not None:
        return await session.get(Device, plan.gateway_id)
    return None


async def _check_together(session: AsyncSession, product_id: int, planned: list[_Planned]) -> list[ItemError]:
    """What one row cannot tell alone: names taken (in the file or the product), gateways and addresses."""
    errors: list[ItemError] = []
    existing = {
        name: device_id
        for name, device_id in (
            await session.execute(
                select(Device.name, Device.id).where(Device.product_id == product_id, Device.deleted_at.is_(None))
            )
        ).tuples()
    }
    by_name: dict[str, int] = {}
    for plan in planned:
        name = plan.data.name
        if name in existing:
            errors.append(ItemError(row=plan.row, field="name", message=f"device {existing[name]} has this name"))
        elif name in by_name:
            errors.append(ItemError(row=plan.row, field="name", message=f"row {by_name[name]} has this name too"))
        else:
            by_name[name] = plan.row
    rows = {plan.row: plan for plan in planned}
    for plan in planned:
        errors += await _place(session, plan, by_name, rows, existing)
    errors += await _addresses_free(session, planned)
    return errors


async def _place(
    session: AsyncSession,
    plan: _Planned,
    by_name: dict[str, int],
    rows: dict[int, _Planned],
    existing: dict[str, int],
) -> list[ItemError]:
    """Resolve a row's gateway: by id, by a registered device's name, or by a row of this import."""
    gateway, address = plan.data.gateway, plan.data.address
    if gateway is None and address is None:
        return []
    if gateway is None:
        return [ItemError(row=plan.row, field="gateway", message="a sub-device's address needs its gateway")]
    if address is None:
        return [ItemError(row=plan.row, field="address", message="a sub-device needs the address its gateway uses")]
    if isinstance(gateway, str) and gateway in by_name and gateway not in existing:
        parent = rows[by_name[gateway]]
        if parent.data.gateway is not None:
            return [ItemError(row=plan.row, field="gateway", message=f"row {parent.row} is a sub-device itself")]
        plan.gateway_row = parent.row
        return []
    device_id = gateway if isinstance(gateway, int) else existing.get(gateway)
    device = await session.get(Device, device_id) if device_id is not None else None
    if device is None or device.deleted_at is not None:
        return [ItemError(row=plan.row, field="gateway", message=f"no device {gateway!r} in service")]
    if device.gateway_id is not None:
        return [ItemError(row=plan.row, field="gateway", message=f"device {device.id} is a sub-device itself")]
    plan.gateway_id = device.id
    return []


async def _addresses_free(session: AsyncSession, planned: list[_Planned]) -> list[ItemError]:
    errors: list[ItemError] = []
    seen: dict[tuple[object, str], int] = {}
    for plan in planned:
        if plan.data.address is None or (plan.gateway_id is None and plan.gateway_row is None):
            continue
        key = (plan.gateway_id if plan.gateway_id is not None else f"row {plan.gateway_row}", plan.data.address)
        if key in seen:
            errors.append(ItemError(row=plan.row, field="address", message=f"row {seen[key]} has this address too"))
            continue
        seen[key] = plan.row
        if plan.gateway_id is not None:
            taken = await session.scalar(
                select(Device.id).where(
                    Device.gateway_id == plan.gateway_id,
                    Device.address == plan.data.address,
                    Device.deleted_at.is_(None),
                )
            )
            if taken is not None:
                errors.append(ItemError(row=plan.row, field="address", message=f"device {taken} has this address"))
    return errors
