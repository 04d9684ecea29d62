"""Standard Webhooks signatures (https://www.standardwebhooks.com/, spec version 1).

The signature is `v1,` followed by the base64 HMAC-SHA256 of `{webhook-id}.{timestamp}.{body}`,
keyed with the base64-decoded part of a `whsec_...` secret. Each attempt is signed with a fresh
timestamp, because receivers reject timestamps more than about five minutes old. The id and the
body stay the same, so receivers can drop a duplicate.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import datetime

SECRET_PREFIX = "whsec_"  # noqa: S105 (the prefix of every secret, not a secret)


class WebhookSigner:
    """Signs webhook bodies with one secret. The secret is kept only as decoded key bytes."""

    def __init__(self, secret: str):
        self._key = decode_secret(secret)

    def headers(self, webhook_id: str, body: bytes, sent_at: datetime) -> dict[str, str]:
        """Build the three Standard Webhooks headers for one attempt at `sent_at`."""
        timestamp = str(int(sent_at.timestamp()))
        return {
            "webhook-id": webhook_id,
            "webhook-timestamp": timestamp,
            "webhook-signature": self.signature(webhook_id, timestamp, body),
        }

    def signature(self, webhook_id: str, timestamp: str, body: bytes) -> str:
        signed = f"{webhook_id}.{timestamp}.".encode() + body
        digest = hmac.new(self._key, signed, hashlib.sha256).digest()
        return "v1," + base64.b64encode(digest).decode("ascii")


def decode_secret(secret: str) -> bytes:
    """Decode the HMAC key of a `whsec_<base64>` secret; raise ValueError, without the secret,
    if it is invalid."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"invalid webhook secret: expected the form {SECRET_PREFIX}<base64>")
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        # Standard Webhooks secrets are often written without base64 padding.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            f"invalid webhook secret: the part after {SECRET_PREFIX} is not base64"
        ) from None
    if len(key) < 24:
        raise ValueError(
            "invalid webhook secret: the key must be at least 24 bytes "
            f'(generate one with: python -c "import base64,os; '
            f"print('{SECRET_PREFIX}' + base64.b64encode(os.urandom(32)).decode())\")"
        )
    return key
