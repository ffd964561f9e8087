"""NUL characters in text: PostgreSQL's text columns cannot hold one (SQLite's can), so text that
carries one is refused where it enters (an HTTP field, a device's message), on either database."""

from __future__ import annotations

from skylift.kit.errors import Invalid


def first_nul(value: object, where: str = "") -> str | None:
    """Where the first NUL character of a parsed JSON value is, as a dotted path ("" for the value
    itself, "params.desc", "device_ids.0"), or None when it holds none. Object keys count too."""
    if isinstance(value, str):
        return where if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            name = f"{where}.{key}" if where else str(key)
            if "\x00" in str(key):
                return name
            found = first_nul(item, name)
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = first_nul(item, f"{where}.{index}" if where else str(index))
            if found is not None:
                return found
    return None


def refuse_nul(value: object, where: str = "") -> None:
    """Raise a 422 naming where the value (a parameter, a form, a parsed JSON body) holds a NUL character."""
    field = first_nul(value, where)
    if field is not None:
        raise Invalid(f"{field or 'the value'} must not contain a NUL character", field=field or None)
