"""Hypothesis strategies shared by the parser fuzz tests: random, truncated and mutated payloads."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from hypothesis import strategies as st


def json_values(allow_nan: bool = False) -> st.SearchStrategy[Any]:
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=allow_nan) | st.text(max_size=20),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
        max_leaves=12,
    )


@st.composite
def mutated(
    draw: st.DrawFn, valid: dict[str, Any], field_values: st.SearchStrategy[Any], new_keys: tuple[str, ...] = ()
) -> bytes:
    """A valid message with one field (at any depth) replaced or removed, or one of `new_keys` added."""
    message: Any = json.loads(json.dumps(valid))
    container = message
    while True:
        key = draw(st.sampled_from(sorted(container)))
        if isinstance(container[key], dict) and container[key] and draw(st.booleans()):
            container = container[key]
            continue
        action = draw(st.sampled_from(["delete", "replace", "add"] if new_keys else ["delete", "replace"]))
        if action == "delete":
            del container[key]
        elif action == "replace":
            container[key] = draw(field_values)
        else:
            container[draw(st.sampled_from(new_keys))] = draw(field_values)
        return json.dumps(message).encode()


@st.composite
def truncated(draw: st.DrawFn, valid: dict[str, Any]) -> bytes:
    payload = json.dumps(valid).encode()
    return payload[: draw(st.integers(0, len(payload)))]


def payloads(
    valid: dict[str, Any],
    field_values: st.SearchStrategy[Any],
    allow_nan: bool = False,
    new_keys: tuple[str, ...] = (),
) -> st.SearchStrategy[bytes]:
    """Anything a broken or hostile device might send in place of `valid`."""
    return st.one_of(
        st.binary(max_size=200),
        st.text(max_size=100).map(str.encode),
        json_values(allow_nan).map(lambda v: json.dumps(v).encode()),
        truncated(valid),
        mutated(valid, field_values, new_keys),
    )


class UntouchableDatabase:
    """Stands where the hub's database would be: a refused message must never open a transaction."""

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        raise AssertionError("a refused message reached the database")
        yield
