"""A server's bearer token or header value, encrypted at rest (Fernet) with a key from the settings."""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


class UnreadableSecret(Exception):
    """The stored secret was encrypted with another key (MCP_ENCRYPTION_KEY or SECRET_KEY changed)."""


@lru_cache(maxsize=4)
def _fernet(key: str, secret_key: str) -> Fernet:
    if key:
        return Fernet(key.encode())
    # No key of its own: one derived from SECRET_KEY, under a label of its own so it is no other use's key.
    derived = hashlib.sha256(b"receptionist/mcp-secrets/v1:" + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(derived))


def encrypt_secret(value: str) -> str:
    return _fernet(settings.MCP_ENCRYPTION_KEY, settings.SECRET_KEY).encrypt(value.encode()).decode()


def decrypt_secret(token: str) -> str:
    try:
        return _fernet(settings.MCP_ENCRYPTION_KEY, settings.SECRET_KEY).decrypt(token.encode()).decode()
    except InvalidToken:
        raise UnreadableSecret("The server's saved token cannot be read with this installation's key; "
                               "enter it again.") from None
