"""Broker credentials encrypted at rest (Fernet: AES-128-CBC with HMAC-SHA256).

``BROKER_CREDENTIALS_KEY`` holds one or more comma-separated Fernet keys; the first encrypts, all
decrypt, so a key can be rotated without downtime. Plaintext credentials exist only in the memory
of the worker that uses them.
"""

from __future__ import annotations

import json

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from starlette.datastructures import Secret

from core.settings import ConfigurationError


class CredentialsError(Exception):
    """Stored credentials could not be decrypted (wrong key, or tampered)."""


class CredentialsBox:
    def __init__(self, key: Secret) -> None:
        keys = [k.strip() for k in str(key).split(",") if k.strip()]
        try:
            self._fernet = MultiFernet([Fernet(k) for k in keys])
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                "BROKER_CREDENTIALS_KEY must be url-safe base64 Fernet keys"
            ) from exc

    def seal(self, credentials: dict[str, str]) -> str:
        return self._fernet.encrypt(json.dumps(credentials).encode()).decode()

    def open(self, sealed: str) -> dict[str, str]:
        try:
            value: dict[str, str] = json.loads(self._fernet.decrypt(sealed.encode()))
        except InvalidToken as exc:
            raise CredentialsError("broker credentials cannot be decrypted") from exc
        return value
