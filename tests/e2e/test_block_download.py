"""Campaigns with protocol mqtt: the device fetches the package in blocks over MQTT (Alibaba's format)."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

from dialects_kit import BlockReply, block_request, crc16_ibm, next_raw, parse_block_reply
from skylift_testkit import Fleet, Server, SimDevice, firmware, md5


def fetch(sim: SimDevice, request_topic: str, reply_topic: str, **request: Any) -> BlockReply:
    sim.publish(request_topic, block_request(**request))
    # Link SDK 4 reads the CRC of a /sys/ reply low byte first (`p[0] | p[1] << 8`); the /ota/ topics
    # carry it big-endian.
    return parse_block_reply(next_raw(sim, reply_topic), "little" if reply_topic.startswith("/sys/") else "big")


def download(sim: SimDevice, request_topic: str, reply_topic: str, stream: int, file: int, block: int) -> bytes:
    """Fetch blocks from offset 0 until fileLength, checking each reply's header and CRC."""
    received = b""
    while True:
        reply = fetch(sim, request_topic, reply_topic, stream_id=stream, file_id=file, offset=len(received), size=block)
        assert reply.code == 200, reply.header
        assert reply.header["message"] == "success"
        header = reply.header["data"]
        assert header["fileToken"] == "tok-1"
        assert header["bOffset"] == len(received)
        assert header["bSize"] == len(reply.data)
        assert reply.crc == crc16_ibm(reply.data)
        received += reply.data
        if len(received) >= header["fileLength"]:
            assert len(received) == header["fileLength"]
            return received


class TestProductKeyDevice:
    def test_a_full_download_over_sys_topics(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        sim = SimDevice.product_key(server, device).connect()
        image = firmware(150_000, seed=70)
        package = fleet.package(image, "2.1.0")
        campaign = fleet.campaign(package["id"], protocol="mqtt", ext_data={"k": "v"})

        notice = sim.notice()
        assert notice["code"] == "1000"
        data = notice["data"]
        assert "url" not in data
        assert data["dProtocol"] == "mqtt"
        assert data["size"] == len(image)
        assert data["md5"] == md5(image)
        assert data["sign"] == md5(image)
        assert data["signMethod"] == "Md5"
        assert data["version"] == "2.1.0"
        assert data["extData"] == {"k": "v"}
        assert data["streamFileId"] == package["files"][0]["id"]

        reply_topic = f"/sys/{sim.topic_id}/thing/file/download_reply"
        assert not sim.subscribe(reply_topic)[0].is_failure
        sim.progress_004(1, "downloading")
        fleet.wait_state(campaign["id"], device["id"], "downloading")
        received = download(
            sim, f"/sys/{sim.topic_id}/thing/file/download", reply_topic, data["streamId"], data["streamFileId"], 40_000
        )
        assert received == image
        assert md5(received) == data["md5"]
        # The last block went out: the device is flashing now.
        fleet.wait_state(campaign["id"], device["id"], "upgrading")
        sim.inform("2.1.0")
        fleet.wait_state(campaign["id"], device["id"], "succeeded")
        sim.disconnect()


class TestTokenDevice:
    def test_a_full_download_with_blocks_larger_than_allowed(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        sim = SimDevice.token(server, device).connect()
        image = firmware(200_000, seed=71)
        package = fleet.package(image, "3.0.0", sign_method="SHA256")
        campaign = fleet.campaign(package["id"], protocol="mqtt")
        params = sim.notice()["params"]
        assert "url" not in params
        assert params["dProtocol"] == "mqtt"
        assert params["sign"] == hashlib.sha256(image).hexdigest()
        assert params["md5"] == md5(image)

        request_topic = f"/ota/device/download/{sim.topic_id}"
        reply_topic = f"/ota/device/download_reply/{sim.topic_id}"
        assert not sim.subscribe(reply_topic)[0].is_failure
        first = fetch(
            sim,
            request_topic,
            reply_topic,
            stream_id=params["streamId"],
            file_id=params["streamFileId"],
            offset=0,
            size=100_000,
        )
        assert first.header["data"]["bSize"] == 65_536  # clamped to 64 KiB
        assert first.data == image[:65_536]
        received = download(sim, request_topic, reply_topic, params["streamId"], params["streamFileId"], 65_536)
        assert received == image
        fleet.wait_state(campaign["id"], device["id"], "upgrading")
        sim.disconnect()


class TestRefusedBlocks:
    def test_bad_requests_get_code_400_and_no_data(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        mine, other = fleet.device(), fleet.device()
        sims = [SimDevice.token(server, d).connect() for d in (mine, other)]
        image = firmware(10_000, seed=72)
        campaign = fleet.campaign(fleet.package(image, "4.0.0")["id"], protocol="mqtt")
        params = sims[0].notice()["params"]
        stream, file = params["streamId"], params["streamFileId"]
        other_stream = sims[1].notice()["params"]["streamId"]

        sim = sims[0]
        request_topic = f"/ota/device/download/{sim.topic_id}"
        reply_topic = f"/ota/device/download_reply/{sim.topic_id}"
        assert not sim.subscribe(reply_topic)[0].is_failure
        bad = [
            {"stream_id": stream, "file_id": file, "offset": len(image), "size": 100},  # past the end
            {"stream_id": stream, "file_id": file, "offset": -1, "size": 100},
            {"stream_id": stream, "file_id": file, "offset": 0, "size": 0},
            {"stream_id": stream, "file_id": file + 999, "offset": 0, "size": 100},  # not this package's file
            {"stream_id": stream + 999, "file_id": file, "offset": 0, "size": 100},  # no such stream
            {"stream_id": other_stream, "file_id": file, "offset": 0, "size": 100},  # another device's attempt
        ]
        for n, request in enumerate(bad):
            reply = fetch(sim, request_topic, reply_topic, message_id=f"bad-{n}", **request)
            assert reply.code == 400, (request, reply.header)
            assert reply.header["id"] == f"bad-{n}"
            assert "data" not in reply.header
        # Nothing broke: a good request is still served, and the attempts did not move.
        good = fetch(sim, request_topic, reply_topic, stream_id=stream, file_id=file, offset=9_000, size=4_096)
        assert good.data == image[9_000:]
        assert good.crc == crc16_ibm(image[9_000:])
        attempts = fleet.attempts(campaign["id"])
        assert attempts[other["id"]]["state"] == "notified"
        for s in sims:
            s.disconnect()

    def test_a_finished_attempt_serves_no_more_blocks(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        sim = SimDevice.token(server, device).connect()
        campaign = fleet.campaign(fleet.package(firmware(1_000, seed=73), "5.0.0")["id"], protocol="mqtt")
        params = sim.notice()["params"]
        sim.progress_002(100)
        fleet.wait_state(campaign["id"], device["id"], "succeeded")
        reply_topic = f"/ota/device/download_reply/{sim.topic_id}"
        assert not sim.subscribe(reply_topic)[0].is_failure
        reply = fetch(
            sim,
            f"/ota/device/download/{sim.topic_id}",
            reply_topic,
            stream_id=params["streamId"],
            file_id=params["streamFileId"],
            offset=0,
            size=10,
        )
        assert reply.code == 400
        sim.disconnect()
