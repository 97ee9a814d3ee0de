"""A printable label per record: its code as a QR code and as a Code 128 barcode, with its name and what it is.

Both symbols encode the code alone (e.g. `LOT-000012`): a handheld scanner that types what it reads into the
lookup field (GET /api/v1/registry/lookup/{code}) finds the record. The label is SVG in millimetres (70 × 36 mm,
a common lab label), drawn from the symbols' modules (segno for QR, python-barcode for Code 128), so it prints
sharp at any resolution and needs nothing installed on the system.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

import segno
from barcode import Code128

from domain.registry.models import Kind
from domain.registry.rows import ItemRow

WIDTH_MM, HEIGHT_MM = 70.0, 36.0
QR_MM = 32.0  # the QR code's square, quiet zone included
QR_BORDER = 4  # modules of quiet zone, as the QR standard asks
BAR_QUIET = 10  # modules of quiet zone each side of the Code 128 symbol


def _qr_path(code: str, x0: float, y0: float, size: float) -> str:
    qr = segno.make(code, error="m", micro=False)
    rows = [list(r) for r in qr.matrix]
    n = len(rows) + 2 * QR_BORDER
    m = size / n
    parts = []
    for y, row in enumerate(rows):
        x = 0
        while x < len(row):
            if row[x]:
                start = x
                while x < len(row) and row[x]:
                    x += 1
                parts.append(f"M{x0 + (start + QR_BORDER) * m:.3f} {y0 + (y + QR_BORDER) * m:.3f}"
                             f"h{(x - start) * m:.3f}v{m:.3f}h{-(x - start) * m:.3f}z")
            else:
                x += 1
    return "".join(parts)


def _bars_path(code: str, x0: float, y0: float, width: float, height: float) -> str:
    modules = Code128(code).build()[0]  # '1' = bar, '0' = space, one character per module
    m = width / (len(modules) + 2 * BAR_QUIET)
    parts = []
    x = 0
    while x < len(modules):
        if modules[x] == "1":
            start = x
            while x < len(modules) and modules[x] == "1":
                x += 1
            parts.append(f"M{x0 + (start + BAR_QUIET) * m:.3f} {y0:.3f}h{(x - start) * m:.3f}v{height:.3f}"
                         f"h{-(x - start) * m:.3f}z")
        else:
            x += 1
    return "".join(parts)


def _detail(row: ItemRow) -> str:
    a = row.attributes
    match row.kind:
        case Kind.strain | Kind.species if a.get("risk_group"):
            return f"{row.kind} · risk group {a['risk_group']}"
        case Kind.lot:
            expiry = f" · expires {a['expiry_date']}" if a.get("expiry_date") else ""
            return f"lot {a.get('lot_number', '')}{expiry}"
        case Kind.equipment if a.get("calibration_due"):
            return f"calibration due {a['calibration_due']}"
        case Kind.location:
            return f"{a.get('level', 'location')}"
        case Kind.plasmid:
            return f"plasmid · {a.get('backbone', '')}"
    return str(row.kind)


def _clip(value: str, n: int) -> str:
    return value if len(value) <= n else value[: n - 1] + "…"


def label_svg(row: ItemRow) -> str:
    """The record's label as an SVG document."""
    qr = _qr_path(row.code, 0.0, 2.0, QR_MM)
    x = QR_MM + 1.0
    bars = _bars_path(row.code, x - 2.0, 24.0, WIDTH_MM - x + 1.0, 9.0)
    archived = '<text x="{x}" y="21" font-size="2.8" fill="#b00">ARCHIVED</text>' if row.archived_at else ""
    name = _clip(row.name, 20)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH_MM}mm" height="{HEIGHT_MM}mm" '
        f'viewBox="0 0 {WIDTH_MM} {HEIGHT_MM}">'
        f"<title>{escape(row.code)} {escape(row.name)}</title>"
        f'<rect width="{WIDTH_MM}" height="{HEIGHT_MM}" fill="#fff"/>'
        f'<path d="{qr}" fill="#000"/>'
        f'<g font-family="DejaVu Sans, Arial, Helvetica, sans-serif" fill="#000">'
        f'<text x="{x}" y="8" font-size="4.2" font-weight="bold">{escape(row.code)}</text>'
        f'<text x="{x}" y="13" font-size="2.8">{escape(name)}</text>'
        f'<text x="{x}" y="17.5" font-size="2.3">{escape(_clip(_detail(row), 26))}</text>'
        f"{archived.format(x=x)}"
        "</g>"
        f'<path d="{bars}" fill="#000"/>'
        "</svg>\n"
    )
