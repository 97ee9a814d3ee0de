"""The analyst's pages: the lake's tables with their columns' labels and units, a SQL console over the same
sandbox as Flight SQL (one organization's tables, one SELECT, time-limited; domain/analysis.py, lake/query.py),
a results grid (paginated, capped), a simple chart drawn on the server (SVG), and CSV or Parquet downloads.
Every query is on record as a Flight SQL query is (`execute` on `lake_query`, the SQL, outcome, rows)."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import math
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from domain.analysis import LakeQueries, QueryAnswer, QueryFailed, QueryOutcome, record_query
from domain.errors import Unavailable
from domain.roles import Caller, Permission
from web import sessions
from web.app import _caller, _check_csrf, _form, _render, _require, _services, _text

router = APIRouter()
MAX_SQL = 10_000  # characters of SQL (what the audit entry keeps)
GRID_ROWS = 1000  # rows a query brings to the page at most
PAGE = 50  # rows per page of the grid
DOWNLOAD_ROWS = 100_000  # rows a download carries at most
EXAMPLE = "SELECT status, count(*) AS runs FROM runs_current GROUP BY status ORDER BY runs DESC"


def _lake(request: Request) -> LakeQueries:
    lake: LakeQueries | None = _services(request).lake
    if lake is None:
        raise Unavailable("the lake is not reachable from this process")
    return lake


@router.get("/lake")
def console(request: Request) -> HTMLResponse:
    caller = _caller(request)
    _require(caller, Permission.lake_query)
    return _console(request, caller, sql=EXAMPLE)


def _console(request: Request, caller: Caller, *, sql: str, answer: QueryAnswer | None = None,
             problem: str | None = None, page: int = 1, status: int = 200) -> HTMLResponse:
    tables = _lake(request).tables(caller.org_id, caller.role.value)
    grid: dict[str, Any] | None = None
    chart: Chart | None = None
    if answer is not None:
        total = answer.table.num_rows
        pages = max(1, math.ceil(total / PAGE))
        page = max(1, min(page, pages))
        shown = answer.table.slice((page - 1) * PAGE, PAGE)
        grid = {"columns": [(f.name, str(f.type)) for f in shown.schema], "rows": [
            [_cell(v) for v in row.values()] for row in shown.to_pylist()], "total": total, "page": page,
            "pages": pages, "truncated": answer.truncated, "ms": round(answer.duration_ms)}
        chart = chart_of(answer.table)
    return _render(request, "lake.html", {"tables": tables, "sql": sql, "grid": grid, "chart": chart,
                                          "problem": problem, "grid_rows": GRID_ROWS, "download_rows": DOWNLOAD_ROWS,
                                          "max_sql": MAX_SQL}, status=status)


def _cell(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    text = str(value)
    return text if len(text) <= 300 else text[:300] + "…"


async def _run(request: Request, caller: Caller, sql: str, max_rows: int) -> QueryAnswer:
    """The query in the sandbox, then on record (whatever its outcome), in the person's organization."""
    s = _services(request)
    lake = _lake(request)
    context = sessions.request_context(request, s.settings)
    outcome: QueryOutcome = "error"
    rows, ms = 0, 0.0
    reason: str | None = "the query failed"
    tables: tuple[str, ...] = ()
    try:
        answer = await run_in_threadpool(lake.run, caller.org_id, caller.role.value, sql, max_rows)
        outcome, reason = "ok", None
        rows, tables, ms = answer.table.num_rows, answer.tables, answer.duration_ms
        return answer
    except QueryFailed as exc:
        outcome, reason, tables = exc.outcome, exc.message, exc.tables
        raise
    finally:
        def audit() -> None:
            with s.sessions.begin(caller.org_id) as session:
                record_query(session, org_id=caller.org_id, actor=caller.actor, sql=sql, outcome=outcome,
                             rows=rows, duration_ms=ms, tables=tables, reason=reason, context=context)

        await run_in_threadpool(audit)


@router.post("/lake/query")
async def query(request: Request) -> Response:
    caller = _caller(request)
    form = _text(await _form(request))
    await _check_csrf(request, caller, form)
    _require(caller, Permission.lake_query)
    sql = form.get("sql", "").strip()
    action = form.get("action", "run")
    try:
        page = int(form.get("page", "1"))
    except ValueError:
        page = 1
    if not sql or len(sql) > MAX_SQL:
        return _console(request, caller, sql=sql[:MAX_SQL], status=422,
                        problem=f"Write one SELECT of at most {MAX_SQL} characters.")
    if action not in ("run", "csv", "parquet"):
        action = "run"
    try:
        answer = await _run(request, caller, sql, GRID_ROWS if action == "run" else DOWNLOAD_ROWS)
    except QueryFailed as exc:
        return _console(request, caller, sql=sql, status=422, problem=exc.message)
    if action == "run":
        return _console(request, caller, sql=sql, answer=answer, page=page)
    return download(answer.table, action)


def download(table: pa.Table, fmt: str) -> Response:
    buffer = io.BytesIO()
    if fmt == "csv":
        pacsv.write_csv(table, buffer)
        media = "text/csv"
    else:
        pq.write_table(table, buffer)
        media = "application/vnd.apache.parquet"
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return Response(buffer.getvalue(), media_type=media, headers={
        "Content-Disposition": f'attachment; filename="query-{stamp}.{fmt}"', "Cache-Control": "no-store"})


# ------------------------------------------------------------------ the chart


@dataclass(frozen=True)
class Chart:
    """A bar chart (categories) or a line chart (numbers or instants along x), in SVG units."""

    kind: str
    x_label: str
    y_label: str
    width: int
    height: int
    marks: list[dict[str, Any]]  # bars: x, y, w, h, label, value; line: points "x,y ..." and dots
    points: str
    y_ticks: list[tuple[float, str]]
    x_ticks: list[tuple[float, str]]
    summary: str


def _number(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | decimal.Decimal):
        f = float(value)
        return f if math.isfinite(f) else None
    return None


def _position(value: object) -> float | None:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, dt.date):
        return float(value.toordinal())
    return _number(value)


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def chart_of(table: pa.Table, width: int = 640, height: int = 280, max_bars: int = 40) -> Chart | None:
    """The first column along x, the first numeric column after it as y; None when the answer has no such pair."""
    if table.num_rows < 1 or table.num_columns < 2:
        return None
    names = table.column_names
    numeric = [i for i, f in enumerate(table.schema) if i > 0 and (pa.types.is_integer(f.type) or
               pa.types.is_floating(f.type) or pa.types.is_decimal(f.type))]
    if not numeric:
        return None
    xs = table.column(0).to_pylist()
    ys = [_number(v) for v in table.column(numeric[0]).to_pylist()]
    x_type = table.schema.field(0).type
    left, bottom, top, right = 56, 40, 12, 12
    plot_w, plot_h = width - left - right, height - top - bottom
    along = pa.types.is_integer(x_type) or pa.types.is_floating(x_type) or pa.types.is_temporal(x_type)
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
    if not pairs:
        return None
    if along:
        pts = sorted((px, y) for x, y in pairs if (px := _position(x)) is not None)
        if len(pts) < 2:
            along = False
    y_values = [y for _, y in pairs]
    lo, hi = min(0.0, min(y_values)), max(0.0, max(y_values))
    hi = hi if hi > lo else lo + 1

    def y_of(v: float) -> float:
        return top + plot_h - (v - lo) / (hi - lo) * plot_h

    y_ticks = [(round(y_of(lo + (hi - lo) * k / 4), 1), _fmt(lo + (hi - lo) * k / 4)) for k in range(5)]
    if along:
        x0, x1 = pts[0][0], pts[-1][0]
        span = (x1 - x0) or 1.0
        coords = [(left + (px - x0) / span * plot_w, y_of(y)) for px, y in pts]
        temporal = pa.types.is_temporal(x_type)

        def x_text(px: float) -> str:
            if temporal and pa.types.is_date(x_type):
                return dt.date.fromordinal(int(px)).isoformat()
            if temporal:
                return dt.datetime.fromtimestamp(px, dt.UTC).strftime("%Y-%m-%d %H:%M")
            return _fmt(px)

        x_ticks = [(round(left + plot_w * k / 3, 1), x_text(x0 + span * k / 3)) for k in range(4)]
        dots = [{"cx": round(cx, 1), "cy": round(cy, 1)} for cx, cy in coords[:500]]
        return Chart("line", names[0], names[numeric[0]], width, height, dots,
                     " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy in coords), y_ticks, x_ticks,
                     f"{names[numeric[0]]} by {names[0]}, {len(coords)} points, from {_fmt(min(y_values))} "
                     f"to {_fmt(max(y_values))}")
    bars = pairs[:max_bars]
    slot = plot_w / len(bars)
    marks = []
    for k, (x, y) in enumerate(bars):
        y_top, y_zero = y_of(max(y, 0.0)), y_of(min(y, 0.0))
        marks.append({"x": round(left + k * slot + slot * 0.1, 1), "y": round(y_top, 1),
                      "w": round(slot * 0.8, 1), "h": round(max(y_zero - y_top, 1.0), 1),
                      "label": ("∅" if x is None else str(x))[:24], "value": _fmt(y),
                      "lx": round(left + k * slot + slot / 2, 1)})
    return Chart("bar", names[0], names[numeric[0]], width, height, marks, "", y_ticks, [],
                 f"{names[numeric[0]]} for each {names[0]}: " + ", ".join(f"{m['label']} {m['value']}"
                                                                      for m in marks[:12]))
