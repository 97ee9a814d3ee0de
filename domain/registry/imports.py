"""Bulk import of an existing inventory from CSV: a dry run, then all or nothing.

The file is UTF-8 CSV (a byte-order mark, as spreadsheets write it, is fine), comma-separated, one record per
line after a header. Columns: `code` (optional: the record to change), `name`, `parent` (the parent's code, or
its name when that is unique in its kind), `status`, and the kind's attributes by name (`risk_group`,
`lot_number`, `expiry_date` as YYYY-MM-DD, …). A list attribute (`inserts`, `resistance_markers`, `hazards`)
takes its entries separated by `;`. A reference attribute (`supplier_id`, `location_id`) takes a code, a name
or an id. An empty cell leaves that field as it is (a new record gets the default).

Each line matches an existing record by its code, else by its name among the kind's records of the same parent;
a match is changed (or left unchanged when the line says nothing new), no match is created. Lines are applied in
order, so a line may name as parent a record created by a line above it (a site, then its rooms).

A file that is not the kind's CSV at all (not UTF-8, a control character, no header, a column the kind does not
have, more than 5,000 lines) is refused whole (422), dry run or not. Otherwise the dry run and the apply run the
very same work inside a savepoint; the dry run always rolls it back, and so
does an apply with any problem (nothing is written: 422 with every line's problems). An applied import is one
audit entry (`import`, with the counts and the file's SHA-256), and each record it creates or changes has its
own entry too, whose reason names the import: a record's history must start with its creation, wherever that
came from.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import typing
import uuid

from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.orm import Session

from domain import audit
from domain.errors import DomainError, Invalid
from domain.limits import text_problem
from domain.registry import service
from domain.registry.models import (
    RULES,
    ImportAction,
    ImportReport,
    ImportRow,
    ItemCreate,
    Kind,
)
from domain.registry.rows import ItemRow
from domain.roles import Caller
from domain.rows import from_row

MAX_ROWS = 5_000
MAX_CELL = 2_000
MAX_COLUMNS = 40
FIXED_COLUMNS = ("code", "name", "parent", "status")
_CODE = re.compile(r"^[A-Z]{1,4}-\d{6,}$")
_SELECT = service._SELECT  # noqa: SLF001 - the one SELECT list of the registry's rows


class ImportRefused(Invalid):
    """An apply with problems: nothing written; every line's problems in `reasons` and in `report`."""

    def __init__(self, report: ImportReport) -> None:
        reasons = [f"row {r.row}: {p}" for r in report.rows for p in r.problems]
        super().__init__(f"the import has {len(reasons)} problem(s): nothing was imported", reasons=reasons[:500])
        self.report = report


def _list_fields(kind: Kind) -> set[str]:
    model = RULES[kind].attributes
    return {name for name, f in model.model_fields.items() if typing.get_origin(f.annotation) is list}


def _resolve(session: Session, kind: Kind, value: str, column: str) -> uuid.UUID:
    """A record of `kind` named by its code, its id or its name (unique in the kind)."""
    try:
        row = service.find(session, uuid.UUID(value))
        if row is not None and row.kind == kind:
            return row.id
    except ValueError:
        pass
    code = service.normalize_code(value)
    if _CODE.fullmatch(code):
        found = session.execute(text(_SELECT + " AND code = :c AND kind = :k"), {"c": code, "k": kind.value}).first()
        if found is not None:
            return from_row(ItemRow, found).id
    named = session.execute(text(_SELECT + " AND kind = :k AND lower(name) = lower(:n) LIMIT 2"),
                            {"k": kind.value, "n": value}).all()
    if len(named) == 1:
        return from_row(ItemRow, named[0]).id
    if len(named) > 1:
        raise Invalid("ambiguous", reasons=[f"{column}: several {kind} records are named '{value}': give its code"])
    raise Invalid("not found", reasons=[f"{column}: no {kind} '{value}' (a code, a name or an id)"])


def _problems(exc: ValidationError) -> list[str]:
    out = []
    for e in exc.errors():
        loc = [str(p) for p in e["loc"] if p != "attributes"]
        out.append(f"{'.'.join(loc) or 'row'}: {str(e['msg']).removeprefix('Value error, ')}")
    return out


def _column(reason: str) -> str:
    """A problem named by the file's column: `expiry_date: …`, `parent: …`."""
    reason = reason.removeprefix("attributes.")
    return "parent" + reason.removeprefix("parent_id") if reason.startswith("parent_id:") else reason


def _row(session: Session, caller: Caller, kind: Kind, cells: dict[str, str], reason: str) -> ImportRow:
    """Create or change the record one line describes; Invalid with every problem of the line."""
    rules = RULES[kind]
    lists = _list_fields(kind)
    problems: list[str] = []
    attributes: dict[str, object] = {}
    for key, value in cells.items():
        if key in FIXED_COLUMNS:
            continue
        if key in lists:
            attributes[key] = [v.strip() for v in value.split(";") if v.strip()]
        else:
            attributes[key] = value
    for field, ref_kind in rules.references:
        if field in attributes:
            try:
                attributes[field] = str(_resolve(session, ref_kind, str(attributes[field]), field))
            except Invalid as exc:
                problems += exc.reasons
                del attributes[field]
    parent_id = None
    if "parent" in cells:
        if rules.parent is None:
            problems.append(f"parent: a {kind} has no parent")
        else:
            try:
                parent_id = _resolve(session, rules.parent, cells["parent"], "parent")
            except Invalid as exc:
                problems += exc.reasons
    name, code = cells.get("name"), cells.get("code")
    existing: ItemRow | None = None
    if code:
        found = session.execute(text(_SELECT + " AND code = :c"), {"c": service.normalize_code(code)}).first()
        existing = from_row(ItemRow, found) if found is not None else None
        if existing is None or existing.kind != kind:
            raise Invalid("unknown code", reasons=[f"code: no {kind} '{code}' (leave the code empty to create one)"])
    elif name:
        found = session.execute(
            text(_SELECT + " AND kind = :k AND lower(name) = lower(:n) AND parent_id IS NOT DISTINCT FROM :p"),
            {"k": kind.value, "n": name, "p": parent_id}).first()
        existing = from_row(ItemRow, found) if found is not None else None
    else:
        raise Invalid("no name", reasons=["name: a new record needs its name"])
    if existing is not None and existing.archived_at is not None:
        raise Invalid("archived", reasons=[f"code: {existing.code} is archived (restore it first)"])
    try:
        done = _apply(session, caller, kind, existing, name, parent_id, "parent" in cells, cells.get("status"),
                      attributes, reason)
    except ValidationError as exc:
        problems += _problems(exc)
    except DomainError as exc:
        problems += exc.reasons or [exc.message]
    if problems:
        raise Invalid("the line has problems", reasons=[_column(p) for p in problems])
    return done


def _apply(session: Session, caller: Caller, kind: Kind, existing: ItemRow | None, name: str | None,
           parent_id: uuid.UUID | None, parent_given: bool, status: str | None, attributes: dict[str, object],
           reason: str) -> ImportRow:
    if existing is None:
        data = ItemCreate(name=name or "", parent_id=parent_id, status=status, attributes=attributes, reason=reason)
        row = service.create(session, caller, kind, data)
        return ImportRow(row=0, action="create", code=row.code, name=row.name)
    change = service.Change(revision=existing.revision, reason=reason, name=name or None, parent_id=parent_id,
                            parent_given=parent_given, status=status, attributes=attributes or None)
    after = service.update(session, caller, kind, existing.id, change)
    if after.revision == existing.revision:
        return ImportRow(row=0, action="unchanged", code=existing.code, name=existing.name)
    return ImportRow(row=0, action="update", code=after.code, name=after.name,
                     changes=service.changed_fields(existing, after))


def _read(data: bytes, kind: Kind) -> tuple[list[tuple[int, dict[str, str]]], list[str]]:
    """The lines as (row number, non-empty cells), and the file's own problems."""
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return [], [f"the file is not UTF-8 text (byte {exc.start})"]
    why = text_problem(content)
    if why:
        return [], [f"the file holds a character no record can: {why}"]
    reader = csv.reader(io.StringIO(content, newline=""))
    try:
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            return [], ["the file is empty: the first line names the columns"]
        columns = [h.strip().lower() for h in header]
        allowed = set(FIXED_COLUMNS) | set(RULES[kind].attributes.model_fields)
        problems = [f"column '{c[:100]}' is not a {kind} column (columns: {', '.join(sorted(allowed))})"
                    for c in columns if c not in allowed]
        if len(columns) > MAX_COLUMNS:
            problems.append(f"more than {MAX_COLUMNS} columns")
        if len(set(columns)) != len(columns):
            problems.append("a column is named twice")
        if "name" not in columns and "code" not in columns:
            problems.append("a 'name' column (or a 'code' column, to change records) is needed")
        if problems:
            return [], problems
        lines: list[tuple[int, list[str]]] = []
        for values in reader:
            if not any(v.strip() for v in values):
                continue  # a blank line
            if len(lines) >= MAX_ROWS:
                return [], [f"more than {MAX_ROWS} lines: split the file"]
            lines.append((reader.line_num, values))
    except csv.Error as exc:
        return [], [f"line {reader.line_num}: not CSV: {exc}"]
    rows = []
    for number, values in lines:
        rows.append((number, {c: v.strip() for c, v in zip(columns, values, strict=False) if v.strip()}
                     | ({"__extra__": "x"} if len(values) > len(columns) else {})))
    return rows, []


def import_csv(session: Session, caller: Caller, kind: Kind, data: bytes, *, dry_run: bool,
               reason: str | None = None, filename: str | None = None) -> ImportReport:
    """Import the file's lines as records of `kind`: a report of what was (or, in a dry run, would be) done.
    A file that cannot be read as the kind's CSV is Invalid; an apply with any line's problem writes nothing and
    raises ImportRefused."""
    lines, file_problems = _read(data, kind)
    if file_problems:  # not the kind's CSV at all: no line to report on
        raise Invalid(f"the file cannot be read as {kind} records: nothing was imported", reasons=file_problems)
    import_id = uuid.uuid4()
    why = f"CSV import {import_id}" + (f": {reason}" if reason else "")
    rows: list[ImportRow] = []
    outer = session.begin_nested()
    try:
        for number, cells in lines:
            problems = [f"{c}: {p}" for c, v in cells.items() if (p := _cell_problem(v))]
            if cells.pop("__extra__", None):
                problems.append("more cells than columns")
            if problems:
                rows.append(ImportRow(row=number, action="invalid", code=cells.get("code"), name=cells.get("name"),
                                      problems=problems))
                continue
            try:
                with session.begin_nested():
                    done = _row(session, caller, kind, cells, why)
                rows.append(done.model_copy(update={"row": number}))
            except DomainError as exc:
                rows.append(ImportRow(row=number, action="invalid", code=cells.get("code"), name=cells.get("name"),
                                      problems=exc.reasons or [exc.message]))
        counts: dict[ImportAction, int] = {"create": 0, "update": 0, "unchanged": 0, "invalid": 0}
        for r in rows:
            counts[r.action] += 1
        apply = not dry_run and not counts["invalid"]
        report = ImportReport(kind=kind, dry_run=dry_run, applied=apply, import_id=import_id if apply else None,
                              counts=counts, rows=rows)
        if not apply:
            outer.rollback()
            if not dry_run:
                raise ImportRefused(report)
            return report
        audit.record(session, org_id=caller.org_id, actor=caller.actor, action="import", entity_type="registry_import",
                     entity_id=import_id, reason=reason, context=caller.context,
                     after={"kind": kind.value, "filename": filename, "sha256": hashlib.sha256(data).hexdigest(),
                            "rows": len(lines), "created": counts["create"], "updated": counts["update"],
                            "unchanged": counts["unchanged"]})
        outer.commit()
        return report
    except BaseException:
        if outer.is_active:
            outer.rollback()
        raise


def _cell_problem(value: str) -> str | None:
    if len(value) > MAX_CELL:
        return f"at most {MAX_CELL} characters"
    return None
