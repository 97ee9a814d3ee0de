"""Password hashing (argon2id) and opaque tokens (stored as SHA-256 of 256-bit secrets)."""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# Compared against when the account does not exist, so timing does not reveal which emails exist.
_DUMMY_HASH = _hasher.hash("flasktrack-no-such-user")


def configure_hashing(time_cost: int, memory_kib: int, parallelism: int) -> None:
    """The argon2id cost for passwords hashed from now on in this process (set once at start-up from the
    settings). Verification reads the parameters from each stored hash, so older hashes keep working."""
    global _hasher, _DUMMY_HASH
    if (time_cost, memory_kib, parallelism) == (_hasher.time_cost, _hasher.memory_cost, _hasher.parallelism):
        return
    _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)
    # The unknown-account comparison costs what a real one does.
    _DUMMY_HASH = _hasher.hash("flasktrack-no-such-user")

SESSION_PREFIX = "ftk_"
API_KEY_PREFIX = "ftak_"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def new_session_token() -> str:
    return SESSION_PREFIX + secrets.token_urlsafe(32)


def new_api_key() -> tuple[str, str]:
    """(full key shown once, short prefix kept for display)."""
    prefix = secrets.token_hex(4)
    return f"{API_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}", prefix


def token_hash(token: str) -> bytes:
    # The tokens are 256-bit random: a fast hash suffices (no dictionary to attack).
    return hashlib.sha256(token.encode()).digest()
