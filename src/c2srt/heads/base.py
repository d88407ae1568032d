"""What every region head returns, the head registry, and the score fusion heads share.

A head turns the backbone's global embedding and patch embeddings plus the label embeddings of
the current vocabulary into logits. Heads hold no parameter tied to a label index, so the
vocabulary at inference may differ from the one seen in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F

from ..constants import DEFAULT_EPS
from ..registry import Registry

if TYPE_CHECKING:
    from torch import nn

    from ..config import HeadCfg

HEADS: Registry[Callable[..., "nn.Module"]] = Registry("head")


@dataclass
class HeadOutput:
    """The result of a region head.

    Shapes:
        logits [B, K]; f_img [B, K, D] (per-category image feature, when asked);
        counts [B, K] (patches pooled per label); weights [B, N, K] (when asked).
    """

    logits: torch.Tensor
    f_img: torch.Tensor | None = None
    counts: torch.Tensor | None = None
    weights: torch.Tensor | None = None


def register_head(name: str) -> Callable:
    """Decorator: register a head builder `fn(cfg: HeadCfg, embed_dim: int) -> nn.Module`."""
    return HEADS.register(name)


def list_heads(pattern: str = "*") -> list[str]:
    return HEADS.list(pattern)


def build_head(cfg: "HeadCfg", embed_dim: int) -> "nn.Module":
    """Build the head named by `cfg.name` (raises ValueError listing the valid names)."""
    from . import isr, mkt  # noqa: F401  (registration happens at import)

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


def normalize_inputs(
    g: torch.Tensor, patches: torch.Tensor, text: torch.Tensor, *, eps: float = DEFAULT_EPS
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Heads compare directions, not magnitudes: L2-normalise every embedding (in fp32)."""
    check_head_inputs(g, patches, text)
    g = F.normalize(g.float(), dim=-1, eps=eps)  # [B, D]
    patches = F.normalize(patches.float(), dim=-1, eps=eps)  # [B, N, D]
    text = F.normalize(text.float(), dim=-1, eps=eps).to(g.device)  # [K, D]
    return g, patches, text


def region_feature(weights: torch.Tensor, patches: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """f_img^c = (f_L^c + g) / 2 with f_L^c the patch features pooled by `weights` (the same for every head).

    Shapes:
        weights [B, K, N], patches [B, N, D], g [B, D] -> [B, K, D]
    """
    f_loc = torch.bmm(weights, patches)  # [B, K, N] x [B, N, D] -> [B, K, D]
    return 0.5 * (f_loc + g.unsqueeze(1).expand_as(f_loc))


def label_chunks(k: int, chunk: int) -> list[slice]:
    """Slices of the label axis, so [B, N, K] intermediates stay bounded at 7,586 labels."""
    chunk = max(1, int(chunk))
    return [slice(i, min(k, i + chunk)) for i in range(0, k, chunk)]
