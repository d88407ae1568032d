"""Control graphs: no edges, and random edges with the same degrees and strengths."""

from __future__ import annotations

from collections import Counter

from c2srt.graph import CategoryGraph
from c2srt.graph.controls import edgeless, random_like

LABELS = ["a", "b", "c", "d", "e", "u1", "u2", "u3"]
SEEN = LABELS[:5]
GRAPH = CategoryGraph(
    LABELS,
    {"a": [("b", 0.9)], "b": [("a", 0.5), ("c", 0.4)], "u1": [("a", 0.8), ("d", 0.6)], "u2": [("e", 0.7), ("u1", 0.3)]},
    seen=SEEN,
)


def test_edgeless_keeps_labels_and_split() -> None:
    g = edgeless(GRAPH)
    assert g.labels == LABELS and g.seen == SEEN and g.num_edges == 0 and "control" in g.provenance


def test_random_like_keeps_degrees_strengths_and_pools() -> None:
    g = random_like(GRAPH, seed=3)
    for cat in LABELS:
        old, new = GRAPH.neighbors(cat), g.neighbors(cat)
        assert sorted(w for _, w in new) == sorted(w for _, w in old)  # same in-degree, same strengths
        assert Counter(n in SEEN for n, _ in new) == Counter(n in SEEN for n, _ in old)  # seen from seen
        assert cat not in [n for n, _ in new] and len({n for n, _ in new}) == len(new)
    assert random_like(GRAPH, seed=3).to_dict() == g.to_dict()  # seeded
    assert any(random_like(GRAPH, seed=s).to_dict()["neighbors"] != GRAPH.to_dict()["neighbors"] for s in range(5))
