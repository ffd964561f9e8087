"""Upload/download benchmark: throughput and server memory for one large package file.

Starts the real `skylift serve` in a subprocess with a throwaway data dir, uploads a streamed
multipart package of `--size-mb` MiB, downloads it back (whole, then resumed with Range), checks
every byte via MD5, and reports MiB/s and the server's RSS so a reader can see memory stays flat.

    python bench/upload_download.py --size-mb 64
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

MIB = 1024 * 1024
CHUNK = MIB
HEALTH_TIMEOUT_S = 30.0
SAMPLE_INTERVAL_S = 0.2
# Generous per-operation timeouts: a slow disk must not fail the run, but a stall must still end it.
HTTP_TIMEOUT = httpx.Timeout(connect=10.0, read=300.0, write=300.0, pool=10.0)


class BenchError(RuntimeError):
    """A failed check; reported with the server's log tail."""


# ---------------------------------------------------------------- server process


# Below Linux's ephemeral range (32768-60999), where the fleet's thousands of client sockets get theirs:
# a port the kernel hands out for bind(0) can be taken by one of them before the server binds it.
SERVER_PORTS = (20000, 32767)


def free_ports(count: int) -> list[int]:
    # Hold every socket until all are bound so that no port is handed out twice.
    sockets: list[socket.socket] = []
    try:
        while len(sockets) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind(("127.0.0.1", random.randint(*SERVER_PORTS)))
            except OSError:
                sock.close()
                continue
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    token: str
    log_path: Path
    mqtt_port: int = 0  # where devices connect: the embedded broker's port, or an external Mosquitto's
    broker_pid: int | None = None  # that Mosquitto's process, when there is one

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(server log unreadable: {exc})"
        return "\n".join(text.splitlines()[-lines:]) or "(server log is empty)"


def start_server(root: Path, extra_env: dict[str, str] | None = None) -> Server:
    """`skylift serve` on free loopback ports with a fresh data dir under `root` (plus `extra_env` settings)."""
    http_port, mqtt_port = free_ports(2)
    token = secrets.token_hex(20)  # 40 characters
    # Drop inherited SKYLIFT_* settings (database URL, public URL...) so the run is self-contained.
    env = {key: value for key, value in os.environ.items() if not key.startswith("SKYLIFT_")}
    env.update(
        SKYLIFT_DATA_DIR=str(root / "data"),
        SKYLIFT_HTTP_HOST="127.0.0.1",
        SKYLIFT_HTTP_PORT=str(http_port),
        SKYLIFT_MQTT_HOST="127.0.0.1",
        SKYLIFT_MQTT_PORT=str(mqtt_port),
        SKYLIFT_ADMIN_TOKEN=token,
        SKYLIFT_LOG_LEVEL="WARNING",
    )
    env.update(extra_env or {})
    log_path = root / "server.log"
    with log_path.open("wb") as log:
        # The child keeps its own copy of the descriptor; a file (not a pipe) can never fill up and block it.
        process = subprocess.Popen(
            [sys.executable, "-m", "skylift.cli", "serve"],
            env=env,
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Server(process, f"http://127.0.0.1:{http_port}", token, log_path, mqtt_port)


def wait_healthy(server: Server) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise BenchError(f"server exited during start-up with code {server.process.returncode}")
            with contextlib.suppress(httpx.TransportError):
                if client.get(f"{server.base_url}/healthz").status_code == 200:
                    return
            time.sleep(0.1)
    raise BenchError(f"server not healthy after {HEALTH_TIMEOUT_S:.0f} s")


def stop_server(server: Server) -> None:
    if server.process.poll() is not None:
        return
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=5)


# ---------------------------------------------------------------- memory


def report_failure(exc: Exception, server: Server | None) -> int:
    """Say why a run failed, with the server's last log lines; the exit code to return."""
    if not isinstance(exc, BenchError | httpx.HTTPError):
        traceback.print_exc()
    print(f"FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
    if server is not None:
        stop_server(server)  # Flush the server's last words before reading them.
        print(f"--- server log tail ({server.log_path.name}) ---", file=sys.stderr)
        print(server.log_tail(), file=sys.stderr)
    return 1


def proc_status_kib(pid: int | str, key: str) -> int:
    """A `VmRSS`/`VmHWM`-style line of /proc/<pid>/status, in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise BenchError(f"/proc/{pid}/status has no {key}")


class RssSampler:
    """Polls the server's VmRSS in a thread, because VmHWM alone cannot tell the phases apart."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.max_kib = 0
        self.samples = 0

    def _run(self) -> None:
        while True:
            with contextlib.suppress(OSError, BenchError):
                self.max_kib = max(self.max_kib, proc_status_kib(self._pid, "VmRSS"))
                self.samples += 1
            if self._stop.wait(SAMPLE_INTERVAL_S):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        # One last sample so a phase shorter than the interval still has its end state.
        with contextlib.suppress(OSError, BenchError):
            self.max_kib = max(self.max_kib, proc_status_kib(self._pid, "VmRSS"))
            self.samples += 1


# ---------------------------------------------------------------- payload and multipart body


class Payload:
    """`size` pseudo-random bytes made on the fly in 1 MiB chunks; the MD5 is known once they are consumed."""

    def __init__(self, size: int) -> None:
        self.size = size
        # Twice the block, so any rotation of it is one slice (one copy per chunk, not three).
        self._doubled = memoryview(os.urandom(CHUNK) * 2)
        self._md5 = hashlib.md5(usedforsecurity=False)
        self.produced = 0

    def chunks(self) -> Iterator[bytes]:
        index = 0
        while self.produced < self.size:
            # Rotate the block by an odd stride and stamp the index, so no two chunks are equal
            # (a repeating file would flatter any dedup or compression on the way).
            shift = (index * 4099) % CHUNK
            length = min(CHUNK, self.size - self.produced)
            chunk = b"".join((index.to_bytes(8, "big")[:length], self._doubled[shift + 8 : shift + length]))
            self._md5.update(chunk)
            self.produced += len(chunk)
            index += 1
            yield chunk

    @property
    def md5(self) -> str:
        if self.produced != self.size:
            raise BenchError(f"payload only produced {self.produced} of {self.size} bytes")
        return self._md5.hexdigest()


@dataclass
class MultipartBody:
    """A multipart/form-data body built by hand, because httpx's `files=` reads the whole file into memory."""

    fields: dict[str, str]
    filename: str
    payload: Payload

    def __post_init__(self) -> None:
        self.boundary = "skylift-bench-" + secrets.token_hex(16)
        parts = []
        for name, value in self.fields.items():
            parts.append(
                f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
            )
        parts.append(
            (
                f"--{self.boundary}\r\n"
                f'Content-Disposition: form-data; name="file"; filename="{self.filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
        )
        self._head = b"".join(parts)
        self._tail = f"\r\n--{self.boundary}--\r\n".encode()

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    @property
    def length(self) -> int:
        # Known up front, so the request carries a Content-Length instead of chunked encoding.
        return len(self._head) + self.payload.size + len(self._tail)

    def __iter__(self) -> Iterator[bytes]:
        yield self._head
        yield from self.payload.chunks()
        yield self._tail


# ---------------------------------------------------------------- API steps


def check(response: httpx.Response, expected: int, what: str) -> httpx.Response:
    if response.status_code != expected:
        raise BenchError(f"{what}: HTTP {response.status_code} (expected {expected}): {response.text[:500]}")
    return response


def allow_file_size(client: httpx.Client, size: int) -> str | None:
    """Raise the run-time upload limit (default 1000 MiB) through the settings API when the payload exceeds it."""
    current = check(client.get("/settings"), 200, "GET /settings").json()
    limit_mib = current["max_file_size_mb"]
    needed_mib = -(-size // MIB)
    if limit_mib * MIB >= size:
        return None
    check(client.put("/settings", json={**current, "max_file_size_mb": needed_mib}), 200, "PUT /settings")
    return f"raised max_file_size_mb {limit_mib} -> {needed_mib} via PUT /api/v1/settings"


@dataclass
class Download:
    seconds: float
    size: int
    md5: str


def download_whole(client: httpx.Client, url: str) -> Download:
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    started = time.perf_counter()
    with client.stream("GET", url) as response:
        check(response, 200, "GET download")
        for chunk in response.iter_bytes():
            digest.update(chunk)
            size += len(chunk)
    return Download(time.perf_counter() - started, size, digest.hexdigest())


def download_resumed(client: httpx.Client, url: str, total: int) -> Download:
    """Read the first half, drop the connection as an interrupted device would, then fetch the rest with Range."""
    half = total // 2
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    started = time.perf_counter()
    with client.stream("GET", url) as response:
        check(response, 200, "GET download (first half)")
        for chunk in response.iter_bytes():
            take = chunk[: half - size]
            digest.update(take)
            size += len(take)
            if size >= half:
                break
    if size != half:
        raise BenchError(f"first half of the resumed download stopped at {size} of {half} bytes")
    with client.stream("GET", url, headers={"Range": f"bytes={half}-"}) as response:
        check(response, 206, "GET download (Range for the rest)")
        content_range = response.headers.get("content-range", "")
        if content_range != f"bytes {half}-{total - 1}/{total}":
            raise BenchError(f"unexpected Content-Range {content_range!r}")
        for chunk in response.iter_bytes():
            digest.update(chunk)
            size += len(chunk)
    return Download(time.perf_counter() - started, size, digest.hexdigest())


def verify(name: str, got: Download, size: int, md5: str) -> None:
    if got.size != size:
        raise BenchError(f"{name}: received {got.size} bytes, expected {size}")
    if got.md5 != md5:
        raise BenchError(f"{name}: MD5 {got.md5} != uploaded {md5}")


# ---------------------------------------------------------------- run and report


def rate(size: int, seconds: float) -> float:
    return size / MIB / seconds if seconds > 0 else float("inf")


def run(server: Server, size: int) -> list[tuple[str, str]]:
    pid = server.process.pid
    headers = {"Authorization": f"Bearer {server.token}"}
    rows: list[tuple[str, str]] = []
    with httpx.Client(base_url=f"{server.base_url}/api/v1", headers=headers, timeout=HTTP_TIMEOUT) as client:
        note = allow_file_size(client, size)
        product = check(client.post("/products", json={"name": "bench"}), 201, "POST /products").json()

        payload = Payload(size)
        body = MultipartBody(
            fields={"product_id": str(product["id"]), "name": "bench", "version": "1.0.0", "sign_method": "MD5"},
            filename="bench.bin",
            payload=payload,
        )
        baseline_kib = proc_status_kib(pid, "VmRSS")
        with RssSampler(pid) as upload_rss:
            started = time.perf_counter()
            response = client.post(
                "/packages",
                content=iter(body),
                headers={"Content-Type": body.content_type, "Content-Length": str(body.length)},
            )
            upload_s = time.perf_counter() - started
        package = check(response, 201, "POST /packages").json()
        uploaded_md5 = payload.md5
        file = package["files"][0]
        if file["size"] != size:
            raise BenchError(f"server reports size {file['size']}, uploaded {size}")
        if file["md5"] != uploaded_md5:
            raise BenchError(f"server reports MD5 {file['md5']}, uploaded {uploaded_md5}")

        url_path = f"/packages/{package['id']}/files/{file['id']}/url"
        url = check(client.post(url_path, json={"ttl_seconds": 3600}), 200, f"POST {url_path}").json()["url"]

        with RssSampler(pid) as download_rss:
            whole = download_whole(client, url)
            verify("download", whole, size, uploaded_md5)
            resumed = download_resumed(client, url, size)
            verify("resumed download", resumed, size, uploaded_md5)

    hwm_kib = proc_status_kib(pid, "VmHWM")
    client_hwm_kib = proc_status_kib("self", "VmHWM")
    size_mib = size / MIB

    def mib(kib: int) -> str:
        return f"{kib / 1024:9.1f} MiB"

    rows += [
        ("file size", f"{size_mib:9.1f} MiB ({size} bytes)"),
        ("md5 (client = server = downloads)", uploaded_md5),
        ("upload", f"{rate(size, upload_s):9.1f} MiB/s  ({upload_s:.2f} s)"),
        ("download", f"{rate(size, whole.seconds):9.1f} MiB/s  ({whole.seconds:.2f} s)"),
        ("resumed download (half + Range)", f"{rate(size, resumed.seconds):9.1f} MiB/s  ({resumed.seconds:.2f} s)"),
        ("server RSS baseline (before upload)", mib(baseline_kib)),
        ("server RSS max during upload", f"{mib(upload_rss.max_kib)}  ({upload_rss.samples} samples)"),
        ("server RSS max during downloads", f"{mib(download_rss.max_kib)}  ({download_rss.samples} samples)"),
        ("server VmHWM (lifetime peak)", mib(hwm_kib)),
        ("upload RSS growth / file size", f"{(upload_rss.max_kib - baseline_kib) / 1024 / size_mib:9.2%}"),
        ("download RSS growth / file size", f"{(download_rss.max_kib - baseline_kib) / 1024 / size_mib:9.2%}"),
        ("server VmHWM / file size", f"{hwm_kib / 1024 / size_mib:9.2%}"),
        ("bench client VmHWM", mib(client_hwm_kib)),
    ]
    if note:
        rows.append(("note", note))
    return rows


def print_table(rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    rule = "-" * (width + 40)
    print(rule)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(rule)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="payload size in MiB (default: 1024)")
    args = parser.parse_args(argv)
    if args.size_mb < 1:
        parser.error("--size-mb must be at least 1")

    root = Path(tempfile.mkdtemp(prefix="skylift-bench-"))
    server: Server | None = None
    try:
        server = start_server(root)
        wait_healthy(server)
        rows = run(server, args.size_mb * MIB)
    except Exception as exc:
        return report_failure(exc, server)
    finally:
        if server is not None:
            stop_server(server)
        shutil.rmtree(root, ignore_errors=True)
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
