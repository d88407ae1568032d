"""Exact multi-label metrics: ranking (per-class AP, mAP, micro top-k P/R/F1) and decisions
(calibration error, Brier score, F1 at a probability threshold, the oracle threshold's F1,
vocabulary invariance).

Everything here runs on the CPU in numpy (torch tensors are accepted and converted) so that the
figures do not depend on the device or on GPU sort stability. Labels follow the c2srt convention
(`c2srt.constants`): `+1` positive, `-1` negative, `0` (`IGNORE_LABEL`) unknown. An unknown entry is
left out of its column's ranking; it is never counted as a negative.

Tie rules (fixed so that every run, chunked or not, gives the same numbers):
- AP ranks a column's annotated entries by a *stable* sort on `-score`, so tied scores keep the row
  (index) order. This is the non-interpolated AP of that ranking; with ties it is not scikit-learn's
  tie-averaged AP.
- Top-k takes, within a row, the k largest scores; among tied scores the lower column index wins.

The streaming evaluator (`c2srt.protocol`) calls the same kernels (`ap_of_ranking`,
`topk_true_positives`), so its figures are identical to the ones computed here.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .choices import EmptyColumn
from .constants import DEFAULT_THRESHOLD, IGNORE_LABEL, NEGATIVE, POSITIVE
from .registry import parse_enum

_logger = logging.getLogger(__name__)

__all__ = [
    "EmptyColumn",
    "ap_of_ranking",
    "average_precision",
    "brier_score",
    "decision_metrics",
    "expected_calibration_error",
    "oracle_threshold_f1",
    "threshold_f1",
    "vocabulary_invariance",
    "mean_average_precision",
    "prf_from_counts",
    "ranked_hits",
    "row_pooled_average_precision",
    "topk_prf",
    "topk_true_positives",
    "weighted_mean",
    "weighted_mean_average_precision",
]


# ----------------------------------------------------------------------------- input handling
def as_numpy(x: Any, name: str) -> np.ndarray:
    """Return `x` as a numpy array; torch tensors are detached and moved to the CPU (half -> fp32)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, without importing torch
        t = x.detach().cpu()
        if t.is_floating_point() and t.element_size() < 4:  # bf16/fp16: numpy has no bf16
            t = t.float()
        return t.numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: cannot be read as an array ({e})") from e


def resolve_empty(empty: str | EmptyColumn) -> EmptyColumn:
    """Parse the `empty` argument; raise ValueError listing the valid values."""
    return parse_enum(EmptyColumn, empty, "empty")


def check_scores(scores: np.ndarray, name: str = "scores") -> np.ndarray:
    """Scores must be a real 2-D array without NaN (NaN has no rank)."""
    if scores.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array [N, C], got shape {tuple(scores.shape)}")
    if not (np.issubdtype(scores.dtype, np.floating) or np.issubdtype(scores.dtype, np.integer)):
        raise ValueError(f"{name}: expected real numbers, got dtype {scores.dtype}")
    if np.issubdtype(scores.dtype, np.floating) and np.isnan(scores).any():
        r, c = np.argwhere(np.isnan(scores))[0]
        raise ValueError(f"{name}: NaN score at row {r}, column {c}")
    return scores


def check_labels(labels: np.ndarray, name: str = "labels") -> np.ndarray:
    """Labels must be 2-D with values in {+1, -1, 0}; returned as int8."""
    if labels.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array [N, C], got shape {tuple(labels.shape)}")
    if labels.dtype == np.int8:
        ok = (labels >= NEGATIVE) & (labels <= POSITIVE)
    else:
        ok = (labels == POSITIVE) | (labels == NEGATIVE) | (labels == IGNORE_LABEL)
    if not ok.all():
        r, c = np.argwhere(~ok)[0]
        raise ValueError(
            f"{name}: value {labels[r, c].item()!r} at row {r}, column {c} is not a label "
            f"(expected {POSITIVE}, {NEGATIVE} or {IGNORE_LABEL} for unknown)"
        )
    return labels.astype(np.int8, copy=False)


def check_pair(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Convert and validate a (scores [N,C], labels [N,C]) pair."""
    s = check_scores(as_numpy(scores, "scores"))
    y = check_labels(as_numpy(labels, "labels"))
    if s.shape != y.shape:
        raise ValueError(f"scores and labels must have the same shape [N, C]; got scores {s.shape}, labels {y.shape}")
    return s, y


# ----------------------------------------------------------------------------- kernels
def ap_of_ranking(hits: np.ndarray) -> float:
    """Non-interpolated AP of a ranking given as a bool vector (True = positive), best first.

    AP = mean over the positives of the precision at their rank. NaN when there is no positive
    (the caller applies the `empty` rule).
    """
    pos_ranks = np.flatnonzero(hits) + 1  # 1-based ranks of the positives
    n_pos = pos_ranks.size
    if n_pos == 0:
        return float("nan")
    precision = np.arange(1, n_pos + 1, dtype=np.float64) / pos_ranks
    return float(precision.sum() / n_pos)


def ranked_hits(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Labels (+1/-1, no 0) of one ranking, ordered by a stable sort on -score (ties: index order)."""
    order = np.argsort(-scores, kind="stable")
    return labels[order] == POSITIVE


def _apply_empty(ap: np.ndarray, empty: EmptyColumn) -> np.ndarray:
    if empty is EmptyColumn.ZERO:
        ap = np.where(np.isnan(ap), 0.0, ap)
    return ap


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    """sum(w * v) / sum(w) over entries with w > 0; NaN when the weights sum to 0."""
    values = np.asarray(values, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if values.shape != weights.shape:
        raise ValueError(f"values {values.shape} and weights {weights.shape} must have the same shape")
    keep = weights > 0
    total = weights[keep].sum()
    if total == 0:
        return float("nan")
    return float((weights[keep] * values[keep]).sum() / total)


def nan_mean(values: np.ndarray) -> float:
    """Mean over the non-NaN entries; NaN (without a warning) when there is none."""
    values = np.asarray(values, dtype=np.float64)
    keep = ~np.isnan(values)
    if not keep.any():
        return float("nan")
    return float(values[keep].mean())


def topk_true_positives(scores: np.ndarray, positive: np.ndarray, ks: tuple[int, ...]) -> dict[int, int]:
    """Number of (row, column) pairs among each row's top-k that are positive, for every k in `ks`.

    Exact and linear in the matrix size (a partition, not a sort). Within a row, among tied scores
    the lower column index is taken first.

    Args:
        scores: [N, M] real scores (no NaN).
        positive: [N, M] bool, True where the label is +1.
        ks: distinct k, each in [1, M].

    Returns:
        {k: true positives summed over the N rows}.
    """
    n, m = scores.shape
    out: dict[int, int] = {}
    if n == 0 or not ks:
        return {k: 0 for k in ks}
    part = np.partition(scores, sorted({m - k for k in ks}), axis=1)  # ascending; [:, m-k] = k-th largest
    for k in ks:
        thr = part[:, m - k : m - k + 1]  # [N, 1]
        sel = scores >= thr  # every entry strictly above, plus all ties at the threshold
        tp = int(np.count_nonzero(sel & positive))
        n_sel = np.count_nonzero(sel, axis=1)
        tied = np.flatnonzero(n_sel > k)  # rows whose ties at the threshold overflow k
        if tied.size:
            s_t, p_t, thr_t = scores[tied], positive[tied], thr[tied]
            eq = s_t == thr_t  # [n_tied, M]
            need = k - np.count_nonzero(s_t > thr_t, axis=1)  # ties to take, lowest column first
            take = eq & (np.cumsum(eq, axis=1) <= need[:, None])
            drop = eq & ~take
            tp -= int(np.count_nonzero(drop & p_t))
        out[k] = tp
    return out


def prf_from_counts(tp: int, n_rows: int, k: int, n_pos: int) -> tuple[float, float, float]:
    """Micro P = TP/(N*k), R = TP/#positives, F1 = harmonic mean; each is 0 where its denominator or TP is 0."""
    p = tp / (n_rows * k) if n_rows * k > 0 else 0.0
    r = tp / n_pos if n_pos > 0 else 0.0
    f1 = 2.0 * p * r / (p + r) if tp > 0 else 0.0
    return float(p), float(r), float(f1)


# ----------------------------------------------------------------------------- public metrics
def average_precision(scores: Any, labels: Any, empty: str | EmptyColumn = "zero") -> np.ndarray:
    """Non-interpolated AP of every column.

    Each column ranks its annotated entries (label +1 or -1; label 0 is unknown and left out) by a
    stable sort on -score, so tied scores keep the row order. AP is the mean, over the positives,
    of the precision at each positive's rank.

    Args:
        scores: [N, C] scores (numpy or torch), higher = more likely.
        labels: [N, C] in {+1, -1, 0}.
        empty: AP of a column without any positive: "zero" (0, as published for NUS-WIDE) or
            "skip" (NaN, left out of means).

    Returns:
        float64 array [C].

    Raises:
        ValueError: mismatched shapes, a label outside {+1, -1, 0}, a NaN score, a bad `empty`.

    Example:
        >>> average_precision([[0.9], [0.5], [0.1]], [[1], [-1], [1]]).round(4).tolist()
        [0.8333]
    """
    rule = resolve_empty(empty)
    s, y = check_pair(scores, labels)
    ap = np.full(s.shape[1], np.nan)
    for c in range(s.shape[1]):
        mask = y[:, c] != IGNORE_LABEL
        if not (y[:, c] == POSITIVE).any():
            continue
        ap[c] = ap_of_ranking(ranked_hits(s[mask, c], y[mask, c]))
    return _apply_empty(ap, rule)


def mean_average_precision(scores: Any, labels: Any, empty: str | EmptyColumn = "zero") -> float:
    """Mean over columns of `average_precision` (NaN columns, with empty="skip", are left out).

    Returns NaN when no column counts.
    """
    return nan_mean(average_precision(scores, labels, empty=empty))


def weighted_mean_average_precision(scores: Any, labels: Any) -> float:
    """Per-class AP averaged with weights = number of positives of each column.

    Frequent classes weigh more; columns without a positive weigh nothing, so the `empty` rule
    does not matter. NaN when there is no positive at all.
    """
    s, y = check_pair(scores, labels)
    ap = average_precision(s, y, empty="skip")
    return weighted_mean(ap, np.count_nonzero(y == POSITIVE, axis=0))


def row_pooled_average_precision(scores: Any, labels: Any, empty: str | EmptyColumn = "zero") -> np.ndarray:
    """Open Images compatibility variant ("row-pooled" AP, as in the published BiAM/LESA scripts).

    Not a per-class AP. For column c it takes the rows where c is annotated, pools *every*
    annotated entry (any column) of those rows, and ranks that pool (stable sort on -score, pool in
    row-major order, so ties keep row-then-column order). AP counts every positive of the pool,
    whatever its column. Use it only to compare with numbers produced by those scripts.

    Args:
        scores: [N, C] scores.
        labels: [N, C] in {+1, -1, 0}.
        empty: AP of a column whose pool has no positive (or that is never annotated).

    Returns:
        float64 array [C].

    Raises:
        ValueError: as `average_precision`.
    """
    rule = resolve_empty(empty)
    s, y = check_pair(scores, labels)
    ap = np.full(s.shape[1], np.nan)
    for c in range(s.shape[1]):
        rows = np.flatnonzero(y[:, c] != IGNORE_LABEL)
        sub_y = y[rows]  # [n_c, C]
        mask = sub_y != IGNORE_LABEL
        ap[c] = ap_of_ranking(ranked_hits(s[rows][mask], sub_y[mask]))  # boolean mask flattens row-major
    return _apply_empty(ap, rule)


def topk_prf(scores: Any, labels: Any, k: int) -> tuple[float, float, float]:
    """Micro precision, recall and F1 of each image's top-k labels, over the whole matrix.

    Each row predicts its k highest-scoring columns (ties: lower column index first). A prediction
    is correct when its label is +1 (labels -1 and 0 both count as wrong).
    P = TP / (N * k), R = TP / (number of +1 entries), F1 = 2PR / (P + R), and 0 when TP = 0.
    Rows without any positive still count in P's denominator.

    Args:
        scores: [N, C] scores.
        labels: [N, C] in {+1, -1, 0}.
        k: predictions per row, 1 <= k <= C.

    Returns:
        (precision, recall, f1).

    Raises:
        ValueError: mismatched shapes, bad label values, NaN scores, or k outside [1, C].
    """
    s, y = check_pair(scores, labels)
    k = check_k(k, s.shape[1])
    positive = y == POSITIVE
    tp = topk_true_positives(s, positive, (k,))[k]
    return prf_from_counts(tp, s.shape[0], k, int(np.count_nonzero(positive)))


def check_k(k: Any, n_cols: int, where: str = "topk") -> int:
    """k must be an integer in [1, n_cols]."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"{where}: k must be an integer, got {k!r}")
    if not 1 <= int(k) <= n_cols:
        raise ValueError(f"{where}: k={k} is outside [1, {n_cols}] (the number of columns)")
    return int(k)


# ----------------------------------------------------------------------------- decisions
ECE_BINS = 15  # equal-width probability bins of the expected calibration error


def check_probabilities(probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """A (probabilities [N, C] in [0, 1], labels [N, C] in {+1, -1, 0}) pair, as float64 and int8."""
    p, y = check_pair(probs, labels)
    p = p.astype(np.float64, copy=False)
    if p.size and (p.min() < 0.0 or p.max() > 1.0):
        r, c = np.argwhere((p < 0.0) | (p > 1.0))[0]
        raise ValueError(f"probs: {p[r, c].item()!r} at row {r}, column {c} is not a probability in [0, 1]")
    return p, y


def _annotated(p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The annotated entries (label +1 or -1) as flat (probability, is-positive) arrays."""
    mask = y != IGNORE_LABEL
    return p[mask], y[mask] == POSITIVE


def expected_calibration_error(probs: Any, labels: Any, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error over every annotated (image, label) entry, equal-width bins.

    Entry e with probability p_e falls in bin min(floor(p_e * n_bins), n_bins - 1) (so p = 1 is in
    the last bin); ECE = sum over bins of (entries in the bin / entries) * |positive rate in the
    bin - mean probability in the bin|. Unknown entries (label 0) are left out. NaN without any
    annotated entry.

    Args:
        probs: [N, C] probabilities in [0, 1].
        labels: [N, C] in {+1, -1, 0}.
        n_bins: bins of equal width on [0, 1] (15, as is usual since Guo et al. 2017).

    Raises:
        ValueError: as `check_pair`, a value outside [0, 1], or n_bins < 1.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    p, hit = _annotated(*check_probabilities(probs, labels))
    if p.size == 0:
        return float("nan")
    bins = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    conf = np.bincount(bins, weights=p, minlength=n_bins)
    acc = np.bincount(bins, weights=hit.astype(np.float64), minlength=n_bins)
    return float(np.abs(acc - conf).sum() / p.size)  # sum_b n_b/N |acc_b/n_b - conf_b/n_b|


def reliability_bins(probs: Any, labels: Any, n_bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """What a reliability diagram draws: per equal-width probability bin (the bins of
    `expected_calibration_error`), its annotated entries, their mean probability and how often
    they are positive. ECE is sum(count * |frequency - mean_probability|) / sum(count).

    Args:
        probs: [N, C] probabilities in [0, 1].
        labels: [N, C] in {+1, -1, 0} (unknown entries are left out).
        n_bins: bins of equal width on [0, 1].

    Returns:
        {"edges" [n_bins + 1], "count" int [n_bins], "mean_probability" [n_bins],
        "frequency" [n_bins]}; NaN where a bin is empty.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    p, hit = _annotated(*check_probabilities(probs, labels))
    bins = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(bins, weights=p, minlength=n_bins) / count
        freq = np.bincount(bins, weights=hit.astype(np.float64), minlength=n_bins) / count
    return {"edges": np.linspace(0.0, 1.0, n_bins + 1), "count": count, "mean_probability": mean, "frequency": freq}


def brier_score(probs: Any, labels: Any) -> float:
    """Mean squared difference between probability and outcome (1 for +1, 0 for -1) over the
    annotated entries; unknown entries (label 0) are left out. NaN without any annotated entry."""
    p, hit = _annotated(*check_probabilities(probs, labels))
    return float(np.mean((p - hit) ** 2)) if p.size else float("nan")


def _f1(tp: np.ndarray, n_pos: np.ndarray, n_pred: np.ndarray) -> np.ndarray:
    """F1 = 2 TP / (#positives + #predicted), and 0 where TP = 0."""
    tp, n_pos, n_pred = (np.asarray(a, dtype=np.float64) for a in (tp, n_pos, n_pred))
    return np.divide(2.0 * tp, n_pos + n_pred, out=np.zeros(np.broadcast(tp, n_pos, n_pred).shape), where=tp > 0)


def threshold_f1(probs: Any, labels: Any, threshold: float = DEFAULT_THRESHOLD) -> dict[str, float]:
    """Micro and macro F1 of the decisions "present where the score is at least `threshold`".

    Over the annotated entries (an unknown entry, label 0, is neither a hit nor a false alarm).
    Micro F1 pools the entries of every column; macro F1 is the mean of the columns' F1 over the
    columns with at least one positive (a column without a positive has no F1 and is left out).
    F1 = 2 TP / (positives + predicted), 0 where TP = 0.

    Args:
        probs: [N, C] scores (usually probabilities; any real numbers work).
        labels: [N, C] in {+1, -1, 0}.
        threshold: decision threshold on `probs`.

    Returns:
        {"micro_f1", "macro_f1", "micro_precision", "micro_recall"}; macro NaN when no column has
        a positive.
    """
    s, y = check_pair(probs, labels)
    pred = (s >= threshold) & (y != IGNORE_LABEL)
    pos = y == POSITIVE
    tp_c = np.count_nonzero(pred & pos, axis=0)
    pos_c = np.count_nonzero(pos, axis=0)
    pred_c = np.count_nonzero(pred, axis=0)
    tp, n_pos, n_pred = int(tp_c.sum()), int(pos_c.sum()), int(pred_c.sum())
    counted = pos_c > 0
    return {
        "micro_f1": float(_f1(tp, n_pos, n_pred)),
        "macro_f1": float(_f1(tp_c, pos_c, pred_c)[counted].mean()) if counted.any() else float("nan"),
        "micro_precision": tp / n_pred if n_pred else 0.0,
        "micro_recall": tp / n_pos if n_pos else 0.0,
    }


def oracle_threshold_f1(scores: Any, labels: Any) -> dict[str, float]:
    """The best micro F1 and the best macro F1 that one global threshold reaches, and where.

    An oracle for reference (it looks at the labels it is scored on): every distinct score of an
    annotated entry is tried as the threshold t ("present where score >= t", so tied scores are
    decided together), and also +inf (nothing present, F1 0). Exact, in O(E log E) for E annotated
    entries: one sort, then running counts per column. Macro F1 as in `threshold_f1` (columns with
    a positive). Where several thresholds reach the best F1 the highest is returned.

    Args:
        scores: [N, C] real scores (probabilities or decision scores: F1 depends on the order only).
        labels: [N, C] in {+1, -1, 0}.

    Returns:
        {"micro_f1", "micro_threshold", "macro_f1", "macro_threshold"} (NaN F1 and threshold
        without any positive).
    """
    s, y = check_pair(scores, labels)
    mask = y != IGNORE_LABEL
    col = np.broadcast_to(np.arange(s.shape[1]), s.shape)[mask]
    val = s[mask].astype(np.float64)
    hit = (y[mask] == POSITIVE).astype(np.int64)
    pos_c = np.bincount(col, weights=hit, minlength=s.shape[1])
    n_pos = int(hit.sum())
    nan = float("nan")
    if n_pos == 0:
        return {"micro_f1": nan, "micro_threshold": nan, "macro_f1": nan, "macro_threshold": nan}
    order = np.lexsort((col, -val))  # by score, descending
    val, col, hit = val[order], col[order], hit[order]
    last = np.append(val[1:] != val[:-1], True)  # the last entry of each run of tied scores
    # micro: after the first i entries are predicted present
    tp = np.cumsum(hit)
    micro = _f1(tp, n_pos, np.arange(1, val.size + 1))
    # macro: running per-column counts; each entry changes its own column's F1 only
    by_col = np.lexsort((np.arange(col.size), col))  # entries grouped by column, in score order
    rank_in_col = np.empty(col.size, dtype=np.int64)
    tp_in_col = np.empty(col.size, dtype=np.int64)
    starts = np.searchsorted(col[by_col], np.arange(s.shape[1]))
    rank_in_col[by_col] = np.arange(col.size) - starts[col[by_col]] + 1  # predicted in the column so far
    cum = np.cumsum(hit[by_col])
    before = np.where(starts[col[by_col]] > 0, cum[np.maximum(starts[col[by_col]] - 1, 0)], 0)
    tp_in_col[by_col] = cum - before  # true positives in the column so far
    counted = pos_c > 0
    new = np.where(counted[col], _f1(tp_in_col, pos_c[col], rank_in_col), 0.0)
    old = np.where(counted[col], _f1(tp_in_col - hit, pos_c[col], rank_in_col - 1), 0.0)
    macro = np.cumsum(new - old) / np.count_nonzero(counted)
    out = {}
    for name, curve in (("micro", micro), ("macro", macro)):
        at = np.flatnonzero(last)
        best = at[np.argmax(curve[at])]  # the first maximum: the highest threshold
        out[f"{name}_f1"] = float(max(curve[best], 0.0))
        out[f"{name}_threshold"] = float(val[best]) if curve[best] > 0 else float("inf")
    return out


def decision_metrics(probs: Any, labels: Any, threshold: float = DEFAULT_THRESHOLD) -> dict[str, float]:
    """The tag-decision figures of probabilities [N, C] against labels in {+1, -1, 0}, in one place
    for the demo and the calibration benchmark: ECE, Brier, micro / macro F1 at `threshold`, and
    the oracle's best micro / macro F1 of one global threshold (with its micro threshold). Keys:
    ECE, Brier, F1@t, macroF1@t (t as `threshold` prints, e.g. F1@0.5), oracle_F1,
    oracle_threshold, oracle_macroF1."""
    at = threshold_f1(probs, labels, threshold)
    oracle = oracle_threshold_f1(probs, labels)
    return {
        "ECE": expected_calibration_error(probs, labels),
        "Brier": brier_score(probs, labels),
        f"F1@{threshold:g}": at["micro_f1"],
        f"macroF1@{threshold:g}": at["macro_f1"],
        "oracle_F1": oracle["micro_f1"],
        "oracle_threshold": oracle["micro_threshold"],
        "oracle_macroF1": oracle["macro_f1"],
    }


def vocabulary_invariance(full: Any, small: Any) -> dict[str, float]:
    """How much a probability moves when the rest of the vocabulary changes.

    Args:
        full: [N, C] probabilities with the whole vocabulary.
        small: [N, C] the same (image, label) entries, each scored inside another vocabulary (e.g.
            a random 5-label one containing the label).

    Returns:
        {"max": max |full - small|, "mean": mean |full - small|} over every entry.
    """
    a = check_scores(as_numpy(full, "full"), "full").astype(np.float64)
    b = check_scores(as_numpy(small, "small"), "small").astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"full {a.shape} and small {b.shape} must have the same shape [N, C]")
    d = np.abs(a - b)
    return {"max": float(d.max()) if d.size else float("nan"), "mean": float(d.mean()) if d.size else float("nan")}
