r"""Co-occurrence statistics of an annotated label matrix, and the graphs they define.

A graph built from names alone (an LLM, text embeddings) is only as good as its agreement with
how labels actually appear together. This module measures that agreement's reference: from a
label matrix it counts how often each label is present and how often two are present together,
and derives the two numbers a correlation edge n -> c is judged by:

.. math::
    P(n \mid c) = \frac{N_{nc}}{N_c}, \qquad
    \mathrm{lift}(n, c) = \frac{P(n, c)}{P(n)\,P(c)} = \frac{N_{nc}\,N}{N_n N_c}

(`lift` > 1: seen together more often than chance; it is symmetric, `P(n | c)` is not). An edge
n -> c is *true* when both pass a threshold (`TRUE_LIFT`, `TRUE_P_GIVEN`), the rule
`docs/MINIWORLD.md` fixes for the mini-world's oracle graph. `cooccurrence_graph` turns the true
edges into a `CategoryGraph` (strength P(n | c)): ML-GCN's graph from training labels, and on the
mini-world, where the unseen labels' annotations are known too, an upper bound (an oracle).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .graph import CategoryGraph

TRUE_LIFT = 2.0  # an edge n -> c is true when lift(n, c) >= this ...
TRUE_P_GIVEN = 0.3  # ... and P(n | c) >= this (n is there at least this often when c is)


@dataclass
class Cooccurrence:
    """Label counts of N annotated images.

    Shapes:
        counts [K] (images where the label is present), joint [K, K] (images where both are;
        symmetric, the diagonal equals `counts`).
    """

    labels: list[str]
    counts: np.ndarray
    joint: np.ndarray
    images: int

    def __post_init__(self) -> None:
        k = len(self.labels)
        self.counts = np.asarray(self.counts, dtype=np.float64)
        self.joint = np.asarray(self.joint, dtype=np.float64)
        if self.counts.shape != (k,) or self.joint.shape != (k, k):
            raise ValueError(f"co-occurrence of {k} labels needs counts [{k}] and joint [{k}, {k}], got {self.counts.shape}, {self.joint.shape}")
        if self.images < 1:
            raise ValueError(f"co-occurrence needs at least one image, got {self.images}")

    @classmethod
    def from_matrix(cls, labels: Sequence[str], present: np.ndarray) -> "Cooccurrence":
        """From a [N, K] matrix whose true / nonzero entries mark a present label."""
        pos = np.asarray(present).astype(np.float64) > 0  # [N, K]
        if pos.ndim != 2 or pos.shape[1] != len(labels):
            raise ValueError(f"label matrix must be [N, {len(labels)}], got {pos.shape}")
        x = pos.astype(np.float64)
        return cls(list(labels), x.sum(0), x.T @ x, int(pos.shape[0]))  # [K, N] x [N, K] -> [K, K]

    def p_given(self) -> np.ndarray:
        """[K, K]: entry [n, c] = P(n | c), the share of images with c that also have n (0 when c never appears)."""
        return self.joint / np.maximum(self.counts, 1.0)[None, :]

    def lift(self) -> np.ndarray:
        """[K, K]: entry [n, c] = P(n, c) / (P(n) P(c)) (0 when either never appears)."""
        expected = np.outer(self.counts, self.counts) / self.images  # [K, 1] x [1, K] -> [K, K]
        return np.divide(self.joint, expected, out=np.zeros_like(self.joint), where=expected > 0)

    def true_edges(self, *, min_lift: float = TRUE_LIFT, min_p_given: float = TRUE_P_GIVEN) -> np.ndarray:
        """[K, K] bool: entry [n, c] is a true edge n -> c (never on the diagonal)."""
        ok = (self.lift() >= min_lift) & (self.p_given() >= min_p_given)
        np.fill_diagonal(ok, False)
        return ok

    def subset(self, labels: Sequence[str]) -> "Cooccurrence":
        """The statistics of some labels, in the given order."""
        index = {n: i for i, n in enumerate(self.labels)}
        missing = [n for n in labels if n not in index]
        if missing:
            raise ValueError(f"label {missing[0]!r} has no co-occurrence counts ({len(missing)} missing)")
        idx = [index[n] for n in labels]
        return Cooccurrence(list(labels), self.counts[idx], self.joint[np.ix_(idx, idx)], self.images)


def cooccurrence_graph(
    stats: Cooccurrence,
    *,
    seen: Sequence[str] | None = None,
    min_lift: float = TRUE_LIFT,
    min_p_given: float = TRUE_P_GIVEN,
    max_neighbors: int | None = None,
    provenance: dict[str, Any] | None = None,
) -> CategoryGraph:
    """The graph of the true edges: n -> c with strength P(n | c), strongest first.

    Args:
        stats: the counts.
        seen: the labels seen in training (kept in the graph; training uses their subgraph).
        min_lift, min_p_given: the rule an edge must pass.
        max_neighbors: keep at most this many neighbours per category, by strength (None: all).
        provenance: added to the graph's provenance (e.g. which scenes were counted).
    """
    ok = stats.true_edges(min_lift=min_lift, min_p_given=min_p_given)
    p = stats.p_given()
    neighbors: dict[str, list[tuple[str, float]]] = {}
    for c, cat in enumerate(stats.labels):
        rows = sorted(np.flatnonzero(ok[:, c]).tolist(), key=lambda n: (-p[n, c], n))
        if max_neighbors is not None:
            rows = rows[:max_neighbors]
        if rows:
            neighbors[cat] = [(stats.labels[n], float(p[n, c])) for n in rows]
    prov = {
        "source": "cooccurrence",
        "rule": {"min_lift": min_lift, "min_p_given": min_p_given, "max_neighbors": max_neighbors},
        "images": stats.images,
        **(provenance or {}),
    }
    return CategoryGraph(stats.labels, neighbors, seen=seen, provenance=prov)
