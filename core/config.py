"""Configuration, read once from the environment (prefix FLASKTRACK_).

Every service reads the same settings; `flasktrack up` fills in the URLs of the
embedded servers it starts and hands them to its children through the environment.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLASKTRACK_", extra="ignore")

    # Owner connection: runs migrations and owns the tables. Unset = embedded PostgreSQL.
    database_url: str | None = None
    # The application's own connection (a role that owns nothing and cannot bypass RLS).
    # Unset = database_url with the user replaced by `app_db_user`.
    app_database_url: str | None = None
    app_db_user: str = "flasktrack_app"
    app_db_password: str | None = None

    temporal_address: str | None = None  # unset = Temporal dev server under data_dir
    temporal_namespace: str = "default"
    task_queue: str = "flasktrack"

    data_dir: Path = Path(".flasktrack")
    lake_uri: str | None = None  # unset = data_dir/lake
    lake_storage_options: dict[str, str] = Field(default_factory=dict)
    signing_key_path: Path | None = None  # unset = data_dir/keys/audit-ed25519.pem
    checkpoint_dir: Path | None = None  # unset = data_dir/checkpoints
    checkpoint_interval_s: float = Field(default=300.0, gt=0)

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    flight_host: str = "127.0.0.1"
    flight_port: int = Field(default=8815, ge=1, le=65535)
    temporal_port: int = Field(default=7233, ge=1, le=65535)

    token_ttl_minutes: int = Field(default=12 * 60, ge=1)
    login_max_failures: int = Field(default=5, ge=1)
    login_max_failures_per_address: int = Field(default=20, ge=1)
    login_lockout_minutes: int = Field(default=15, ge=1)
    # Peers whose X-Forwarded-For is believed (IP addresses or networks), for HTTP and Flight SQL alike.
    trusted_proxies: list[str] = Field(default_factory=list)
    # Flight SQL sessions confirm their login against the database at most this often (≤ 60 s).
    flight_principal_recheck_s: float = Field(default=30.0, ge=0, le=60)

    # Every request body (the API takes JSON only): larger ones are answered 413 before they are read.
    max_body_bytes: int = Field(default=1 << 20, ge=1024)

    seal_interval_s: float = Field(default=0.05, gt=0)
    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("database_url", "app_database_url")
    @classmethod
    def _postgres_only(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return v

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        from core.net import trusted_networks

        trusted_networks(v)  # ValueError names the bad entry
        return v

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        if v.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return v.upper()

    @property
    def resolved_lake_uri(self) -> str:
        return self.lake_uri or str((self.data_dir / "lake").resolve())

    @property
    def resolved_signing_key_path(self) -> Path:
        return self.signing_key_path or self.data_dir / "keys" / "audit-ed25519.pem"

    @property
    def resolved_checkpoint_dir(self) -> Path:
        return self.checkpoint_dir or self.data_dir / "checkpoints"


def load_settings() -> Settings:
    """Settings or one clear line naming what to set, then exit(2)."""
    try:
        return Settings()
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        sys.stderr.write(f"configuration error: set FLASKTRACK_{field.upper()} correctly: {err['msg']}\n")
        raise SystemExit(2) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
