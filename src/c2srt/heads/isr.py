r"""ISR: intra-category semantic refinement, a category-adaptive number of regions per label.

Paper: "Category-Adaptive Cross-Modal Semantic Refinement and Transfer for Open-Vocabulary
Multi-Label Recognition", Liu, Pu, Wu, Wang, Lin (C2SRT). Our specification (DESIGN.md, Method 5):

.. math::
    p_{bnc} = \mathrm{softmax}_n\!\left( \langle F_{bn}, t_c \rangle / \tau \right), \quad
    m_{bc} = \mathrm{clamp}\!\left( \min\{ m : \textstyle\sum_{j<m} p_{b\sigma(j)c} \ge \alpha \},
             k_{min}, k_{max} \right)

where :math:`\sigma` sorts patches by decreasing :math:`p`. The kept patches :math:`S_{bc}` (the
first :math:`m_{bc}` of them) are pooled with renormalised probabilities,
:math:`w_{bnc} = p_{bnc} [n \in S_{bc}] / \sum_{n' \in S_{bc}} p_{bn'c}`, giving
:math:`f^L_{bc} = \sum_n w_{bnc} F_{bn}` and :math:`f^{img}_{bc} = (f^L_{bc} + g_b)/2`.
A label filling a large area (sky, grass) keeps many patches; a small object keeps few.
Scores fuse :math:`\langle f^L_{bc}, t_c\rangle` with the global score exactly as MKT does, so
ISR and MKT differ only in which regions they pool.
"""

from __future__ import annotations

import torch

from ..constants import DEFAULT_EPS
from .base import PatchPoolingHead, check_similarity, register_head

DEFAULT_TAU = 0.02  # softmax temperature over patch-label cosine similarities


def select_patches(
    sim: torch.Tensor,
    alpha: float = 0.5,
    k_max: int = 32,
    k_min: int = 1,
    tau: float = DEFAULT_TAU,
    *,
    pool: str = "weighted",
    eps: float = DEFAULT_EPS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per (image, label): the smallest set of patches holding probability mass `alpha`.

    Vectorised over images and labels (one sort, one cumulative sum). Ties in probability keep the
    lower patch index first (stable sort). Gradients flow through the probabilities of the kept
    patches (`pool="weighted"`); the choice of patches itself is discrete.

    Args:
        sim: [B, P, C] patch-label similarities.
        alpha: probability mass the kept patches must reach, in (0, 1].
        k_max: most patches kept; k_min: fewest (both clamped to P).
        tau: softmax temperature over the P patches.
        pool: "weighted" (renormalised probabilities) or "mean" (uniform over the kept patches).
        eps: guards the renormalisation.

    Returns:
        weights [B, P, C] (zero outside the kept patches, each [b, :, c] summing to 1) and
        counts [B, C] (long: patches kept).

    Raises:
        ValueError: on a bad shape or parameter.

    Example:
        >>> w, n = select_patches(torch.tensor([[[4.0], [3.0], [0.0]]]), alpha=0.9, tau=1.0)
        >>> n.tolist()
        [[2]]
    """
    if sim.ndim != 3:
        raise ValueError(f"sim must be [B, P, C], got shape {tuple(sim.shape)}")
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must lie in (0, 1], got {alpha}")
    if not 1 <= k_min <= k_max:
        raise ValueError(f"need 1 <= k_min ({k_min}) <= k_max ({k_max})")
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if pool not in ("weighted", "mean"):
        raise ValueError(f"pool must be 'weighted' or 'mean', got {pool!r}")
    weights, counts = _select_last(sim.transpose(1, 2), alpha, k_max, k_min, tau, pool, eps)  # [B, C, P]
    return weights.transpose(1, 2), counts  # [B, C, P] -> [B, P, C]


def _select_last(
    sim: torch.Tensor, alpha: float, k_max: int, k_min: int, tau: float, pool: str, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """`select_patches` with patches on the last axis ([B, C, P]), where sorting is contiguous and fast."""
    sim = sim.float().contiguous()
    n_patches = sim.shape[-1]
    k_hi = min(k_max, n_patches)
    prob = torch.softmax(sim / tau, dim=-1)  # [B, C, P]
    # only the first k_max ranks can be kept: find them with topk (3x faster than sorting every
    # patch at 7,586 labels), on a key that orders as the stable sort does (non-negative float32
    # bits ascend with the value; ties go to the lower patch index)
    key = (prob.detach().view(torch.int32).long() << 16) | (n_patches - 1 - torch.arange(n_patches, device=sim.device))
    order = key.topk(k_hi, dim=-1).indices  # [B, C, k_hi], best first
    # mass strictly before each of the first k_max ranks (no prefix is longer), in float64 so the
    # cut does not depend on summation order
    top = prob.gather(-1, order).double()  # [B, C, k_hi]
    before = top.cumsum(-1) - top  # exclusive cumulative sum
    counts = (before < alpha).sum(-1)  # [B, C]: smallest prefix reaching alpha, capped at k_max
    counts = counts.clamp(min=min(k_min, n_patches))
    ranks = torch.arange(k_hi, device=sim.device)  # [k_hi]
    keep = ranks < counts.unsqueeze(-1)  # [k_hi] < [B, C, 1] -> [B, C, k_hi], by rank
    if pool == "mean":
        w_top = keep.float() / counts.unsqueeze(-1).float()  # [B, C, k_hi] / [B, C, 1]
    else:
        kept = prob.gather(-1, order) * keep  # [B, C, k_hi]
        w_top = kept / kept.sum(-1, keepdim=True).clamp_min(eps)
    weights = torch.zeros_like(prob).scatter(-1, order, w_top)  # back to patch order, zero elsewhere
    return weights, counts


class IsrHead(PatchPoolingHead):
    """Category-adaptive patch selection (ISR) + global matching.

    Shapes:
        g [B, D], patches [B, N, D], text [K, D] -> HeadOutput(logits [B, K], f_img [B, K, D],
        counts [B, K], weights [B, N, K]).

    Args:
        alpha, k_min, k_max, tau, pool: as in `select_patches`.
        label_chunk: labels processed at once; bounds the [B, N, K] intermediates.
        similarity: "cosine" (the default, and C2SRT's: `tau` is a temperature on cosines in
            [-1, 1]) or "raw" (MKT's unnormalised dot products; `tau` must then be rescaled).
    """

    def __init__(
        self,
        *,
        alpha: float = 0.5,
        k_min: int = 1,
        k_max: int = 32,
        tau: float = DEFAULT_TAU,
        pool: str = "weighted",
        label_chunk: int = 2048,
        similarity: str = "cosine",
    ) -> None:
        super().__init__()
        self.alpha, self.k_min, self.k_max, self.tau, self.pool = alpha, k_min, k_max, tau, pool
        self.label_chunk = label_chunk
        self.similarity = check_similarity(similarity)
        select_patches(torch.zeros(1, 1, 1), alpha, k_max, k_min, tau, pool=pool)  # validate once

    def pool_patches(self, sim: torch.Tensor, *, need_weights: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        w, n = _select_last(sim, self.alpha, self.k_max, self.k_min, self.tau, self.pool, DEFAULT_EPS)  # [B, Kc, N], [B, Kc]
        return (w * sim).sum(-1), w, n  # <f_L, t_c>: [B, Kc, N] -> [B, Kc]

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, k_min={self.k_min}, k_max={self.k_max}, tau={self.tau}, pool={self.pool}, "
            f"similarity={self.similarity}"
        )


@register_head("isr")
def build_isr(cfg, embed_dim: int) -> IsrHead:  # noqa: ARG001 (the head is width-agnostic)
    return IsrHead(
        alpha=cfg.alpha,
        k_min=cfg.k_min,
        k_max=cfg.k_max,
        tau=cfg.tau,
        pool=cfg.pool,
        label_chunk=cfg.label_chunk,
        similarity=cfg.similarity,
    )
