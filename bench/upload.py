"""A large package upload: MiB/s and how much the server's memory grows while it streams to disk.

Starts the real `skylift serve`, streams a `--size-mb` multipart upload (1 GiB by default, built on the
fly, never held in memory) to `POST /api/v1/packages`, and samples the server's VmRSS every 0.2 s. The
server must compute the file's MD5 and SHA-256 and write it to disk, so the reference, measured in the
same run, is this machine hashing the same amount of data with MD5 and SHA-256 on one thread.
`--repeat` uploads (each a new package); the best counts.

    python bench/upload.py
    python bench/upload.py --size-mb 128 --repeat 1     # a quick check
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time

import httpx

from fleetkit import print_table, ratio, run, skylift_in_tempdir
from upload_download import (
    CHUNK,
    MIB,
    BenchError,
    MultipartBody,
    Payload,
    RssSampler,
    Server,
    allow_file_size,
    check,
    proc_status_kib,
)


def hash_rate(size: int) -> float:
    """MiB/s of MD5 and SHA-256 over `size` bytes on one thread (what the server must do at least)."""
    block = os.urandom(CHUNK)
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    started = time.perf_counter()
    for _ in range(size // CHUNK):
        md5.update(block)
        sha256.update(block)
    return size / MIB / (time.perf_counter() - started)


def upload_once(api: httpx.Client, product_id: int, pid: int, size: int, version: str) -> tuple[float, int]:
    """MiB/s of one upload, and the server's RSS growth during it in KiB."""
    payload = Payload(size)
    body = MultipartBody(
        fields={"product_id": str(product_id), "name": "bench", "version": version, "sign_method": "MD5"},
        filename="bench.bin",
        payload=payload,
    )
    baseline = proc_status_kib(pid, "VmRSS")
    headers = {"Content-Type": body.content_type, "Content-Length": str(body.length)}
    with RssSampler(pid) as rss:
        started = time.perf_counter()
        response = api.post("/packages", content=iter(body), headers=headers)
        seconds = time.perf_counter() - started
    file = check(response, 201, "POST /packages").json()["files"][0]
    if file["size"] != size or file["md5"] != payload.md5:
        raise BenchError(f"the server stored {file['size']} bytes with MD5 {file['md5']}; sent {size}, {payload.md5}")
    return size / MIB / seconds, rss.max_kib - baseline


def measure(server: Server, size_mb: int, repeat: int) -> list[tuple[str, str]]:
    size = size_mb * MIB
    headers = {"Authorization": f"Bearer {server.token}"}
    runs = []
    references = []
    with httpx.Client(base_url=f"{server.base_url}/api/v1", headers=headers, timeout=900) as api:
        allow_file_size(api, size)
        product = check(api.post("/products", json={"name": "upload bench"}), 201, "POST /products").json()
        for attempt in range(repeat):
            references.append(hash_rate(size))
            runs.append(upload_once(api, int(product["id"]), server.process.pid, size, f"1.0.{attempt}"))
            print(f"  run {attempt + 1}: {runs[-1][0]:.0f} MiB/s, RSS +{runs[-1][1] / 1024:.1f} MiB", flush=True)
    best = max(rate for rate, _ in runs)
    growth = max(grown for _, grown in runs) / 1024
    reference = max(references)
    return [
        ("upload", f"{best:7.0f} MiB/s (best of {repeat}: {', '.join(f'{r:.0f}' for r, _ in runs)})"),
        ("MD5 + SHA-256 on one thread", f"{reference:7.0f} MiB/s  | ratio upload / hashing {ratio(best, reference)}"),
        ("server RSS growth (largest)", f"{growth:7.1f} MiB for {size_mb} MiB ({growth / size_mb:.2%})"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with skylift_in_tempdir("skylift-upload-") as server:
        rows = measure(server, args.size_mb, args.repeat)
    print_table(f"upload of a {args.size_mb} MiB file", rows)
    return 0


if __name__ == "__main__":
    run(main)
