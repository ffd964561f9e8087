"""The HTTP API answers every input with a JSON 4xx, never a 5xx, and reads no stranger's body."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest
from fastapi import FastAPI

from skylift.app import install_error_handlers
from skylift_testkit import Fleet, Server, firmware, running_server, unique

TOO_BIG_ID = 2**63
FIFTY_MB = 50 * 1024 * 1024


def assert_json_error(response: httpx.Response, status: int | tuple[int, ...]) -> dict[str, Any]:
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, response.text
    assert response.headers["content-type"].startswith("application/json"), response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "field"}
    return dict(error)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


def answer_to_partial_body(server: Server, path: str, declared: int, headers: dict[str, str]) -> tuple[int, bytes]:
    """POST declaring a `declared`-byte body but sending only its first 64 KiB, then read the answer.

    An answer at all proves the server decided without waiting for the rest of the body."""
    url = urlsplit(server.http_url)
    head = f"POST {path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {declared}\r\nConnection: close\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    with socket.create_connection((url.hostname, url.port), timeout=20) as sock:
        sock.sendall(head.encode() + b'{"name": "' + b"x" * 65_536)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65_536)
            assert chunk, f"connection closed before an answer: {received!r}"
            received += chunk
        status_line, _, rest = received.partition(b"\r\n")
        raw_headers, _, body = rest.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in raw_headers.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            chunk = sock.recv(65_536)
            assert chunk, "connection closed inside the answer"
            body += chunk
    return int(status_line.split()[1]), body


def multipart(parts: list[tuple[bytes, bytes]], boundary: bytes = b"hardening-boundary", closed: bool = True) -> bytes:
    body = b"".join(b"--" + boundary + b"\r\n" + headers + b"\r\n\r\n" + data + b"\r\n" for headers, data in parts)
    return body + (b"--" + boundary + b"--\r\n" if closed else b"")


def form_fields(fleet: Fleet, version: str) -> list[tuple[bytes, bytes]]:
    return [
        (b'Content-Disposition: form-data; name="product_id"', str(fleet.product_id).encode()),
        (b'Content-Disposition: form-data; name="name"', b"firmware"),
        (b'Content-Disposition: form-data; name="version"', version.encode()),
    ]


def file_part(disposition_tail: bytes, content: bytes = b"firmware bytes") -> tuple[bytes, bytes]:
    return (b'Content-Disposition: form-data; name="file"; ' + disposition_tail, content)


def post_multipart(api: httpx.Client, body: bytes, boundary: str = "hardening-boundary") -> httpx.Response:
    return api.post("/packages", content=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})


def stored_files(server: Server) -> set[Path]:
    return {path for path in (server.data_dir / "files").rglob("*") if path.is_file()}


class TestFileNamesInAnyLanguage:
    def test_a_chinese_file_name_is_stored_listed_and_downloaded_intact(self, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        content = firmware(3000, seed=61)
        package = fleet.package(content, "1.0.0", filename="固件.bin")
        assert [f["name"] for f in package["files"]] == ["固件.bin"]

        listed = api.get("/packages", params={"product_id": fleet.product_id}).json()["items"]
        assert [f["name"] for p in listed for f in p["files"]] == ["固件.bin"]

        file_id = package["files"][0]["id"]
        url = api.post(f"/packages/{package['id']}/files/{file_id}/url", json={}).json()["url"]
        download = httpx.get(url)
        assert download.status_code == 200, download.text
        assert download.content == content
        disposition = download.headers["content-disposition"]
        assert "filename*=utf-8''" in disposition.lower()
        assert unquote(disposition.split("''", 1)[1]) == "固件.bin"

    @pytest.mark.parametrize(
        "name", ["ファームウェア.bin", "펌웨어.img", "прошивка.zip", "υλικολογισμικό.bin", "برنامج.bin", "🚀 fw.bin"]
    )
    def test_names_in_other_scripts_survive(self, api: httpx.Client, name: str) -> None:
        package = Fleet.create(api).package(b"data", "1.0.0", filename=name)
        assert package["files"][0]["name"] == name

    def test_an_rfc_5987_file_name_is_understood(self, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        body = multipart([*form_fields(fleet, "1.0.0"), file_part(b"filename*=UTF-8''%E5%9B%BA%E4%BB%B6.bin")])
        response = post_multipart(api, body)
        assert response.status_code == 201, response.text
        assert response.json()["files"][0]["name"] == "固件.bin"

    def test_a_name_with_control_characters_is_refused(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        before = stored_files(server)
        response = post_multipart(api, multipart([*form_fields(fleet, "1.0.0"), file_part(b'filename="a\x00b.bin"')]))
        assert assert_json_error(response, 422)["field"] == "file"
        assert stored_files(server) == before


class TestIdsOutOfRange:
    def test_every_path_id_answers_422_naming_it(self, server: Server, api: httpx.Client) -> None:
        paths = httpx.get(f"{server.http_url}/openapi.json").json()["paths"]
        checked = 0
        for template, operations in paths.items():
            if "_id}" not in template:
                continue
            path = template.replace("{filename}", "x.bin")
            for name in [p.strip("{}") for p in template.split("/") if p.endswith("_id}")]:
                path = path.replace("{" + name + "}", str(TOO_BIG_ID))
            for method in operations:
                url = f"{server.http_url}{path}"
                response = httpx.request(method, url, headers=api.headers, json={} if method != "get" else None)
                checked += 1
                if method == "head":
                    assert response.status_code == 422
                    continue
                field = assert_json_error(response, 422)["field"]
                assert str(field).endswith("_id"), (method, path, field)
        assert checked >= 20

    @pytest.mark.parametrize(
        ("path", "params"),
        [
            ("/packages", {"product_id": TOO_BIG_ID}),
            ("/devices", {"product_id": TOO_BIG_ID}),
            ("/campaigns", {"package_id": TOO_BIG_ID}),
            ("/audit", {"target_id": TOO_BIG_ID}),
            ("/audit", {"before_id": 2**64}),
        ],
    )
    def test_query_ids(self, api: httpx.Client, path: str, params: dict[str, int]) -> None:
        assert assert_json_error(api.get(path, params=params), 422)["field"] == next(iter(params))

    def test_body_ids(self, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        package = fleet.package(b"data", "1.0.0")
        bodies: list[tuple[str, dict[str, Any], str]] = [
            ("/devices", {"product_id": TOO_BIG_ID, "name": unique("d")}, "product_id"),
            ("/devices", {"product_id": fleet.product_id, "name": unique("d"), "gateway_id": TOO_BIG_ID}, "gateway_id"),
            ("/modules", {"product_id": -(2**70), "name": "mcu"}, "product_id"),
            ("/campaigns", {"name": "c", "package_id": TOO_BIG_ID}, "package_id"),
            ("/campaigns", {"name": "c", "package_id": package["id"], "device_ids": [TOO_BIG_ID]}, "device_ids.0"),
        ]
        for path, body, field in bodies:
            assert assert_json_error(api.post(path, json=body), 422)["field"] == field, (path, body)
        campaign = fleet.campaign(package["id"], device_ids=[device["id"]])
        retry = api.post(f"/campaigns/{campaign['id']}/retry", json={"device_ids": [TOO_BIG_ID]})
        assert assert_json_error(retry, 422)["field"] == "device_ids.0"

    def test_an_upload_names_a_product_too_big(self, api: httpx.Client) -> None:
        response = api.post(
            "/packages",
            data={"product_id": str(TOO_BIG_ID), "name": "n", "version": "1.0.0"},
            files={"file": ("a.bin", b"x")},
        )
        assert assert_json_error(response, 422)["field"] == "product_id"

    def test_the_unauthenticated_download_path(self, server: Server) -> None:
        response = httpx.get(f"{server.http_url}/dl/{TOO_BIG_ID}/x.bin", params={"expires": "1", "signature": "00"})
        assert assert_json_error(response, 422)["field"] == "file_id"


class TestIdsBeyond32Bits:
    """Ids are 64-bit on every database (BIGINT on PostgreSQL): one that no row has yet is a 404."""

    @pytest.mark.parametrize("row_id", [2**31, 2**40, 2**63 - 1])
    def test_an_id_no_row_has_is_not_found(self, server: Server, api: httpx.Client, row_id: int) -> None:
        paths = httpx.get(f"{server.http_url}/openapi.json").json()["paths"]
        readable = [
            template
            for template, operations in paths.items()
            if "get" in operations and template.startswith("/api/v1/") and template.count("{") == 1
            if template.endswith("_id}")
        ]
        for template in readable:
            path = template.split("{")[0] + str(row_id)
            assert_json_error(httpx.get(f"{server.http_url}{path}", headers=api.headers), 404)
        assert len(readable) >= 5
        assert api.get("/devices", params={"product_id": row_id}).json()["items"] == []


class TestNulCharacters:
    """PostgreSQL cannot store a NUL character in text (SQLite can): it is refused where it enters, naming
    the field, on either database, and nothing is stored."""

    def test_in_a_json_body(self, api: httpx.Client) -> None:
        name = unique("nul")
        response = api.post("/products", json={"name": f"{name}\x00"})
        assert assert_json_error(response, 422)["field"] == "name"
        assert all(p["name"] != f"{name}\x00" for p in api.get("/products", params={"limit": 1000}).json()["items"])
        fleet = Fleet.create(api)
        device = fleet.device()
        response = api.patch(f"/devices/{device['id']}", json={"tags": ["fine", "not\x00fine"]})
        assert assert_json_error(response, 422)["field"] == "tags.1"

    def test_in_a_query_parameter(self, api: httpx.Client) -> None:
        assert assert_json_error(api.get("/devices", params={"q": "a\x00b"}), 422)["field"] == "q"

    def test_in_an_upload_field(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        before = stored_files(server)
        fields = {"product_id": str(fleet.product_id), "name": "fw\x00", "version": "1.0.0"}
        response = api.post("/packages", data=fields, files={"file": ("a.bin", b"x")})
        assert assert_json_error(response, 422)["field"] == "name"
        assert stored_files(server) == before

    def test_from_an_http_device(self, server: Server, api: httpx.Client) -> None:
        device = Fleet.create(api).device()
        headers = {"Authorization": f"Bearer {device['access_token']}"}
        response = httpx.post(
            f"{server.http_url}/device/v1/progress", headers=headers, json={"step": "10", "desc": "a\x00"}
        )
        assert assert_json_error(response, 422)["field"] == "desc"


class TestNonAsciiCredentials:
    @pytest.mark.parametrize("token", ["tök", "固件", "😀" * 10])
    def test_an_admin_bearer_token(self, server: Server, token: str) -> None:
        response = httpx.get(
            f"{server.http_url}/api/v1/products", headers={"Authorization": f"Bearer {token}".encode()}
        )
        assert assert_json_error(response, 401)["code"] == "unauthorized"

    def test_the_admin_token_followed_by_a_non_ascii_character(self, server: Server) -> None:
        headers = {"Authorization": f"Bearer {server.admin_token}é".encode()}
        assert_json_error(httpx.get(f"{server.http_url}/api/v1/products", headers=headers), 401)

    def test_a_device_bearer_token(self, server: Server) -> None:
        headers = {"Authorization": "Bearer 固件令牌".encode()}
        assert_json_error(httpx.get(f"{server.http_url}/device/v1/upgrade", headers=headers), 401)

    def test_a_device_signature(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        headers = {
            "X-Product-Key": fleet.product_key,
            "X-Device-Name": device["name"],
            "X-Timestamp": str(int(time.time() * 1000)),
            "X-Sign": "签名ü".encode(),
        }
        assert_json_error(httpx.get(f"{server.http_url}/device/v1/upgrade", headers=headers), 401)

    def test_a_download_signature(self, api: httpx.Client) -> None:
        package = Fleet.create(api).package(b"data", "1.0.0")
        url = api.post(f"/packages/{package['id']}/files/{package['files'][0]['id']}/url", json={}).json()["url"]
        forged = url.split("signature=")[0] + "signature=%E7%AD%BE%E5%90%8D%C3%BC"
        assert assert_json_error(httpx.get(forged), 403)["field"] == "signature"
        assert httpx.get(url).status_code == 200


class TestMalformedMultipart:
    def bodies(self, fleet: Fleet) -> list[tuple[str, bytes, str]]:
        fields = form_fields(fleet, "1.0.0")
        good_file = file_part(b'filename="fw.bin"')
        return [
            ("wrong boundary", multipart([*fields, good_file], boundary=b"another"), "hardening-boundary"),
            ("garbage", b"\x00\xff\xfe not multipart at all \r\n\r\n--", "hardening-boundary"),
            ("empty", b"", "hardening-boundary"),
            ("no closing boundary", multipart([*fields, good_file], closed=False), "hardening-boundary"),
            ("CRLF in the file name", multipart([*fields, file_part(b'filename="a\r\nb.bin"')]), "hardening-boundary"),
            ("header without a colon", multipart([*fields, (b"garbage", b"x"), good_file]), "hardening-boundary"),
            (
                "not UTF-8 file name",
                multipart([*fields, file_part('filename="固件.bin"'.encode("gbk"))]),
                "hardening-boundary",
            ),
            (
                "unknown RFC 5987 charset",
                multipart([*fields, file_part(b"filename*=rot13''fw.bin")]),
                "hardening-boundary",
            ),
            ("boundary too long", multipart([*fields, good_file]), "b" * 300),
            ("empty boundary", multipart([*fields, good_file]), '""'),
        ]

    def test_each_is_a_json_4xx_and_leaves_no_file(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        before = stored_files(server)
        for what, body, boundary in self.bodies(fleet):
            response = post_multipart(api, body, boundary)
            error = assert_json_error(response, (400, 422))
            assert error["field"] == "file", (what, error)
        assert stored_files(server) == before
        assert api.get("/packages", params={"product_id": fleet.product_id}).json()["items"] == []

    def test_a_json_body_where_an_upload_belongs(self, api: httpx.Client) -> None:
        assert_json_error(api.post("/packages", json={"product_id": 1}), 422)


class TestBodies:
    def test_a_stranger_is_answered_before_the_body_arrives(self, server: Server) -> None:
        status, body = answer_to_partial_body(server, "/api/v1/products", FIFTY_MB, {})
        assert status == 401, body

    def test_a_50_mb_body_without_token_is_refused_quickly_without_memory(self, server: Server) -> None:
        url = f"{server.http_url}/api/v1/products"
        headers = {"Content-Type": "application/json"}
        assert httpx.post(url, content=b"{}", headers=headers).status_code == 401  # warm up the code path
        huge = b'{"name": "' + b"x" * FIFTY_MB + b'"}'
        before = rss_kib(server.process.pid)
        started = time.monotonic()
        response = httpx.post(url, content=huge, headers=headers, timeout=60)
        elapsed = time.monotonic() - started
        growth = rss_kib(server.process.pid) - before
        assert_json_error(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
        assert elapsed < 10, f"took {elapsed:.1f}s"
        assert growth < 5 * 1024, f"server RSS grew by {growth} KiB"

    def test_an_admin_body_over_the_limit_is_413_before_it_is_read(self, server: Server) -> None:
        headers = {"Authorization": f"Bearer {server.admin_token}"}
        status, body = answer_to_partial_body(server, "/api/v1/products", FIFTY_MB, headers)
        assert status == 413, body

    def test_an_admin_body_over_the_limit_costs_no_memory(self, server: Server, api: httpx.Client) -> None:
        huge = b'{"name": "' + b"x" * FIFTY_MB + b'"}'
        before = rss_kib(server.process.pid)
        response = api.post("/products", content=huge, headers={"Content-Type": "application/json"}, timeout=60)
        assert assert_json_error(response, 413)["code"] == "too_large"
        chunked = api.post("/products", content=iter([huge[i : i + (1 << 20)] for i in range(0, 4 << 20, 1 << 20)]))
        assert assert_json_error(chunked, 413)["code"] == "too_large"
        assert rss_kib(server.process.pid) - before < 5 * 1024

    def test_a_body_under_the_limit_is_read(self, api: httpx.Client) -> None:
        almost = {"name": unique("p"), "description": "x" * (1024 * 1024 - 200)}
        assert assert_json_error(api.post("/products", json=almost), 422)["field"] == "description"

    def test_the_limit_is_a_setting(self, tmp_path: Path) -> None:
        with running_server(tmp_path / "data", SKYLIFT_MAX_JSON_BODY_BYTES="4096") as small, small.api() as api:
            assert api.post("/products", json={"name": unique("p"), "description": "x" * 1000}).status_code == 201
            response = api.post("/products", json={"name": unique("p"), "description": "x" * 5000})
            assert assert_json_error(response, 413)["code"] == "too_large"
            assert Fleet.create(api).package(firmware(20_000, seed=62), "1.0.0")["files"][0]["size"] == 20_000


class TestEveryErrorIsJson:
    @pytest.mark.parametrize(
        ("method", "path", "status"),
        [
            ("GET", "/api/v1/no-such-thing", 404),
            ("DELETE", "/api/v1/products", 405),
            ("GET", "/no-such-thing", 404),
            ("POST", "/api/v1/products", 422),
        ],
    )
    def test_framework_errors(self, api: httpx.Client, server: Server, method: str, path: str, status: int) -> None:
        response = httpx.request(method, f"{server.http_url}{path}", headers=api.headers, content=b"{not json")
        assert_json_error(response, status)

    def test_the_openapi_declares_the_error_body(self, server: Server) -> None:
        spec = httpx.get(f"{server.http_url}/openapi.json").json()
        read_product = spec["paths"]["/api/v1/products/{product_id}"]["get"]
        for status in ("401", "404", "409", "422"):
            schema = read_product["responses"][status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorOut"}
        download = spec["paths"]["/dl/{file_id}/{filename}"]["get"]["responses"]
        assert {"403", "404", "422"} <= set(download)
        id_schema = read_product["parameters"][0]["schema"]
        assert (id_schema["minimum"], id_schema["exclusiveMaximum"]) == (1, TOO_BIG_ID)


class TestLastResort:
    def test_an_unexpected_exception_is_logged_and_answered_as_json_500(self, caplog: pytest.LogCaptureFixture) -> None:
        app = FastAPI()
        install_error_handlers(app)

        @app.get("/broken")
        async def broken() -> None:
            raise RuntimeError("a bug")

        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://skylift") as client:
                return await client.get("/broken")

        with caplog.at_level(logging.ERROR, logger="skylift"):
            response = asyncio.run(call())
        assert assert_json_error(response, 500)["code"] == "internal_error"
        assert "a bug" not in response.text
        assert "RuntimeError answering GET /broken" in caplog.text
