r"""Training losses: the ranking loss over (positive, negative) label pairs, L1 distillation, and
their composition (`training_loss`: what a training step minimises, for the trainer and the benchmark alike).

Ranking loss (MKT / BiAM / LESA), per image b with positives :math:`P_b` and negatives :math:`N_b`
(labels 0 are unknown and take no part):

.. math::
    \ell_b = \frac{\sum_{j \in P_b} \sum_{i \in N_b} \max(0,\, m + s_{bi} - s_{bj})}
                  {\#\{(j, i) : m + s_{bi} - s_{bj} > 0\}}

(0 when no pair violates the margin). The batch loss is the mean of :math:`\ell_b` over the images
that have at least one positive and one negative; the others contribute nothing (neither to the
sum nor to the count). The published code divides by the whole batch instead, which differs by
the factor (images with pairs) / B.

The pairs are formed per image between its own positives and negatives, so the work is
B x (most negatives) x (most positives) in a batch: proportional to the annotated entries for
Open Images' sparse labels, never B x K x K.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .constants import DEFAULT_EPS, NEGATIVE, POSITIVE


def _check_pair(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str]) -> None:
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]} must both be [B, K]; got {tuple(a.shape)} and {tuple(b.shape)}")


def ranking_loss(scores: torch.Tensor, labels: torch.Tensor, margin: float = 1.0, *, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """Margin ranking loss normalised by violating pairs; computed in fp32.

    Args:
        scores: [B, K] logits.
        labels: [B, K] in {+1, -1, 0}; 0 (unknown) is ignored.
        margin: the hinge margin.
        eps: guards the division by the number of violating pairs.

    Returns:
        A scalar (0 when no image has both a positive and a negative).
    """
    _check_pair(scores, labels, ("scores", "labels"))
    with torch.autocast(device_type=scores.device.type, enabled=False):
        s = scores.float()
        pos_s, pos_ok = _gather_where(s, labels == POSITIVE)  # [B, P]: each image's positives (padded)
        neg_s, neg_ok = _gather_where(s, labels == NEGATIVE)  # [B, N]: its negatives
        # only (negative, positive) pairs of one image: [B, N, P], never [B, K, K]. With Open Images'
        # sparse labels (about ten annotated of 7,586) that is about B x 5 x 5 entries; with NUS-WIDE's
        # dense negatives B x 925 x (positives per image)
        pair = neg_ok.unsqueeze(2) & pos_ok.unsqueeze(1)  # [B, N, 1] & [B, 1, P] -> [B, N, P]
        hinge = (margin + neg_s.unsqueeze(2) - pos_s.unsqueeze(1)).clamp_min(0) * pair  # s_i - s_j: [B, N, P]
        violating = (hinge > 0).sum((1, 2)).float()  # [B]
        per_image = hinge.sum((1, 2)) / (violating + eps)  # [B]
        has_pairs = pos_ok.any(1) & neg_ok.any(1)  # [B]
        if not bool(has_pairs.any()):
            return s.sum() * 0.0  # keeps the graph (and DDP's unused-parameter checks) intact
        return per_image[has_pairs].mean()


def _gather_where(values: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's entries where `keep` is true, moved to the front and padded to the longest row.

    Shapes:
        values [B, K], keep [B, K] bool -> (gathered [B, W], valid [B, W] bool) with W = max row count
    """
    width = int(keep.sum(1).max()) if keep.numel() else 0
    order = torch.argsort(keep.to(torch.uint8), dim=1, descending=True, stable=True)[:, :width]  # [B, W]
    return values.gather(1, order), keep.gather(1, order)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """L1 between the student's and the frozen teacher's global embeddings [B, D] (mean over entries)."""
    _check_pair(student, teacher, ("student", "teacher"))
    with torch.autocast(device_type=student.device.type, enabled=False):
        return F.l1_loss(student.float(), teacher.detach().float())


@dataclass
class LossTerms:
    """What a training step minimises (`total`) and its parts, for logging."""

    total: torch.Tensor  # scalar: rank + distill_weight * dist
    rank: torch.Tensor  # scalar ranking loss
    dist: torch.Tensor | None = None  # scalar distillation loss, when there is a teacher


def training_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    g: torch.Tensor | None = None,
    g_teacher: torch.Tensor | None = None,
    margin: float = 1.0,
    distill_weight: float = 1.0,
) -> LossTerms:
    """The training loss: the ranking loss, plus `distill_weight` x L1 distillation when a teacher ran.

    Args:
        logits: [B, K] scores of the training labels; target: [B, K] in {+1, -1, 0}.
        g, g_teacher: [B, D] the student's and the frozen teacher's global embeddings (distillation
            is left out when `g_teacher` is None).
        margin: the ranking loss's margin (`train.margin`).
        distill_weight: weight of the distillation term (`model.distill_weight`).
    """
    rank = ranking_loss(logits, target, margin=margin)
    if g_teacher is None or g is None:
        return LossTerms(rank, rank)
    dist = distillation_loss(g, g_teacher)
    return LossTerms(rank + distill_weight * dist, rank, dist)
