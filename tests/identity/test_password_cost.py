"""Passwords are hashed with argon2id at the configured cost; a change of cost never locks anyone out."""

from __future__ import annotations

from argon2 import PasswordHasher

from core.config import Settings
from domain.identity import secrets


def test_the_default_cost_is_argon2s_recommended_profile(monkeypatch) -> None:
    for name in ("TIME_COST", "MEMORY_KIB", "PARALLELISM"):  # the suite lowers them through the environment
        monkeypatch.delenv(f"FLASKTRACK_PASSWORD_HASH_{name}", raising=False)
    s = Settings()
    recommended = PasswordHasher()
    assert (s.password_hash_time_cost, s.password_hash_memory_kib, s.password_hash_parallelism) == (
        recommended.time_cost, recommended.memory_cost, recommended.parallelism)


def test_a_hash_made_at_one_cost_verifies_at_another() -> None:
    before = (secrets._hasher.time_cost, secrets._hasher.memory_cost, secrets._hasher.parallelism)
    try:
        secrets.configure_hashing(2, 8 * 1024, 2)
        cheap = secrets.hash_password("correct horse")
        assert cheap.startswith("$argon2id$v=19$m=8192,t=2,p=2$")
        secrets.configure_hashing(1, 1024, 1)
        assert secrets.verify_password(cheap, "correct horse")
        assert not secrets.verify_password(cheap, "wrong horse")
        assert secrets.hash_password("correct horse").startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    finally:
        secrets.configure_hashing(*before)
