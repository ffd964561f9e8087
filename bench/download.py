"""Downloads of a large package file: Skylift against nginx (Debian's package, `sendfile on`) serving the same file.

Starts the real `skylift serve`, uploads one `--size-mb` package (1 GiB by default), then starts nginx on
a free loopback port with the package file's folder as its root. Each case runs curl clients at once
(1 and `--clients`, whole file and ranged: `Range: bytes=<half>-`, the rest of an interrupted download)
against Skylift's signed URL and against nginx, in turn, `--repeat` times; it reports the aggregate
MiB/s of the best run of each and the ratio Skylift / nginx. Every response's status and length are
checked. curl is the client (it costs the machine less than the servers do).

    python bench/download.py                             # 1 GiB, 1 and 32 clients
    python bench/download.py --size-mb 128 --clients 8   # a quick check
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from fleetkit import print_table, ratio, run, skylift_in_tempdir
from upload_download import (
    MIB,
    BenchError,
    MultipartBody,
    Payload,
    Server,
    allow_file_size,
    check,
    free_ports,
)

NGINX_CONF = """
worker_processes auto;
daemon off;
user root;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {files};
    }}
}}
"""
CURL_TIMEOUT_S = 600


@contextlib.contextmanager
def running_nginx(root: Path, files: Path) -> Iterator[str]:
    """nginx on a free loopback port serving `files`; its base URL."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        raise BenchError("nginx is not installed (Debian: apt-get install -y nginx)")
    (port,) = free_ports(1)
    conf = root / "nginx.conf"
    conf.write_text(NGINX_CONF.format(root=root, port=port, files=files))
    process = subprocess.Popen(
        [binary, "-c", str(conf), "-p", str(root)], stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(httpx.TransportError):
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            if time.monotonic() > deadline or process.poll() is not None:
                raise BenchError("nginx did not start")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def fetch(urls: list[str], first_byte: int, size: int) -> float:
    """Run one curl per URL at once (from `first_byte` to the end); the aggregate MiB/s."""
    expected_status, expected_bytes = ("206", size - first_byte) if first_byte else ("200", size)
    command = [
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{size_download}",
        "--max-time",
        str(CURL_TIMEOUT_S),
    ]
    if first_byte:
        command += ["-H", f"Range: bytes={first_byte}-"]
    started = time.perf_counter()
    processes = [subprocess.Popen([*command, url], stdout=subprocess.PIPE, text=True) for url in urls]
    outputs = [process.communicate()[0] for process in processes]
    seconds = time.perf_counter() - started
    for output in outputs:
        status, got = output.split()
        if status != expected_status or int(got) != expected_bytes:
            raise BenchError(f"curl got HTTP {status} and {got} bytes; expected {expected_status}, {expected_bytes}")
    return len(urls) * expected_bytes / MIB / seconds


def upload(api: httpx.Client, size: int) -> tuple[int, int]:
    allow_file_size(api, size)
    product = check(api.post("/products", json={"name": "download bench"}), 201, "POST /products").json()
    body = MultipartBody(
        fields={"product_id": str(product["id"]), "name": "bench", "version": "1.0.0", "sign_method": "MD5"},
        filename="bench.bin",
        payload=Payload(size),
    )
    headers = {"Content-Type": body.content_type, "Content-Length": str(body.length)}
    package = check(api.post("/packages", content=iter(body), headers=headers), 201, "POST /packages").json()
    return int(package["id"]), int(package["files"][0]["id"])


def measure(server: Server, size_mb: int, many: int, repeat: int) -> list[tuple[str, str]]:
    """Upload the file, start nginx on the server's copy of it, and time each case against it."""
    size = size_mb * MIB
    headers = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=f"{server.base_url}/api/v1", headers=headers, timeout=600) as api:
        package_id, file_id = upload(api, size)
        url_path = f"/packages/{package_id}/files/{file_id}/url"
        skylift_url = check(api.post(url_path, json={"ttl_seconds": 7200}), 200, "POST url").json()["url"]
    root = server.log_path.parent
    files = root / "data" / "files"
    stored = max((p for p in files.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    (root / "nginx").mkdir()
    rows = []
    with running_nginx(root / "nginx", files) as nginx:
        nginx_url = f"{nginx}/{stored.relative_to(files)}"
        for clients in (1, many):
            for name, first_byte in (("full", 0), ("ranged", size // 2)):
                ours, theirs = [], []
                for _ in range(repeat):
                    ours.append(fetch([skylift_url] * clients, first_byte, size))
                    theirs.append(fetch([nginx_url] * clients, first_byte, size))
                best, reference = max(ours), max(theirs)
                line = (
                    f"skylift {best:7.0f} MiB/s  | nginx {reference:7.0f} MiB/s  | ratio {ratio(best, reference)}"
                    f"  (runs: {', '.join(f'{r:.0f}' for r in ours)} / {', '.join(f'{r:.0f}' for r in theirs)})"
                )
                rows.append((f"{clients} client{'s' if clients > 1 else ''}, {name}", line))
                print(f"  {rows[-1][0]}: {line}", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients of the second case")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each case (the best counts)")
    args = parser.parse_args()
    with skylift_in_tempdir("skylift-download-") as server:
        rows = measure(server, args.size_mb, args.clients, args.repeat)
    print_table(f"downloads of a {args.size_mb} MiB file (aggregate MiB/s, best of {args.repeat})", rows)
    return 0


if __name__ == "__main__":
    run(main)
