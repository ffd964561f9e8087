"""Package storage holds only files that packages reference: no upload leaves a file behind, not even a crash."""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from skylift_testkit import Fleet, Ports, Server, database_rows, firmware, running_server, wait_until

MIB = 1024 * 1024
BOUNDARY = "storage-boundary"
TWO_HOURS = 2 * 3600


def files_in(folder: Path) -> set[str]:
    """The files an operator would see there (dot files, such as the storage's clock marker, left out)."""
    if not folder.exists():
        return set()
    return {entry.name for entry in folder.iterdir() if entry.is_file() and not entry.name.startswith(".")}


def stored(server: Server) -> set[str]:
    """Package files in place (the storage root)."""
    return files_in(server.data_dir / "files")


def incoming(server: Server) -> set[str]:
    return files_in(server.data_dir / "files" / ".incoming")


def orphaned(server: Server) -> set[str]:
    return files_in(server.data_dir / "files" / "orphaned")


def referenced(data_dir: Path, package_id: object = None) -> set[str]:
    """Storage keys of the committed packages (or of one), read from the server's own database."""
    query, params = "SELECT storage_key FROM package_files", ()
    if package_id is not None:
        query, params = query + " WHERE package_id = ?", (package_id,)
    return {row[0] for row in database_rows(data_dir, query, *params)}


def multipart(fleet: Fleet, version: str, files: list[tuple[str, bytes]], closed: bool = True) -> bytes:
    fields = {"product_id": str(fleet.product_id), "name": f"fw {version}", "version": version}
    parts = [f'Content-Disposition: form-data; name="{n}"\r\n\r\n{v}'.encode() for n, v in fields.items()]
    parts += [
        f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n\r\n'.encode() + content
        for name, content in files
    ]
    body = b"".join(f"--{BOUNDARY}\r\n".encode() + part + b"\r\n" for part in parts)
    return body + (f"--{BOUNDARY}--\r\n".encode() if closed else b"")


def post_multipart(api: httpx.Client, body: bytes) -> httpx.Response:
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    return api.post("/packages", content=body, headers=headers, timeout=60)


def open_upload(server: Server, body_length: int) -> socket.socket:
    """A raw connection that has sent the headers of an upload declaring `body_length` bytes."""
    url = urlsplit(server.http_url)
    head = (
        f"POST /api/v1/packages HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {server.admin_token}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {body_length}\r\n"
        "Connection: close\r\n\r\n"
    )
    sock = socket.create_connection((url.hostname, url.port), timeout=30)
    sock.sendall(head.encode())
    return sock


def downloaded(api: httpx.Client, package: dict[str, object], file: dict[str, object]) -> bytes:
    url = api.post(f"/packages/{package['id']}/files/{file['id']}/url", json={}).json()["url"]
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200, response.text
    return response.content


def metric(server: Server, name: str) -> float:
    for line in httpx.get(f"{server.http_url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


@pytest.fixture(scope="module")
def storage_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of this module's own: the tests look at every file in its storage."""
    with running_server(tmp_path_factory.mktemp("storage") / "data") as running:
        yield running


@pytest.fixture
def fleet(storage_server: Server) -> Iterator[Fleet]:
    with storage_server.api() as api:
        yield Fleet.create(api)


class TestRefusedUploadsLeaveNoFile:
    def test_a_client_gone_mid_file(self, storage_server: Server, fleet: Fleet) -> None:
        before = stored(storage_server)
        body = multipart(fleet, "1.0.0", [("fw.bin", firmware(10 * MIB, seed=1))])
        with open_upload(storage_server, len(body)) as sock:
            sock.sendall(body[: 3 * MIB])
            # The part is being written to a temporary file; then the client goes away.
            wait_until(lambda: incoming(storage_server), what="the upload's temporary file")
        wait_until(lambda: not incoming(storage_server), what="the temporary file to be removed")
        assert stored(storage_server) == before
        assert "unexpected ClientDisconnect" not in storage_server.log()  # not a server error
        assert fleet.api.get("/packages", params={"product_id": fleet.product_id}).json()["items"] == []

    def test_a_file_over_the_size_limit(self, storage_server: Server, fleet: Fleet) -> None:
        before = stored(storage_server)
        settings = fleet.api.get("/settings").json()
        try:
            assert fleet.api.put("/settings", json={**settings, "max_file_size_mb": 1}).status_code == 200
            response = post_multipart(fleet.api, multipart(fleet, "1.0.0", [("fw.bin", firmware(3 * MIB, seed=2))]))
            assert response.status_code == 413, response.text
        finally:
            fleet.api.put("/settings", json=settings)
        assert incoming(storage_server) == set()
        assert stored(storage_server) == before

    def test_ten_uploads_without_their_closing_boundary(self, storage_server: Server, fleet: Fleet) -> None:
        # Once seen as 49 MiB of temporary files kept until the next restart.
        before = stored(storage_server)
        for attempt in range(10):
            body = multipart(fleet, f"1.0.{attempt}", [("fw.bin", firmware(5 * MIB, seed=attempt))], closed=False)
            response = post_multipart(fleet.api, body)
            assert response.status_code == 400, response.text
            assert incoming(storage_server) == set()
        assert stored(storage_server) == before

    def test_a_bad_part_after_a_stored_file(self, storage_server: Server, fleet: Fleet) -> None:
        before = stored(storage_server)
        body = multipart(fleet, "1.0.0", [("fw.bin", firmware(3 * MIB, seed=3)), ("setup.exe", b"MZ")])
        assert post_multipart(fleet.api, body).status_code == 422
        assert incoming(storage_server) == set()
        assert stored(storage_server) == before

    def test_a_package_refused_once_its_files_are_received(self, storage_server: Server, fleet: Fleet) -> None:
        fleet.package(b"first", "2.0.0")
        before = stored(storage_server)
        files = [("a.bin", firmware(2 * MIB, seed=4)), ("b.bin", firmware(MIB, seed=5))]
        assert post_multipart(fleet.api, multipart(fleet, "2.0.0", files)).status_code == 409
        assert incoming(storage_server) == set()
        assert stored(storage_server) == before

    def test_a_stored_package_adds_exactly_its_files(self, storage_server: Server, fleet: Fleet) -> None:
        before = stored(storage_server)
        package = fleet.package(b"firmware", "3.0.0")
        assert len(stored(storage_server) - before) == 1
        assert incoming(storage_server) == set()
        assert stored(storage_server) <= referenced(storage_server.data_dir)
        assert downloaded(fleet.api, package, package["files"][0]) == b"firmware"


def backdate(path: Path, seconds: int) -> None:
    # Relative to the time the file system gave the file: the test's clock may be shifted.
    then = path.stat().st_mtime - seconds
    os.utime(path, (then, then))


class TestSweepAtStart:
    def test_old_leftovers_are_swept_young_ones_kept(self, tmp_path: Path) -> None:
        data_dir, ports = tmp_path / "data", Ports()
        files = data_dir / "files"
        with running_server(data_dir, ports) as server, server.api() as api:
            fleet = Fleet.create(api)
            kept = fleet.package(firmware(3000, seed=10), "1.0.0")
            misplaced = fleet.package(firmware(4000, seed=11), "1.0.1")
        key = next(iter(referenced(data_dir) - referenced(data_dir, kept["id"])))
        (files / "orphaned").mkdir()
        (files / key).rename(files / "orphaned" / key)  # as a start against the wrong database would leave it
        (files / "old.bin").write_bytes(b"o" * 700)
        backdate(files / "old.bin", TWO_HOURS)
        (files / "young.bin").write_bytes(b"y" * 10)
        (files / ".incoming" / "old-upload.bin").write_bytes(b"u" * 500)
        backdate(files / ".incoming" / "old-upload.bin", TWO_HOURS)
        (files / ".incoming" / "young-upload.bin").write_bytes(b"u" * 5)

        with running_server(data_dir, ports) as server, server.api() as api:
            assert stored(server) == referenced(data_dir) | {"young.bin"}
            assert orphaned(server) == {"old.bin"}
            assert incoming(server) == {"young-upload.bin"}
            assert downloaded(api, misplaced, misplaced["files"][0]) == firmware(4000, seed=11)
            assert downloaded(api, kept, kept["files"][0]) == firmware(3000, seed=10)
            assert metric(server, 'skylift_storage_swept_files_total{kind="orphaned"}') == 1
            assert metric(server, 'skylift_storage_swept_bytes_total{kind="orphaned"}') == 700
            assert metric(server, 'skylift_storage_swept_files_total{kind="incoming"}') == 1
            assert metric(server, 'skylift_storage_swept_bytes_total{kind="incoming"}') == 500
            log = server.log()
            assert "moved 1 package file(s) that no package references, 700 bytes, into orphaned/" in log
            assert "removed 1 unfinished upload(s), 500 bytes" in log
            assert "brought 1 referenced package file(s) back" in log
            assert "left 2 unreferenced file(s) younger than 3600 s alone" in log


class TestKilledMidUpload:
    """kill -9 between an upload's last byte and its commit, then a restart on the same data."""

    @pytest.mark.parametrize("moment", ["file written", "file in place"])
    def test_no_orphan_remains_and_committed_packages_keep_their_files(self, tmp_path: Path, moment: str) -> None:
        data_dir, ports = tmp_path / "data", Ports()
        sweep_at_once = {"SKYLIFT_STORAGE_SWEEP_MIN_AGE_SECONDS": "0"}  # one server: nobody else is uploading
        if moment == "file written":
            contents = [firmware(16 * MIB, seed=21)]
        else:  # many small files: the kill lands while they are moved in place, before the commit
            contents = [firmware(64 * 1024, seed=30 + i) for i in range(16)]
        with running_server(data_dir, ports, **sweep_at_once) as server, server.api() as api:
            fleet = Fleet.create(api)
            committed = fleet.package(firmware(5000, seed=20), "1.0.0")
            before = stored(server)
            body = multipart(fleet, "2.0.0", [(f"fw{i}.bin", content) for i, content in enumerate(contents)])
            with open_upload(server, len(body)) as sock:
                sender = threading.Thread(target=send_quietly, args=(sock, body))
                sender.start()

                def reached() -> bool:
                    # Had the poll missed the written file, the kill lands later; the invariants still hold.
                    written = moment == "file written" and upload_of_size(server, len(contents[0]))
                    return written or bool(stored(server) - before)

                wait_until(reached, timeout=60, interval=0.0005, what=f"the {moment}")
                server.process.send_signal(signal.SIGKILL)
                server.process.wait()
                sender.join()
            unreferenced = stored(server) - referenced(data_dir)
            unfinished = incoming(server)

        with running_server(data_dir, ports, **sweep_at_once) as server, server.api() as api:
            # Whatever the moment the kill hit, storage holds exactly the committed packages' files.
            assert incoming(server) == set()
            assert stored(server) == referenced(data_dir)
            assert orphaned(server) == unreferenced
            assert metric(server, 'skylift_storage_swept_files_total{kind="orphaned"}') == len(unreferenced)
            assert metric(server, 'skylift_storage_swept_files_total{kind="incoming"}') == len(unfinished)
            assert downloaded(api, committed, committed["files"][0]) == firmware(5000, seed=20)
            packages = api.get("/packages", params={"product_id": fleet.product_id}).json()["items"]
            for package in packages[1:]:  # the interrupted one, had it committed: every file intact
                assert [downloaded(api, package, file) for file in package["files"]] == contents
            print(f"killed at {moment!r}: {len(unreferenced)} orphan(s), {len(unfinished)} unfinished upload(s)")
            assert unreferenced or unfinished or len(packages) == 2


def send_quietly(sock: socket.socket, body: bytes) -> None:
    try:
        sock.sendall(body)
    except OSError:
        pass  # the server was killed mid-body


def upload_of_size(server: Server, size: int) -> bool:
    for name in incoming(server):
        try:
            if (server.data_dir / "files" / ".incoming" / name).stat().st_size >= size:
                return True
        except FileNotFoundError:
            continue
    return False
