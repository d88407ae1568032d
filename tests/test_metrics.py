"""c2srt.metrics against hand-worked cases, brute-force loops and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from c2srt.metrics import (
    average_precision,
    brier_score,
    expected_calibration_error,
    reliability_bins,
    mean_average_precision,
    oracle_threshold_f1,
    row_pooled_average_precision,
    threshold_f1,
    topk_prf,
    vocabulary_invariance,
    weighted_mean_average_precision,
)


# ----------------------------------------------------------------------------- plain-python references
def ref_ap_column(scores: list[float], labels: list[int]) -> float:
    """AP of one column: annotated entries ranked by (-score, row); NaN without positive."""
    entries = sorted((-s, i, y) for i, (s, y) in enumerate(zip(scores, labels)) if y != 0)
    hits, total = 0, 0.0
    for rank, (_, _, y) in enumerate(entries, start=1):
        if y == 1:
            hits += 1
            total += hits / rank
    return total / hits if hits else math.nan


def ref_topk_tp(scores: np.ndarray, labels: np.ndarray, k: int) -> int:
    tp = 0
    for row_s, row_y in zip(scores.tolist(), labels.tolist()):
        top = sorted(range(len(row_s)), key=lambda c: (-row_s[c], c))[:k]
        tp += sum(row_y[c] == 1 for c in top)
    return tp


def random_case(seed: int, n: int = 60, c: int = 9, ties: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    s = rng.random((n, c)).astype(np.float32)
    if ties:
        s = np.round(s * 8) / 8  # many exact ties
    y = rng.choice([-1, 0, 1], size=(n, c), p=[0.45, 0.35, 0.2]).astype(np.int64)
    return s, y


# ----------------------------------------------------------------------------- AP: hand-worked
def test_ap_hand_worked_no_ties() -> None:
    # ranking: +, -, +  -> precisions 1/1, 2/3
    ap = average_precision([[0.9], [0.5], [0.1]], [[1], [-1], [1]])
    assert ap.shape == (1,)
    assert ap[0] == pytest.approx((1 + 2 / 3) / 2)


def test_ap_ties_keep_row_order() -> None:
    # rows 0 and 1 tie; stable order puts row 0 first
    s = [[0.5], [0.5], [0.2]]
    assert average_precision(s, [[-1], [1], [1]])[0] == pytest.approx((1 / 2 + 2 / 3) / 2)  # -, +, +
    assert average_precision(s, [[1], [-1], [1]])[0] == pytest.approx((1 + 2 / 3) / 2)  # +, -, +


def test_ap_unknown_left_out_not_negative() -> None:
    s = [[0.1], [0.9], [0.5], [0.3]]
    y = [[1], [0], [-1], [1]]
    # row 1 (0.9, unknown) is dropped: ranking -, +, +
    assert average_precision(s, y)[0] == pytest.approx((1 / 2 + 2 / 3) / 2)
    # had it been a negative the AP would be lower
    assert average_precision(s, [[1], [-1], [-1], [1]])[0] < (1 / 2 + 2 / 3) / 2


def test_column_without_positive_zero_or_skip() -> None:
    s = np.array([[0.9, 0.2], [0.1, 0.8]])
    y = np.array([[1, -1], [-1, 0]])
    assert average_precision(s, y).tolist() == [1.0, 0.0]
    skip = average_precision(s, y, empty="skip")
    assert skip[0] == 1.0 and math.isnan(skip[1])
    assert mean_average_precision(s, y) == pytest.approx(0.5)
    assert mean_average_precision(s, y, empty="skip") == pytest.approx(1.0)
    assert math.isnan(mean_average_precision(s, -np.abs(y), empty="skip"))  # no column counts


def test_weighted_map_hand_worked() -> None:
    s = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.7]])
    y = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]])
    # col 0: +,+ then -,- -> AP 1 (2 positives); col 1 ranking (0.9+, 0.7-, 0.2-, 0.1+) -> (1 + 2/4)/2 = 0.75 (2 positives)
    assert average_precision(s, y).tolist() == pytest.approx([1.0, 0.75])
    y2 = y.copy()
    y2[3, 0] = 1  # col 0 now has 3 positives: 0.9+, 0.8+, 0.2+, 0.1- -> AP 1
    assert weighted_mean_average_precision(s, y2) == pytest.approx((3 * 1.0 + 2 * 0.75) / 5)


# ----------------------------------------------------------------------------- AP: references
@pytest.mark.parametrize("seed", range(4))
def test_ap_matches_sklearn_without_ties(seed: int) -> None:
    from sklearn.metrics import average_precision_score

    s, y = random_case(seed, n=80, c=7, ties=False)
    ap = average_precision(s, y, empty="skip")
    for c in range(s.shape[1]):
        m = y[:, c] != 0
        if (y[m, c] == 1).any():
            assert ap[c] == pytest.approx(average_precision_score(y[m, c] == 1, s[m, c]), abs=1e-6)
        else:
            assert math.isnan(ap[c])


@pytest.mark.parametrize("seed", range(4))
def test_ap_matches_plain_python_with_ties(seed: int) -> None:
    s, y = random_case(seed)
    y[:, 0] = np.where(y[:, 0] == 1, -1, y[:, 0])  # a column without positive
    ap = average_precision(s, y, empty="skip")
    ref = [ref_ap_column(s[:, c].tolist(), y[:, c].tolist()) for c in range(s.shape[1])]
    np.testing.assert_allclose(ap, ref, atol=1e-12, equal_nan=True)
    assert mean_average_precision(s, y) == pytest.approx(np.nan_to_num(ref).mean(), abs=1e-12)


def test_torch_inputs_are_accepted() -> None:
    s, y = random_case(5)
    ref = average_precision(s, y)
    np.testing.assert_array_equal(average_precision(torch.from_numpy(s), torch.from_numpy(y)), ref)
    np.testing.assert_array_equal(average_precision(torch.from_numpy(s).half().float(), torch.from_numpy(y).float()), ref)
    assert topk_prf(torch.from_numpy(s), torch.from_numpy(y), 2) == topk_prf(s, y, 2)


# ----------------------------------------------------------------------------- row-pooled (compatibility)
def test_row_pooled_hand_worked() -> None:
    s = np.array([[0.9, 0.8, 0.1], [0.2, 0.85, 0.6], [0.3, 0.4, 0.5]])
    y = np.array([[1, -1, 0], [0, 1, -1], [-1, 0, 1]])
    # col 0 pools rows 0, 2: 0.9+ 0.8- 0.5+ 0.3- -> (1 + 2/3)/2
    # col 1 pools rows 0, 1: 0.9+ 0.85+ 0.8- 0.6- -> 1
    # col 2 pools rows 1, 2: 0.85+ 0.6- 0.5+ 0.3- -> (1 + 2/3)/2
    assert row_pooled_average_precision(s, y).tolist() == pytest.approx([5 / 6, 1.0, 5 / 6])
    assert average_precision(s, y).tolist() == pytest.approx([1.0, 1.0, 0.5])  # per-class differs


def test_row_pooled_unannotated_column() -> None:
    s = np.array([[0.9, 0.1], [0.2, 0.3]])
    y = np.array([[1, 0], [-1, 0]])
    assert row_pooled_average_precision(s, y).tolist() == [1.0, 0.0]
    assert math.isnan(row_pooled_average_precision(s, y, empty="skip")[1])


@pytest.mark.parametrize("seed", range(3))
def test_row_pooled_matches_plain_python(seed: int) -> None:
    s, y = random_case(seed, n=30, c=6)
    got = row_pooled_average_precision(s, y, empty="skip")
    for c in range(s.shape[1]):
        pool = sorted(
            (-float(s[i, j]), i, j, int(y[i, j])) for i in range(s.shape[0]) if y[i, c] != 0 for j in range(s.shape[1]) if y[i, j] != 0
        )
        hits, total = 0, 0.0
        for rank, e in enumerate(pool, start=1):
            if e[3] == 1:
                hits += 1
                total += hits / rank
        ref = total / hits if hits else math.nan
        assert got[c] == pytest.approx(ref, abs=1e-12, nan_ok=True)


# ----------------------------------------------------------------------------- top-k
def test_topk_hand_worked_ties_and_image_without_positive() -> None:
    s = np.array([[0.5, 0.5, 0.5, 0.1], [0.9, 0.8, 0.1, 0.0]])
    y = np.array([[-1, 1, 1, 1], [-1, -1, 0, -1]])  # row 1 has no positive
    # k=1: row 0 takes column 0 (lowest index among the tie) -> TP 0
    assert topk_prf(s, y, 1) == (0.0, 0.0, 0.0)
    # k=2: row 0 takes columns 0, 1 -> TP 1; P = 1/(2*2), R = 1/3
    p, r, f1 = topk_prf(s, y, 2)
    assert (p, r) == pytest.approx((1 / 4, 1 / 3))
    assert f1 == pytest.approx(2 * p * r / (p + r))
    # unknown (0) predictions are not hits: k=4 takes everything -> TP 3
    assert topk_prf(s, y, 4)[:2] == pytest.approx((3 / 8, 1.0))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [1, 3, 9])
def test_topk_matches_brute_force(seed: int, k: int) -> None:
    s, y = random_case(seed)
    tp = ref_topk_tp(s, y, k)
    n_pos = int((y == 1).sum())
    p, r, f1 = topk_prf(s, y, k)
    assert p == pytest.approx(tp / (s.shape[0] * k), abs=1e-12)
    assert r == pytest.approx(tp / n_pos, abs=1e-12)
    assert f1 == pytest.approx(2 * p * r / (p + r) if tp else 0.0, abs=1e-12)


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("fn", "args", "match"),
    [
        (average_precision, (np.zeros((3, 2)), np.zeros((3, 3))), "same shape"),
        (topk_prf, (np.zeros((3, 2)), np.zeros((2, 2)), 1), "same shape"),
        (average_precision, (np.zeros(3), np.zeros(3)), "2-D"),
        (average_precision, (np.zeros((2, 2)), np.array([[1, 2], [0, 0]])), r"value 2 at row 0, column 1"),
        (average_precision, (np.zeros((2, 2)), np.array([[1, 0.5], [0, 0]])), "not a label"),
        (average_precision, (np.array([[0.0, np.nan]]), np.array([[1, 0]])), "NaN score at row 0, column 1"),
        (average_precision, (np.zeros((2, 2)), np.zeros((2, 2)), "drop"), "empty='drop'"),
        (topk_prf, (np.zeros((2, 2)), np.zeros((2, 2)), 3), r"outside \[1, 2\]"),
        (topk_prf, (np.zeros((2, 2)), np.zeros((2, 2)), 0), r"outside \[1, 2\]"),
        (row_pooled_average_precision, (np.zeros((2, 3)), np.zeros((3, 2))), "same shape"),
    ],
)
def test_clear_errors(fn, args, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        fn(*args)


# ----------------------------------------------------------------------------- decisions
def ref_ece(p: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """ECE by a loop over the annotated entries and the bins [i/n, (i+1)/n) (the last one closed)."""
    entries = [(float(pi), yi == 1) for pi, yi in zip(p.ravel().tolist(), y.ravel().tolist()) if yi != 0]
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        inside = [(pi, hit) for pi, hit in entries if lo <= pi < hi or (b == n_bins - 1 and pi == 1.0)]
        if inside:
            conf = sum(pi for pi, _ in inside) / len(inside)
            acc = sum(hit for _, hit in inside) / len(inside)
            total += len(inside) / len(entries) * abs(acc - conf)
    return total


def ref_f1_counts(pred: list[bool], hit: list[bool]) -> float:
    tp = sum(p and h for p, h in zip(pred, hit))
    return 2 * tp / (sum(hit) + sum(pred)) if tp else 0.0


def ref_threshold_f1(s: np.ndarray, y: np.ndarray, t: float) -> tuple[float, float]:
    """(micro, macro) F1 of "score >= t" by loops over the annotated entries."""
    pred, hit = [], []
    per_col = []
    for c in range(s.shape[1]):
        cp = [float(s[r, c]) >= t for r in range(s.shape[0]) if y[r, c] != 0]
        ch = [y[r, c] == 1 for r in range(s.shape[0]) if y[r, c] != 0]
        pred += cp
        hit += ch
        if any(ch):
            per_col.append(ref_f1_counts(cp, ch))
    return ref_f1_counts(pred, hit), (sum(per_col) / len(per_col) if per_col else math.nan)


def probability_case(seed: int, n: int = 50, c: int = 7) -> tuple[np.ndarray, np.ndarray]:
    s, y = random_case(seed, n, c)
    s = s.astype(np.float64)
    s[0, 0], s[1, 0] = 1.0, 0.0  # both ends of [0, 1]
    y[:, -1] = np.where(y[:, -1] == 1, -1, y[:, -1])  # a column without any positive
    return s, y


def test_ece_hand_worked() -> None:
    # bin [0, 1/15): 0.0 (-), 0.05 (+): conf 0.025, acc 0.5; bin [14/15, 1]: 1.0 (+), 0.95 (+): conf 0.975, acc 1
    p = np.array([[0.0, 0.05], [1.0, 0.95], [0.3, 0.7]])
    y = np.array([[-1, 1], [1, 1], [0, 0]])  # the unknown row counts nowhere
    assert expected_calibration_error(p, y) == pytest.approx(0.5 * 0.475 + 0.5 * 0.025)
    assert expected_calibration_error(np.array([[0.2]]), np.array([[0]])) != expected_calibration_error(np.array([[0.2]]), np.array([[1]]))
    assert math.isnan(expected_calibration_error(np.array([[0.2]]), np.array([[0]])))


@pytest.mark.parametrize("seed", range(4))
def test_ece_and_brier_match_references(seed: int) -> None:
    from sklearn.metrics import brier_score_loss

    p, y = probability_case(seed)
    assert expected_calibration_error(p, y) == pytest.approx(ref_ece(p, y), abs=1e-12)
    assert expected_calibration_error(p, y, n_bins=4) == pytest.approx(ref_ece(p, y, 4), abs=1e-12)
    mask = y != 0
    assert brier_score(p, y) == pytest.approx(brier_score_loss(y[mask] == 1, p[mask]), abs=1e-12)
    assert brier_score(torch.from_numpy(p).float(), torch.from_numpy(y)) == pytest.approx(brier_score(p.astype(np.float32), y), abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("t", [0.0, 0.25, 0.5, 0.875, 1.5])
def test_threshold_f1_matches_loops_and_sklearn(seed: int, t: float) -> None:
    from sklearn.metrics import f1_score

    s, y = probability_case(seed)
    out = threshold_f1(s, y, t)
    micro, macro = ref_threshold_f1(s, y, t)
    assert out["micro_f1"] == pytest.approx(micro, abs=1e-12)
    assert out["macro_f1"] == pytest.approx(macro, abs=1e-12)
    mask = y != 0
    assert out["micro_f1"] == pytest.approx(f1_score(y[mask] == 1, s[mask] >= t, zero_division=0.0), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_oracle_threshold_is_the_best_of_every_threshold(seed: int) -> None:
    s, y = probability_case(seed)  # many ties (scores on a grid of eighths)
    out = oracle_threshold_f1(s, y)
    candidates = sorted(set(s[y != 0].tolist()), reverse=True)
    micro = [ref_threshold_f1(s, y, t)[0] for t in candidates]
    macro = [ref_threshold_f1(s, y, t)[1] for t in candidates]
    assert out["micro_f1"] == pytest.approx(max(micro), abs=1e-12)
    assert out["macro_f1"] == pytest.approx(max(macro), abs=1e-12)
    assert out["micro_threshold"] == candidates[int(np.argmax(micro))]  # the highest threshold of the best
    assert out["macro_threshold"] == candidates[int(np.argmax(macro))]
    assert threshold_f1(s, y, out["macro_threshold"])["macro_f1"] == pytest.approx(out["macro_f1"], abs=1e-12)


def test_oracle_without_ties_and_without_positives() -> None:
    s = np.array([[0.9, 0.1], [0.8, 0.7], [0.3, 0.2]])
    y = np.array([[1, -1], [-1, 1], [1, 0]])
    # micro: order 0.9+ 0.8- 0.7+ 0.3+ 0.1-: F1 after each = 2/4, 2/5, 4/6, 6/7, 6/8 -> 6/7 at 0.3
    out = oracle_threshold_f1(s, y)
    assert out["micro_f1"] == pytest.approx(6 / 7) and out["micro_threshold"] == 0.3
    none = oracle_threshold_f1(s, -np.abs(y))
    assert all(math.isnan(v) for v in none.values())


def test_vocabulary_invariance() -> None:
    a = np.array([[0.2, 0.9], [0.5, 0.1]])
    b = np.array([[0.2, 0.7], [0.6, 0.1]])
    out = vocabulary_invariance(a, b)
    assert out["max"] == pytest.approx(0.2) and out["mean"] == pytest.approx(0.3 / 4)
    assert vocabulary_invariance(a, a) == {"max": 0.0, "mean": 0.0}
    with pytest.raises(ValueError, match="same shape"):
        vocabulary_invariance(a, b[:1])


@pytest.mark.parametrize(
    ("fn", "args", "match"),
    [
        (expected_calibration_error, (np.array([[1.5]]), np.array([[1]])), r"1.5 at row 0, column 0 is not a probability"),
        (brier_score, (np.array([[-0.1]]), np.array([[1]])), "not a probability"),
        (expected_calibration_error, (np.array([[0.5]]), np.array([[1]]), 0), "n_bins"),
        (threshold_f1, (np.zeros((2, 2)), np.zeros((2, 3))), "same shape"),
        (oracle_threshold_f1, (np.array([[np.nan]]), np.array([[1]])), "NaN score"),
    ],
)
def test_decision_metric_errors(fn, args, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        fn(*args)


@pytest.mark.parametrize("seed", range(3))
def test_reliability_bins_are_the_bins_of_the_ece(seed: int) -> None:
    """Per bin (of `expected_calibration_error`): the annotated entries, their mean probability and
    positive rate, by a loop; the ECE is their count-weighted gap."""
    p, y = probability_case(seed)
    bins = reliability_bins(p, y, 15)
    assert bins["edges"].tolist() == pytest.approx(np.linspace(0, 1, 16).tolist())
    mask = y != 0
    flat_p, flat_hit = p[mask], y[mask] == 1
    for b in range(15):
        members = [e for e in range(flat_p.size) if min(int(flat_p[e] * 15), 14) == b]
        assert bins["count"][b] == len(members)
        if members:
            assert bins["mean_probability"][b] == pytest.approx(np.mean(flat_p[members]), abs=1e-12)
            assert bins["frequency"][b] == pytest.approx(np.mean(flat_hit[members]), abs=1e-12)
        else:
            assert math.isnan(bins["mean_probability"][b]) and math.isnan(bins["frequency"][b])
    filled = bins["count"] > 0
    gap = np.abs(bins["frequency"] - bins["mean_probability"])[filled]
    assert float((bins["count"][filled] * gap).sum() / bins["count"].sum()) == pytest.approx(expected_calibration_error(p, y), abs=1e-12)
    with pytest.raises(ValueError, match="n_bins"):
        reliability_bins(p, y, 0)


def test_decision_metrics_on_a_hand_worked_case():
    """Four entries, each alone in its ECE bin: every figure worked out by hand."""
    from c2srt.metrics import decision_metrics

    probs = np.array([[0.9, 0.2], [0.6, 0.7]])
    labels = np.array([[1, -1], [-1, 1]])
    got = decision_metrics(probs, labels)
    assert got["ECE"] == pytest.approx((0.1 + 0.2 + 0.6 + 0.3) / 4)
    assert got["Brier"] == pytest.approx((0.01 + 0.04 + 0.36 + 0.09) / 4)
    assert got["F1@0.5"] == pytest.approx(2 * 2 / (3 + 2))  # present: 0.9, 0.6, 0.7; two of them true
    assert got["macroF1@0.5"] == pytest.approx((2 / 3 + 1.0) / 2)
    assert got["oracle_F1"] == pytest.approx(1.0) and got["oracle_threshold"] == pytest.approx(0.7)
    assert set(decision_metrics(probs, labels, 0.3)) >= {"F1@0.3", "macroF1@0.3"}
