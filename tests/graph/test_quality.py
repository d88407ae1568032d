"""Graph quality against a co-occurrence reference, on a hand-counted world of 10 images."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest

from c2srt.graph import CategoryGraph
from c2srt.graph.cooccurrence import Cooccurrence
from c2srt.graph.quality import (
    CORRELATED_LIFT,
    CORRELATED_P_GIVEN,
    graph_quality,
    load_reference,
    random_baseline,
    reference_from_pairs,
    save_reference,
)

LABELS = ["water", "boat", "star", "fish", "crab", "sand"]
SEEN = ["water", "boat", "star"]
# 10 images. Counts: water 4, boat 3, star 3, fish 3, crab 2, sand 2. Pairs: water-fish 3,
# water-boat 2, water-sand 2, fish-sand 2, boat-fish 1, boat-sand 1, star-crab 1.
# True (lift >= 2, P(n | c) >= 0.3), six edges: water <-> fish (lift 2.5; P 1 and 0.75),
# water <-> sand (2.5; P 1 and 0.5), fish <-> sand (3.33; P 1 and 0.67). Not true: water-boat
# (lift 1.67), boat-fish (1.11), boat-sand (1.67), star-crab (1.67).
ROWS = [
    {"water", "fish", "boat", "sand"},
    {"water", "fish", "sand"},
    {"water", "fish"},
    {"water", "boat"},
    {"boat"},
    {"star"},
    {"star", "crab"},
    {"crab"},
    set(),
    {"star"},
]
REF = Cooccurrence.from_matrix(LABELS, np.array([[n in r for n in LABELS] for r in ROWS]))
NEIGHBORS = {
    "fish": [("sand", 0.9), ("boat", 0.5)],
    "sand": [("water", 0.8), ("boat", 0.4)],
    "crab": [("star", 0.7)],
    "water": [("boat", 0.8)],
    "boat": [("water", 0.6)],
}


def test_figures_with_a_split_by_hand() -> None:
    q = graph_quality(CategoryGraph(LABELS, NEIGHBORS, seen=SEEN), REF)
    assert q.reference_true_edges == 6 and q.targets == "unseen"
    assert (q.edges, q.true_edges) == (7, 2) and q.precision == pytest.approx(2 / 7)  # sand -> fish, water -> sand
    assert q.target_edges == 5 and q.target_precision == pytest.approx(2 / 5)
    # fish's only true seen partner is water, not a neighbour; sand's is water, a neighbour; crab has none
    assert (q.strongest_hit, q.strongest_total) == (1, 2)
    # correlated: fish and sand (water: lift 2.5, P 1); crab not (star: lift 1.67)
    assert (q.correlated_covered, q.correlated_total) == (1, 2)  # fish's true neighbour (sand) is unseen
    assert q.correlated_covered_any == 2 and q.correlated_share_any == 1.0
    assert q.correlated_strict == 1  # sand <- water passes the correlated rule (lift 2.5, P 1); fish has no such neighbour
    assert (q.degree_min, q.degree_mean, q.degree_max) == (0, pytest.approx(7 / 6), 2)
    fish = next(r for r in q.per_label if r.label == "fish")
    assert fish.partners == ["water"] and fish.strongest == "water" and fish.true_neighbors == ["sand"] and fish.correlated
    assert [r.label for r in q.per_label] == ["fish", "crab", "sand"]
    summary = q.summary()
    assert summary["strongest_share"] == 0.5 and "per_label" not in summary


def test_figures_without_a_split_and_the_tie_rule() -> None:
    q = graph_quality(CategoryGraph(LABELS, NEIGHBORS), REF)
    assert q.targets == "all" and q.target_precision == q.precision
    by = {r.label: r for r in q.per_label}
    assert by["water"].partners == ["fish", "sand"]  # P(fish | water) 0.75 > P(sand | water) 0.5
    assert by["fish"].strongest == "water"  # P 1 > 0.67
    assert by["sand"].strongest == "fish"  # P(water | sand) = P(fish | sand) = 1: the higher lift (3.33 > 2.5)
    assert (q.strongest_hit, q.strongest_total) == (0, 3)
    assert (q.correlated_covered, q.correlated_total) == (2, 3)  # water (<- boat only) is not covered


def test_rules_are_parameters() -> None:
    q = graph_quality(CategoryGraph(LABELS, NEIGHBORS, seen=SEEN), REF, min_lift=1.5)
    # now also true: water <-> boat, boat -> sand, star -> crab (lift 1.67)
    assert q.true_edges == 6 and q.precision == pytest.approx(6 / 7)
    assert graph_quality(CategoryGraph(LABELS, NEIGHBORS, seen=SEEN), REF, correlated_p_given=1.01).correlated_total == 0
    assert math.isnan(graph_quality(CategoryGraph(LABELS, {}, seen=SEEN), REF).precision)


def test_mini_world_rule_is_the_reports() -> None:
    from c2srt.miniworld import report

    assert (CORRELATED_LIFT, CORRELATED_P_GIVEN) == (report.CORRELATED_LIFT, report.CORRELATED_COND)


def test_random_baseline() -> None:
    full = CategoryGraph(LABELS, {"fish": [("water", 0.9), ("boat", 0.5), ("star", 0.2)]}, seen=SEEN)
    base = random_baseline(full, REF, draws=7)
    # every draw links fish from all three seen labels: the same edges, so no spread
    assert base["target_precision"] == {"mean": pytest.approx(1 / 3), "lo": pytest.approx(1 / 3), "hi": pytest.approx(1 / 3)}
    g = CategoryGraph(LABELS, NEIGHBORS, seen=SEEN)
    base = random_baseline(g, REF, draws=50, seed=1)
    assert 0.0 <= base["precision"]["lo"] <= base["precision"]["mean"] <= base["precision"]["hi"] <= 1.0
    assert random_baseline(g, REF, draws=50, seed=1) == base
    with pytest.raises(ValueError, match="draws"):
        random_baseline(g, REF, draws=0)


def test_labels_missing_from_the_reference_are_named() -> None:
    with pytest.raises(ValueError, match="'kite' has no counts"):
        graph_quality(CategoryGraph(LABELS + ["kite"], {}), REF)


def test_reference_files(tmp_path: Path) -> None:
    path = save_reference(REF, tmp_path / "ref.json", note="hand-counted")
    back = load_reference(path)
    assert back.labels == LABELS and back.images == 10
    np.testing.assert_array_equal(back.joint, REF.joint)
    # ML-GCN's pickle: pair counts with a zero diagonal, label counts, no names
    adj = REF.joint.astype(np.int64).copy()
    np.fill_diagonal(adj, 0)
    pkl = tmp_path / "adj.pkl"
    pkl.write_bytes(pickle.dumps({"adj": adj, "nums": REF.counts.astype(np.int64)}))
    from_pkl = load_reference(pkl, labels=LABELS, images=10)
    np.testing.assert_array_equal(from_pkl.joint, REF.joint)
    with pytest.raises(ValueError, match=r"adj.pkl: .*no label names"):
        load_reference(pkl)
    with pytest.raises(ValueError, match="5 label names for 6"):
        load_reference(pkl, labels=LABELS[:5], images=10)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"labels": ["a", "b"], "counts": [1, 1], "joint": [[1, 2], [2, 1]], "images": 3}))
    with pytest.raises(ValueError, match=r"bad.json: labels 'a' and 'b' are together in 2 images"):
        load_reference(bad)
    with pytest.raises(ValueError, match="symmetric"):
        reference_from_pairs(["a", "b"], [2, 2], [[0, 1], [0, 0]], 3)
    with pytest.raises(ValueError, match=r"x.csv: unknown reference format"):
        load_reference(tmp_path / "x.csv")
