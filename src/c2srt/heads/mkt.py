r"""MKT baseline head: fixed top-k patch matching fused with the global score.

Paper: "Open-Vocabulary Multi-Label Classification via Multi-Modal Knowledge Transfer",
He et al., AAAI 2023 (arXiv:2207.01887).

.. math::
    s^{loc}_{bc} = \frac{1}{k} \sum_{n \in \mathrm{top}_k(F_b t_c)} \langle F_{bn}, t_c \rangle, \quad
    s^{glob}_{bc} = \langle g_b, t_c \rangle, \quad
    y_b = \tfrac12 \left( \frac{s^{loc}_b}{\lVert s^{loc}_b \rVert} + \frac{s^{glob}_b}{\lVert s^{glob}_b \rVert} \right)

and each score vector normalised across the K labels scored. Two choices of F, g (`similarity`):
"raw", MKT's own formula (`models/clip_vit.py` of sunanhe/MKT: `pred = x[:, 1:] @ proj`,
`dist = x[:, 0] @ proj`, top-k mean of `pred @ T^T` over patches, `dist @ T^T`), and "cosine",
every embedding L2-normalised first (the patches then weigh the same whatever their norm).
The same k patches are pooled for every label of every image: the fixed number that ISR replaces.
"""

from __future__ import annotations

import torch

from .base import PatchPoolingHead, check_similarity, register_head


def topk_patch_weights(sim: torch.Tensor, k: int) -> torch.Tensor:
    """Uniform weights 1/k on each label's k most similar patches, patches on the last axis.

    Exactly tied similarities are broken as `torch.topk` breaks them (as MKT's code does).

    Shapes:
        sim [B, K, N] -> weights [B, K, N], each [b, c, :] summing to 1.
    """
    k = min(k, sim.shape[-1])
    idx = sim.topk(k, dim=-1).indices  # [B, K, k]
    return torch.zeros_like(sim).scatter_(-1, idx, 1.0 / k)  # [B, K, N]


class MktHead(PatchPoolingHead):
    """Top-k patch matching + global matching (MKT).

    Shapes:
        g [B, D], patches [B, N, D], text [K, D] -> HeadOutput(logits [B, K], f_img [B, K, D],
        counts [B, K] (all k), weights [B, N, K]).

    Args:
        topk: patches averaged per label (k = 16 in MKT).
        label_chunk: labels processed at once; bounds the [B, N, K] intermediates.
        similarity: "raw" (MKT's formula) or "cosine" (see `heads.base.prepare_inputs`).
    """

    def __init__(self, *, topk: int = 16, label_chunk: int = 2048, similarity: str = "cosine") -> None:
        super().__init__()
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        self.topk = topk
        self.label_chunk = label_chunk
        self.similarity = check_similarity(similarity)

    def pool_patches(self, sim: torch.Tensor, *, need_weights: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        k = min(self.topk, sim.shape[-1])
        counts = torch.full(sim.shape[:2], k, dtype=torch.long, device=sim.device)  # [B, Kc]: all k
        top = sim.topk(k, dim=-1)  # [B, Kc, k]
        local = top.values.mean(-1)  # [B, Kc, k] -> [B, Kc]: the same numbers whether weights are asked or not
        if not need_weights:  # scoring only: no weight tensor needed
            return local, None, counts
        w = torch.zeros_like(sim).scatter_(-1, top.indices, 1.0 / k)  # [B, Kc, N], as `topk_patch_weights`
        return local, w, counts

    def extra_repr(self) -> str:
        return f"topk={self.topk}, similarity={self.similarity}"


@register_head("mkt")
def build_mkt(cfg, embed_dim: int) -> MktHead:  # noqa: ARG001 (the head is width-agnostic)
    return MktHead(topk=cfg.topk, label_chunk=cfg.label_chunk, similarity=cfg.similarity)
