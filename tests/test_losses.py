"""Ranking and distillation losses against plain loops and hand-worked cases."""

from __future__ import annotations

import pytest
import torch

from c2srt.losses import distillation_loss, ranking_loss


def brute_ranking(scores: torch.Tensor, labels: torch.Tensor, margin: float = 1.0) -> float:
    per_image = []
    for s, y in zip(scores.tolist(), labels.tolist()):
        pos = [j for j, v in enumerate(y) if v == 1]
        neg = [i for i, v in enumerate(y) if v == -1]
        if not pos or not neg:
            continue  # contributes nothing
        total, violating = 0.0, 0
        for j in pos:
            for i in neg:
                h = max(0.0, margin + s[i] - s[j])
                total += h
                violating += h > 0
        per_image.append(total / violating if violating else 0.0)
    return sum(per_image) / len(per_image) if per_image else 0.0


@pytest.mark.parametrize("seed", range(5))
def test_ranking_loss_matches_a_double_loop(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(6, 9, generator=g) * 2
    labels = torch.randint(-1, 2, (6, 9), generator=g)
    labels[0] = torch.where(labels[0] == 1, 0, labels[0])  # an image without a positive
    labels[1] = torch.where(labels[1] == -1, 1, labels[1])  # an image without a negative
    margin = [1.0, 0.5, 2.0, 1.0, 0.1][seed]
    got = ranking_loss(scores, labels, margin=margin)
    assert got.item() == pytest.approx(brute_ranking(scores, labels, margin), rel=1e-5, abs=1e-6)


def test_hand_worked_cases() -> None:
    # pairs (0 vs 1): 1 + 0.5 - 0 = 1.5 and (0 vs 2): 1 + 0.2 - 0 = 1.2 -> (1.5 + 1.2) / 2 violating
    assert ranking_loss(torch.tensor([[0.0, 0.5, 0.2]]), torch.tensor([[1, -1, -1]])).item() == pytest.approx(1.35)
    # well separated: no violation, loss 0
    assert ranking_loss(torch.tensor([[3.0, 0.5, 0.0]]), torch.tensor([[1, -1, -1]])).item() == 0.0
    # unknown labels (0) take no part, whatever their score
    assert ranking_loss(torch.tensor([[0.0, 0.5, 99.0]]), torch.tensor([[1, -1, 0]])).item() == pytest.approx(1.5)
    # only one of the two pairs violates: the sum is divided by 1, not 2
    assert ranking_loss(torch.tensor([[1.0, 0.5, -5.0]]), torch.tensor([[1, -1, -1]])).item() == pytest.approx(0.5)


def test_images_without_pairs_contribute_nothing() -> None:
    scores = torch.tensor([[0.0, 0.5], [7.0, -3.0]])
    one = ranking_loss(scores[:1], torch.tensor([[1, -1]]))
    both = ranking_loss(scores, torch.tensor([[1, -1], [1, 1]]))  # image 2 has no negative
    assert one.item() == both.item() == pytest.approx(1.5)
    empty = ranking_loss(scores, torch.zeros(2, 2, dtype=torch.long))
    assert empty.item() == 0.0


def test_gradient_pushes_positives_up_and_negatives_down() -> None:
    scores = torch.tensor([[0.0, 0.5, 0.3]], requires_grad=True)
    ranking_loss(scores, torch.tensor([[1, -1, 0]])).backward()
    assert scores.grad[0, 0] < 0 < scores.grad[0, 1] and scores.grad[0, 2] == 0


def test_half_precision_scores_are_computed_in_fp32() -> None:
    scores = torch.randn(3, 5).half()
    labels = torch.tensor([[1, -1, -1, 0, 1]] * 3)
    out = ranking_loss(scores, labels)
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(brute_ranking(scores.float(), labels), rel=1e-5)


def test_shape_mismatch_is_named() -> None:
    with pytest.raises(ValueError, match=r"scores and labels"):
        ranking_loss(torch.zeros(2, 3), torch.zeros(2, 4))


def test_distillation_is_mean_absolute_error_and_spares_the_teacher() -> None:
    student = torch.tensor([[1.0, -2.0], [0.5, 0.0]], requires_grad=True)
    teacher = torch.tensor([[0.0, 0.0], [0.5, 1.0]], requires_grad=True)
    loss = distillation_loss(student, teacher)
    assert loss.item() == pytest.approx((1 + 2 + 0 + 1) / 4)
    loss.backward()
    assert teacher.grad is None and student.grad is not None
    with pytest.raises(ValueError, match="student"):
        distillation_loss(student, teacher[:1])


def dense_ranking(scores: torch.Tensor, labels: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """The [B, K, K] formulation over every label pair (an independent, vectorised reference)."""
    pos, neg = (labels == 1).float(), (labels == -1).float()
    hinge = (margin + scores.unsqueeze(2) - scores.unsqueeze(1)).clamp_min(0) * (neg.unsqueeze(2) * pos.unsqueeze(1))
    per_image = hinge.sum((1, 2)) / ((hinge > 0).sum((1, 2)).float() + 1e-8)
    keep = (pos.sum(1) > 0) & (neg.sum(1) > 0)
    return per_image[keep].mean()


@pytest.mark.parametrize("seed", range(3))
def test_sparse_labels_match_the_dense_pair_reference_in_value_and_gradient(seed: int) -> None:
    """Open Images-like rows: a handful of annotated labels among many, different counts per image."""
    g = torch.Generator().manual_seed(seed)
    b, k = 8, 300
    labels = torch.zeros(b, k, dtype=torch.long)
    for row in range(b):
        cols = torch.randperm(k, generator=g)[: 3 + row]
        labels[row, cols] = torch.where(torch.rand(len(cols), generator=g) < 0.5, 1, -1)
    labels[0, :] = 0
    labels[0, :2] = torch.tensor([1, -1])
    s1 = (torch.randn(b, k, generator=g) * 2).requires_grad_(True)
    s2 = s1.detach().clone().requires_grad_(True)
    got, ref = ranking_loss(s1, labels), dense_ranking(s2, labels)
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)
    got.backward()
    ref.backward()
    torch.testing.assert_close(s1.grad, s2.grad)


def test_sparse_labels_over_a_huge_vocabulary_need_no_label_by_label_matrix() -> None:
    """200,000 columns, ten annotated per image: a [B, K, K] intermediate would need 1.3 TB."""
    b, k = 8, 200_000
    g = torch.Generator().manual_seed(0)
    labels = torch.zeros(b, k, dtype=torch.long)
    cols = torch.randint(0, k, (b, 10), generator=g)
    labels.scatter_(1, cols, torch.tensor([1, -1] * 5).expand(b, 10))
    scores = torch.randn(b, k, generator=g)
    got = ranking_loss(scores, labels)
    sub = torch.unique(cols)  # the annotated columns alone give the same loss
    assert got.item() == pytest.approx(brute_ranking(scores[:, sub], labels[:, sub]), rel=1e-5)
