"""Response header names in their canonical spelling (`Content-Length`, `ETag`), as nginx and object stores send them.

HTTP header names are case-insensitive, but some device SDKs match them byte for byte (`strstr(head,
"Content-Length")`). Starlette lower-cases every name it builds, so a response meant for such
clients passes its `send` through `canonical_send`. The server must then write the names as given:
uvicorn's h11 protocol does; its httptools protocol lower-cases them again (see `skylift serve`).
"""

from __future__ import annotations

from starlette.types import Message, Send

# Names whose canonical spelling is not each hyphen-separated word capitalised.
_IRREGULAR = {
    b"etag": b"ETag",
    b"content-md5": b"Content-MD5",
    b"www-authenticate": b"WWW-Authenticate",
}


def canonical_name(name: bytes) -> bytes:
    """`content-length` -> `Content-Length`, `etag` -> `ETag`."""
    lowered = name.lower()
    return _IRREGULAR.get(lowered) or lowered.title()


def canonical_send(send: Send) -> Send:
    """`send`, with the header names of the response start spelled canonically; body messages pass as they are."""

    async def send_canonical(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(canonical_name(name), value) for name, value in message.get("headers", ())]
            message = {**message, "headers": headers}
        await send(message)

    return send_canonical
