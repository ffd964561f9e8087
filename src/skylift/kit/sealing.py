"""Credentials at rest: sealed (encrypted) for what must be read back, keyed digests for lookups.

Device secrets are needed in clear to check Alibaba's HMAC logins, and access tokens to address a
token device's topics, so they are encrypted (Fernet: AES-CBC with HMAC-SHA256, from `cryptography`)
rather than hashed; a token is found at login by its keyed digest. The keyring holds one current key
and any number of older ones: older keys still open what they sealed, and `reseal` moves it to the
current key. One keyring serves the whole process (the column type in db/ reaches it here).
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class SealingError(Exception):
    """A sealed value could not be opened (wrong key, damaged data) or no keyring is in use."""


def new_key() -> str:
    """A new random key, in the form SKYLIFT_CREDENTIALS_KEY takes."""
    return Fernet.generate_key().decode()


def _lookup_key(key: str) -> bytes:
    # A digest key of its own, derived from the sealing key, so neither use weakens the other.
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"skylift credential lookup").derive(key.encode())


class Keyring:
    """The current key first, then older keys still accepted for reading."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("a keyring needs at least one key")
        try:
            self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])
        except ValueError as exc:
            raise ValueError("a credentials key is 32 url-safe base64-encoded bytes (see `new_key`)") from exc
        self._lookup_keys = [_lookup_key(key) for key in keys]

    @classmethod
    def parse(cls, text: str) -> Keyring:
        """Comma-separated keys, current first."""
        return cls([part.strip() for part in text.split(",") if part.strip()])

    @property
    def has_old_keys(self) -> bool:
        return len(self._lookup_keys) > 1

    def seal(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken as exc:
            raise SealingError("a sealed credential does not open with any configured key") from exc

    def reseal(self, sealed: str) -> str:
        """The same value sealed with the current key."""
        try:
            return self._fernet.rotate(sealed.encode()).decode()
        except InvalidToken as exc:
            raise SealingError("a sealed credential does not open with any configured key") from exc

    def digest(self, value: str) -> str:
        """The keyed digest stored for lookups, under the current key."""
        return self.digests(value)[0]

    def digests(self, value: str) -> list[str]:
        """The value's digest under every key (a lookup matches rows written before a key change)."""
        return [hmac.new(key, value.encode(), hashlib.sha256).hexdigest() for key in self._lookup_keys]


_keyring: Keyring | None = None


def use(keyring: Keyring) -> None:
    """Make `keyring` the process's keyring (at assembly, before the database is touched)."""
    global _keyring
    _keyring = keyring


def keyring() -> Keyring:
    if _keyring is None:
        raise SealingError("no credentials keyring is in use")
    return _keyring
