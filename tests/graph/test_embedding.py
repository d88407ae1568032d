"""Embedding source: the adaptive cut on hand-made similarities, candidates, MiniLM, build_graph."""

from __future__ import annotations

import numpy as np
import pytest

from c2srt.graph import adaptive_cut, build_graph, callable_encoder, minilm_encoder, nearest_candidates, similarity_neighbors

# Hand-made similarities for 5 labels (symmetric, diagonal 1).
SIM = np.array(
    [
        [1.00, 0.80, 0.75, 0.60, 0.10],  # 0: best 0.80 -> cut 0.72 keeps 1, 2
        [0.80, 1.00, 0.79, 0.20, 0.25],  # 1: best 0.80 -> cut 0.72 keeps 0, 2
        [0.75, 0.79, 1.00, 0.74, 0.05],  # 2: best 0.79 -> cut 0.711 keeps 1, 0, 3
        [0.60, 0.20, 0.74, 1.00, 0.35],  # 3: best 0.74 -> cut 0.666 keeps 2
        [0.10, 0.25, 0.05, 0.35, 1.00],  # 4: best 0.35 -> cut 0.315 keeps 3 (above the floor 0.3)
    ]
)


def _brute_force(sim: np.ndarray, candidates: int, rel: float, floor: float, cap: int) -> list[list[int]]:
    out = []
    for i in range(len(sim)):
        others = sorted((j for j in range(len(sim)) if j != i), key=lambda j: (-sim[i, j], j))[:candidates]
        best = sim[i, others[0]]
        keep = [j for j in others if best >= floor and sim[i, j] >= max(floor, rel * best)]
        out.append(keep[:cap])
    return out


def test_adaptive_cut_hand_made() -> None:
    rows = similarity_neighbors(SIM, candidates=4, relative_cut=0.9, min_sim=0.3, max_neighbors=10)
    assert [[j for j, _ in r] for r in rows] == [[1, 2], [0, 2], [1, 0, 3], [2], [3]]
    assert rows[0] == [(1, 0.8), (2, 0.75)]  # strength = the similarity
    counts = [len(r) for r in rows]
    assert len(set(counts)) > 1  # neighbour counts vary per category
    # Floor above label 4's best: no neighbour at all.
    assert similarity_neighbors(SIM, min_sim=0.4)[4] == []
    # Cap and candidate restriction.
    assert [len(r) for r in similarity_neighbors(SIM, relative_cut=0.0, min_sim=0.01, max_neighbors=2)] == [2] * 5
    assert similarity_neighbors(SIM, candidates=1, relative_cut=0.0, min_sim=0.01)[2] == [(1, 0.79)]


def test_adaptive_cut_matches_brute_force_on_random() -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 8))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    sim = emb @ emb.T
    for rel, floor, cap, cand in [(0.9, 0.3, 10, 30), (0.5, 0.1, 3, 5), (0.0, 0.05, 40, 39)]:
        got = [[j for j, _ in r] for r in similarity_neighbors(sim, candidates=cand, relative_cut=rel, min_sim=floor, max_neighbors=cap)]
        assert got == _brute_force(sim, cand, rel, floor, cap)


def test_adaptive_cut_ties_and_bad_params() -> None:
    assert adaptive_cut([(3, 0.5), (1, 0.5), (2, 0.9)], relative_cut=0.5, min_score=0.3) == [(2, 0.9), (1, 0.5), (3, 0.5)]
    assert nearest_candidates(np.ones((3, 3)), 5) == [[1, 2], [0, 2], [0, 1]]
    with pytest.raises(ValueError, match="relative_cut"):
        adaptive_cut([], relative_cut=1.5)
    with pytest.raises(ValueError, match="min_score"):
        adaptive_cut([], min_score=0.0)


def test_build_graph_embedding_with_callable_encoder() -> None:
    rng = np.random.default_rng(1)
    names = [f"l{i}" for i in range(12)]
    base = rng.normal(size=(12, 6))
    emb = {n: v for n, v in zip(names, base)}
    unit = base / np.linalg.norm(base, axis=1, keepdims=True)
    sim = unit @ unit.T  # independent similarity computation

    g = build_graph(names, source="embedding", encoder=lambda ns: np.stack([emb[n] * 3.0 for n in ns]), relative_cut=0.5, min_strength=0.1)
    want = _brute_force(sim, 30, 0.5, 0.1, 10)
    for i, n in enumerate(names):
        assert [names.index(m) for m, _ in g.neighbors(n)] == want[i]
        for m, w in g.neighbors(n):
            assert w == pytest.approx(sim[i, names.index(m)])
    assert g.seen is None and g.provenance["source"] == "embedding"  # one graph over all (seen-only: test_build.py)
    assert g.provenance["parameters"] == {"relative_cut": 0.5, "min_strength": 0.1, "max_neighbors": 10}
    with pytest.raises(ValueError, match="seen label 'z'"):
        build_graph(names, seen=["z"], encoder=lambda ns: np.eye(len(ns)))
    with pytest.raises(ValueError, match="unknown graph source 'wiki'"):
        build_graph(names, source="wiki", encoder=lambda ns: np.eye(len(ns)))
    with pytest.raises(ValueError, match=r"shape \(2, 3\) for 12 names"):
        callable_encoder(lambda ns: np.ones((2, 3)))(names)


def test_minilm_encoder_real() -> None:
    enc = minilm_encoder()
    emb = enc(["dog", "puppy", "fork"])
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.2  # puppy is much closer to dog than fork is
    np.testing.assert_allclose(enc(["fork"])[0], emb[2], atol=1e-5)  # padding does not change a row
