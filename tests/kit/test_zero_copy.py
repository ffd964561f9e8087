"""uvicorn's h11 protocol with zero-copy sends: exact bytes, keep-alive after a sendfile body, a client that
leaves half way, and header names as the app spells them."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from skylift.kit.zero_copy import EXTENSION, ZeroCopyH11Protocol, send_file_range
from skylift_testkit import free_port

SIZE = 3_000_000
DATA = os.urandom(SIZE)


def make_app(path: Path) -> Any:
    """Sends the file, or the part `?offset=count` names, by zero-copy when the server offers it."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        offset, count = 0, SIZE
        if scope["query_string"]:
            first, _, length = scope["query_string"].decode().partition("=")
            offset, count = int(first), int(length)
        zero_copy = EXTENSION in scope.get("extensions", {})
        headers = [(b"Content-Length", str(count).encode()), (b"X-Zero-Copy", b"yes" if zero_copy else b"no")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        with path.open("rb") as file:
            if zero_copy:
                await send({"type": EXTENSION, "file": file, "offset": offset, "count": count, "more_body": False})
            else:
                file.seek(offset)
                await send({"type": "http.response.body", "body": file.read(count), "more_body": False})

    return app


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    path = tmp_path_factory.mktemp("zero-copy") / "file.bin"
    path.write_bytes(DATA)
    chosen = free_port()
    config = uvicorn.Config(make_app(path), host="127.0.0.1", port=chosen, http=ZeroCopyH11Protocol, log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield chosen
    server.should_exit = True
    thread.join(timeout=30)


def read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """(head, body) of one response with a Content-Length, read off the socket."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, "the connection closed before the head"
        buffer += chunk
    head, _, body = buffer.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.startswith(b"Content-Length:"))
    while len(body) < length:
        chunk = sock.recv(1 << 20)
        assert chunk, "the connection closed before the body was complete"
        body += chunk
    assert len(body) == length
    return head, body


def request(query: str = "") -> bytes:
    return f"GET /file{'?' + query if query else ''} HTTP/1.1\r\nHost: test\r\n\r\n".encode()


class TestZeroCopySends:
    def test_the_whole_file_then_a_part_on_the_same_connection(self, port: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(request())
            head, body = read_response(sock)
            assert b"X-Zero-Copy: yes" in head
            assert b"Content-Length: 3000000" in head  # spelled as the app spelled it
            assert body == DATA
            sock.sendall(request("1000=2345"))
            _, part = read_response(sock)
            assert part == DATA[1000:3345]

    def test_a_client_that_leaves_half_way_leaves_the_server_serving(self, port: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(request())
            assert sock.recv(4096)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(request("5=10"))
            _, part = read_response(sock)
            assert part == DATA[5:15]


class TestSendFileRange:
    def test_a_closed_connection_stops_the_transfer(self, tmp_path: Path) -> None:
        path = tmp_path / "f.bin"
        path.write_bytes(DATA)
        left, right = socket.socketpair()
        with left, right, path.open("rb") as file:
            left.setblocking(False)
            with pytest.raises(ConnectionError):
                send_file_range(left.fileno(), file.fileno(), 0, SIZE, lambda: True)

    def test_a_file_shorter_than_announced_is_an_error(self, tmp_path: Path) -> None:
        path = tmp_path / "f.bin"
        path.write_bytes(b"short")
        left, right = socket.socketpair()
        with left, right, path.open("rb") as file:
            left.setblocking(False)
            with pytest.raises(ConnectionError, match="shorter"):
                send_file_range(left.fileno(), file.fileno(), 0, 100, lambda: False)
            assert right.recv(100) == b"short"
