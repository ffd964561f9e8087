"""Strict inputs: an unknown query parameter or a loosely spelled boolean is refused, never ignored.

A misspelt filter (`?stat=failed`) that is silently dropped answers the whole list, and the operator
believes the filter worked; `"enabled": "no"` read as false disables a device by accident.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BeforeValidator

from skylift.kit.errors import Invalid
from skylift.kit.nul import refuse_nul

_known: dict[int, frozenset[str]] = {}


def _walk(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _walk(sub)
    return names


def _query_names(route: APIRoute) -> frozenset[str]:
    names = _known.get(id(route))
    if names is None:
        names = _known[id(route)] = frozenset(_walk(route.dependant))
    return names


def reject_unknown_query(request: Request) -> None:
    """A dependency for routers: 422 naming every query parameter the route does not take."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    unknown = sorted(set(request.query_params.keys()) - _query_names(route))
    if unknown:
        known = ", ".join(sorted(_query_names(route))) or "none"
        plural = "s" if len(unknown) > 1 else ""
        raise Invalid(
            f"unknown query parameter{plural}: {', '.join(unknown)} (this call takes: {known})", field=unknown[0]
        )


def _strict_bool(value: object) -> object:
    # Query strings and form fields are text: only the two words JSON uses for booleans are read as one.
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise ValueError("must be true or false")


# A boolean sent as text (a query parameter, a form field): `true` or `false`, nothing else.
TextBool = Annotated[bool, BeforeValidator(_strict_bool)]


async def reject_nul_characters(request: Request) -> None:
    """A dependency for routers: 422 naming the first query or path parameter, or JSON body field, that
    holds a NUL character. PostgreSQL's text cannot hold one (SQLite's can): such a value would fail
    in the database, so it is refused where it enters, the same on either database."""
    for name, value in [*request.query_params.multi_items(), *request.path_params.items()]:
        refuse_nul(str(value), name)
    if not request.headers.get("content-type", "").startswith("application/json"):
        return
    body = await request.body()  # kept by Starlette for the route to parse again
    if b"\\u0000" not in body:  # JSON escapes the character; raw, it is not JSON at all
        return
    try:
        parsed = json.loads(body)
    except ValueError:
        return  # the route answers what is wrong with the body
    refuse_nul(parsed)
