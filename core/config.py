"""Configuration, read once from the environment (prefix FLASKTRACK_).

Every service reads the same settings; `flasktrack up` fills in the URLs of the
embedded servers it starts and hands them to its children through the environment.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
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
    # Files (evidence, report artifacts), content-addressed and written once: a folder or an object-store URL.
    objects_uri: str | None = None  # unset = data_dir/objects
    # S3-compatible object storage, for an s3:// lake or objects URI (both use the same connection). Unset values
    # fall back to the AWS SDK's usual sources (AWS_* environment, instance role); lake_storage_options (JSON,
    # delta-rs option names) wins over these for the lake.
    s3_endpoint_url: str | None = None  # e.g. http://minio:9000; unset = AWS S3
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_secret_access_key_file: Path | None = None  # a mounted secret; the key itself wins over the file
    s3_allow_http: bool = False  # plain http:// endpoints (a local MinIO or test server)
    signing_key_path: Path | None = None  # unset = data_dir/keys/audit-ed25519.pem
    # The signing key itself, from a secret store through the environment (PEM or base64); wins over the file.
    # A SecretStr: its value never appears in a repr, a log line or an error message.
    signing_key: SecretStr | None = None
    checkpoint_dir: Path | None = None  # unset = data_dir/checkpoints
    checkpoint_interval_s: float = Field(default=300.0, gt=0)

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    flight_host: str = "127.0.0.1"
    flight_port: int = Field(default=8815, ge=1, le=65535)
    temporal_port: int = Field(default=7233, ge=1, le=65535)
    # Set both: the API serves https:// and Flight SQL grpc+tls:// with this certificate (PEM, chain after it).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = Field(default=None, validate_default=True)  # checked even unset: see _tls_key

    token_ttl_minutes: int = Field(default=12 * 60, ge=1)
    # A browser session unused for this long is ended (the web pages log the person out); API tokens keep their TTL.
    web_idle_minutes: int = Field(default=30, ge=1)
    login_max_failures: int = Field(default=5, ge=1)
    login_max_failures_per_address: int = Field(default=20, ge=1)
    login_lockout_minutes: int = Field(default=15, ge=1)
    # argon2id cost for newly hashed passwords (a stored hash keeps the parameters it was made with, so changing
    # these never locks anyone out). The defaults are argon2-cffi's RFC 9106 low-memory profile; only test
    # suites, which create hundreds of accounts, should lower them.
    password_hash_time_cost: int = Field(default=3, ge=1, le=10)
    password_hash_memory_kib: int = Field(default=64 * 1024, ge=1024, le=1 << 20)
    password_hash_parallelism: int = Field(default=4, ge=1, le=16)
    # Peers whose X-Forwarded-For is believed (IP addresses or networks), for HTTP and Flight SQL alike.
    trusted_proxies: list[str] = Field(default_factory=list)
    # Flight SQL sessions confirm their login against the database at most this often (≤ 60 s).
    flight_principal_recheck_s: float = Field(default=30.0, ge=0, le=60)

    # Every request body (the API takes JSON only): larger ones are answered 413 before they are read.
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    # An evidence file (a photo, a printout), uploaded as multipart: larger ones are answered 413 unstored.
    evidence_max_bytes: int = Field(default=25 << 20, ge=1024)

    # Where the worker, the sink and Flight SQL touch a liveness file after each heartbeat (container health checks).
    alive_dir: Path | None = None

    # Where the worker, the sink and Flight SQL expose /metrics (the API serves it on its own port). Unset = off.
    metrics_host: str = "127.0.0.1"
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    sink_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    flight_metrics_port: int | None = Field(default=None, ge=1, le=65535)

    # The lake sink's own role (migration 0020): it reads and deletes every organization's outbox rows and nothing
    # else. Unset sink_database_url = database_url with the user replaced by sink_db_user and sink_db_password.
    sink_database_url: str | None = None
    sink_db_user: str = "flasktrack_sink"
    sink_db_password: SecretStr | None = None

    seal_interval_s: float = Field(default=0.05, gt=0)

    # Alerts (domain/alerts): the worker's compliance watch scans every this often for expiring lots and
    # calibrations and overdue events, and emails new alerts through SMTP when smtp_host is set (core/mail.py).
    alert_scan_interval_s: float = Field(default=300.0, gt=0)
    alert_horizon_days: int = Field(default=30, ge=0, le=3650)
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    mail_from: str = "flasktrack@localhost"
    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("database_url", "app_database_url", "sink_database_url")
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

    @field_validator("tls_cert_file")
    @classmethod
    def _tls_cert(cls, v: Path | None) -> Path | None:
        from core.tls import load_certificates

        if v is not None:
            load_certificates(v)  # ValueError names the file and what is wrong with it
        return v

    @field_validator("tls_key_file")
    @classmethod
    def _tls_key(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        from core.tls import check_key_pair, load_private_key

        if "tls_cert_file" not in info.data:
            return v  # the certificate is wrong already, and that is the error reported
        cert = info.data["tls_cert_file"]
        if v is None and cert is not None:
            raise ValueError("required with FLASKTRACK_TLS_CERT_FILE (the certificate's private key, PEM)")
        if v is not None and cert is None:
            load_private_key(v)
            raise ValueError("set FLASKTRACK_TLS_CERT_FILE too (the certificate of this key, PEM)")
        if v is not None and cert is not None:
            check_key_pair(cert, v)
        return v

    @field_validator("signing_key")
    @classmethod
    def _ed25519(cls, v: SecretStr | None) -> SecretStr | None:
        from core.signing import ed25519_from_secret

        if v is not None:
            ed25519_from_secret(v.get_secret_value())
        return v

    @field_validator("lake_storage_options")
    @classmethod
    def _safe_commits(cls, v: dict[str, str]) -> dict[str, str]:
        lowered = {k.lower().removeprefix("aws_"): str(val).strip().lower() for k, val in v.items()}
        if lowered.get("s3_allow_unsafe_rename") == "true":
            raise ValueError("AWS_S3_ALLOW_UNSAFE_RENAME would let two writers overwrite each other's Delta commits")
        if lowered.get("conditional_put", "etag") == "disabled":
            raise ValueError("conditional_put=disabled would let two writers overwrite each other's Delta commits")
        return v

    @field_validator("s3_secret_access_key_file")
    @classmethod
    def _readable(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"{v} is not a readable file")
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
    def resolved_objects_uri(self) -> str:
        return self.objects_uri or str((self.data_dir / "objects").resolve())

    @property
    def s3_storage_options(self) -> dict[str, str]:
        """The S3 connection settings as object-store options (delta-rs and object_store names). Conditional put
        (`If-None-Match: *`) is always on: it is what keeps two Delta commits, or two puts of one key, from
        overwriting each other (delta-rs 1.x uses it by default on S3; MinIO and R2 need it named)."""
        out = {"conditional_put": "etag"}
        secret = self.s3_secret_access_key.get_secret_value() if self.s3_secret_access_key is not None else None
        if secret is None and self.s3_secret_access_key_file is not None:
            secret = self.s3_secret_access_key_file.read_text().strip()
        for key, value in (("AWS_ENDPOINT_URL", self.s3_endpoint_url), ("AWS_REGION", self.s3_region),
                           ("AWS_ACCESS_KEY_ID", self.s3_access_key_id), ("AWS_SECRET_ACCESS_KEY", secret)):
            if value:
                out[key] = value
        if self.s3_allow_http:
            out["AWS_ALLOW_HTTP"] = "true"
        return out

    @property
    def resolved_lake_storage_options(self) -> dict[str, str]:
        """The lake's options: the S3 settings for an s3:// lake, with lake_storage_options on top."""
        base = self.s3_storage_options if _is_s3(self.resolved_lake_uri) else {}
        return {**base, **self.lake_storage_options}

    @property
    def resolved_objects_storage_options(self) -> dict[str, str]:
        return self.s3_storage_options if _is_s3(self.resolved_objects_uri) else {}

    @property
    def resolved_signing_key_path(self) -> Path:
        return self.signing_key_path or self.data_dir / "keys" / "audit-ed25519.pem"

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None

    @property
    def resolved_checkpoint_dir(self) -> Path:
        return self.checkpoint_dir or self.data_dir / "checkpoints"


def _is_s3(uri: str) -> bool:
    return uri.startswith(("s3://", "s3a://"))


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
