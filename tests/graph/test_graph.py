"""CategoryGraph: validation, JSON round trip, malformed files, edge_index_for against a brute-force loop."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from c2srt.graph import CategoryGraph

LABELS = ["dog", "cat", "ball", "fork", "knife"]
NBRS = {"dog": [("cat", 0.8), ("ball", 0.5)], "cat": [("dog", 0.7)], "fork": [("knife", 1.0)], "knife": [("fork", 0.9), ("dog", 0.2)]}


def _graph() -> CategoryGraph:
    return CategoryGraph(LABELS, NBRS, seen=["dog", "cat", "fork"], provenance={"source": "test"})


def _brute_force(graph: CategoryGraph, names: list[str]) -> set[tuple[int, int, float]]:
    out = set()
    for j, cat in enumerate(names):
        for i, nb in enumerate(names):
            if cat in graph and nb in graph:
                for n, w in graph.neighbors(cat):
                    if n == nb:
                        out.add((i, j, round(w, 6)))
    return out


def _as_set(ei: torch.Tensor, ew: torch.Tensor) -> set[tuple[int, int, float]]:
    return {(int(s), int(t), round(float(w), 6)) for s, t, w in zip(ei[0], ei[1], ew)}


def test_neighbors_sorted_and_counts() -> None:
    g = _graph()
    assert g.neighbors("dog") == [("cat", 0.8), ("ball", 0.5)]
    assert g.neighbors("ball") == []
    assert g.num_edges == 6
    with pytest.raises(ValueError, match="'zebra'"):
        g.neighbors("zebra")


@pytest.mark.parametrize(
    ("nbrs", "match"),
    [
        ({"dog": [("dog", 0.5)]}, "self-loop"),
        ({"dog": [("cat", 0.5), ("cat", 0.4)]}, "twice"),
        ({"dog": [("zebra", 0.5)]}, "'zebra' is not a graph label"),
        ({"dog": [("cat", 0.0)]}, r"outside \(0, 1\]"),
        ({"dog": [("cat", 1.5)]}, r"outside \(0, 1\]"),
        ({"dog": [("cat", float("nan"))]}, r"outside \(0, 1\]"),
        ({"zebra": [("cat", 0.5)]}, "'zebra', which is not a graph label"),
    ],
)
def test_invalid_edges_raise(nbrs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CategoryGraph(LABELS, nbrs)


def test_round_trip(tmp_path: Path) -> None:
    g = _graph()
    g.report["dropped"]["unknown_name"] = 3
    path = g.save(tmp_path / "sub" / "g.json")
    data = json.loads(path.read_text())
    assert data["format"] == "c2srt-graph" and data["version"] == 1
    assert not list(path.parent.glob(".*tmp"))  # no temporary file left behind
    h = CategoryGraph.load(path)
    assert h.labels == g.labels and h.seen == g.seen and h.edges() == g.edges()
    assert h.provenance == g.provenance and h.report["dropped"]["unknown_name"] == 3
    assert CategoryGraph.from_dict(g.to_dict()).to_dict() == g.to_dict()


def test_load_malformed_names_file_and_problem(tmp_path: Path) -> None:
    good = _graph().to_dict()
    cases = {
        "unknown_label.json": (dict(good, neighbors={"dog": [["zebra", 0.5]]}), "'zebra'"),
        "version.json": (dict(good, version=7), "version 7"),
        "format.json": (dict(good, format="other"), "'format'"),
        "key.json": (dict(good, edgez=[]), "unknown key.*'edgez'"),
        "pair.json": (dict(good, neighbors={"dog": [["cat"]]}), r"\[name, strength\]"),
        "seen.json": (dict(good, seen=["zebra"]), "seen label 'zebra'"),
    }
    for name, (data, match) in cases.items():
        path = tmp_path / name
        path.write_text(json.dumps(data))
        with pytest.raises(ValueError, match=match) as info:
            CategoryGraph.load(path)
        assert str(path) in str(info.value)
    bad = tmp_path / "broken.json"
    bad.write_text('{"format": "c2srt-graph",\n "labels": [')
    with pytest.raises(ValueError, match=r"broken.json: not valid JSON \(line 2"):
        CategoryGraph.load(bad)


def test_edge_index_for_subset() -> None:
    g = _graph()
    names = ["fork", "dog", "cat"]  # seen-only subgraph, reordered
    ei, ew = g.edge_index_for(names)
    assert ei.dtype == torch.long and ei.shape[0] == 2 and ew.dtype == torch.float32 and ew.shape == (ei.shape[1],)
    assert _as_set(ei, ew) == _brute_force(g, names) == {(2, 1, 0.8), (1, 2, 0.7)}


def test_edge_index_for_reordered_superset() -> None:
    g = _graph()
    rng = random.Random(0)
    for _ in range(5):
        names = LABELS + ["zebra", "sky"]  # labels the graph lacks get no edges
        rng.shuffle(names)
        ei, ew = g.edge_index_for(names)
        assert ei.shape[1] == g.num_edges
        assert _as_set(ei, ew) == _brute_force(g, names)
        assert not (ei[0] == ei[1]).any()
    ei, ew = g.edge_index_for(["zebra"])
    assert ei.shape == (2, 0) and ew.shape == (0,)
    with pytest.raises(ValueError, match=r"duplicate label 'dog' \(positions 1 and 3\)"):
        g.edge_index_for(["dog", "cat", "dog"])


def test_subgraph_and_extend() -> None:
    g = _graph()
    sub = g.subgraph(["knife", "fork", "dog"])
    assert sub.labels == ["knife", "fork", "dog"] and sub.seen == ["fork", "dog"]
    assert sub.neighbors("knife") == [("fork", 0.9), ("dog", 0.2)] and sub.neighbors("dog") == []
    with pytest.raises(ValueError, match="'zebra'"):
        g.subgraph(["zebra"])
    other = CategoryGraph(["dog", "zebra", "cat"], {"zebra": [("dog", 0.6)], "dog": [("zebra", 0.4)], "cat": [("dog", 0.1)]}, seen=["zebra"])
    ext = g.extend(other)
    assert ext.labels == LABELS + ["zebra"]
    assert ext.neighbors("zebra") == [("dog", 0.6)]
    assert ("zebra", 0.4) in ext.neighbors("dog")
    assert ext.neighbors("cat") == [("dog", 0.7)]  # edges among old labels untouched
    assert set(ext.seen) == {"dog", "cat", "fork", "zebra"}
    merged = g.merge(other)
    assert merged.neighbors("cat") == [("dog", 0.7)]  # self wins on a shared pair
    assert merged.provenance["merged"][0]["mode"] == "merge"
