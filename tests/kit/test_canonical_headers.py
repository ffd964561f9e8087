"""Spec for canonical response header names (skylift.kit.canonical_headers)."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Message

from skylift.kit.canonical_headers import canonical_name, canonical_send


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        (b"content-length", b"Content-Length"),
        (b"CONTENT-RANGE", b"Content-Range"),
        (b"etag", b"ETag"),
        (b"ETAG", b"ETag"),
        (b"accept-ranges", b"Accept-Ranges"),
        (b"www-authenticate", b"WWW-Authenticate"),
        (b"x-request-id", b"X-Request-Id"),
    ],
)
def test_canonical_name(name: bytes, canonical: bytes) -> None:
    assert canonical_name(name) == canonical


def test_only_the_response_start_is_respelled() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    start = {"type": "http.response.start", "status": 206, "headers": [(b"content-range", b"bytes 0-0/9")]}
    body = {"type": "http.response.body", "body": b"x", "more_body": False}

    async def respond() -> None:
        wrapped = canonical_send(send)
        await wrapped(start)
        await wrapped(body)

    asyncio.run(respond())
    assert sent[0] == {"type": "http.response.start", "status": 206, "headers": [(b"Content-Range", b"bytes 0-0/9")]}
    assert sent[1] is body
    assert start["headers"] == [(b"content-range", b"bytes 0-0/9")]  # the caller's message is left as it was
