"""How many of a set of sockets the server has closed: shared by the socket-limit tests and their flood."""

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
