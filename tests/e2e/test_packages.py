"""Package uploads: what is refused, with which error, and what stays immutable."""

from __future__ import annotations

import httpx
import pytest

from skylift_testkit import Fleet, firmware


@pytest.fixture
def fleet(api: httpx.Client) -> Fleet:
    return Fleet.create(api)


class TestUploadRefusals:
    def test_an_exe_is_refused(self, fleet: Fleet) -> None:
        response = fleet.upload(b"MZ...", "1.0.0", filename="setup.exe")
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["field"] == "file"
        assert ".exe" not in error["message"].split("allowed:")[1]

    @pytest.mark.parametrize("version", ["abc", "1..2", "", "1.0.0.0.0.0.0.0"])
    def test_a_version_that_is_not_a_version(self, fleet: Fleet, version: str) -> None:
        response = fleet.upload(b"x", version)
        assert response.status_code == 422
        assert response.json()["error"]["field"] == "version"

    @pytest.mark.parametrize("again", ["1.0.0", "v1.0.0", "1.0"])
    def test_a_duplicate_version(self, fleet: Fleet, again: str) -> None:
        fleet.package(b"first", "1.0.0")
        response = fleet.upload(b"second", again)
        assert response.status_code == 409
        assert response.json()["error"]["field"] == "version"

    def test_an_unknown_module(self, fleet: Fleet) -> None:
        response = fleet.upload(b"x", "1.0.0", module="GPS")
        assert response.status_code == 422
        assert response.json()["error"]["field"] == "module"

    def test_a_diff_without_its_source_version(self, fleet: Fleet) -> None:
        response = fleet.upload(b"x", "1.0.1", type="diff")
        assert response.status_code == 422
        assert response.json()["error"]["field"] == "source_version"

    def test_no_file(self, fleet: Fleet, api: httpx.Client) -> None:
        response = api.post("/packages", data={"product_id": str(fleet.product_id), "name": "x", "version": "1.0.0"})
        assert response.status_code == 422
        assert response.json()["error"]["field"] == "file"


class TestRunTimeParameters:
    def test_size_limit_and_extensions_apply_at_once(self, fleet: Fleet, api: httpx.Client) -> None:
        before = api.get("/settings").json()
        assert before["max_file_size_mb"] == 1000
        assert ".tar.gz" in before["allowed_extensions"]
        try:
            changed = api.put("/settings", json={"max_file_size_mb": 1, "allowed_extensions": [".bin", "hex"]})
            assert changed.status_code == 200
            assert changed.json()["allowed_extensions"] == [".bin", ".hex"]
            too_big = fleet.upload(firmware(1024 * 1024 + 1, seed=30), "1.0.0")
            assert too_big.status_code == 413
            assert too_big.json()["error"]["field"] == "file"
            assert fleet.upload(b"\x00" * 10, "1.0.1", filename="image.hex").status_code == 201
            assert fleet.upload(b"\x00" * 10, "1.0.2", filename="image.zip").status_code == 422
        finally:
            api.put("/settings", json=before)

    def test_bad_parameters_name_the_field(self, api: httpx.Client) -> None:
        response = api.put("/settings", json={"max_file_size_mb": 0, "allowed_extensions": [".bin"]})
        assert response.status_code == 422
        assert response.json()["error"]["field"] == "max_file_size_mb"


class TestImmutability:
    def test_files_are_hashed_by_the_platform(self, fleet: Fleet) -> None:
        package = fleet.package(firmware(10_000, seed=31), "2.0.0", sign_method="sha256", filename="fw.tar.gz")
        assert package["sign_method"] == "SHA256"
        assert package["sign"] == package["files"][0]["sha256"]
        assert package["files"][0]["name"] == "fw.tar.gz"
        assert package["files"][0]["size"] == 10_000

    def test_only_description_and_enabled_change(self, fleet: Fleet, api: httpx.Client) -> None:
        package = fleet.package(b"payload", "3.0.0")
        patched = api.patch(f"/packages/{package['id']}", json={"description": "rollback", "enabled": False})
        assert patched.status_code == 200
        assert patched.json()["enabled"] is False
        assert patched.json()["description"] == "rollback"
        refused = api.patch(f"/packages/{package['id']}", json={"version": "9.9.9"})
        assert refused.status_code == 422
        assert refused.json()["error"]["field"] == "version"
        assert api.get(f"/packages/{package['id']}").json()["version"] == "3.0.0"

    def test_a_disabled_package_cannot_start_a_campaign(self, fleet: Fleet, api: httpx.Client) -> None:
        fleet.device()
        package = fleet.package(b"payload", "3.1.0")
        api.patch(f"/packages/{package['id']}", json={"enabled": False})
        response = api.post("/campaigns", json={"name": "c", "package_id": package["id"]})
        assert response.status_code == 409
        assert response.json()["error"]["field"] == "package_id"

    def test_multiple_files(self, fleet: Fleet, api: httpx.Client) -> None:
        data = {"product_id": str(fleet.product_id), "name": "two", "version": "4.0.0"}
        files = [("file", ("a.bin", b"aaaa")), ("file", ("b.img", b"bbbbbb"))]
        response = api.post("/packages", data=data, files=files)
        assert response.status_code == 201, response.text
        assert [(f["name"], f["size"]) for f in response.json()["files"]] == [("a.bin", 4), ("b.img", 6)]
