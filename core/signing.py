"""The audit checkpoint signing key given as a secret (setting `signing_key`, e.g. from a secret store through
the environment) rather than as a file: PEM, or base64 of the PEM, of the raw 32-byte key or of PKCS#8 DER.

Errors say what is wrong without repeating any of the secret.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

_FORMS = "PEM, or base64 of the PEM, of the raw 32 bytes or of PKCS#8 DER"


def ed25519_from_secret(text: str) -> Ed25519PrivateKey:
    data = text.strip().encode()
    if not data.startswith(b"-----BEGIN"):
        try:
            data = base64.b64decode(b"".join(data.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"not an Ed25519 private key ({_FORMS})") from None
    try:
        if len(data) == 32:
            return Ed25519PrivateKey.from_private_bytes(data)
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(data.strip(), password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ValueError(f"not an unencrypted Ed25519 private key ({_FORMS})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"a private key, but not Ed25519 ({_FORMS})")
    return key
