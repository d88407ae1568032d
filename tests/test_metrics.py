"""c2srt.metrics against hand-worked cases, brute-force loops and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from c2srt.metrics import (
    average_precision,
    mean_average_precision,
    row_pooled_average_precision,
    topk_prf,
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
