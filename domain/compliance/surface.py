"""The compliance surface: the regulatory tags a sample, batch or run carries, derived, never typed in, each with
the path that brought it.

A sample's surface is its own tags; its batch's; those of the strains, plasmids and ingredient lots it is made of
(and their species or ingredient); the protocol and step of the run that made it; and all of that again for every
ancestor through lineage, with the derivations between. A batch's is its own tags, those of the run that made it
and its samples' surfaces; a run's is its protocol's (and its steps', each for that step only) plus its subjects'.

Four statements whatever the depth: one recursive walk over `lineage_edges` (UNION keeps each edge once, so a
graph of many diamonds costs its edges, never its paths), then the nodes, the tags held by the nodes (own, batch,
components and their parent records) and the runs' protocol and step tags by id arrays. The shortest path from
each ancestor to its subject is found in Python over the walked edges (breadth first).
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import text
from sqlalchemy.orm import Session

from domain.compliance.models import Hop, Provenance, Surface, SurfaceTag
from domain.errors import NotFound

MAX_EDGES = 50_000  # one walk's edges; beyond it the farthest ancestors are left out
MAX_PATHS = 10  # paths shown per tag (all are counted)
MAX_BATCH_SAMPLES = 500
ELIDE = 8  # a path through more generations names the first and last few in its text, counting the others

# Ids come back as text: the walk keys dictionaries by them, and text hashes in C. Read through the driver's own
# cursor as named tuples (a thousand SQLAlchemy rows cost more than the query).
_WALK = (
    "WITH RECURSIVE up(parent_id, child_id, operation, run_id, step_key) AS ("
    " SELECT e.parent_id, e.child_id, e.operation, e.run_id, e.step_key FROM lineage_edges e"
    "  WHERE e.child_id = ANY(CAST(%(roots)s AS uuid[]))"
    " UNION"
    " SELECT e.parent_id, e.child_id, e.operation, e.run_id, e.step_key FROM up"
    "  JOIN lineage_edges e ON e.child_id = up.parent_id"
    "), capped AS (SELECT * FROM up LIMIT %(cap)s)"
    " SELECT c.parent_id::text, c.child_id::text, c.operation, c.run_id, c.step_key, s.code, s.sample_type,"
    " s.created_in_run, s.created_in_step FROM capped c JOIN samples s ON s.id = c.parent_id"
)
_NODES = text("SELECT id::text, code, sample_type, name, created_in_run, created_in_step FROM samples"
              " WHERE id = ANY(CAST(:ids AS text[])::uuid[])")
# (holder sample, source type, source id, source code, source label, via item id, tag id)
_HELD = text("""
SELECT l.target_id AS holder, 'sample' AS src_type, CAST(l.target_id AS uuid) AS src_id,
       NULL AS src_code, NULL AS src_name, NULL::uuid AS via_id, l.tag_id
FROM compliance_tag_links l
WHERE l.org_id = current_org() AND l.target_type = 'sample' AND l.target_id = ANY(CAST(:texts AS text[]))
UNION ALL
SELECT s.id::text, 'batch', b.id, b.code, b.name, NULL::uuid, l.tag_id
FROM samples s JOIN batches b ON b.id = s.batch_id
JOIN compliance_tag_links l ON l.org_id = current_org() AND l.target_type = 'batch' AND l.target_id = b.id::text
WHERE s.id = ANY(CAST(:texts AS text[])::uuid[])
UNION ALL
SELECT c.sample_id::text, i.kind, i.id, i.code, i.name, CASE WHEN i.id = ci.id THEN NULL ELSE ci.id END, l.tag_id
FROM sample_components c JOIN registry_items ci ON ci.id = c.item_id
JOIN registry_items i ON i.id = ci.id OR i.id = ci.parent_id
JOIN compliance_tag_links l ON l.org_id = current_org() AND l.target_type = 'registry_item' AND l.target_id = i.id::text
WHERE c.sample_id = ANY(CAST(:texts AS text[])::uuid[])
ORDER BY 1, 3, 7
""")
_ITEMS = text("SELECT id, kind, code, name FROM registry_items WHERE id = ANY(CAST(:ids AS uuid[]))")
_RUNS = text("SELECT r.id, r.protocol_key, r.protocol_version_id, pv.version,"
             " coalesce(pv.plan -> 'regulatory_tags', '[]'::jsonb) AS plan_tags"
             " FROM runs r JOIN protocol_versions pv ON pv.id = r.protocol_version_id"
             " WHERE r.id = ANY(CAST(:ids AS uuid[]))")
_PROTOCOL_TAGS = text(
    "SELECT l.target_type, l.target_id, l.step_key, l.tag_id FROM compliance_tag_links l"
    " WHERE l.org_id = current_org() AND ((l.target_type = 'protocol' AND l.target_id = ANY(CAST(:keys AS text[])))"
    " OR (l.target_type = 'step' AND l.target_id = ANY(CAST(:versions AS text[]))))")
_TAGS = text("SELECT id, key, name, framework FROM compliance_tags WHERE org_id = current_org()"
             " AND archived_at IS NULL")


@dataclass(frozen=True)
class _Tag:
    key: str
    name: str
    framework: str


@dataclass(frozen=True)
class _Run:
    id: uuid.UUID
    protocol_key: str
    version_id: uuid.UUID
    version: int
    plan_tags: list[str]

    def label(self) -> str:
        return f"run {self.protocol_key} v{self.version} {str(self.id)[:8]}"


@dataclass(frozen=True)
class _Path:
    """A path not yet spelled out: `prefix` hops, then (when `holder`) the holder sample and the lineage down to its
    root in `graph`, then `after`."""

    prefix: list[Hop]
    graph: _Graph | None = None
    holder: str | None = None
    after: tuple[Hop, ...] = ()

    def length(self) -> int:
        lineage = self.graph.length(self.holder) if self.graph is not None and self.holder is not None else 0
        return len(self.prefix) + lineage + len(self.after)


@dataclass
class _Found:
    """Tags found so far: key → [(path length, order, tag name, path, step key)]. Paths are spelled out only for the
    shortest few of each tag (a path through a thousand ancestors is long)."""

    entries: dict[str, list[tuple[int, int, str, _Path, str | None]]]

    def add(self, key: str, tag_name: str, path: _Path | list[Hop], step_key: str | None = None) -> None:
        p = path if isinstance(path, _Path) else _Path(prefix=path)
        bucket = self.entries.setdefault(key, [])
        bucket.append((p.length(), len(bucket), tag_name, p, step_key))


def _array(ids: Iterable[str]) -> str:
    """Ids as one PostgreSQL array literal: a thousand of them are sent as one string (they are uuids' text)."""
    return "{" + ",".join(ids) + "}"


def _sample_hop(node: object) -> Hop:
    return Hop(type="sample", id=str(node.id), code=node.code, label=f"{node.sample_type} {node.code}")  # type: ignore[attr-defined]


@dataclass(frozen=True)
class _Node:
    id: str
    code: str
    sample_type: str
    created_in_run: uuid.UUID | None
    created_in_step: str | None


class _Graph:
    """The walked ancestry of some root samples: for each sample, the hop chain down to its nearest root."""

    def __init__(self, session: Session, root_ids: list[uuid.UUID]) -> None:
        dbapi = cast(psycopg.Connection[Any], session.connection().connection.dbapi_connection)
        with dbapi.cursor(row_factory=namedtuple_row) as cur:  # the session's own transaction (its organization)
            cur.execute(_WALK, {"roots": root_ids, "cap": MAX_EDGES})
            edges: list[Any] = cur.fetchall()
        roots = [str(r) for r in root_ids]
        ups: dict[str, list[tuple[str, object]]] = {}
        for e in edges:
            ups.setdefault(e.child_id, []).append((e.parent_id, e))
        # breadth first from the roots: each ancestor's next hop towards its nearest root, and its distance
        self.down: dict[str, tuple[str, object] | None] = dict.fromkeys(roots)
        self.depth: dict[str, int] = dict.fromkeys(roots, 0)
        queue = deque(roots)
        while queue:
            child = queue.popleft()
            for parent, edge in sorted(ups.get(child, ()), key=lambda p: p[0]):
                if parent not in self.down:
                    self.down[parent] = (child, edge)
                    self.depth[parent] = self.depth[child] + 1
                    queue.append(parent)
        # the parents' columns came with their edges; the roots' are asked for
        rows = session.execute(_NODES, {"ids": _array(roots)}).all()
        self.nodes: dict[str, Any] = {r.id: r for r in rows}
        for e in edges:
            if e.parent_id in self.down and e.parent_id not in self.nodes:
                self.nodes[e.parent_id] = _Node(e.parent_id, e.code, e.sample_type, e.created_in_run,
                                                e.created_in_step)
        for gone in [k for k in self.down if k not in self.nodes]:  # not in this organization
            del self.down[gone]
        self.run_ids = {e.run_id for e in edges if e.run_id} | {
            n.created_in_run for n in self.nodes.values() if n.created_in_run}
        self.roots = roots
        self.runs: dict[uuid.UUID, _Run] = {}
        self._labels: dict[str, tuple[str, str | None]] = {}

    def length(self, sample: str) -> int:
        """Hops in the sample's chain: itself, and a derivation and a sample per generation down to its root."""
        return 2 * self.depth[sample] + 1

    def labels(self, sample: str) -> tuple[str, str | None]:
        """The sample's label and that of the derivation from it to its child (None at a root)."""
        found = self._labels.get(sample)
        if found is None:
            node, step = self.nodes[sample], self.down.get(sample)
            found = self._labels[sample] = (f"{node.sample_type} {node.code}",
                                            self._derivation(step[1]) if step is not None else None)
        return found

    def ids_down(self, sample: str) -> list[str]:
        """The sample and each sample after it down to its root."""
        out: list[str] = []
        at: str | None = sample
        while at is not None:
            out.append(at)
            step = self.down.get(at)
            at = step[0] if step is not None else None
        return out

    def _derivation(self, edge: object) -> str:
        op, run_id, step_key = edge.operation, edge.run_id, edge.step_key  # type: ignore[attr-defined]
        run = self.runs.get(run_id) if run_id else None
        return op + (f" {run.label()}" if run else "") + (f" step {step_key}" if step_key else "")


def _runs(session: Session, ids: set[uuid.UUID]) -> dict[uuid.UUID, _Run]:
    if not ids:
        return {}
    return {r.id: _Run(r.id, r.protocol_key, r.protocol_version_id, r.version, list(r.plan_tags))
            for r in session.execute(_RUNS, {"ids": list(ids)}).all()}


def _protocol_tags(session: Session, runs: dict[uuid.UUID, _Run]) -> list[object]:
    if not runs:
        return []
    return list(session.execute(_PROTOCOL_TAGS, {
        "keys": sorted({r.protocol_key for r in runs.values()}),
        "versions": sorted({str(r.version_id) for r in runs.values()})}).all())


def _add_run_tags(found: _Found, tags: dict[uuid.UUID, _Tag], by_key: dict[str, _Tag], run: _Run,
                  links: list[object], tail: list[Hop] | _Tail, step_key: str | None, *, own_run: bool) -> None:
    """The tags of the run's protocol (its definition's and attached ones) and of its step `step_key` (every step's
    when `own_run`: the run's own surface, each step's tag for that step only)."""
    run_hop = Hop(type="run", id=str(run.id), code=run.protocol_key, label=run.label())
    via = [] if own_run else [run_hop]
    proto = Hop(type="protocol", id=run.protocol_key, code=run.protocol_key, label=f"protocol {run.protocol_key}")

    def add(key: str, name: str, first: Hop, step: str | None = None) -> None:
        head = [first, *via]
        if isinstance(tail, _Tail):
            found.add(key, name, _Path(head, tail.graph, tail.sample, tuple(tail.tail)), step_key=step)
        else:
            found.add(key, name, [*head, *tail], step_key=step)

    for key in run.plan_tags:
        if key in by_key:
            add(key, by_key[key].name, proto)
    for link in links:
        t = tags.get(link.tag_id)  # type: ignore[attr-defined]
        if t is None:
            continue
        if link.target_type == "protocol" and link.target_id == run.protocol_key:  # type: ignore[attr-defined]
            add(t.key, t.name, proto)
        elif link.target_type == "step" and link.target_id == str(run.version_id):  # type: ignore[attr-defined]
            key = link.step_key  # type: ignore[attr-defined]
            if own_run or key == step_key:
                step = Hop(type="step", id=str(run.version_id), code=key,
                           label=f"step {key} of {run.protocol_key} v{run.version}")
                add(t.key, t.name, step, key if own_run else None)


@dataclass(frozen=True)
class _Tail:
    """The hops after a run's protocol or step down to the subject: a sample's chain (built when needed)."""

    graph: _Graph
    sample: str
    tail: list[Hop]

    def __len__(self) -> int:
        return self.graph.length(self.sample) + len(self.tail)



def _collect(session: Session, roots: list[uuid.UUID], found: _Found, tags: dict[uuid.UUID, _Tag],
             by_key: dict[str, _Tag], tail: list[Hop], extra_runs: set[uuid.UUID] | None = None
             ) -> tuple[_Graph, dict[uuid.UUID, _Run], list[object]]:
    graph = _Graph(session, roots)
    graph.runs = runs = _runs(session, graph.run_ids | (extra_runs or set()))
    links = _protocol_tags(session, runs)
    ids = list(graph.nodes)
    held = session.execute(_HELD, {"texts": _array(ids)}).all()
    via_items = {h.via_id for h in held if h.via_id}
    items = {r.id: r for r in session.execute(_ITEMS, {"ids": list(via_items)}).all()} if via_items else {}
    for h in held:
        t = tags.get(h.tag_id)
        if t is None or h.holder not in graph.nodes:
            continue
        prefix: list[Hop] = []
        if h.src_type != "sample":
            name = h.src_code if h.src_type == "batch" else h.src_name
            prefix = [Hop(type=h.src_type, id=str(h.src_id), code=h.src_code, label=f"{h.src_type} {name}")]
            if h.via_id in items:
                v = items[h.via_id]
                prefix.append(Hop(type=v.kind, id=str(v.id), code=v.code, label=f"{v.kind} {v.name}"))
        found.add(t.key, t.name, _Path(prefix, graph, h.holder, tuple(tail)))
    # the protocol and step of the run that made each sample (by the edge that derived it, or its creation)
    for sample, node in graph.nodes.items():
        step = graph.down.get(sample)
        made = [(node.created_in_run, node.created_in_step)] if node.created_in_run else []
        if step is not None and step[1].run_id and not made:  # type: ignore[attr-defined]
            made = [(step[1].run_id, step[1].step_key)]  # type: ignore[attr-defined]
        for run_id, step_key in made:
            if run_id in runs:
                _add_run_tags(found, tags, by_key, runs[run_id], links, _Tail(graph, sample, tail), step_key,
                              own_run=False)
    return graph, runs, links


def _vocabulary(session: Session) -> tuple[dict[uuid.UUID, _Tag], dict[str, _Tag]]:
    rows = session.execute(_TAGS).all()
    tags = {r.id: _Tag(r.key, r.name, r.framework) for r in rows}
    return tags, {t.key: t for t in tags.values()}


def _spell(name: str, p: _Path, lineage: dict[str, dict[str, str | None]], step_key: str | None) -> Provenance:
    """The path in full: its hops to the lineage, the lineage steps it goes through (added to `lineage`), its
    text."""
    labels = [name, *(h.label for h in p.prefix)]
    path = list(p.prefix)
    generations = 0
    if p.graph is not None and p.holder is not None:
        ids = p.graph.ids_down(p.holder)
        generations = len(ids) - 1
        path.append(_sample_hop(p.graph.nodes[p.holder]))
        for i, sample in enumerate(ids):
            if sample in lineage:
                continue
            label, derivation = p.graph.labels(sample)
            lineage[sample] = {"id": sample, "code": p.graph.nodes[sample].code, "label": label,
                               "child_id": ids[i + 1] if i + 1 < len(ids) else None, "derivation": derivation}
        shown: list[str | None] = list(ids) if generations <= ELIDE else [*ids[:4], None, *ids[-3:]]
        for i, at in enumerate(shown):
            if at is None:
                labels.append(f"… {generations - 6} more samples …")
                continue
            label, derivation = p.graph.labels(at)
            labels.append(label)
            if derivation is not None and i + 1 < len(shown) and shown[i + 1] is not None:
                labels.append(derivation)
    labels += [h.label for h in p.after]
    return Provenance(source=path[0], path=path, through=uuid.UUID(p.holder) if p.holder else None,
                      generations=generations, after=list(p.after), text=" ← ".join(labels), step_key=step_key)


def _answer(found: _Found, by_key: dict[str, _Tag], subject_type: str, subject_id: uuid.UUID, label: str,
            ancestors: int) -> Surface:
    out = []
    lineage: dict[str, dict[str, str | None]] = {}
    for key in sorted(found.entries):
        entries = sorted(found.entries[key], key=lambda e: (e[0], e[1]))
        shown: list[Provenance] = []
        seen: set[str] = set()
        for _, _, name, path, step_key in entries:
            if len(shown) == MAX_PATHS:
                break
            prov = _spell(name, path, lineage, step_key)
            if prov.text not in seen:
                seen.add(prov.text)
                shown.append(prov)
        t = by_key[key]
        out.append(SurfaceTag(key=key, name=t.name, framework=t.framework, provenance=shown, paths=len(entries)))
    return Surface(subject_type=subject_type, subject_id=subject_id, subject_label=label,  # type: ignore[arg-type]
                   ancestors=ancestors, tags=out).with_steps(list(lineage.values()))


def of_sample(session: Session, sample_id: uuid.UUID) -> Surface:
    tags, by_key = _vocabulary(session)
    found = _Found({})
    graph, _, _ = _collect(session, [sample_id], found, tags, by_key, [])
    if str(sample_id) not in graph.nodes:
        raise NotFound(f"no sample {sample_id}")
    root = graph.nodes[str(sample_id)]
    return _answer(found, by_key, "sample", sample_id, f"{root.sample_type} {root.code}", len(graph.nodes) - 1)


_BATCH = text("SELECT id, code, name, created_in_run, created_in_step FROM batches WHERE id = :b")
_BATCH_SAMPLES = text("SELECT id FROM samples WHERE batch_id = :b ORDER BY created_at, id LIMIT :n")


def _batch_surface(session: Session, found: _Found, tags: dict[uuid.UUID, _Tag], by_key: dict[str, _Tag],
                   batch_id: uuid.UUID, tail: list[Hop]) -> tuple[Hop, int]:
    b = session.execute(_BATCH, {"b": batch_id}).first()
    if b is None:
        raise NotFound(f"no batch {batch_id}")
    hop = Hop(type="batch", id=str(b.id), code=b.code, label=f"batch {b.code}")
    for link in session.execute(text(
            "SELECT tag_id FROM compliance_tag_links WHERE org_id = current_org() AND target_type = 'batch'"
            " AND target_id = :b"), {"b": str(batch_id)}).all():
        if (t := tags.get(link.tag_id)) is not None:
            found.add(t.key, t.name, [hop, *tail])
    members = [r.id for r in session.execute(_BATCH_SAMPLES, {"b": batch_id, "n": MAX_BATCH_SAMPLES}).all()]
    extra = {b.created_in_run} if b.created_in_run else set()
    graph, runs, links = _collect(session, members, found, tags, by_key, [hop, *tail], extra)
    if b.created_in_run in runs:
        _add_run_tags(found, tags, by_key, runs[b.created_in_run], links, [hop, *tail], b.created_in_step,
                      own_run=False)
    return hop, len(graph.nodes) - len(members)


def of_batch(session: Session, batch_id: uuid.UUID) -> Surface:
    tags, by_key = _vocabulary(session)
    found = _Found({})
    hop, ancestors = _batch_surface(session, found, tags, by_key, batch_id, [])
    return _answer(found, by_key, "batch", batch_id, hop.label, ancestors)


_RUN = text("SELECT id, protocol_key, subjects FROM runs WHERE id = :r")


def of_run(session: Session, run_id: uuid.UUID) -> Surface:
    """The run's surface: its protocol's and steps' tags (a step's for that step only) and its subjects'."""
    r = session.execute(_RUN, {"r": run_id}).first()
    if r is None:
        raise NotFound(f"no run {run_id}")
    tags, by_key = _vocabulary(session)
    found = _Found({})
    samples = _ids(session, "samples", [s["id"] for s in r.subjects if s.get("type") == "sample"])
    graph, runs, links = _collect(session, samples, found, tags, by_key, [], {run_id})
    ancestors = len(graph.nodes) - len(samples)
    for b in _ids(session, "batches", [s["id"] for s in r.subjects if s.get("type") == "batch"]):
        ancestors += _batch_surface(session, found, tags, by_key, b, [])[1]
    if run_id in runs:
        _add_run_tags(found, tags, by_key, runs[run_id], links, [], None, own_run=True)
    label = runs[run_id].label() if run_id in runs else f"run {run_id}"
    return _answer(found, by_key, "run", run_id, label, ancestors)


def _ids(session: Session, table: str, codes: list[str]) -> list[uuid.UUID]:
    """The ids of a run's subjects (it names them by code)."""
    if not codes:
        return []
    rows = session.execute(text(f"SELECT id FROM {table} WHERE org_id = current_org()"  # noqa: S608 - fixed names
                                " AND code = ANY(CAST(:c AS text[])) ORDER BY code"), {"c": codes}).all()
    return [r.id for r in rows]
