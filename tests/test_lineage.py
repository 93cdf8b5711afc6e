"""Lineage walking and rendering (jobs_core.lineage): pure functions, no Redis.

The rendering checks go through the real consumers where there is one: DOT
through Graphviz's ``dot -Tsvg`` (scripts/test installs graphviz), Mermaid
through a parser of the subset of the flowchart grammar the renderer writes,
with Mermaid's ``#<code>;`` entities decoded as Mermaid decodes them.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs_core import lineage as L
from jobs_core.errors import InvalidArgument, InvalidType
from jobs_core.names import fold

#: The demo pipeline's lineage (jobs_core.demo), as coordinator.edges() returns it.
DEMO_INPUTS = [
    "clean.events.* -> jobs_core.demo:report.*",
    "raw.events.* -> jobs_core.demo:audit.*",
    "raw.events.* -> jobs_core.demo:transform.*",
    "raw.users -> jobs_core.demo:transform.*",
]
DEMO_OUTPUTS = [
    "jobs_core.demo:audit.* -> audit.raw.events.*",
    "jobs_core.demo:extract.* -> raw.events.*",
    "jobs_core.demo:report.* -> report.*",
    "jobs_core.demo:transform.* -> clean.events.*",
    "jobs_core.demo:users.* -> raw.users",
]
#: Names every format must carry exactly: quotes, arrows, backslashes, entities, markup, non-ASCII.
ODD_NAMES = [
    'say "hi"', "a->b", "back\\slash\\n", "trailing\\", "ünïcødé 名前 🚀", "amp&amp;<b>x</b>#quot;%%;",
    "'single' [br] {c} (p) |pipe| `tick`", "end", "graph", "\\N\\G\\L",
]

SVG = "{http://www.w3.org/2000/svg}"


def demo() -> L.Lineage:
    return L.build(DEMO_INPUTS, DEMO_OUTPUTS)


def names(lineage: L.Lineage) -> set[tuple[str, str]]:
    return {(n.kind, n.name) for n in lineage.nodes}


def edge_pairs(lineage: L.Lineage) -> set[tuple[str, str]]:
    return {(e.source.name, e.target.name) for e in lineage.edges}


def odd_graph() -> L.Lineage:
    """One job per odd name: it reads the name and writes ``<name>.out``; a last job reads every output."""
    ins, outs = [], []
    for name in ODD_NAMES:
        job = f"job {name}"
        ins.append(f"{name} -> {job}")
        outs.append(f"{job} -> {name}.out")
        ins.append(f"{name}.out -> collect")
    return L.build(ins, outs)


# -- time bounds ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("1473825618", 1473825618.0),
    ("1473825618.18592", 1473825618.18592),
    ("2016-09-12", dt.datetime(2016, 9, 12, tzinfo=dt.timezone.utc).timestamp()),
    ("2016-09-12 12:14", dt.datetime(2016, 9, 12, 12, 14, tzinfo=dt.timezone.utc).timestamp()),
    ("2016-09-12 12:14:32.234232", dt.datetime(2016, 9, 12, 12, 14, 32, 234232, tzinfo=dt.timezone.utc).timestamp()),
    ("2016-09-12T12:14:32Z", dt.datetime(2016, 9, 12, 12, 14, 32, tzinfo=dt.timezone.utc).timestamp()),
    ("2016-09-12T14:14:32+02:00", dt.datetime(2016, 9, 12, 12, 14, 32, tzinfo=dt.timezone.utc).timestamp()),
    ("2016-09-12 07:44:32-0430", dt.datetime(2016, 9, 12, 12, 14, 32, tzinfo=dt.timezone.utc).timestamp()),
])
def test_parse_when_text(text: str, expected: float) -> None:
    assert L.parse_when(text) == pytest.approx(expected)


def test_parse_when_objects_and_errors() -> None:
    assert L.parse_when(12) == 12.0
    assert L.parse_when(dt.date(1970, 1, 2)) == 86400.0
    assert L.parse_when(dt.datetime(1970, 1, 1, 1)) == 3600.0  # naive: UTC
    for bad in ("yesterday", "2016-13-01", "2016-02-30", "12345", "2016-09-12T25:00"):
        with pytest.raises(InvalidArgument):
            L.parse_when(bad)
    for bad in (True, None, [1]):
        with pytest.raises(InvalidType):
            L.parse_when(bad)


@pytest.mark.parametrize("text, ago", [
    ("90s", 90), ("30m", 1800), ("1h", 3600), ("1.5h", 5400), ("7d", 7 * 86400), ("2w", 14 * 86400),
    (" 1H ", 3600), ("0m", 0), ("10 m", 600),
])
def test_parse_when_relative(text: str, ago: float) -> None:
    """A time ago: that long before ``now`` (this machine's clock by default)."""
    assert L.parse_when(text, now=1_000_000_000.0) == 1_000_000_000.0 - ago
    assert L.parse_when(text) == pytest.approx(time.time() - ago, abs=5)


@pytest.mark.parametrize("bad", ["1", "h", "1y", "-1h", "1h30m", "1e3s", "1.h", ".5h", "1 hour", "inf h", "1hh"])
def test_parse_when_relative_bad_input(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="a time ago"):
        L.parse_when(bad)


def test_build_keeps_the_time_range() -> None:
    g = L.build([], [], after="2016-09-12", before=1473825618)
    assert (g.after, g.before) == (L.parse_when("2016-09-12"), 1473825618.0)
    assert L.traverse(g, "x").after == g.after


# -- building and walking ------------------------------------------------------------------------


def test_build_splits_input_edges_at_the_last_arrow_and_output_edges_at_the_first() -> None:
    # jobs_core refuses the arrow in names, but a jobs.py client may have recorded one
    g = L.build(["a -> b -> job", "no arrow here"], ["job -> c -> d"])
    assert edge_pairs(g) == {("a -> b", "job"), ("job", "c -> d")}
    assert names(g) == {("data", "a -> b"), ("job", "job"), ("data", "c -> d")}
    assert [e.kind for e in g.edges] == sorted(e.kind for e in g.edges)  # edges sorted, kinds from the nodes
    assert {e.kind for e in g.edges} == {"input", "output"}


def test_upstream_of_an_output_is_its_writers_and_their_inputs_all_the_way() -> None:
    up = L.traverse(demo(), "report.2026-11-27", L.UPSTREAM)  # folded to report.*
    assert up.start == "report.*"
    assert up.roots == (L.Node("report.*", L.DATA),)
    assert names(up) == {
        ("data", "report.*"), ("job", "jobs_core.demo:report.*"), ("data", "clean.events.*"),
        ("job", "jobs_core.demo:transform.*"), ("data", "raw.events.*"), ("data", "raw.users"),
        ("job", "jobs_core.demo:extract.*"), ("job", "jobs_core.demo:users.*"),
    }
    assert up.distance[L.Node("raw.users", L.DATA)] == 4
    assert ("raw.events.*", "jobs_core.demo:audit.*") not in edge_pairs(up)  # a sibling, not upstream


def test_downstream_and_depth() -> None:
    g = demo()
    down = L.traverse(g, "raw.events.*", L.DOWNSTREAM)
    assert edge_pairs(down) == {
        ("raw.events.*", "jobs_core.demo:audit.*"), ("raw.events.*", "jobs_core.demo:transform.*"),
        ("jobs_core.demo:audit.*", "audit.raw.events.*"), ("jobs_core.demo:transform.*", "clean.events.*"),
        ("clean.events.*", "jobs_core.demo:report.*"), ("jobs_core.demo:report.*", "report.*"),
    }
    one = L.traverse(g, "raw.events.*", L.DOWNSTREAM, depth=1)
    assert names(one) == {("data", "raw.events.*"), ("job", "jobs_core.demo:audit.*"),
                          ("job", "jobs_core.demo:transform.*")}
    two = L.traverse(g, "report.*", L.UPSTREAM, depth=2)
    assert names(two) == {("data", "report.*"), ("job", "jobs_core.demo:report.*"), ("data", "clean.events.*")}
    both = L.traverse(g, "jobs_core.demo:transform.12345", L.BOTH, depth=1)  # a job id, folded
    assert edge_pairs(both) == {("raw.events.*", "jobs_core.demo:transform.*"),
                                ("raw.users", "jobs_core.demo:transform.*"),
                                ("jobs_core.demo:transform.*", "clean.events.*")}


def test_unknown_names_cycles_and_names_that_are_both_job_and_data() -> None:
    assert L.traverse(demo(), "nope").nodes == ()
    # a job reading yesterday's partition and writing today's folds into a cycle
    cyc = L.build(["state.* -> roll", "seed -> roll"], ["roll -> state.*"])
    up = L.traverse(cyc, "state.2026-11-27", L.UPSTREAM)
    assert edge_pairs(up) == {("roll", "state.*"), ("state.*", "roll"), ("seed", "roll")}
    same = L.build(["x -> x"], ["x -> y"])  # data "x" read by job "x"
    t = L.traverse(same, "x", L.DOWNSTREAM)
    assert set(t.roots) == {L.Node("x", L.DATA), L.Node("x", L.JOB)}
    assert edge_pairs(t) == {("x", "x"), ("x", "y")}


def test_bad_traversal_arguments() -> None:
    for depth in (0, -1, 1.5, True):
        with pytest.raises(InvalidArgument):
            L.traverse(demo(), "report.*", depth=depth)
    with pytest.raises(InvalidArgument):
        L.traverse(demo(), "report.*", "sideways")
    with pytest.raises(InvalidArgument):
        L.render(demo(), "svg")


# -- text ----------------------------------------------------------------------------------------


def test_text_tree_and_job_listing() -> None:
    up = L.render(L.traverse(demo(), "report.*", L.UPSTREAM), "text")
    assert up == (
        "upstream of data report.*:\n"
        "data report.*\n"
        "  <- job  jobs_core.demo:report.*\n"
        "    <- data clean.events.*\n"
        "      <- job  jobs_core.demo:transform.*\n"
        "        <- data raw.events.*\n"
        "          <- job  jobs_core.demo:extract.*\n"
        "        <- data raw.users\n"
        "          <- job  jobs_core.demo:users.*\n"
    )
    whole = L.render(demo(), "text")
    assert "job  jobs_core.demo:transform.*\n  reads  raw.events.*\n  reads  raw.users\n" \
           "  writes clean.events.*\n" in whole
    assert L.render(L.build([], []), "text") == "no lineage recorded\n"


def test_text_lists_each_node_once_and_marks_repeats() -> None:
    # a diamond: "a" is read by two jobs whose outputs one job joins
    g = L.build(["a -> j1", "a -> j2", "b -> join", "c -> join"], ["j1 -> b", "j2 -> c", "join -> d"])
    text = L.to_text(L.traverse(g, "a", L.DOWNSTREAM))
    assert text.count("-> job  join\n") == 1
    assert text.count("-> job  join (shown elsewhere)\n") == 1
    assert text.count("data d") == 1
    both = L.to_text(L.traverse(g, "join", depth=1))
    assert both.startswith("upstream of job  join:\n") and "\ndownstream of job  join:\n" in both


def test_text_shows_control_characters_escaped() -> None:
    # jobs_core refuses control characters in names; a jobs.py client may still record them
    g = L.build(["in\nput -> job"], [])
    assert "  reads  in\\x0aput\n" in L.to_text(g)
    assert "data in\\x0aput\n" in L.to_text(L.traverse(g, "in\nput"))
    assert "\n" not in L.dot_string("in\nput") and "\n" not in L.mermaid_string("in\nput")


# -- DOT -----------------------------------------------------------------------------------------


def svg_labels(dot_source: str) -> dict[str, str]:
    """Render with Graphviz and return ``{node id: the text drawn}``."""
    assert shutil.which("dot"), "Graphviz 'dot' is not installed: run scripts/test, which installs it"
    svg = subprocess.run(["dot", "-Tsvg"], input=dot_source.encode("utf-8"), capture_output=True, check=True).stdout
    root = ET.fromstring(svg)
    labels = {}
    for g in root.iter(f"{SVG}g"):
        if g.get("class") == "node":
            texts = ["".join(t.itertext()) for t in g.iter(f"{SVG}text")]
            labels[g.find(f"{SVG}title").text] = "\n".join(texts)
    return labels


def svg_edges(dot_source: str) -> set[tuple[str, str]]:
    svg = subprocess.run(["dot", "-Tsvg"], input=dot_source.encode("utf-8"), capture_output=True, check=True).stdout
    root = ET.fromstring(svg)
    return {tuple(g.find(f"{SVG}title").text.split("->")) for g in root.iter(f"{SVG}g") if g.get("class") == "edge"}


def test_dot_renders_the_demo_graph() -> None:
    g = demo()
    source = L.render(g, "dot")
    labels = svg_labels(source)
    ids = {n: f"n{i}" for i, n in enumerate(g.nodes)}
    assert labels == {ids[n]: n.name for n in g.nodes}
    assert svg_edges(source) == {(ids[e.source], ids[e.target]) for e in g.edges}
    assert len(re.findall(r"shape=box", source)) == sum(n.kind == L.JOB for n in g.nodes)


def test_dot_shows_odd_names_exactly() -> None:
    g = odd_graph()
    up = L.traverse(g, ODD_NAMES[0], L.DOWNSTREAM)
    for lineage in (g, up):
        labels = svg_labels(L.to_dot(lineage))
        assert sorted(labels.values()) == sorted(n.name for n in lineage.nodes)
    assert "penwidth=3" in L.to_dot(up)


@given(st.text())
def test_dot_string_round_trips(text: str) -> None:
    quoted = L.dot_string(text)
    assert quoted[0] == quoted[-1] == '"' and "\n" not in quoted
    inner = re.sub(r'\\(.)', lambda m: m.group(1), quoted[1:-1])  # DOT's \" and \\, then Graphviz's entities
    assert html.unescape(inner) == L.printable(text)


# -- Mermaid -------------------------------------------------------------------------------------

_NODE = re.compile(r'^    (n\d+)(\[|\(\[)"([^"]*)"(\]|\]\))$')
_EDGE = re.compile(r"^    (n\d+) --> (n\d+)$")
_LABEL_RAW = re.compile(r'^[A-Za-z0-9 ._:/*\-#;\u0080-\U0010ffff]*$')


def parse_mermaid(source: str) -> tuple[dict[str, tuple[str, str]], list[tuple[str, str]], list[str]]:
    """``({id: (kind, label)}, edges, root ids)`` of what :func:`to_mermaid` writes, entities decoded."""
    lines = source.splitlines()
    assert lines[0] == "flowchart LR"
    nodes: dict[str, tuple[str, str]] = {}
    edges, roots = [], []
    for line in lines[1:]:
        if m := _NODE.match(line):
            nid, opening, label, closing = m.groups()
            assert (opening, closing) in (("[", "]"), ("([", "])"))
            assert _LABEL_RAW.match(label), f"unescaped character in {label!r}"
            assert re.sub(r"#\d+;", "", label).count("#") == 0  # every # starts an entity
            decoded = re.sub(r"#(\d+);", lambda e: chr(int(e.group(1))), label)
            nodes[nid] = ("job" if opening == "[" else "data", decoded)
        elif m := _EDGE.match(line):
            assert m.group(1) in nodes and m.group(2) in nodes
            edges.append(m.groups())
        elif line == "    classDef root stroke-width:3px":
            continue
        elif line.startswith("    class "):
            ids, _, cls = line[len("    class "):].partition(" ")
            assert cls == "root"
            roots += ids.split(",")
        else:
            raise AssertionError(f"unexpected Mermaid line {line!r}")
    return nodes, edges, roots


def test_mermaid_demo_and_odd_names() -> None:
    for g in (demo(), odd_graph(), L.traverse(odd_graph(), ODD_NAMES[4], L.BOTH)):
        nodes, edges, roots = parse_mermaid(L.render(g, "mermaid"))
        ids = {n: f"n{i}" for i, n in enumerate(g.nodes)}
        assert nodes == {ids[n]: (n.kind, n.name) for n in g.nodes}
        assert sorted(edges) == sorted((ids[e.source], ids[e.target]) for e in g.edges)
        assert roots == [ids[r] for r in g.roots]


@given(st.text())
def test_mermaid_string_round_trips(text: str) -> None:
    quoted = L.mermaid_string(text)
    inner = quoted[1:-1]
    assert '"' not in inner and "\n" not in inner and "`" not in inner
    assert re.sub(r"#(\d+);", lambda e: chr(int(e.group(1))), inner) == L.printable(text)


# -- JSON ----------------------------------------------------------------------------------------


def test_json_document() -> None:
    g = odd_graph()
    t = L.traverse(g, "job a->b", L.UPSTREAM, depth=1)
    doc = json.loads(L.render(t, "json"))
    assert doc == {
        "version": 1, "start": "job a->b", "direction": "upstream", "depth": 1, "after": None, "before": None,
        "nodes": [{"name": "a->b", "kind": "data", "root": False, "distance": 1},
                  {"name": "job a->b", "kind": "job", "root": True, "distance": 0}],
        "edges": [{"from": "a->b", "to": "job a->b", "kind": "input"}],
    }
    whole = json.loads(L.render(g, "json"))
    assert {(n["kind"], n["name"]) for n in whole["nodes"]} == names(g)
    assert {n["name"] for n in whole["nodes"]} >= set(ODD_NAMES)
    assert whole["start"] is None and all(n["distance"] is None for n in whole["nodes"])


def test_folding_matches_recorded_names() -> None:
    assert L.traverse(L.build(["raw.events.* -> j"], []), "raw.events.2026-11-27").start == fold("raw.events.1")

