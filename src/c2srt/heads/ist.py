r"""IST: inter-category semantic transfer over a category graph with GATv2.

Paper: C2SRT (see `heads/isr.py`); the graph layer is GATv2, "How Attentive are Graph Attention
Networks?", Brody, Alon, Yahav, ICLR 2022 (arXiv:2105.14491), from torch_geometric.

Per image b and category c (mode "image"):

.. math::
    h^{0}_{bc} = \mathrm{FFN}([f^{img}_{bc} ; t_c]), \quad
    h^{l+1}_{bc} = \mathrm{LN}\big(h^{l}_{bc} + \mathrm{GATv2}(h^{l}_b, \mathcal{E})_c\big), \quad
    y_{bc} = e^{s} \cos\big(f^{img}_{bc} + W_o h^{L}_{bc},\; t_c\big)

The graph :math:`\mathcal{E}` links each category to its correlated ones (edge weight as edge
feature), so an unseen category receives evidence from correlated seen ones. :math:`W_o` starts at
zero: before training IST scores exactly like the region head's feature :math:`f^{img}`, and the
transfer is learnt on top of that (the CLIP prior is not thrown away at initialisation).
Mode "label" refines the label embeddings once, image independently:
:math:`t'_c = \mathrm{norm}(t_c + W_o h^L_c)` with :math:`h^0_c = \mathrm{FFN}(t_c)`, and scores
:math:`y_{bc} = e^{s}\cos(f^{img}_{bc}, t'_c)`.
The GAT weights are shared across nodes, so a graph with more (unseen) nodes at test time works.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..constants import DEFAULT_EPS, INIT_LOGIT_SCALE

MODES = ("image", "label")


def batch_edges(edge_index: torch.Tensor, edge_weight: torch.Tensor, copies: int, num_nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One disjoint graph of `copies` copies of a K-node graph (node b*K + c is category c of image b).

    Shapes:
        edge_index [2, E], edge_weight [E] -> [2, copies * E], [copies * E]
    """
    offsets = torch.arange(copies, device=edge_index.device) * num_nodes  # [copies]
    batched = edge_index.unsqueeze(1) + offsets.view(1, copies, 1)  # [2, 1, E] + [1, copies, 1] -> [2, copies, E]
    return batched.reshape(2, -1), edge_weight.repeat(copies)


class IstModule(nn.Module):
    """GATv2 over the category graph, scoring each (image, category) node.

    Shapes:
        forward(f_img [B, K, D], text [K, D], edge_index [2, E], edge_weight [E]) -> logits [B, K]
        refine_labels(text [K, D], edge_index, edge_weight) -> [K, D] (L2-normalised)
        score(f_img [B, K, D], text [K, D]) -> [B, K]

    Args:
        embed_dim: D, the joint embedding width.
        hidden: node width inside the GAT (divisible by `heads`).
        layers: GATv2 layers; heads: attention heads per layer (concatenated).
        dropout: attention dropout.
        mode: "image" (per-image node features) or "label" (label embeddings refined once).
        image_chunk: images propagated at once in "image" mode (bounds memory).
        act_layer, norm_layer: layer types of the input FFN and the post-residual norm.
    """

    def __init__(
        self,
        embed_dim: int,
        *,
        hidden: int = 256,
        layers: int = 2,
        heads: int = 4,
        dropout: float = 0.0,
        mode: str = "image",
        image_chunk: int = 16,
        act_layer: type[nn.Module] = nn.GELU,
        norm_layer: type[nn.Module] = nn.LayerNorm,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"IST mode must be one of {MODES}, got {mode!r}")
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        self.embed_dim, self.hidden, self.heads, self.mode = embed_dim, hidden, heads, mode
        self.image_chunk = max(1, image_chunk)
        in_dim = 2 * embed_dim if mode == "image" else embed_dim
        self.in_proj = nn.Sequential(nn.Linear(in_dim, hidden), act_layer(), nn.Linear(hidden, hidden))
        with warnings.catch_warnings():
            # torch_geometric warns at import and jit-scripts helpers with a deprecated API: noise to users
            warnings.simplefilter("ignore", FutureWarning)
            from torch_geometric.nn import GATv2Conv

            self.convs = nn.ModuleList(
                GATv2Conv(hidden, hidden // heads, heads=heads, edge_dim=1, dropout=dropout, concat=True)
                for _ in range(layers)
            )
        self.norms = nn.ModuleList(norm_layer(hidden) for _ in range(layers))
        self.out_proj = nn.Linear(hidden, embed_dim)
        self.logit_scale = nn.Parameter(torch.empty(()))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.in_proj:
            if isinstance(m, nn.Linear):
                m.reset_parameters()
        for conv, norm in zip(self.convs, self.norms):
            conv.reset_parameters()
            norm.reset_parameters()
        nn.init.zeros_(self.out_proj.weight)  # start from the head's own feature (identity transfer)
        nn.init.zeros_(self.out_proj.bias)
        nn.init.constant_(self.logit_scale, math.log(INIT_LOGIT_SCALE))

    def _check(self, text: torch.Tensor, edge_index: torch.Tensor | None, edge_weight: torch.Tensor | None) -> None:
        if edge_index is None or edge_weight is None:
            raise ValueError("IST needs the category graph of the vocabulary (edge_index and edge_weight)")
        if text.ndim != 2 or text.shape[1] != self.embed_dim:
            raise ValueError(f"text must be [K, {self.embed_dim}], got {tuple(text.shape)}")
        if edge_index.ndim != 2 or edge_index.shape[0] != 2 or edge_weight.shape != (edge_index.shape[1],):
            raise ValueError(
                f"edge_index must be [2, E] and edge_weight [E]; got {tuple(edge_index.shape)}, {tuple(edge_weight.shape)}"
            )
        if edge_index.numel() and int(edge_index.max()) >= text.shape[0]:
            raise ValueError(f"edge_index refers to node {int(edge_index.max())} but only {text.shape[0]} labels are scored")

    def propagate(self, h: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor) -> torch.Tensor:
        """The GATv2 stack with residual + norm. Shapes: h [V, hidden] -> [V, hidden]."""
        edge_attr = edge_weight.to(h.dtype).unsqueeze(-1)  # [E] -> [E, 1]
        for conv, norm in zip(self.convs, self.norms):
            h = norm(h + conv(h, edge_index, edge_attr=edge_attr))  # GATv2Conv adds the self-loops
        return h

    def refine_labels(self, text: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor) -> torch.Tensor:
        """Graph-refined label embeddings t' [K, D] (mode "label")."""
        self._check(text, edge_index, edge_weight)
        h = self.propagate(self.in_proj(text), edge_index, edge_weight)  # [K, hidden]
        return F.normalize(text + self.out_proj(h), dim=-1, eps=DEFAULT_EPS)  # [K, D]

    def score(self, f_img: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Scaled cosine of per-category image features and label embeddings: [B, K, D], [K, D] -> [B, K]."""
        if f_img.ndim != 3 or f_img.shape[1:] != text.shape:
            raise ValueError(f"f_img must be [B, K, D] with [K, D] = {tuple(text.shape)}, got {tuple(f_img.shape)}")
        f = F.normalize(f_img, dim=-1, eps=DEFAULT_EPS)
        t = F.normalize(text, dim=-1, eps=DEFAULT_EPS)
        return self.logit_scale.exp() * torch.einsum("bkd,kd->bk", f, t)  # [B, K, D] x [K, D] -> [B, K]

    def forward(
        self, f_img: torch.Tensor, text: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor
    ) -> torch.Tensor:
        if self.mode == "label":
            return self.score(f_img, self.refine_labels(text, edge_index, edge_weight))
        self._check(text, edge_index, edge_weight)
        if f_img.ndim != 3 or f_img.shape[1:] != text.shape:
            raise ValueError(f"f_img must be [B, K, D] with [K, D] = {tuple(text.shape)}, got {tuple(f_img.shape)}")
        n_labels, d = text.shape
        text = text.to(f_img.dtype)
        # the first layer of FFN([f; t]) is W_f f + W_t t + bias: the text half is the same for every
        # image, so it is computed once per call, not once per (image, category)
        first, rest = self.in_proj[0], self.in_proj[1:]
        text_part = F.linear(text, first.weight[:, d:], first.bias)  # [K, D] -> [K, hidden]
        logits = []
        for start in range(0, f_img.shape[0], self.image_chunk):
            f = f_img[start : start + self.image_chunk]  # [b, K, D]
            b = f.shape[0]
            x = F.linear(f, first.weight[:, :d]) + text_part.unsqueeze(0).expand(b, -1, -1)  # [b, K, hidden]
            h = rest(x).reshape(b * n_labels, self.hidden)  # [b, K, hidden] -> [b*K, hidden]
            ei, ew = batch_edges(edge_index, edge_weight, b, n_labels)
            h = self.propagate(h, ei, ew).reshape(b, n_labels, self.hidden)  # [b*K, hidden] -> [b, K, hidden]
            logits.append(self.score(f + self.out_proj(h), text))  # [b, K]
        return torch.cat(logits, 0)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, hidden={self.hidden}, heads={self.heads}, layers={len(self.convs)}, mode={self.mode}"
