"""What every region head returns, the head registry, and the score fusion heads share.

A head turns the backbone's global embedding and patch embeddings plus the label embeddings of
the current vocabulary into logits. Heads hold no parameter tied to a label index, so the
vocabulary at inference may differ from the one seen in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..constants import DEFAULT_EPS, INIT_LOGIT_SCALE
from ..registry import HEADS

if TYPE_CHECKING:
    from ..config import HeadCfg

SIMILARITIES = ("cosine", "raw")  # how heads compare image and label embeddings (see `prepare_inputs`)


@dataclass
class HeadOutput:
    """The result of a region head.

    `local` and `glob` are the two score streams before the fusion across labels, so a caller
    can fuse them over any subset of the labels (`fuse_block`): each ZSL / GZSL block is scored
    as a pass over the block's labels alone would score it.

    `cosine` is the decision score of each (image, label): cos(f_img^c, t_c), normalised across
    nothing, so a label's value does not depend on the rest of the vocabulary (`need_cosine`).

    Shapes:
        logits [B, K] (= fuse_scores(local, glob) over all K labels); local, glob [B, K];
        f_img [B, K, D] (per-category image feature, when asked); counts [B, K] (patches pooled
        per label); weights [B, N, K] (when asked); cosine [B, K] (when asked).
    """

    logits: torch.Tensor
    local: torch.Tensor | None = None
    glob: torch.Tensor | None = None
    f_img: torch.Tensor | None = None
    counts: torch.Tensor | None = None
    weights: torch.Tensor | None = None
    cosine: torch.Tensor | None = None


def register_head(name: str) -> Callable:
    """Decorator: register a head builder `fn(cfg: HeadCfg, embed_dim: int) -> nn.Module`."""
    return HEADS.register(name)


def list_heads(pattern: str = "*") -> list[str]:
    """Names of the registered heads (wildcards allowed)."""
    return HEADS.list(pattern)


def build_head(cfg: "HeadCfg", embed_dim: int) -> nn.Module:
    """Build the head named by `cfg.name` (raises ValueError listing the valid names).

    The heads register when `c2srt.heads` is imported (its `__init__` imports every head module).
    """
    return HEADS.get(cfg.name)(cfg, embed_dim)


def check_head_inputs(g: torch.Tensor, patches: torch.Tensor, text: torch.Tensor) -> None:
    """Shapes at the head boundary: g [B,D], patches [B,N,D], text [K,D] with one D and one B."""
    if g.ndim != 2 or patches.ndim != 3 or text.ndim != 2:
        raise ValueError(
            f"head inputs must be g [B,D], patches [B,N,D], text [K,D]; got {tuple(g.shape)}, "
            f"{tuple(patches.shape)}, {tuple(text.shape)}"
        )
    if not (g.shape[1] == patches.shape[2] == text.shape[1]) or g.shape[0] != patches.shape[0]:
        raise ValueError(
            f"head inputs disagree: g {tuple(g.shape)}, patches {tuple(patches.shape)}, text {tuple(text.shape)}"
        )


def fuse_scores(local: torch.Tensor, glob: torch.Tensor, *, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """MKT's fusion: each score vector L2-normalised across the K labels scored, then averaged.

    Shapes:
        local, glob: [B, K] -> [B, K]
    """
    return 0.5 * (F.normalize(local, dim=-1, eps=eps) + F.normalize(glob, dim=-1, eps=eps))


def fuse_block(out: HeadOutput, columns: torch.Tensor | slice) -> torch.Tensor:
    """The head's logits for a subset of its labels, fused across that subset only.

    Equal to the logits of the same head run on those labels alone: each stream is computed per
    label, and only the fusion's L2 norm spans labels.

    Shapes:
        out.local, out.glob [B, K]; columns: K' indices -> [B, K']
    """
    if out.local is None or out.glob is None:
        raise ValueError("this head output carries no unfused scores (local, glob)")
    return fuse_scores(out.local[:, columns], out.glob[:, columns])


def scaled_cosine(f_img: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor, *, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """e^s cos(f_img^c, t_c) for every (image, label): a score per label, normalised across nothing.

    Shapes:
        f_img [B, K, D], text [K, D], logit_scale [] (log scale) -> [B, K]
    """
    if f_img.ndim != 3 or f_img.shape[1:] != text.shape:
        raise ValueError(f"f_img must be [B, K, D] with [K, D] = {tuple(text.shape)}, got {tuple(f_img.shape)}")
    t = F.normalize(text, dim=-1, eps=eps).to(f_img.dtype)
    # <f, t> as one batched product over labels ([K, B, D] x [K, D, 1]) and |f| apart: no
    # normalised copy of f and no "bkd,kd->bk" einsum (which copies f to that layout first)
    dot = torch.matmul(f_img.transpose(0, 1), t.unsqueeze(-1)).squeeze(-1).transpose(0, 1)  # [B, K]
    norm = torch.linalg.vector_norm(f_img, dim=-1).clamp_min(eps)  # [B, K]
    return logit_scale.exp() * dot / norm


class CosineScore(nn.Module):
    r"""IST's scoring rule without IST: :math:`y_{bc} = e^{s} \cos(f^{img}_{bc}, t_c)`, s learnt.

    `model.head.scoring: cosine`. MKT's fusion normalises each image's scores across the labels
    scored, so with a margin-1 ranking loss every pair violates the margin and a label's score
    depends on the rest of the vocabulary; this rule scores each (image, label) on its own. It is
    exactly IST image mode with its transfer fixed at zero, the control that separates IST's
    scoring rule from its graph (docs/MINIWORLD.md, change 5).

    Shapes:
        forward(f_img [B, K, D], text [K, D]) -> [B, K]
    """

    def __init__(self, init_scale: float = INIT_LOGIT_SCALE) -> None:
        super().__init__()
        self.init_scale = init_scale
        self.logit_scale = nn.Parameter(torch.empty(()))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.logit_scale, math.log(self.init_scale))

    def forward(self, f_img: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return scaled_cosine(f_img, text, self.logit_scale)

    def extra_repr(self) -> str:
        return f"scale={float(self.logit_scale.exp()):.3g}"


def check_similarity(similarity: str) -> str:
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {', '.join(SIMILARITIES)}, got {similarity!r}")
    return similarity


def prepare_inputs(
    g: torch.Tensor, patches: torch.Tensor, text: torch.Tensor, *, similarity: str = "cosine", eps: float = DEFAULT_EPS
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The embeddings a head compares, in fp32.

    "cosine": every embedding L2-normalised, so heads compare directions (each patch weighs the
    same whatever its norm). "raw": as given, as MKT's code scores them (`x[:, 1:] @ proj` and
    `x[:, 0] @ proj` against the label embeddings): a patch with a large norm weighs more, and it
    can win the top-k for every label.
    """
    check_head_inputs(g, patches, text)
    g, patches, text = g.float(), patches.float(), text.float().to(g.device)
    if check_similarity(similarity) == "raw":
        return g, patches, text
    g = F.normalize(g, dim=-1, eps=eps)  # [B, D]
    patches = F.normalize(patches, dim=-1, eps=eps)  # [B, N, D]
    text = F.normalize(text, dim=-1, eps=eps)  # [K, D]
    return g, patches, text


def region_feature(weights: torch.Tensor, patches: torch.Tensor, g: torch.Tensor, *, out: torch.Tensor | None = None) -> torch.Tensor:
    """f_img^c = (f_L^c + g) / 2 with f_L^c the patch features pooled by `weights` (the same for every head).

    `out` (no autograd): write into this [B, K, D] view instead, in place, with the same operations
    in the same order (bit-identical). At 7,586 labels f_img is 0.5 GB a batch of 32, so skipping
    the temporaries and the concatenation of label chunks halves its cost in inference.

    Shapes:
        weights [B, K, N], patches [B, N, D], g [B, D] -> [B, K, D]
    """
    if out is not None:
        torch.bmm(weights, patches, out=out)  # [B, K, N] x [B, N, D] -> [B, K, D]
        return out.add_(g.unsqueeze(1)).mul_(0.5)
    f_loc = torch.bmm(weights, patches)  # [B, K, N] x [B, N, D] -> [B, K, D]
    return 0.5 * (f_loc + g.unsqueeze(1).expand_as(f_loc))


def region_cosine(
    weights: torch.Tensor,
    local: torch.Tensor,
    glob: torch.Tensor,
    gram: torch.Tensor,
    patch_g: torch.Tensor,
    g_sq: torch.Tensor,
    text: torch.Tensor,
    *,
    eps: float = DEFAULT_EPS,
) -> torch.Tensor:
    r"""cos(f_img^c, t_c) with f_img^c = (f_L^c + g)/2, from what a head already has, without f_img.

    .. math::
        \cos(f^{img}_{bc}, t_c) = \frac{\langle f^L_{bc}, t_c\rangle + \langle g_b, t_c\rangle}
        {\lVert t_c \rVert \sqrt{w_{bc}^\top G_b w_{bc} + 2\, w_{bc}^\top F_b g_b + \lVert g_b \rVert^2}}

    with :math:`G_b = F_b F_b^\top` the patches' Gram matrix and :math:`w_{bc}` the label's patch
    weights: the numerator is the head's two streams (`local` + `glob`), the norm a quadratic form
    over N patches, so the cost is B K N^2 instead of B K N D and no [B, K, D] tensor is made
    (at 7,586 labels f_img is 0.5 GB a batch of 32; ViT-B/16 has N = 196 < D = 512).

    Shapes:
        weights [B, Kc, N], local [B, Kc], glob [B, Kc], gram [B, N, N], patch_g [B, N] (F g),
        g_sq [B] (|g|^2), text [Kc, D] -> [B, Kc]
    """
    wg = torch.bmm(weights, gram)  # [B, Kc, N] x [B, N, N] -> [B, Kc, N]
    f_sq = (wg * weights).sum(-1)  # |f_L|^2: [B, Kc]
    f_g = torch.einsum("bkn,bn->bk", weights, patch_g)  # <f_L, g>: [B, Kc, N] x [B, N] -> [B, Kc]
    sq = f_sq + 2 * f_g + g_sq.unsqueeze(1)  # |f_L + g|^2: [B, Kc] + [B, 1] -> [B, Kc]
    t_norm = torch.linalg.vector_norm(text, dim=-1).clamp_min(eps)  # [Kc]
    return (local + glob) / (sq.clamp_min(0).sqrt().clamp_min(eps) * t_norm.unsqueeze(0))  # [B, Kc] / [1, Kc]


def label_chunks(k: int, chunk: int) -> list[slice]:
    """Slices of the label axis, so [B, N, K] intermediates stay bounded at 7,586 labels."""
    chunk = max(1, int(chunk))
    return [slice(i, min(k, i + chunk)) for i in range(0, k, chunk)]


class PatchPoolingHead(nn.Module):
    """A head that pools each label's patches by weights and fuses that local score with the global one.

    MKT and ISR differ only in `pool_patches` (which patches, with which weights); the rest of the
    forward pass (input preparation, label chunks, region features, fusion) is this one.

    Shapes:
        g [B, D], patches [B, N, D], text [K, D] -> HeadOutput(logits, local, glob [B, K],
        f_img [B, K, D] (need_features), counts [B, K], weights [B, N, K] (return_weights),
        cosine [B, K] (need_cosine)).
    """

    similarity: str  # "cosine" or "raw" (see `prepare_inputs`)
    label_chunk: int  # labels processed at once; bounds the [B, N, K] intermediates

    def reset_parameters(self) -> None:  # no parameters: nothing is tied to a label index
        pass

    def pool_patches(self, sim: torch.Tensor, *, need_weights: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Local scores, patch weights (may be None when not `need_weights`) and patch counts.

        Shapes:
            sim [B, Kc, N] -> local [B, Kc], weights [B, Kc, N], counts [B, Kc]
        """
        raise NotImplementedError

    def forward(
        self,
        g: torch.Tensor,
        patches: torch.Tensor,
        text: torch.Tensor,
        *,
        return_weights: bool = False,
        need_features: bool = False,
        need_cosine: bool = False,
    ) -> HeadOutput:
        """Score every label of `text`.

        Args:
            g, patches, text: the global embedding, patch embeddings and label embeddings.
            return_weights: also return the per-label patch weights [B, N, K].
            need_features: also return f_img [B, K, D] (IST, cosine scoring).
            need_cosine: also return the decision score cos(f_img^c, t_c) [B, K] (`region_cosine`).
        """
        g, patches, text = prepare_inputs(g, patches, text, similarity=self.similarity)
        local, f_img, counts, weights, cosine = [], [], [], [], []
        in_place = need_features and not (torch.is_grad_enabled() and (g.requires_grad or patches.requires_grad or text.requires_grad))
        f_all = g.new_empty(g.shape[0], text.shape[0], g.shape[1]) if in_place else None  # [B, K, D]
        glob = torch.einsum("bd,kd->bk", g, text)  # [B, D] x [K, D] -> [B, K]
        if need_cosine:  # once per batch: the patches' Gram matrix, their products with g, |g|^2
            gram = torch.einsum("bnd,bmd->bnm", patches, patches)  # [B, N, D] x [B, N, D] -> [B, N, N]
            patch_g = torch.einsum("bnd,bd->bn", patches, g)  # [B, N, D] x [B, D] -> [B, N]
            g_sq = g.square().sum(-1)  # [B]
        for sl in label_chunks(text.shape[0], self.label_chunk):
            sim = torch.einsum("bnd,kd->bkn", patches, text[sl])  # [B, N, D] x [Kc, D] -> [B, Kc, N]
            loc, w, n = self.pool_patches(sim, need_weights=need_features or return_weights or need_cosine)
            local.append(loc)
            counts.append(n)
            if need_features:
                f_img.append(region_feature(w, patches, g, out=f_all[:, sl] if f_all is not None else None))  # [B, Kc, D]
            if need_cosine:
                cosine.append(region_cosine(w, loc, glob[:, sl], gram, patch_g, g_sq, text[sl]))  # [B, Kc]
            if return_weights:
                weights.append(w.transpose(1, 2))  # [B, Kc, N] -> [B, N, Kc]
        loc = torch.cat(local, 1)
        return HeadOutput(
            fuse_scores(loc, glob),
            local=loc,
            glob=glob,
            f_img=(f_all if f_all is not None else torch.cat(f_img, 1)) if need_features else None,
            counts=torch.cat(counts, 1),
            weights=torch.cat(weights, 2) if return_weights else None,
            cosine=torch.cat(cosine, 1) if need_cosine else None,
        )
