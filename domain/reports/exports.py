"""An execution's rows as files, each carrying its context: which definition version, which parameters, which
Delta version of each table, who executed it and when, the result's hash.

- CSV: `#`-prefixed context lines, then the header and rows.
- JSON lines: a first line `{"context": {...}}`, then one object per row.
- Parquet: the context in the file's key-value metadata (`flasktrack.report`).
- Excel: a `Report` sheet with the rows and a `Context` sheet.
- The result itself is stored once as Parquet, content-addressed: `result_bytes` is deterministic for a given
  table (no timestamps, fixed writer settings), so the same rows give the same hash.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import hashlib
import io
import json
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

CONTEXT_KEY = b"flasktrack.report"
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson",
               "parquet": "application/vnd.apache.parquet",
               "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
               "pdf": "application/pdf"}


def result_bytes(table: pa.Table) -> bytes:
    """The result as Parquet, byte for byte the same for the same rows (the stored, hashed form)."""
    sink = io.BytesIO()
    plain = table.replace_schema_metadata(None)
    pq.write_table(plain, sink, compression="zstd", write_statistics=False, use_dictionary=False,
                   store_schema=True)
    return sink.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_result(data: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(data))


def plain(value: Any) -> Any:
    """A value as JSON and spreadsheets hold it."""
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def rows_of(table: pa.Table, limit: int | None = None) -> list[list[Any]]:
    part = table if limit is None else table.slice(0, limit)
    columns = [part.column(i).to_pylist() for i in range(part.num_columns)]
    return [[plain(c[r]) for c in columns] for r in range(part.num_rows)]


def to_csv(table: pa.Table, context: Mapping[str, Any]) -> bytes:
    out = io.StringIO()
    for key, value in context.items():
        out.write(f"# {key}: {json.dumps(plain(value), ensure_ascii=False, sort_keys=True)}\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.column_names)
    for row in rows_of(table):
        writer.writerow(["" if v is None else json.dumps(v) if isinstance(v, dict | list) else v for v in row])
    return out.getvalue().encode()


def to_jsonl(table: pa.Table, context: Mapping[str, Any]) -> bytes:
    lines = [json.dumps({"context": plain(dict(context))}, ensure_ascii=False, sort_keys=True)]
    names = table.column_names
    lines += [json.dumps(dict(zip(names, row, strict=True)), ensure_ascii=False) for row in rows_of(table)]
    return ("\n".join(lines) + "\n").encode()


def to_parquet(table: pa.Table, context: Mapping[str, Any]) -> bytes:
    meta = {**(table.schema.metadata or {}), CONTEXT_KEY: json.dumps(plain(dict(context)), sort_keys=True).encode()}
    sink = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(meta), sink, compression="zstd")
    return sink.getvalue()


def to_xlsx(table: pa.Table, context: Mapping[str, Any], title: str) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Report"
    sheet.append(table.column_names)
    for row in rows_of(table):
        sheet.append([json.dumps(v) if isinstance(v, dict | list) else _cell(v) for v in row])
    ctx = book.create_sheet("Context")
    ctx.append(["report", title])
    for key, value in context.items():
        v = plain(value)
        ctx.append([key, json.dumps(v, ensure_ascii=False, sort_keys=True) if isinstance(v, dict | list) else v])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value  # never a formula from the data
    return value
