"""The lake tests' Kit on an `s3://` lake: configured through the same settings a deployment uses
(FLASKTRACK_LAKE_URI=s3://…, FLASKTRACK_S3_*), in this process and in the sink processes it spawns."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from core.config import Settings
from lake.writer import Lake
from tests.lake.lakekit import Kit

BUCKET = "flasktrack-test"


@dataclass(frozen=True)
class S3:
    endpoint: str
    access_key_id: str = "test-key"
    secret_access_key: str = "test-secret"  # noqa: S105 - moto accepts any
    region: str = "us-east-1"

    def env(self) -> dict[str, str]:
        return {"FLASKTRACK_S3_ENDPOINT_URL": self.endpoint, "FLASKTRACK_S3_REGION": self.region,
                "FLASKTRACK_S3_ACCESS_KEY_ID": self.access_key_id,
                "FLASKTRACK_S3_SECRET_ACCESS_KEY": self.secret_access_key, "FLASKTRACK_S3_ALLOW_HTTP": "true"}

    def settings(self, **fields: Any) -> Settings:
        return Settings(**{k.removeprefix("FLASKTRACK_").lower(): v for k, v in self.env().items()}, **fields)


@dataclass
class S3Kit(Kit):
    s3: S3 | None = None
    prefix: str = ""

    @property
    def lake_uri(self) -> str:
        return f"s3://{BUCKET}/{self.prefix}/lake"

    @property
    def server(self) -> S3:
        assert self.s3 is not None
        return self.s3

    def settings(self) -> Settings:
        return self.server.settings(database_url=self.database_url, data_dir=self.root, lake_uri=self.lake_uri)

    @property
    def storage_options(self) -> dict[str, str]:
        return self.settings().resolved_lake_storage_options

    def lake(self) -> Lake:
        return Lake.from_settings(self.settings())

    def table(self, name: str, org: str | None = None) -> pa.Table:
        t = DeltaTable(f"{self.lake_uri}/{name}", storage_options=self.storage_options).to_pyarrow_table()
        return t.filter(pc.equal(t["org_id"], org)) if org else t

    def spawn(self, fault: str | None = None, **env: str) -> subprocess.Popen[bytes]:
        return super().spawn(fault, **self.server.env(), **env)
