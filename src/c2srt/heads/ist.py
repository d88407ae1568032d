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

Approximate image mode (`top_m` = M > 0, for vocabularies of thousands of labels): every label
first gets the score it would have if the graph saw no image evidence,
:math:`\tilde y_{bc} = e^{s}\cos(f^{img}_{bc} + \Delta^0_c, t_c)` with
:math:`\Delta^0 = W_o\,\mathrm{GAT}(\mathrm{FFN}([0; t]))` (one pass over the K labels per call,
image independent). Per image, the M best labels by :math:`\tilde y` and their graph neighbours
both ways (those that send the candidates evidence, and those that receive theirs: an unseen label
next to a strong seen one) are then propagated with their image evidence, over the subgraph they
induce, and score as above. Both scores are cosines under the same scale with a transfer term, so
labels rank on one scale across labels and across images: the region head's own logits
(normalised across the K labels) would not, and the plain :math:`e^{s}\cos(f, t)` would leave out
the transfer every label receives (on the mini-world that doubled the error and cost up to 1.7 mAP
points). What changes: a propagated node hears only the neighbours inside its image's subgraph
(attention renormalised over them; self-loop weights stay those of the full graph), and the other
labels' transfer ignores their image evidence. M >= K is the exact computation; so is any
subgraph that reaches every label. The measured difference to the exact mode is in
docs/REPRODUCE.md (`benchmarks/ist_approx.py`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..choices import IstMode
from ..constants import DEFAULT_EPS, INIT_LOGIT_SCALE
from .base import scaled_cosine

MODES = tuple(m.value for m in IstMode if m is not IstMode.OFF)  # what IstModule runs ("off" builds none)
#: elements of one [nodes, neighbours, hidden] block of the attention: on CPU 16 MB in fp32 (2^18
#: to 2^22 were alike on 2 idle cores, 2^24 was 1.7x slower; on loaded cores 2^22 was the fastest:
#: fewer, larger operations); on a GPU 256 MB, so that kernel launches stay few
ATTENTION_BLOCK = 1 << 22
ATTENTION_BLOCK_CUDA = 1 << 26


@dataclass
class NeighborTable:
    """Each node's in-neighbours (self-loop included) as a padded, left-aligned table.

    Gathering along a table instead of scattering along an edge list is what makes the GATv2 layer
    fast on CPU (torch_geometric's scatter path cost 2 to 3 s per layer for 16 images x 1,006 labels
    on 2 cores; this is about 10x less), and a per-image subgraph is the same table with the
    neighbours left out masked.

    Shapes:
        index [V, S] long (node ids; 0 where padded), weight [V, S], mask [V, S] bool.
    """

    index: torch.Tensor
    weight: torch.Tensor
    mask: torch.Tensor

    def rows(self, nodes: torch.Tensor) -> "NeighborTable":
        """The rows of `nodes` ([V'] long), neighbour ids unchanged."""
        return NeighborTable(self.index[nodes], self.weight[nodes], self.mask[nodes])

    def batched(self, copies: int, num_nodes: int) -> "NeighborTable":
        """`copies` disjoint copies of a `num_nodes`-node table (node b*K + c is category c of copy b)."""
        offsets = torch.arange(copies, device=self.index.device).view(copies, 1, 1) * num_nodes
        return NeighborTable(
            (self.index.unsqueeze(0) + offsets).reshape(-1, self.index.shape[1]),  # [copies*K, S]
            self.weight.repeat(copies, 1),
            self.mask.repeat(copies, 1),
        )


def neighbor_table(edge_index: torch.Tensor, edge_weight: torch.Tensor, num_nodes: int, *, self_loops: bool = True) -> NeighborTable:
    """In-neighbours per node with the self-loops GATv2Conv adds (any given self-loop replaced by one
    whose weight is the mean of the node's incoming weights, torch_geometric's `fill_value="mean"`).

    `self_loops=False` (`model.ist.self_loops`): neighbours only, so a node's own state reaches the
    next layer through the residual alone and attention is spent on its neighbours; a node without
    in-edges then has an empty row (all of `mask` false).

    Shapes:
        edge_index [2, E] (source -> target), edge_weight [E] -> NeighborTable of num_nodes rows.
    """
    with warnings.catch_warnings():  # torch_geometric's import-time FutureWarnings: noise to users
        warnings.simplefilter("ignore", FutureWarning)
        from torch_geometric.utils import add_self_loops, remove_self_loops

    ei, ew = remove_self_loops(edge_index, edge_weight.unsqueeze(-1))
    if self_loops:
        ei, ew = add_self_loops(ei, ew, fill_value="mean", num_nodes=num_nodes)  # [2, E'], [E', 1]
    src, dst = ei
    order = torch.argsort(dst, stable=True)
    src, dst, ew = src[order], dst[order], ew[order, 0]
    counts = torch.bincount(dst, minlength=num_nodes)  # [K] in-degree + 1
    starts = torch.cumsum(counts, 0) - counts  # [K]
    slot = torch.arange(dst.numel(), device=dst.device) - starts[dst]  # position within its target's row
    width = max(1, int(counts.max())) if num_nodes else 1
    index = torch.zeros(num_nodes, width, dtype=torch.long, device=dst.device)
    weight = torch.zeros(num_nodes, width, dtype=ew.dtype, device=dst.device)
    mask = torch.zeros(num_nodes, width, dtype=torch.bool, device=dst.device)
    index[dst, slot], weight[dst, slot], mask[dst, slot] = src, ew, True
    return NeighborTable(index, weight, mask)


def take_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`x[index]` for a long `index` of any shape, with a reproducible backward.

    Advanced indexing's backward (`index_put_` with accumulation) sums repeated rows in an order
    that varies between runs on a multi-threaded CPU (torch 2.14: the same inputs gave different
    gradients in 4 of 5 processes), so trainings drifted apart; `index_select`'s (`index_add_`)
    does not.

    Shapes:
        x [N, *F], index [*I] -> [*I, *F]
    """
    return x.index_select(0, index.reshape(-1)).view(*index.shape, *x.shape[1:])


def gatv2_gather(conv: nn.Module, x: torch.Tensor, table: NeighborTable, *, block: int | None = None) -> torch.Tensor:
    r"""torch_geometric's `GATv2Conv` forward (concatenated heads, one edge feature), on a neighbour table.

    The same computation, on the conv's own parameters:
    :math:`e_{ij} = a^\top \mathrm{LeakyReLU}(W_l x_j + W_r x_i + w_{ij} W_e)`, softmax over the
    in-neighbours j of i (self-loop included), :math:`x'_i = \sum_j \alpha_{ij} W_l x_j + b`.
    Nodes are taken in order of their number of neighbours, in blocks of at most `block` attention
    elements (default by device) as wide as their widest row: padding costs little when degrees
    vary (a per-image subgraph keeps few of most nodes' neighbours), and the memory of the
    [nodes, neighbours, hidden] intermediates stays bounded whatever the number of images or labels.

    Shapes:
        x [V, F_in], table of V rows -> [V, heads * out_channels]
    """
    heads, ch = conv.heads, conv.out_channels
    n = table.index.shape[0]
    x_l = conv.lin_l(x).view(n, heads, ch)  # messages and the source half of the attention
    x_r = conv.lin_r(x).view(n, heads, ch)  # the target half
    w_e = conv.lin_edge.weight.view(heads, ch)  # lin_edge: [1] -> [heads * ch], no bias
    att = conv.att.view(heads, ch)
    if block is None:
        block = ATTENTION_BLOCK_CUDA if x.is_cuda else ATTENTION_BLOCK
    # each row's neighbours first (a subgraph's mask leaves gaps), rows by increasing count
    first = torch.argsort((~table.mask).to(torch.uint8), dim=1, stable=True)  # [V, S]
    index, weight, mask = (t.gather(1, first) for t in (table.index, table.weight, table.mask))
    counts = mask.sum(1)  # [V]: >= 1 with self-loops; 0 for a node without in-edges when they are off
    empty = bool((counts == 0).any())
    order = torch.argsort(counts, stable=True)
    widths = counts[order].clamp_min(1).tolist()  # one transfer to the host, then plain Python
    out = []
    a = 0
    while a < n:
        end = min(n, a + max(1, block // (widths[a] * heads * ch)))
        end = min(end, a + max(1, block // (widths[end - 1] * heads * ch)))  # the widest row decides
        rows, width = order[a:end], widths[end - 1]
        idx, w, m = index[rows, :width], weight[rows, :width], mask[rows, :width]
        x_j = take_rows(x_l, idx)  # [n', S', heads, ch]
        z = x_j + take_rows(x_r, rows).unsqueeze(1)  # [n', S', heads, ch]; in place from here (autograd allows it)
        z.addcmul_(w.to(z.dtype)[..., None, None], w_e)  # + w_ij W_e
        F.leaky_relu_(z, conv.negative_slope)
        logit = (z * att).sum(-1)  # [n', S', heads]
        if empty:  # rows without any neighbour: no message (softmax over nothing would be NaN)
            none = ~m.any(1, keepdim=True)  # [n', 1]
            logit = logit.masked_fill((~m & ~none).unsqueeze(-1), float("-inf"))
            alpha = torch.softmax(logit, dim=1) * m.unsqueeze(-1)
        else:
            logit = logit.masked_fill(~m.unsqueeze(-1), float("-inf"))  # every row keeps its self-loop
            alpha = torch.softmax(logit, dim=1)
        alpha = F.dropout(alpha, p=conv.dropout, training=conv.training)
        out.append((alpha.unsqueeze(-1) * x_j).sum(1))  # [n', heads, ch]
        a = end
    h = torch.cat(out)[torch.argsort(order)].reshape(n, heads * ch)  # back to node order
    return h + conv.bias if conv.bias is not None else h


def expand_candidates(candidates: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
    """Candidates plus their graph neighbours, both ways (who sends them evidence and who receives theirs).

    Shapes:
        candidates [B, K] bool, edge_index [2, E] -> [B, K] bool
    """
    src, dst = edge_index
    hits = candidates.to(torch.float32)
    reached = hits.index_add(1, dst, hits[:, src])  # targets of a candidate's edges
    reached = reached.index_add(1, src, hits[:, dst])  # sources of edges into a candidate
    return reached > 0


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
        top_m: "image" mode: propagate, per image, only over its `top_m` best labels by region score
            and their graph neighbours (0: over every label, the exact computation; see the module
            docstring).
        evidence: "image" mode: give each node its own evidence, the cosine of its region feature
            and its label, as an input, and read a logit shift out of its final state, so that the
            GAT can pass on *how strongly* a neighbour is present, not only what it looks like.
        self_loops: let attention include the node itself (GATv2Conv's default); without, the
            node's own state reaches the next layer through the residual alone.
        evidence_dropout: "image" mode, training only: the share of (image, label) nodes whose own
            image evidence is hidden from IST (input and score), so those labels must be predicted
            from their neighbours, as an unseen label would be helped by them.
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
        top_m: int = 0,
        evidence: bool = False,
        self_loops: bool = True,
        evidence_dropout: float = 0.0,
        act_layer: type[nn.Module] = nn.GELU,
        norm_layer: type[nn.Module] = nn.LayerNorm,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"IST mode must be one of {MODES}, got {mode!r}")
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        if top_m < 0:
            raise ValueError(f"top_m must be >= 0 (0: exact), got {top_m}")
        if not 0.0 <= evidence_dropout < 1.0:
            raise ValueError(f"evidence_dropout must lie in [0, 1), got {evidence_dropout}")
        if mode == "label" and (evidence or evidence_dropout):
            raise ValueError("evidence and evidence_dropout need image evidence: IST mode 'image'")
        self.evidence, self.self_loops, self.evidence_dropout = evidence, self_loops, evidence_dropout
        self.embed_dim, self.hidden, self.heads, self.mode = embed_dim, hidden, heads, mode
        self.image_chunk = max(1, image_chunk)
        self.top_m = top_m
        in_dim = 2 * embed_dim + int(evidence) if mode == "image" else embed_dim
        self.in_proj = nn.Sequential(nn.Linear(in_dim, hidden), act_layer(), nn.Linear(hidden, hidden))
        with warnings.catch_warnings():
            # torch_geometric warns at import and jit-scripts helpers with a deprecated API: noise to users
            warnings.simplefilter("ignore", FutureWarning)
            from torch_geometric.nn import GATv2Conv

            # the parameters and their initialisation are torch_geometric's; `gatv2_gather` runs them
            self.convs = nn.ModuleList(
                GATv2Conv(hidden, hidden // heads, heads=heads, edge_dim=1, dropout=dropout, concat=True)
                for _ in range(layers)
            )
        self.norms = nn.ModuleList(norm_layer(hidden) for _ in range(layers))
        self.out_proj = nn.Linear(hidden, embed_dim)
        self.readout = nn.Linear(hidden, 1) if evidence else None  # a logit shift from the node's state
        self.logit_scale = nn.Parameter(torch.empty(()))
        self._transfer0: tuple[tuple, torch.Tensor] | None = None  # inference cache: (inputs, [K, D])
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
        if self.readout is not None:  # like W_o: IST starts from the region feature's own score
            nn.init.zeros_(self.readout.weight)
            nn.init.zeros_(self.readout.bias)
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

    def _propagate(self, h: torch.Tensor, table: NeighborTable) -> torch.Tensor:
        """The GATv2 stack with residual + norm over a neighbour table. Shapes: h [V, hidden] -> [V, hidden]."""
        for conv, norm in zip(self.convs, self.norms):
            h = norm(h + gatv2_gather(conv, h, table))
        return h

    def table(self, edge_index: torch.Tensor, edge_weight: torch.Tensor, num_nodes: int) -> NeighborTable:
        """The neighbour table this module propagates over (with or without self-loops)."""
        return neighbor_table(edge_index, edge_weight, num_nodes, self_loops=self.self_loops)

    def shift(self, h: torch.Tensor) -> torch.Tensor | float:
        """The readout's logit shift of node states ([..., hidden] -> [...]), 0 without `evidence`."""
        return self.readout(h).squeeze(-1) if self.readout is not None else 0

    def propagate(self, h: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor) -> torch.Tensor:
        """The GATv2 stack with residual + norm over a graph. Shapes: h [V, hidden] -> [V, hidden]."""
        return self._propagate(h, self.table(edge_index, edge_weight.to(h.dtype), h.shape[0]))

    def refine_labels(self, text: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor) -> torch.Tensor:
        """Graph-refined label embeddings t' [K, D] (mode "label")."""
        self._check(text, edge_index, edge_weight)
        h = self.propagate(self.in_proj(text), edge_index, edge_weight)  # [K, hidden]
        return F.normalize(text + self.out_proj(h), dim=-1, eps=DEFAULT_EPS)  # [K, D]

    def score(self, f_img: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Scaled cosine of per-category image features and label embeddings: [B, K, D], [K, D] -> [B, K]."""
        return scaled_cosine(f_img, text, self.logit_scale)

    def propagated_nodes(self, scores: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """Which (image, label) nodes the approximate image mode propagates over: each image's
        `top_m` labels by `scores` (`fallback_scores`) and their graph neighbours. Shapes: [B, K] -> [B, K] bool."""
        top = scores.topk(min(self.top_m, scores.shape[1]), dim=1).indices  # [B, M]
        candidates = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device).scatter_(1, top, True)
        return expand_candidates(candidates, edge_index)

    def no_evidence_transfer(self, text_part: torch.Tensor, table: NeighborTable) -> tuple[torch.Tensor, torch.Tensor | None]:
        """W_o h^L (and the readout's shift) for node inputs FFN([0; t]): what the graph transfers to
        each label when no image evidence is given (image independent, so once per call).

        Shapes:
            text_part [K, hidden] -> ([K, D], [K] or None without `evidence`)
        """
        h = self._propagate(self.in_proj[1:](text_part), table)
        return self.out_proj(h), (self.readout(h).squeeze(-1) if self.readout is not None else None)

    def _no_evidence_cached(
        self, text: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor, text_part: torch.Tensor, table: NeighborTable
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`no_evidence_transfer`, kept between calls at inference while the vocabulary, its graph
        and the weights stay the same (one pass over K labels saved per batch)."""
        if self.training or torch.is_grad_enabled():
            return self.no_evidence_transfer(text_part, table)
        weights = tuple((p.data_ptr(), p._version) for p in self.parameters())
        if self._transfer0 is not None:
            (t, ei, ew, w), value = self._transfer0
            same = w == weights and t.shape == text.shape and ei.shape == edge_index.shape and t.device == text.device
            if same and t.dtype == text.dtype and torch.equal(t, text) and torch.equal(ei, edge_index) and torch.equal(ew, edge_weight):
                return value
        value = self.no_evidence_transfer(text_part, table)
        self._transfer0 = ((text, edge_index, edge_weight, weights), value)
        return value

    def train(self, mode: bool = True) -> "IstModule":
        self._transfer0 = None
        return super().train(mode)

    def fallback_scores(self, f_img: torch.Tensor, text: torch.Tensor, transfer: tuple[torch.Tensor, torch.Tensor | None]) -> torch.Tensor:
        """e^s cos(f + u_c, t_c) (+ the readout's shift) without a [B, K, D] temporary
        (|f + u|^2 = |f|^2 + 2 f.u + |u|^2), for the no-evidence transfer (u, shift).

        Shapes:
            f_img [B, K, D], text [K, D], transfer ([K, D], [K] or None) -> [B, K]
        """
        transfer, shift = transfer
        t = F.normalize(text, dim=-1, eps=DEFAULT_EPS)
        # <f, t> and <f, u> for every (image, label): one batched product over labels, [K, B, D] x
        # [K, D, 2] (4x faster on CPU than two "bkd,kd->bk" einsums, which copy f to that layout)
        dots = torch.matmul(f_img.transpose(0, 1), torch.stack([t, transfer.to(t.dtype)], -1)).permute(1, 0, 2)  # [B, K, 2]
        ft, fu = dots[..., 0], dots[..., 1]
        dot = ft + (transfer * t).sum(-1)  # <f + u, t>
        sq = torch.linalg.vector_norm(f_img, dim=-1).square() + 2 * fu + transfer.square().sum(-1)  # |f + u|^2
        y = self.logit_scale.exp() * dot / sq.clamp_min(0).sqrt().clamp_min(DEFAULT_EPS)
        return y if shift is None else y + shift.unsqueeze(0)

    def _prepare(
        self, text: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor
    ) -> tuple[NeighborTable, torch.Tensor, tuple[torch.Tensor, torch.Tensor | None] | None]:
        """Once per call in image mode: the neighbour table, the text half of the input layer and,
        when approximate, the no-evidence transfer ([K, D], [K] or None)."""
        n_labels, d = text.shape
        table = self.table(edge_index, edge_weight.to(text.dtype), n_labels)
        # the first layer of FFN([f; t; s]) is W_f f + W_t t + w_s s + bias: the text part is the
        # same for every image, so it is computed once per call, not once per (image, category)
        text_part = F.linear(text, self.in_proj[0].weight[:, d : 2 * d], self.in_proj[0].bias)  # [K, D] -> [K, hidden]
        if not 0 < self.top_m < n_labels:
            return table, text_part, None
        return table, text_part, self._no_evidence_cached(text, edge_index, edge_weight, text_part, table)

    def _node_input(self, f: torch.Tensor, text: torch.Tensor, text_part: torch.Tensor) -> torch.Tensor:
        """The first layer of FFN([f; t; s]) for per-image nodes: W_f f + (W_t t + b) (+ w_s cos(f, t)).

        Shapes:
            f [..., K, D] (or [V, D] with text, text_part gathered per node), text [K, D], text_part [K, hidden] -> [..., K, hidden]
        """
        d = text.shape[-1]
        x = F.linear(f, self.in_proj[0].weight[:, :d]) + text_part
        if self.evidence:
            s = (f * F.normalize(text, dim=-1, eps=DEFAULT_EPS)).sum(-1) / torch.linalg.vector_norm(f, dim=-1).clamp_min(DEFAULT_EPS)  # cos(f, t)
            x = x + s.unsqueeze(-1) * self.in_proj[0].weight[:, 2 * d]
        return x

    def _hide_evidence(self, f: torch.Tensor) -> torch.Tensor:
        """Training with `evidence_dropout`: f with the nodes drawn hidden set to zero (no evidence)."""
        if not (self.training and self.evidence_dropout > 0):
            return f
        hidden = torch.rand(f.shape[:-1], device=f.device) < self.evidence_dropout  # [..., K]
        return f.masked_fill(hidden.unsqueeze(-1), 0.0)

    def propagated_mask(
        self, f_img: torch.Tensor, text: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor
    ) -> torch.Tensor:
        """[B, K] bool: the (image, label) nodes `forward` propagates with their image evidence (all when exact)."""
        text = text.to(f_img.dtype)
        _, _, transfer0 = self._prepare(text, edge_index, edge_weight)
        if transfer0 is None:
            return torch.ones(f_img.shape[:2], dtype=torch.bool, device=f_img.device)
        return self.propagated_nodes(self.fallback_scores(f_img, text, transfer0), edge_index)

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
        table, text_part, transfer0 = self._prepare(text, edge_index, edge_weight)
        rest = self.in_proj[1:]
        logits = []
        for start in range(0, f_img.shape[0], self.image_chunk):
            f = self._hide_evidence(f_img[start : start + self.image_chunk])  # [b, K, D]
            if transfer0 is not None:
                logits.append(self._forward_subgraph(f, text, text_part, table, edge_index, transfer0))
                continue
            b = f.shape[0]
            x = self._node_input(f, text, text_part.unsqueeze(0).expand(b, -1, -1))  # [b, K, hidden]
            h = rest(x).reshape(b * n_labels, self.hidden)  # [b, K, hidden] -> [b*K, hidden]
            h = self._propagate(h, table.batched(b, n_labels)).reshape(b, n_labels, self.hidden)
            logits.append(self.score(f + self.out_proj(h), text) + self.shift(h))  # [b, K]
        return torch.cat(logits, 0)

    def _forward_subgraph(
        self,
        f: torch.Tensor,
        text: torch.Tensor,
        text_part: torch.Tensor,
        table: NeighborTable,
        edge_index: torch.Tensor,
        transfer0: tuple[torch.Tensor, torch.Tensor | None],
    ) -> torch.Tensor:
        """Approximate image mode for one chunk: the GAT over each image's propagated nodes only.

        Shapes:
            f [b, K, D], text [K, D], text_part [K, hidden], transfer0 ([K, D], [K] or None) -> logits [b, K]
        """
        b, n_labels, d = f.shape
        # every label starts from the score it gets without image evidence in the graph; the best
        # by that score and their neighbours are then propagated with their image evidence
        fallback = self.fallback_scores(f, text, transfer0)  # [b, K]
        with torch.no_grad():
            keep = self.propagated_nodes(fallback, edge_index).reshape(-1)  # [b*K]
            nodes = keep.nonzero().squeeze(1)  # [V] flat ids b*K + c
            label = nodes % n_labels  # [V]
            local = torch.full((b * n_labels,), -1, dtype=torch.long, device=f.device)
            local[nodes] = torch.arange(nodes.numel(), device=f.device)  # flat id -> row in the subgraph
            sub = table.rows(label)
            neighbours = local[sub.index + (nodes - label).unsqueeze(1)]  # [V, S]: same image, subgraph rows
            sub = NeighborTable(neighbours.clamp_min(0), sub.weight, sub.mask & (neighbours >= 0))
        f_sel = take_rows(f.reshape(b * n_labels, d), nodes)  # [V, D]
        t_sel = take_rows(text, label)  # [V, D]
        h = self.in_proj[1:](self._node_input(f_sel, t_sel, take_rows(text_part, label)))  # [V, hidden]
        h = self._propagate(h, sub)
        out = F.normalize(f_sel + self.out_proj(h), dim=-1, eps=DEFAULT_EPS)
        y = self.logit_scale.exp() * (out * F.normalize(t_sel, dim=-1, eps=DEFAULT_EPS)).sum(-1) + self.shift(h)  # [V]
        return fallback.reshape(-1).index_put((nodes,), y).reshape(b, n_labels)

    def extra_repr(self) -> str:
        return (
            f"embed_dim={self.embed_dim}, hidden={self.hidden}, heads={self.heads}, layers={len(self.convs)}, "
            f"mode={self.mode}, top_m={self.top_m}, evidence={self.evidence}, self_loops={self.self_loops}, "
            f"evidence_dropout={self.evidence_dropout}"
        )


def __getattr__(name: str) -> object:
    """`NeighbourTable`, the British spelling docs/REPRODUCE.md used: deprecated, use `NeighborTable`."""
    if name == "NeighbourTable":
        warnings.warn("c2srt.heads.ist.NeighbourTable is deprecated: use NeighborTable", DeprecationWarning, stacklevel=2)
        return NeighborTable
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
