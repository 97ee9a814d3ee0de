"""Reports as PDF (fpdf2) with their charts drawn on the server (Vega-Lite through vl-convert, no browser).

A report's PDF: its title, its context (definition version, parameters, the Delta version of every table read, who
executed it and when, the result's SHA-256), its chart, its rows as a table, and — once finalized — the reviewer's
signature with its meaning. The run record's PDF: the run's header, then every entry of the record by section,
and lines for the reviewing person's signature.

The built-in PDF fonts cover Latin-1: other characters are written in their nearest Latin-1 form.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import structlog
from fpdf import FPDF
from fpdf.enums import XPos, YPos

from domain.reports.exports import plain, rows_of

log = structlog.get_logger("flasktrack.reports")

_REPLACE = {"\u2013": "-", "\u2014": "-", "\u2265": ">=", "\u2264": "<=", "\u2026": "...", "\u2019": "'",
            "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2192": "->", "\u00a0": " ", "\u2212": "-"}


def latin1(value: object) -> str:
    s = value if isinstance(value, str) else json.dumps(plain(value), ensure_ascii=False) \
        if isinstance(value, dict | list) else "" if value is None else str(value)
    for a, b in _REPLACE.items():
        s = s.replace(a, b)
    return s.encode("latin-1", "replace").decode("latin-1")


# A chart is drawn from the execution's rows only: a spec that names a URL (a layer's data, an image) is refused,
# so an author's chart never makes the server fetch anything (vl-convert allows every URL by default).
NO_URLS: list[str] = []


def chart_png(spec: Mapping[str, Any] | None, table: pa.Table, *, max_rows: int = 5000) -> bytes | None:
    """The Vega-Lite chart over the execution's rows as PNG; None without a spec, or when it cannot be drawn (the
    PDF then says so)."""
    if not spec:
        return None
    names = table.column_names
    values = [dict(zip(names, row, strict=True)) for row in rows_of(table, max_rows)]
    full = {**dict(spec), "data": {"values": values}}
    full.setdefault("$schema", "https://vega.github.io/schema/vega-lite/v5.json")
    full.setdefault("width", 480)
    full.setdefault("height", 220)
    try:
        import vl_convert

        png: bytes = vl_convert.vegalite_to_png(vl_spec=full, scale=2, allowed_base_urls=NO_URLS)
        return png
    except Exception as exc:  # noqa: BLE001 - a chart that cannot be drawn must not lose the report
        log.warning("report chart not drawn", error=str(exc)[:500])
        return None


def chart_svg(spec: Mapping[str, Any], table: pa.Table, *, max_rows: int = 5000) -> str:
    import vl_convert

    names = table.column_names
    values = [dict(zip(names, row, strict=True)) for row in rows_of(table, max_rows)]
    svg: str = vl_convert.vegalite_to_svg(vl_spec={**dict(spec), "data": {"values": values}},
                                          allowed_base_urls=NO_URLS)
    return svg


class _Doc(FPDF):
    footer_text = ""

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Helvetica", "", 7)
        self.cell(0, 5, latin1(f"{self.footer_text}    page {self.page_no()}/{{nb}}"), align="C")


def _doc(title: str, footer: str, created: dt.datetime | None) -> _Doc:
    pdf = _Doc(orientation="L", unit="mm", format="A4")
    pdf.footer_text = footer
    if created is not None:
        pdf.set_creation_date(created)
    pdf.set_title(latin1(title))
    pdf.set_author("Flask Track")
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 15)
    pdf.multi_cell(0, 8, latin1(title), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    return pdf


def _pairs(pdf: FPDF, pairs: Iterable[tuple[str, str]]) -> None:
    pdf.set_font("Helvetica", "", 8)
    for key, value in pairs:
        pdf.set_font("Helvetica", "B", 8)
        pdf.cell(45, 5, latin1(key))
        pdf.set_font("Helvetica", "", 8)
        pdf.multi_cell(0, 5, latin1(value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)


def _heading(pdf: FPDF, text: str) -> None:
    pdf.ln(2)
    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(0, 7, latin1(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _table(pdf: FPDF, headings: Sequence[str], rows: Sequence[Sequence[Any]], widths: Sequence[float] | None = None
           ) -> None:
    pdf.set_font("Helvetica", "", 7)
    with pdf.table(col_widths=tuple(widths) if widths else None, text_align="LEFT", line_height=4,
                   first_row_as_headings=True) as t:
        head = t.row()
        for h in headings:
            head.cell(latin1(h)[:200])
        for r in rows:
            row = t.row()
            for v in r:
                row.cell(latin1(v)[:1500])


def report_document(title: str, context: Sequence[tuple[str, str]], table: pa.Table, *,
                    columns: Sequence[tuple[str, str]] | None = None, chart: bytes | None = None,
                    chart_wanted: bool = False, max_rows: int = 500,
                    signature: Sequence[tuple[str, str]] | None = None, created: dt.datetime | None = None) -> bytes:
    """A report's PDF. `columns`: (column, heading) in the layout's order; all columns otherwise."""
    pdf = _doc(title, f"{title} - Flask Track report", created)
    _pairs(pdf, context)
    if chart is not None:
        from PIL import Image

        with Image.open(io.BytesIO(chart)) as im:
            width, height = im.size
        scale = min(200.0 / width, 95.0 / height)  # fits a 200 x 95 mm box, proportions kept
        pdf.image(io.BytesIO(chart), w=width * scale, h=height * scale)
        pdf.ln(2)
    elif chart_wanted:
        pdf.set_font("Helvetica", "I", 8)
        pdf.cell(0, 5, "The chart could not be drawn on this server.", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    cols = list(columns) if columns else [(n, n) for n in table.column_names]
    cols = [(c, h) for c, h in cols if c in table.column_names] or [(n, n) for n in table.column_names]
    picked = table.select([c for c, _ in cols]) if cols else table
    _heading(pdf, f"Rows ({table.num_rows})" + (f", the first {max_rows} shown" if table.num_rows > max_rows else ""))
    if picked.num_columns:
        _table(pdf, [h for _, h in cols], rows_of(picked, max_rows))
    if signature:
        _heading(pdf, "Electronic signature")
        _pairs(pdf, signature)
    return bytes(pdf.output())


SECTIONS = (("step", "Steps"), ("value", "Recorded values"), ("checklist", "Checklists"),
            ("evidence", "Evidence"), ("signature", "Signatures"), ("hold", "Holds"),
            ("escalation", "Escalations"), ("event", "Other events"))


def run_record_document(header: Sequence[tuple[str, str]], entries: Sequence[Any], *,
                        context: Sequence[tuple[str, str]] = (), created: dt.datetime | None = None) -> bytes:
    """The run record as a person reads and signs it."""
    run = dict(header).get("Run", "")
    pdf = _doc("Run record (electronic batch record)", f"Run record {run}", created)
    _pairs(pdf, [*header, *context])

    def ts(v: dt.datetime | None) -> str:
        return v.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if v else ""

    for section, heading in SECTIONS:
        rows = [e for e in entries if e.section == section]
        _heading(pdf, f"{heading} ({len(rows)})")
        if not rows:
            pdf.set_font("Helvetica", "I", 8)
            pdf.cell(0, 5, "none", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            continue
        if section == "step":
            _table(pdf, ["Step", "#", "Title", "Status", "Closed by", "Closed at", "Detail"],
                   [[e.step_key, e.iteration, e.item, e.value, e.actor, ts(e.at), e.detail] for e in rows],
                   (30, 8, 50, 22, 35, 38, 94))
        elif section == "value":
            _table(pdf, ["Step", "#", "Field", "Value", "Unit", "By", "At"],
                   [[e.step_key, e.iteration, e.item, e.value, e.unit, e.actor, ts(e.at)] for e in rows],
                   (30, 8, 60, 70, 20, 35, 54))
        elif section == "evidence":
            _table(pdf, ["Step", "#", "File", "SHA-256", "By", "At"],
                   [[e.step_key, e.iteration, e.item, e.value, e.actor, ts(e.at)] for e in rows],
                   (30, 8, 50, 110, 35, 44))
        elif section == "signature":
            _table(pdf, ["Step", "#", "Meaning", "Signed by", "At", "Reason and signed content"],
                   [[e.step_key, e.iteration, e.item, e.value, ts(e.at), e.detail] for e in rows],
                   (30, 8, 25, 40, 40, 134))
        else:
            _table(pdf, ["Step", "#", "Item", "Value", "By", "At"],
                   [[e.step_key, e.iteration, e.item, e.value, e.actor, ts(e.at)] for e in rows],
                   (30, 8, 90, 60, 35, 44))
    _heading(pdf, "Deviations and CAPA")
    pdf.set_font("Helvetica", "I", 8)
    pdf.multi_cell(0, 5, "Not recorded by this platform version (the compliance engine records them).",
                   new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    _heading(pdf, "Review")
    pdf.set_font("Helvetica", "", 9)
    for line in ("Reviewed by (name): ________________________________",
                 "Signature: ________________________________   Date: ______________",
                 "Meaning of signature: reviewed and approved as a complete and accurate record of this run"):
        pdf.cell(0, 8, line, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    return bytes(pdf.output())
