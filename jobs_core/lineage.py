"""Lineage: the ``jobs:graph:*`` edges jobs record at start, walked and rendered.

Everything here is pure (no I/O), so the sync and asyncio coordinators and the
``jobs-core`` command share it: :func:`score_range` and :func:`clean_edges`
read the edges, :func:`build` makes a graph of them, :func:`traverse` keeps
what lies upstream or downstream of one name, and :func:`render` writes a
graph as text, Graphviz DOT, Mermaid or JSON.

The graph has two kinds of node: *data* (inputs and outputs) and *jobs*. An
input edge ``"<input> -> <job>"`` goes from data to a job, an output edge
``"<job> -> <output>"`` from a job to data. Names are folded as recorded
(digit runs become ``*``), so a graph node stands for every day of a
day-partitioned name; :func:`traverse` folds the name it starts from.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .display import printable
from .errors import InvalidArgument, InvalidType
from .names import ARROW, fold

_TS_RE = re.compile(r"^\d{9,}(?:\.\d*)?$")
_DT_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?"
                    r"(Z|[+-]\d{2}:?\d{2})?$", re.IGNORECASE)
_AGO_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$", re.IGNORECASE)
#: Seconds in each unit of a relative time (``30m``, ``1h``, ``7d``).
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

#: Node kinds.
DATA, JOB = "data", "job"
#: Edge kinds: an input edge goes from data to a job, an output edge from a job to data.
INPUT, OUTPUT = "input", "output"
#: Traversal directions.
UPSTREAM, DOWNSTREAM, BOTH = "upstream", "downstream", "both"
#: Output formats of :func:`render`.
FORMATS = ("text", "dot", "mermaid", "json")
#: Version of the JSON document written by :func:`to_json`; changes only when a field changes meaning.
JSON_VERSION = 1


def parse_when(value: Any, now: float | None = None) -> float:
    """Epoch seconds from a number, a ``datetime``/``date`` (naive means UTC), or text.

    Text may be a timestamp (``1473825618.18``), ``YYYY-MM-DD[ HH:MM[:SS[.ffffff]]]``
    (``T`` may replace the space), optionally ending with ``Z`` or an offset
    such as ``+02:00`` (without one it is UTC), or a relative time: a number
    and a unit, ``s``, ``m``, ``h``, ``d`` or ``w`` (``90s``, ``30m``, ``1.5h``,
    ``7d``), meaning that long before ``now`` (default: this machine's clock).

    Raises:
        InvalidArgument: text in none of those forms, or an impossible date.
        InvalidType: any other type.
    """
    if isinstance(value, bool):
        raise InvalidType(f"a time bound must be a timestamp, datetime, date or text, not {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise InvalidArgument(f"a time bound must be a finite timestamp, not {value!r}")
        return float(value)
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return value.timestamp()
    if isinstance(value, _dt.date):
        return _dt.datetime(value.year, value.month, value.day, tzinfo=_dt.timezone.utc).timestamp()
    if not isinstance(value, str):
        raise InvalidType(f"a time bound must be a timestamp, datetime, date or text, not {type(value).__name__}")
    text = value.strip()
    if _TS_RE.match(text):
        return float(text)
    ago = _AGO_RE.match(text)
    if ago:
        return (time.time() if now is None else now) - float(ago.group(1)) * UNITS[ago.group(2).lower()]
    m = _DT_RE.match(text)
    if m:
        y, mo, d, h, mi, s, frac, zone = m.groups()
        micro = int((frac or "0")[:6].ljust(6, "0"))
        try:
            when = _dt.datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), micro,
                                tzinfo=_zone(zone))
        except ValueError as exc:
            raise InvalidArgument(f"bad date {value!r}: {exc}") from None
        return when.timestamp()
    raise InvalidArgument(f"{value!r} is not a timestamp (e.g. 1473825618.5), a date (2016-09-12), "
                          f"a datetime (2016-09-12 12:14:32, 2016-09-12T12:14:32+02:00) or a time ago "
                          f"(90s, 30m, 1h, 7d, 2w)")


def _zone(zone: str | None) -> _dt.tzinfo:
    if zone is None or zone.upper() == "Z":
        return _dt.timezone.utc
    digits = zone[1:].replace(":", "")
    offset = _dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return _dt.timezone(-offset if zone[0] == "-" else offset)


def score_range(before: Any = None, after: Any = None) -> tuple[str | float, str | float]:
    """``(min, max)`` zset score bounds for edges last seen after/before the given times."""
    return ("-inf" if after is None else parse_when(after), "+inf" if before is None else parse_when(before))


def clean_edges(members: Any) -> list[str]:
    """Sorted, de-duplicated, folded edges from a zset read (bytes or str)."""
    out = set()
    for m in members:
        out.add(fold(m.decode("utf-8", "replace") if isinstance(m, bytes) else str(m)))
    return sorted(out)


# -- the graph -----------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Node:
    """A node of the lineage graph: a (folded) name and whether it is data or a job."""

    name: str
    kind: str


@dataclass(frozen=True, order=True)
class Edge:
    """``source -> target``: an input edge (data to job) or an output edge (job to data)."""

    source: Node
    target: Node

    @property
    def kind(self) -> str:
        return INPUT if self.source.kind == DATA else OUTPUT


@dataclass(frozen=True)
class Lineage:
    """A lineage graph: the whole recorded one, or the part :func:`traverse` reached.

    ``roots`` are the nodes a traversal started from (empty for a whole graph),
    ``distance`` the number of edges from the nearest root to each node;
    ``after``/``before`` the time range the edges were read for, if any.
    """

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    roots: tuple[Node, ...] = ()
    direction: str | None = None
    depth: int | None = None
    distance: Mapping[Node, int] = field(default_factory=dict)
    start: str | None = None
    after: float | None = None
    before: float | None = None

    def find(self, name: str) -> tuple[Node, ...]:
        """The nodes (data, job or both) named ``name`` once folded."""
        folded = fold(name)
        return tuple(n for n in self.nodes if n.name == folded)


def build(input_edges: Iterable[str], output_edges: Iterable[str], after: Any = None, before: Any = None
          ) -> Lineage:
    """The graph of the edges :meth:`jobs_core.Coordinator.edges` returns for the time range ``after``-``before``.

    Job ids never contain the arrow (jobs_core refuses it), but names written
    by jobs.py clients may: an input edge is split at its last arrow, an output
    edge at its first. Members without an arrow are ignored.
    """
    edges = set()
    for member in input_edges:
        data, arrow, job = member.rpartition(ARROW)
        if arrow:
            edges.add(Edge(Node(data, DATA), Node(job, JOB)))
    for member in output_edges:
        job, arrow, data = member.partition(ARROW)
        if arrow:
            edges.add(Edge(Node(job, JOB), Node(data, DATA)))
    return _lineage(edges, after=None if after is None else parse_when(after),
                    before=None if before is None else parse_when(before))


def _lineage(edges: Iterable[Edge], **fields: Any) -> Lineage:
    edges = sorted(set(edges))
    nodes = {n for e in edges for n in (e.source, e.target)} | set(fields.get("roots", ()))
    return Lineage(tuple(sorted(nodes)), tuple(edges), **fields)


def _adjacency(edges: Iterable[Edge], upstream: bool) -> dict[Node, list[Node]]:
    """Each node's neighbours in the walking direction, in sorted order."""
    out: dict[Node, list[Node]] = {}
    for e in sorted(edges):
        here, there = (e.target, e.source) if upstream else (e.source, e.target)
        out.setdefault(here, []).append(there)
    return out


def _walk(adjacency: Mapping[Node, list[Node]], roots: Iterable[Node], depth: int | None
          ) -> tuple[dict[Node, int], list[tuple[Node, Node]]]:
    """Breadth-first from ``roots`` at most ``depth`` edges deep: distances, and the steps taken."""
    distance = {r: 0 for r in roots}
    queue = deque(distance)
    steps = []
    while queue:
        here = queue.popleft()
        if depth is not None and distance[here] >= depth:
            continue
        for there in adjacency.get(here, ()):
            steps.append((here, there))
            if there not in distance:
                distance[there] = distance[here] + 1
                queue.append(there)
    return distance, steps


def traverse(graph: Lineage, name: str, direction: str = BOTH, depth: int | None = None) -> Lineage:
    """What lies ``upstream`` or ``downstream`` (or ``both``) of ``name``, at most ``depth`` edges away.

    ``name`` is folded as the graph's names are (``raw.events.2026-11-27`` is
    looked up as ``raw.events.*``) and may be a job id, an input or an output;
    a name that is both data and a job starts from both. Upstream of an output
    are the jobs that wrote it, their inputs, the jobs that wrote those...;
    downstream of an input, the jobs that read it, their outputs... A depth of
    1 keeps the neighbours only, 2 also their neighbours (for data: the jobs,
    then the data those jobs read or write). A name not in the graph gives a
    lineage without nodes.

    Raises:
        InvalidArgument: an unknown direction, or a depth below 1.
    """
    if direction not in (UPSTREAM, DOWNSTREAM, BOTH):
        raise InvalidArgument(f"direction must be {UPSTREAM!r}, {DOWNSTREAM!r} or {BOTH!r}, not {direction!r}")
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
        raise InvalidArgument(f"depth must be a whole number of edges, 1 or more (or None: no limit), not {depth!r}")
    roots = graph.find(name)
    distance: dict[Node, int] = {}
    edges: set[Edge] = set()
    for upstream in (True, False):
        if direction == (DOWNSTREAM if upstream else UPSTREAM):
            continue
        reached, steps = _walk(_adjacency(graph.edges, upstream), roots, depth)
        for node, d in reached.items():
            distance[node] = min(d, distance.get(node, d))
        edges.update(Edge(there, here) if upstream else Edge(here, there) for here, there in steps)
    return _lineage(edges, roots=roots, direction=direction, depth=depth, distance=distance, start=fold(name),
                    after=graph.after, before=graph.before)


def query(input_edges: Iterable[str], output_edges: Iterable[str], name: str | None = None,
          direction: str | None = None, depth: int | None = None, after: Any = None, before: Any = None) -> Lineage:
    """What ``jobs-core lineage`` and the web view show: the graph of the edges (:func:`build`), or, with
    ``name``, what lies around it (:func:`traverse`; ``direction`` defaults to both). A name not in the
    graph gives a lineage without roots.

    Raises:
        InvalidArgument: a direction or depth without a name, an unknown direction, or a depth below 1.
    """
    graph = build(input_edges, output_edges, after=after, before=before)
    if name is None:
        if direction is not None or depth is not None:
            raise InvalidArgument("a direction or depth needs a name to start from")
        return graph
    return traverse(graph, name, direction or BOTH, depth)


# -- rendering -----------------------------------------------------------------------------------

def to_text(lineage: Lineage) -> str:
    """A readable outline.

    A traversal is a tree per root and direction (``<-`` upstream, ``->``
    downstream); each node's neighbours are listed once, and a node met again
    is marked ``(shown elsewhere)``. A whole graph lists each job with what
    it reads and writes. Every line names its node's kind (``data`` or ``job``).
    """
    if lineage.direction is None:
        return _text_jobs(lineage)
    if not lineage.roots:
        return f"nothing recorded for {printable(lineage.start or '')}\n"
    lines: list[str] = []
    for upstream in (True, False):
        if lineage.direction == (DOWNSTREAM if upstream else UPSTREAM):
            continue
        adjacency = _adjacency(lineage.edges, upstream)
        distance, _ = _walk(adjacency, lineage.roots, lineage.depth)
        for root in lineage.roots:
            if lines:
                lines.append("")
            lines.append(f"{'upstream' if upstream else 'downstream'} of {_label(root)}:")
            _tree(lines, root, adjacency, distance, lineage.depth, "<- " if upstream else "-> ")
    return "\n".join(lines) + "\n"


def _label(node: Node) -> str:
    return f"{node.kind:<4} {printable(node.name)}"


def _tree(lines: list[str], root: Node, adjacency: Mapping[Node, list[Node]], distance: Mapping[Node, int],
          depth: int | None, arrow: str) -> None:
    """Depth-first outline, two spaces per level; a node's neighbours are listed at its
    first occurrence at its shortest distance from the roots."""
    expanded: set[Node] = set()
    stack: list[tuple[Node, int]] = [(root, 0)]
    while stack:
        node, level = stack.pop()
        within = depth is None or level < depth
        children = adjacency.get(node, []) if within else []
        expand = bool(children) and node not in expanded and distance.get(node) == level
        note = " (shown elsewhere)" if children and not expand else ""
        lead = "  " * level + arrow if level else ""
        lines.append(f"{lead}{_label(node)}{note}")
        if expand:
            expanded.add(node)
            stack.extend((child, level + 1) for child in reversed(children))


def _text_jobs(lineage: Lineage) -> str:
    if not lineage.edges:
        return "no lineage recorded\n"
    by_job: dict[Node, list[str]] = {}
    for e in lineage.edges:
        if e.kind == INPUT:
            by_job.setdefault(e.target, []).append(f"  reads  {printable(e.source.name)}")
        else:
            by_job.setdefault(e.source, []).append(f"  writes {printable(e.target.name)}")
    lines = []
    for job in sorted(by_job):
        lines.append(_label(job))
        lines.extend(sorted(by_job[job], key=lambda line: (line.startswith("  writes"), line)))
    return "\n".join(lines) + "\n"


def _ids(lineage: Lineage) -> dict[Node, str]:
    """Stable node identifiers for DOT and Mermaid: ``n0``, ``n1``... in node order."""
    return {n: f"n{i}" for i, n in enumerate(lineage.nodes)}


def dot_string(text: str) -> str:
    """``text`` as a DOT quoted string that Graphviz shows exactly as ``text``.

    Backslashes start Graphviz escapes (``\\n``, ``\\l``, ``\\N``) and ``&``
    starts HTML entities in labels, so both are escaped with the quote.
    """
    escaped = printable(text).replace("\\", "\\\\").replace('"', '\\"').replace("&", "&amp;")
    return f'"{escaped}"'


def to_dot(lineage: Lineage) -> str:
    """A Graphviz digraph (``dot -Tsvg``): jobs are boxes, data ellipses, roots drawn bold."""
    ids = _ids(lineage)
    roots = set(lineage.roots)
    lines = ["digraph lineage {", "    rankdir=LR;", '    node [fontname="Helvetica"];']
    for node, nid in ids.items():
        shape = "box" if node.kind == JOB else "ellipse"
        bold = ", penwidth=3" if node in roots else ""
        lines.append(f"    {nid} [label={dot_string(node.name)}, shape={shape}{bold}];")
    lines.extend(f"    {ids[e.source]} -> {ids[e.target]};" for e in lineage.edges)
    lines.append("}")
    return "\n".join(lines) + "\n"


_MERMAID_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ._:/*-")


def mermaid_string(text: str) -> str:
    """``text`` as a Mermaid quoted label.

    Every ASCII character other than letters, digits, space and ``._:/*-`` is
    written as a ``#<code>;`` entity (Mermaid's own escape), so quotes,
    ``#``, ``&``, ``<``, brackets and the like cannot end the label or be read
    as markup; other printable characters (accents, CJK) are kept as they are.
    """
    out = []
    for ch in printable(text):
        if ch in _MERMAID_PLAIN or (ord(ch) > 127 and ch.isprintable()):
            out.append(ch)
        else:
            out.append(f"#{ord(ch)};")
    return '"' + "".join(out) + '"'


def to_mermaid(lineage: Lineage) -> str:
    """A Mermaid flowchart (renders in GitHub markdown): jobs are rectangles, data stadiums."""
    ids = _ids(lineage)
    lines = ["flowchart LR"]
    for node, nid in ids.items():
        label = mermaid_string(node.name)
        lines.append(f"    {nid}[{label}]" if node.kind == JOB else f"    {nid}([{label}])")
    lines.extend(f"    {ids[e.source]} --> {ids[e.target]}" for e in lineage.edges)
    if lineage.roots:
        lines.append("    classDef root stroke-width:3px")
        lines.append("    class " + ",".join(ids[r] for r in lineage.roots) + " root")
    return "\n".join(lines) + "\n"


def to_json(lineage: Lineage) -> dict[str, Any]:
    """The lineage as a JSON-ready dict (schema version :data:`JSON_VERSION`)::

        {"version": 1, "start": str|null, "direction": "upstream"|"downstream"|"both"|null,
         "depth": int|null, "after": float|null, "before": float|null,
         "nodes": [{"name": str, "kind": "data"|"job", "root": bool, "distance": int|null}],
         "edges": [{"from": str, "to": str, "kind": "input"|"output"}]}

    An ``input`` edge goes from data to a job, an ``output`` edge from a job to
    data; names are exact (folded as recorded). ``start`` is the folded name a
    traversal started from and ``distance`` the edges from it; both are null
    for a whole graph. ``after``/``before`` are the time range read (epoch
    seconds), null when unbounded.
    """
    roots = set(lineage.roots)
    return {
        "version": JSON_VERSION,
        "start": lineage.start,
        "direction": lineage.direction,
        "depth": lineage.depth,
        "after": lineage.after,
        "before": lineage.before,
        "nodes": [{"name": n.name, "kind": n.kind, "root": n in roots, "distance": lineage.distance.get(n)}
                  for n in lineage.nodes],
        "edges": [{"from": e.source.name, "to": e.target.name, "kind": e.kind} for e in lineage.edges],
    }


def render(lineage: Lineage, fmt: str = "text") -> str:
    """``lineage`` in one of :data:`FORMATS` (``json``: :func:`to_json`, indented, UTF-8 text)."""
    if fmt == "json":
        return json.dumps(to_json(lineage), ensure_ascii=False, indent=2) + "\n"
    renderers = {"text": to_text, "dot": to_dot, "mermaid": to_mermaid}
    if fmt not in renderers:
        raise InvalidArgument(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    return renderers[fmt](lineage)
