"""Expiring HMAC-signed download URLs, in the spirit of object-store pre-signed links."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from urllib.parse import urlencode


class UrlSigner:
    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(("skylift-download:" + secret).encode()).digest()

    def _signature(self, path: str, expires: int, grant: str) -> str:
        message = f"{path}\n{expires}\n{grant}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def sign(self, base_url: str, path: str, ttl_seconds: int, now: datetime, grant: str = "") -> str:
        """A URL for `path` valid for `ttl_seconds` from `now`; `grant` binds it to one download purpose."""
        expires = int(now.timestamp() + ttl_seconds)
        query = {"expires": str(expires), "signature": self._signature(path, expires, grant)}
        if grant:
            query["grant"] = grant
        return f"{base_url}{path}?{urlencode(query)}"

    def verify(self, path: str, expires: str, signature: str, now: datetime, grant: str = "") -> bool:
        try:
            expires_at = int(expires)
        except ValueError:
            return False
        if expires_at < now.timestamp():
            return False
        # Bytes: compare_digest refuses a str with non-ASCII characters, which a URL may carry.
        return hmac.compare_digest(
            self._signature(path, expires_at, grant).encode(), signature.encode(errors="replace")
        )
