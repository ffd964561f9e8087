"""Device credentials: Alibaba's signed MQTT login and the HTTP device signature (pure parts)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from skylift.devices.credentials import (
    HTTP_SIGNATURE_WINDOW_MS,
    SignedClientId,
    http_signature,
    parse_signed_client_id,
    password_matches,
    sign_content,
    wants_auto_subscribe,
)
from skylift.registry.models import Device, Product


def device() -> Device:
    product = Product(name="p", product_key="a1pk")
    return Device(name="dev-1", device_secret="s3cret", access_token="tok", product=product)


class TestParseSignedClientId:
    def test_alibaba_sdk_client_id(self) -> None:
        parsed = parse_signed_client_id("dev-1|securemode=2,signmethod=hmacsha256,timestamp=2524608000000|")
        assert parsed == SignedClientId("dev-1", "hmacsha256", "2524608000000")

    def test_extra_parameters_and_case(self) -> None:
        parsed = parse_signed_client_id("a1pk.dev-1|securemode=3,_v=sdk-c-4.0.0,SignMethod=HmacSha1,lan=C|")
        assert parsed == SignedClientId("a1pk.dev-1", "hmacsha1", None)

    @pytest.mark.parametrize("client_id", [None, "", "plain-id", "id|securemode=3|", "id|signmethod=|"])
    def test_no_sign_method(self, client_id: str | None) -> None:
        assert parse_signed_client_id(client_id) is None

    def test_the_client_id_is_the_part_before_the_first_bar(self) -> None:
        parsed = parse_signed_client_id("x|signmethod=hmacmd5|y|")
        assert parsed is not None
        assert parsed.client_id == "x"


class TestAutoSubscribeFlag:
    @pytest.mark.parametrize(
        "client_id",
        [
            "dev-1|securemode=2,signmethod=hmacsha256,_ss=1,timestamp=2524608000000|",
            "a1pk.dev|timestamp=2524608000000,_ss=1,_v=sdk-c-4.1.0,securemode=2,signmethod=hmacsha256,ext=3,|",
            "dev-1|securemode=3, _SS = 1 ,signmethod=hmacsha1|",
            "dev-1|_ss=1",  # no closing bar
        ],
    )
    def test_ss_1_in_the_parameter_block(self, client_id: str) -> None:
        assert wants_auto_subscribe(client_id)

    @pytest.mark.parametrize(
        "client_id",
        [None, "", "_ss=1", "dev-1|securemode=2,signmethod=hmacsha1|", "dev-1|_ss=0|", "dev-1|_ss=|", "dev|x|_ss=1|"],
    )
    def test_otherwise_not(self, client_id: str | None) -> None:
        assert not wants_auto_subscribe(client_id)


class TestPasswordMatches:
    @pytest.mark.parametrize(("method", "digest"), [("hmacsha1", "sha1"), ("hmacsha256", "sha256"), ("hmacmd5", "md5")])
    def test_signed_password(self, method: str, digest: str) -> None:
        content = "clientIdc1deviceNamedev-1productKeya1pktimestamp42"
        password = hmac.new(b"s3cret", content.encode(), digest).hexdigest()
        client_id = f"c1|securemode=2,signmethod={method},timestamp=42|"
        assert password_matches(device(), password, client_id)
        assert password_matches(device(), password.upper(), client_id)
        assert not password_matches(device(), password, f"c2|securemode=2,signmethod={method},timestamp=42|")
        assert not password_matches(device(), password, "c1|securemode=2,signmethod=hmacsha512,timestamp=42|")

    def test_the_secret_itself(self) -> None:
        assert password_matches(device(), "s3cret", None)
        assert password_matches(device(), "s3cret", "c1|securemode=2,signmethod=hmacsha1|")
        assert not password_matches(device(), "S3CRET", None)

    def test_non_ascii_passwords_are_refused_not_crashed_on(self) -> None:
        assert not password_matches(device(), "sécret", "c1|signmethod=hmacsha1|")

    def test_sign_content_without_timestamp(self) -> None:
        assert sign_content("c", "d", "p", None) == "clientIdcdeviceNamedproductKeyp"


def test_http_signature() -> None:
    expected = hmac.new(b"s3cret", b"deviceNamedev-1productKeya1pktimestamp1700000000000", hashlib.sha256).hexdigest()
    assert http_signature("s3cret", "dev-1", "a1pk", "1700000000000") == expected
    assert HTTP_SIGNATURE_WINDOW_MS == 300_000
