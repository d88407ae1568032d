"""Embedding source: neighbours by text-embedding cosine similarity, with a per-category adaptive cut.

The rule (`adaptive_cut`), applied to each category c separately:

1. candidates = the `candidates` labels most similar to c (c itself excluded; ties broken by
   label order, so the result is deterministic);
2. keep a candidate j if  s_j >= min_score  and  s_j >= relative_cut * s_best, where s_best is
   c's best candidate's score;
3. keep at most `max_neighbors` of them, strongest first.

A category whose nearest label is very close keeps only near-synonyms, while one whose
neighbourhood is flat keeps several; a category with no label above `min_score` keeps none. So
the number of neighbours varies per category, unlike a fixed k-NN graph. For the embedding source
the score is the cosine similarity itself, which the floor `min_score > 0` keeps in (0, 1]; it is
used as the edge strength. The same cut is applied to the strengths of the LLM source.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_CANDIDATES = 30  # labels considered per category
DEFAULT_RELATIVE_CUT = 0.9  # keep s >= cut * best neighbour's s (embedding source)
DEFAULT_MIN_SIM = 0.3  # cosine floor (embedding source)
DEFAULT_MAX_NEIGHBORS = 10  # hard cap per category


def cosine_similarity(emb: np.ndarray) -> np.ndarray:
    """[K, D] embeddings -> [K, K] cosine similarities (rows re-normalised, so any scale works)."""
    emb = np.asarray(emb, dtype=np.float64)
    if emb.ndim != 2:
        raise ValueError(f"embeddings must be [K, D], got shape {emb.shape}")
    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), np.finfo(np.float64).tiny)
    return unit @ unit.T  # [K, D] x [D, K] -> [K, K]


def nearest_candidates(sim: np.ndarray, candidates: int, *, targets: Sequence[int] | None = None) -> list[list[int]]:
    """For each target row, the indices of its `candidates` most similar other labels, best first.

    Args:
        sim: [K, K] similarities.
        candidates: how many to return per row (fewer when K - 1 < candidates).
        targets: rows to compute (default: all).

    Returns:
        One list of column indices per target; the row's own index is never included, and ties
        are broken by the lower index.
    """
    sim = np.asarray(sim)
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"similarity matrix must be [K, K], got shape {sim.shape}")
    if candidates < 1:
        raise ValueError(f"candidates must be >= 1, got {candidates}")
    k = sim.shape[0]
    rows = range(k) if targets is None else targets
    out = []
    for i in rows:
        row = sim[i].astype(np.float64, copy=True)
        row[i] = -np.inf
        order = np.argsort(-row, kind="stable")  # stable: equal scores keep label order
        out.append([int(j) for j in order[: min(candidates, k - 1)]])
    return out


def adaptive_cut(
    scored: Sequence[tuple[int, float]],
    *,
    relative_cut: float = DEFAULT_RELATIVE_CUT,
    min_score: float = DEFAULT_MIN_SIM,
    max_neighbors: int = DEFAULT_MAX_NEIGHBORS,
) -> list[tuple[int, float]]:
    """Keep the candidates with score >= max(min_score, relative_cut * best), at most `max_neighbors`.

    Args:
        scored: (index, score) pairs of one category's candidates, any order.
        relative_cut: fraction of the best candidate's score a candidate must reach, in [0, 1].
        min_score: absolute floor (> 0, so every kept score is a valid strength in (0, 1]).
        max_neighbors: cap on the number kept.

    Returns:
        The kept (index, score) pairs, highest score first (ties by lower index).

    Raises:
        ValueError: for parameters out of range.
    """
    if not 0.0 <= relative_cut <= 1.0:
        raise ValueError(f"relative_cut must be in [0, 1], got {relative_cut}")
    if not 0.0 < min_score <= 1.0:
        raise ValueError(f"min_score must be in (0, 1], got {min_score}")
    if max_neighbors < 0:
        raise ValueError(f"max_neighbors must be >= 0, got {max_neighbors}")
    ranked = sorted(((int(j), float(s)) for j, s in scored if np.isfinite(s)), key=lambda js: (-js[1], js[0]))
    if not ranked or ranked[0][1] < min_score:
        return []
    threshold = max(min_score, relative_cut * ranked[0][1])
    kept = [(j, min(s, 1.0)) for j, s in ranked if s >= threshold]
    return kept[:max_neighbors]


def similarity_neighbors(
    sim: np.ndarray,
    *,
    candidates: int = DEFAULT_CANDIDATES,
    relative_cut: float = DEFAULT_RELATIVE_CUT,
    min_sim: float = DEFAULT_MIN_SIM,
    max_neighbors: int = DEFAULT_MAX_NEIGHBORS,
) -> list[list[tuple[int, float]]]:
    """Per-category neighbour lists from a similarity matrix by the module's adaptive rule.

    Args:
        sim: [K, K] cosine similarities.
        candidates: labels considered per category.
        relative_cut: see `adaptive_cut`.
        min_sim: absolute similarity floor.
        max_neighbors: cap per category.

    Returns:
        For each category i, [(neighbour index j, strength s_ij), ...] strongest first (edges j -> i).

    Example:
        >>> s = np.array([[1, .9, .5], [.9, 1, .2], [.5, .2, 1]])
        >>> similarity_neighbors(s, relative_cut=0.5, min_sim=0.3)
        [[(1, 0.9), (2, 0.5)], [(0, 0.9)], [(0, 0.5)]]
    """
    sim = np.asarray(sim, dtype=np.float64)
    cands = nearest_candidates(sim, candidates)
    return [
        adaptive_cut([(j, sim[i, j]) for j in row], relative_cut=relative_cut, min_score=min_sim, max_neighbors=max_neighbors)
        for i, row in enumerate(cands)
    ]
