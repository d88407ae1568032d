r"""Training losses: the ranking loss over (positive, negative) label pairs and L1 distillation.

Ranking loss (MKT / BiAM / LESA), per image b with positives :math:`P_b` and negatives :math:`N_b`
(labels 0 are unknown and take no part):

.. math::
    \ell_b = \frac{\sum_{j \in P_b} \sum_{i \in N_b} \max(0,\, m + s_{bi} - s_{bj})}
                  {\#\{(j, i) : m + s_{bi} - s_{bj} > 0\}}

(0 when no pair violates the margin). The batch loss is the mean of :math:`\ell_b` over the images
that have at least one positive and one negative; the others contribute nothing (neither to the
sum nor to the count). The published code divides by the whole batch instead, which differs by
the factor (images with pairs) / B.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .constants import DEFAULT_EPS, IGNORE_LABEL, NEGATIVE, POSITIVE


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
        # only columns annotated somewhere in the batch can form pairs: Open Images' sparse labels
        # keep [B, K, K] small this way (MKT does the same)
        cols = (labels != IGNORE_LABEL).any(0).nonzero().squeeze(1)  # [K'] column indices
        s = scores.float().index_select(1, cols)  # [B, K']
        labels = labels.index_select(1, cols)
        pos = (labels == POSITIVE).float()  # [B, K]
        neg = (labels == NEGATIVE).float()  # [B, K]
        pair = pos.unsqueeze(1) * neg.unsqueeze(2)  # [B, 1, K_j] * [B, K_i, 1] -> [B, K_i, K_j]
        diff = margin + s.unsqueeze(2) - s.unsqueeze(1)  # s_i - s_j: [B, K_i, 1] - [B, 1, K_j] -> [B, K_i, K_j]
        hinge = diff.clamp_min(0) * pair  # [B, K_i, K_j]
        violating = (hinge > 0).sum((1, 2)).float()  # [B]
        per_image = hinge.sum((1, 2)) / (violating + eps)  # [B]
        has_pairs = (pos.sum(1) > 0) & (neg.sum(1) > 0)  # [B]
        if not bool(has_pairs.any()):
            return s.sum() * 0.0  # keeps the graph (and DDP's unused-parameter checks) intact
        return per_image[has_pairs].mean()


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """L1 between the student's and the frozen teacher's global embeddings [B, D] (mean over entries)."""
    _check_pair(student, teacher, ("student", "teacher"))
    with torch.autocast(device_type=student.device.type, enabled=False):
        return F.l1_loss(student.float(), teacher.detach().float())
