"""Devices built on Alibaba's device SDK log in with an HMAC password made from their client id."""

from __future__ import annotations

import httpx
import pytest

from dialects_kit import signed_device, signed_login
from skylift_testkit import Fleet, Server, SimDevice, wait_until


@pytest.mark.parametrize("method", ["hmacsha1", "hmacsha256", "hmacmd5"])
def test_a_correct_signature_is_accepted(server: Server, api: httpx.Client, method: str) -> None:
    device = Fleet.create(api).device()
    sim = signed_device(server, device, method).connect()
    assert sim.connected
    sim.inform("1.0.0")
    wait_until(lambda: api.get(f"/devices/{device['id']}").json()["versions"] == {"default": "1.0.0"})
    sim.disconnect()


def test_a_timestamp_in_the_client_id_is_signed_too(server: Server, api: httpx.Client) -> None:
    device = Fleet.create(api).device()
    # Alibaba's C SDK sends this fixed timestamp; it is part of what is signed, not a freshness check.
    sim = signed_device(server, device, "hmacsha256", timestamp="2524608000000").connect()
    assert sim.connected
    sim.disconnect()


class TestRefused:
    @pytest.mark.parametrize("method", ["hmacsha1", "hmacsha256", "hmacmd5"])
    def test_a_signature_made_with_another_secret(self, server: Server, api: httpx.Client, method: str) -> None:
        device = Fleet.create(api).device()
        client_id, password = signed_login({**device, "device_secret": "not-the-secret"}, method)
        sim = SimDevice.product_key(server, device, password=password, client_id=client_id)
        assert sim.try_connect().is_failure
        sim.disconnect()

    def test_a_signature_for_another_client_id(self, server: Server, api: httpx.Client) -> None:
        device = Fleet.create(api).device()
        _, password = signed_login(device, "hmacsha1", client_id="one-client")
        client_id, _ = signed_login(device, "hmacsha1", client_id="another-client")
        sim = SimDevice.product_key(server, device, password=password, client_id=client_id)
        assert sim.try_connect().is_failure
        sim.disconnect()

    def test_a_signature_without_the_timestamp_it_claims(self, server: Server, api: httpx.Client) -> None:
        device = Fleet.create(api).device()
        _, password = signed_login(device, "hmacsha256")
        client_id, _ = signed_login(device, "hmacsha256", timestamp="1700000000000")
        sim = SimDevice.product_key(server, device, password=password, client_id=client_id)
        assert sim.try_connect().is_failure
        sim.disconnect()

    def test_an_unknown_sign_method(self, server: Server, api: httpx.Client) -> None:
        device = Fleet.create(api).device()
        _, password = signed_login(device, "hmacsha256")
        sim = SimDevice.product_key(
            server, device, password=password, client_id="sdk-client-1|securemode=2,signmethod=hmacsha512|"
        )
        assert sim.try_connect().is_failure
        sim.disconnect()


def test_the_plain_secret_still_works_with_an_sdk_client_id(server: Server, api: httpx.Client) -> None:
    device = Fleet.create(api).device()
    sim = SimDevice.product_key(server, device, client_id="sdk|securemode=3,signmethod=hmacsha1|").connect()
    assert sim.connected
    sim.disconnect()
