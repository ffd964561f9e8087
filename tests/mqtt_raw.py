"""MQTT on raw sockets, for tests that need the bytes: CONNECT packets, and which sockets the server closed."""

from __future__ import annotations

import select
import socket
import time


def closed_within(sockets: list[socket.socket], seconds: float) -> int:
    """Wait up to `seconds` for the server to close each socket (EOF or reset); how many it closed."""
    by_fd = {sock.fileno(): sock for sock in sockets}
    poller = select.poll()  # not select(): descriptors above 1,023
    for fd in by_fd:
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    closed = 0
    deadline = time.monotonic() + seconds
    while by_fd and time.monotonic() < deadline:
        for fd, _event in poller.poll(100):
            sock = by_fd.get(fd)
            if sock is None:
                continue
            try:
                ended = sock.recv(1) == b""
            except (ConnectionResetError, BlockingIOError, TimeoutError):
                ended = True
            if ended:
                poller.unregister(fd)
                del by_fd[fd]
                closed += 1
    return closed


def remaining_length(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _string(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def connect_packet(client_id: str, username: str, password: str | None = None, keep_alive: int = 30) -> bytes:
    """An MQTT 3.1.1 CONNECT: clean session, keepalive 30 s unless told."""
    flags = 0x82 | (0x40 if password is not None else 0)
    header = _string("MQTT") + bytes([4, flags]) + keep_alive.to_bytes(2, "big")
    body = header + _string(client_id) + _string(username)
    if password is not None:
        body += _string(password)
    return bytes([0x10]) + remaining_length(len(body)) + body


def connack_code(port: int, packet: bytes, source: str = "127.0.0.1") -> int:
    """Send one CONNECT on a new connection; the CONNACK's return code (-1: closed without one)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as sock:
        sock.sendall(packet)
        answer = b""
        while len(answer) < 4:
            try:
                chunk = sock.recv(4 - len(answer))
            except ConnectionResetError:
                return -1
            if not chunk:
                return -1
            answer += chunk
        return answer[3] if answer[:2] == b"\x20\x02" else -1
