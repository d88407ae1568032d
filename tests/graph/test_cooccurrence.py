"""Co-occurrence statistics and the graph of their true edges, against hand-counted cases."""

from __future__ import annotations

import numpy as np
import pytest

from c2srt.graph.cooccurrence import Cooccurrence, cooccurrence_graph

LABELS = ["water", "fish", "boat", "star"]
# 10 images: fish always with water; boats with water 4 of 5 times; stars anywhere
PRESENT = np.array(
    [
        [1, 1, 0, 0],
        [1, 1, 1, 0],
        [1, 1, 0, 1],
        [1, 0, 1, 0],
        [1, 0, 1, 1],
        [0, 0, 1, 0],
        [0, 0, 0, 1],
        [0, 0, 0, 0],
        [1, 0, 1, 0],
        [0, 0, 0, 1],
    ]
)


def test_counts_conditionals_and_lift_by_hand() -> None:
    s = Cooccurrence.from_matrix(LABELS, PRESENT)
    assert s.images == 10 and s.counts.tolist() == [6, 3, 5, 4]
    assert s.joint[0, 1] == s.joint[1, 0] == 3 and s.joint[0, 2] == 4 and s.joint[1, 3] == 1
    p = s.p_given()
    assert p[0, 1] == pytest.approx(1.0)  # P(water | fish) = 3/3
    assert p[1, 0] == pytest.approx(0.5)  # P(fish | water) = 3/6
    assert p[0, 2] == pytest.approx(0.8)  # P(water | boat) = 4/5
    lift = s.lift()
    assert lift[0, 1] == pytest.approx(3 * 10 / (6 * 3))  # 1.667, symmetric
    assert lift[1, 0] == pytest.approx(lift[0, 1])
    assert lift[1, 3] == pytest.approx(1 * 10 / (3 * 4))


def test_true_edges_and_graph_follow_the_rule() -> None:
    s = Cooccurrence.from_matrix(LABELS, PRESENT)
    ok = s.true_edges(min_lift=1.5, min_p_given=0.3)
    # water <-> fish pass (lift 1.67, P 1.0 / 0.5); water -> boat has lift 1.33: no edge
    assert ok[0, 1] and ok[1, 0] and not ok[0, 2] and not ok.diagonal().any()
    g = cooccurrence_graph(s, min_lift=1.5, min_p_given=0.3, seen=["water", "boat", "star"])
    assert g.neighbors("fish") == [("water", 1.0)]
    assert ("fish", 0.5) in g.neighbors("water")
    assert g.provenance["source"] == "cooccurrence" and g.provenance["rule"]["min_lift"] == 1.5
    assert g.subgraph(["water", "boat", "star"]).num_edges <= g.num_edges


def test_subset_keeps_order_and_counts() -> None:
    s = Cooccurrence.from_matrix(LABELS, PRESENT).subset(["fish", "water"])
    assert s.labels == ["fish", "water"] and s.counts.tolist() == [3, 6] and s.joint[0, 1] == 3
    with pytest.raises(ValueError, match="'cat'"):
        Cooccurrence.from_matrix(LABELS, PRESENT).subset(["cat"])


def test_bad_shapes_name_the_problem() -> None:
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        Cooccurrence.from_matrix(LABELS, np.ones((3, 2)))
