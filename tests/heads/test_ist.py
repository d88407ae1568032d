"""IST: batching of the disjoint graph, transfer along edges only, open vocabulary, contracts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from c2srt.heads.ist import IstModule, neighbor_table, take_rows

D, K = 16, 6
# a chain 0 -> 1 -> 2 and a pair 4 -> 5; node 3 is isolated
EDGES = torch.tensor([[0, 1, 4], [1, 2, 5]])
WEIGHTS = torch.tensor([0.9, 0.5, 1.0])


def _module(mode: str = "image", seed: int = 0, trained: bool = True, **kw) -> IstModule:
    torch.manual_seed(seed)
    m = IstModule(D, hidden=16, heads=4, mode=mode, **kw)
    if trained:  # out_proj starts at zero (identity transfer); give it weights so the GAT shows
        torch.nn.init.normal_(m.out_proj.weight, std=0.5)
    return m.eval()


def _inputs(B: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, K, D, generator=g), F.normalize(torch.randn(K, D, generator=g), dim=-1)


def test_neighbor_table_lists_in_neighbors_with_mean_weighted_self_loops() -> None:
    t = neighbor_table(EDGES, WEIGHTS, K)
    rows = {c: sorted((int(i), round(float(w), 4)) for i, w, m in zip(t.index[c], t.weight[c], t.mask[c]) if m) for c in range(K)}
    # node 1 hears 0 (0.9) and itself (the mean of its incoming weights, 0.9); node 0 has no edge in: weight 0
    assert rows == {0: [(0, 0.0)], 1: [(0, 0.9), (1, 0.9)], 2: [(1, 0.5), (2, 0.5)], 3: [(3, 0.0)], 4: [(4, 0.0)], 5: [(4, 1.0), (5, 1.0)]}
    two = t.batched(2, K)  # copy 1's node c is node K + c
    assert two.index.shape == (2 * K, t.index.shape[1])
    assert (two.index[K:][two.mask[K:]] == t.index[t.mask] + K).all()


def test_image_mode_shapes_and_chunking() -> None:
    f_img, text = _inputs(5)
    a = _module(image_chunk=16)(f_img, text, EDGES, WEIGHTS)
    b = _module(image_chunk=2)(f_img, text, EDGES, WEIGHTS)
    assert a.shape == (5, K) and torch.isfinite(a).all()
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # every image is its own graph: scoring image 3 alone gives the same row
    torch.testing.assert_close(_module()(f_img[3:4], text, EDGES, WEIGHTS), a[3:4], rtol=1e-5, atol=1e-5)


def test_untrained_ist_scores_like_the_region_feature() -> None:
    f_img, text = _inputs()
    m = _module(trained=False)
    expected = m.logit_scale.exp() * torch.einsum("bkd,kd->bk", F.normalize(f_img, dim=-1), text)
    torch.testing.assert_close(m(f_img, text, EDGES, WEIGHTS), expected)


@pytest.mark.parametrize("mode", ["image", "label"])
def test_evidence_travels_along_edges_only(mode: str) -> None:
    """Changing category 0's input moves the scores of 0, 1 (1 hop) and 2 (2 hops), nothing else."""
    m = _module(mode)
    f_img, text = _inputs()
    base = m(f_img, text, EDGES, WEIGHTS)
    if mode == "image":
        f2 = f_img.clone()
        f2[:, 0] += 1.0
        moved = (m(f2, text, EDGES, WEIGHTS) - base).abs().amax(0)
    else:
        t2 = text.clone()
        t2[0] = F.normalize(t2[0] + 1.0, dim=-1)
        # score against the original label-0 text elsewhere: refine with t2, compare columns 1..5
        moved = (m.score(f_img, m.refine_labels(t2, EDGES, WEIGHTS)) - base).abs().amax(0)
    assert (moved[1:3] > 1e-4).all()
    assert (moved[3:] < 1e-6).all()


def test_unseen_nodes_can_be_added_at_test_time() -> None:
    """Weights are shared across nodes: a bigger graph with new (unseen) labels just works."""
    m = _module()
    f_img, text = _inputs()
    seen_edges = torch.tensor([[0, 1], [1, 2]])
    train_out = m(f_img[:, :3], text[:3], seen_edges, WEIGHTS[:2])
    test_out = m(f_img, text, EDGES, WEIGHTS)
    assert train_out.shape == (3, 3) and test_out.shape == (3, K)
    # with the seen subgraph unchanged and no edge into it from new nodes, seen scores do not move
    torch.testing.assert_close(test_out[:, :3], train_out, rtol=1e-5, atol=1e-5)


def test_permuting_labels_permutes_logits() -> None:
    m = _module()
    f_img, text = _inputs()
    perm = torch.tensor([5, 2, 0, 4, 1, 3])
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(K)
    out = m(f_img[:, perm], text[perm], inv[EDGES], WEIGHTS)
    torch.testing.assert_close(out, m(f_img, text, EDGES, WEIGHTS)[:, perm], rtol=1e-5, atol=1e-5)


def test_a_graph_without_edges_works() -> None:
    f_img, text = _inputs()
    out = _module()(f_img, text, torch.zeros(2, 0, dtype=torch.long), torch.zeros(0))
    assert out.shape == (3, K) and torch.isfinite(out).all()


def test_gradients_reach_every_parameter() -> None:
    m = _module().train()
    f_img, text = _inputs()
    f_img.requires_grad_(True)
    m(f_img, text, EDGES, WEIGHTS).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert f_img.grad is not None


def test_label_mode_refines_once_and_normalises() -> None:
    m = _module("label")
    _, text = _inputs()
    refined = m.refine_labels(text, EDGES, WEIGHTS)
    assert refined.shape == (K, D)
    torch.testing.assert_close(refined.norm(dim=-1), torch.ones(K))


def test_bad_graph_inputs_are_named() -> None:
    f_img, text = _inputs()
    m = _module()
    with pytest.raises(ValueError, match="category graph"):
        m(f_img, text, None, None)
    with pytest.raises(ValueError, match="node 9"):
        m(f_img, text, torch.tensor([[9], [0]]), torch.ones(1))
    with pytest.raises(ValueError, match=r"f_img"):
        m(f_img[:, :4], text, EDGES, WEIGHTS)


def test_repr_shows_the_dimensions() -> None:
    assert "hidden=16" in repr(_module()) and "mode=image" in repr(_module())


def test_image_mode_matches_the_definition_image_by_image() -> None:
    """y_bc = scale * cos(f_bc + W_o GAT(FFN([f_b; t]))_c, t_c), one graph per image."""
    m = _module()
    f_img, text = _inputs()
    got = m(f_img, text, EDGES, WEIGHTS)
    for b in range(f_img.shape[0]):
        h = m.in_proj(torch.cat([f_img[b], text], dim=-1))  # [K, 2D] -> [K, hidden]
        for conv, norm in zip(m.convs, m.norms):  # torch_geometric's layers, not ours
            h = norm(h + _pyg_layer(conv, h, EDGES, WEIGHTS))
        out = f_img[b] + m.out_proj(h)
        ref = m.logit_scale.exp() * F.cosine_similarity(out, text, dim=-1)
        torch.testing.assert_close(got[b], ref, rtol=1e-5, atol=1e-5)


def _pyg_layer(conv, h, edge_index, edge_weight):
    """torch_geometric's own GATv2Conv forward (it adds the self-loops itself)."""
    return conv(h, edge_index, edge_attr=edge_weight.unsqueeze(-1))


@pytest.mark.parametrize("seed", range(3))
def test_gather_layer_equals_torch_geometric_gatv2conv(seed: int) -> None:
    """Random graphs with duplicate edges, given self-loops, isolated nodes and a high in-degree hub."""
    from c2srt.heads.ist import gatv2_gather

    g = torch.Generator().manual_seed(seed)
    n, e = 40, 150
    src, dst = torch.randint(0, n, (e,), generator=g), torch.randint(0, n - 5, (e,), generator=g)  # 35..39: no edge in
    dst[:30] = 7  # a hub hearing 30 neighbours
    ei, ew = torch.stack([src, dst]), torch.rand(e, generator=g)
    m = _module(seed=seed)
    h = torch.randn(n, 16, generator=g)
    for conv in m.convs:
        ref = _pyg_layer(conv, h, ei, ew)
        table = neighbor_table(ei, ew, n)
        torch.testing.assert_close(gatv2_gather(conv, h, table), ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(gatv2_gather(conv, h, table, block=1), ref, rtol=1e-5, atol=1e-5)  # one node per block


def test_gather_layer_gradients_equal_torch_geometric() -> None:
    from c2srt.heads.ist import gatv2_gather

    m = _module().train()
    conv = m.convs[0]
    h = torch.randn(K, 16, requires_grad=True)
    gatv2_gather(conv, h, neighbor_table(EDGES, WEIGHTS, K)).square().sum().backward()
    mine = [h.grad.clone()] + [p.grad.clone() for p in conv.parameters()]
    h.grad = None
    conv.zero_grad()
    _pyg_layer(conv, h, EDGES, WEIGHTS).square().sum().backward()
    ref = [h.grad] + [p.grad for p in conv.parameters()]
    for a, b in zip(mine, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ approximate image mode (top_m)
def _aligned_inputs(best: list[int], B: int = 2, seed: int = 0):
    """Inputs whose region scores rank the labels in `best` first, in every image."""
    f_img, text = _inputs(B, seed)
    for rank, c in enumerate(best):
        f_img[:, c] = text[c] * (10.0 - rank) + 0.1 * f_img[:, c]
    return f_img, text


def test_propagated_nodes_are_candidates_and_neighbours_both_ways() -> None:
    m = _module(top_m=1)
    region = torch.zeros(2, K)
    region[0, 1] = 5.0  # image 0: label 1 is the candidate; it hears 0 and sends to 2
    region[1, 5] = 5.0  # image 1: label 5 hears 4 and sends nowhere
    sel = m.propagated_nodes(region, EDGES)
    assert sel.tolist() == [[True, True, True, False, False, False], [False, False, False, False, True, True]]


@pytest.mark.parametrize("top_m", [K, K + 3])
def test_top_m_covering_the_vocabulary_is_the_exact_mode(top_m: int) -> None:
    f_img, text = _inputs()
    torch.testing.assert_close(_module(top_m=top_m)(f_img, text, EDGES, WEIGHTS), _module(top_m=0)(f_img, text, EDGES, WEIGHTS))


def test_a_subgraph_reaching_every_label_equals_the_exact_mode() -> None:
    """The approximate path itself (top_m < K) is exact when the candidates' neighbours are everything."""
    hub = torch.tensor([[0] * (K - 1) + list(range(1, K)), list(range(1, K)) + [0] * (K - 1)])  # 0 <-> every label
    w = torch.linspace(0.2, 1.0, hub.shape[1])
    f_img, text = _aligned_inputs([0])
    exact = _module(top_m=0)(f_img, text, hub, w)
    torch.testing.assert_close(_module(top_m=1)(f_img, text, hub, w), exact, rtol=1e-5, atol=1e-5)


def _no_evidence_scores(m: IstModule, f_img, text, edges, weights):
    """e^s cos(f + W_o GAT(FFN([0; t])), t), with torch_geometric's own layers over the full graph."""
    h = m.in_proj(torch.cat([torch.zeros_like(text), text], dim=-1))  # [K, 2D] -> [K, hidden]
    for conv, norm in zip(m.convs, m.norms):
        h = norm(h + _pyg_layer(conv, h, edges, weights))
    return m.logit_scale.exp() * F.cosine_similarity(f_img + m.out_proj(h), text.unsqueeze(0), dim=-1)


def test_labels_outside_the_subgraph_keep_their_no_evidence_score() -> None:
    """Top label 5 (its only in-neighbour 4 hears nobody): 4 and 5 score as in the exact mode; the
    rest score e^s cos(f + W_o GAT(FFN([0; t])), t): the transfer without image evidence."""
    f_img, text = _aligned_inputs([5])
    m, exact = _module(top_m=1), _module(top_m=0)
    torch.nn.init.normal_(m.out_proj.bias, std=0.5)
    exact.load_state_dict(m.state_dict())
    got, ref = m(f_img, text, EDGES, WEIGHTS), exact(f_img, text, EDGES, WEIGHTS)
    torch.testing.assert_close(got[:, 4:], ref[:, 4:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[:, :4], _no_evidence_scores(m, f_img, text, EDGES, WEIGHTS)[:, :4], rtol=1e-5, atol=1e-5)
    assert (got[:, :4] - ref[:, :4]).abs().max() > 1e-3  # the exact mode does move them: an approximation


def test_candidates_are_ranked_by_the_no_evidence_score() -> None:
    from c2srt.heads.ist import neighbor_table as table_of

    f_img, text = _inputs(4, seed=5)
    m = _module(top_m=2)
    d = text.shape[1]
    text_part = F.linear(text, m.in_proj[0].weight[:, d:], m.in_proj[0].bias)
    transfer0 = m.no_evidence_transfer(text_part, table_of(EDGES, WEIGHTS, K))
    scores = m.fallback_scores(f_img, text, transfer0)
    torch.testing.assert_close(scores, _no_evidence_scores(m, f_img, text, EDGES, WEIGHTS), rtol=1e-5, atol=1e-5)
    sel = m.propagated_nodes(scores, EDGES)
    top2 = scores.topk(2, dim=1).indices
    assert sel.gather(1, top2).all() and (sel.sum(1) < K).any()
    assert torch.equal(m.propagated_mask(f_img, text, EDGES, WEIGHTS), sel)
    assert _module(top_m=0).propagated_mask(f_img, text, EDGES, WEIGHTS).all()


def test_untrained_approximate_mode_is_exact() -> None:
    """W_o = 0 (as built): no label receives any transfer, so the approximation changes nothing."""
    f_img, text = _inputs()
    torch.testing.assert_close(_module(top_m=1, trained=False)(f_img, text, EDGES, WEIGHTS), _module(trained=False)(f_img, text, EDGES, WEIGHTS))


def test_approximate_mode_is_per_image_and_chunk_invariant() -> None:
    f_img, text = _inputs(5, seed=3)
    a = _module(top_m=2, image_chunk=16)(f_img, text, EDGES, WEIGHTS)
    b = _module(top_m=2, image_chunk=2)(f_img, text, EDGES, WEIGHTS)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(_module(top_m=2)(f_img[3:4], text, EDGES, WEIGHTS), a[3:4], rtol=1e-5, atol=1e-5)


def test_approximate_mode_trains() -> None:
    m = _module(top_m=2).train()
    f_img, text = _inputs()
    f_img.requires_grad_(True)
    m(f_img, text, EDGES, WEIGHTS).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert torch.isfinite(f_img.grad).all() and f_img.grad.abs().sum() > 0


def test_negative_top_m_is_refused() -> None:
    with pytest.raises(ValueError, match="top_m"):
        IstModule(D, hidden=16, heads=4, top_m=-1)


def test_the_no_evidence_transfer_is_reused_only_while_nothing_changed(monkeypatch) -> None:
    m = _module(top_m=2)
    f_img, text = _inputs()
    calls = []
    original = m.no_evidence_transfer
    monkeypatch.setattr(m, "no_evidence_transfer", lambda *a: calls.append(1) or original(*a))
    with torch.no_grad():
        first = m(f_img, text, EDGES, WEIGHTS)
        torch.testing.assert_close(m(f_img, text.clone(), EDGES.clone(), WEIGHTS.clone()), first)  # equal inputs: reused
        assert len(calls) == 1
        m(f_img, text, EDGES, WEIGHTS * 0.5)  # another graph weighting
        m(f_img, F.normalize(text + 0.1, dim=-1), EDGES, WEIGHTS)  # another vocabulary
        assert len(calls) == 3
        m.out_proj.weight.mul_(2.0)  # new weights (as load_state_dict copies in place)
        again = m(f_img, text, EDGES, WEIGHTS)
        assert len(calls) == 4 and not torch.allclose(again, first)
    m(f_img, text, EDGES, WEIGHTS)  # with gradients: never cached
    assert len(calls) == 5


def test_take_rows_is_indexing_with_the_same_gradients() -> None:
    torch.manual_seed(0)
    x = torch.randn(7, 3, 2, requires_grad=True)
    index = torch.tensor([[0, 6, 6], [2, 0, 0]])  # repeated rows: their gradients add up
    g = torch.randn(2, 3, 3, 2)
    (take_rows(x, index) * g).sum().backward()
    got = x.grad.clone()
    x.grad = None
    (x[index] * g).sum().backward()
    assert torch.equal(take_rows(x, index), x[index])
    torch.testing.assert_close(got, x.grad)


_REPRODUCIBLE_BACKWARD = """
import hashlib, torch
from c2srt.heads.ist import IstModule
torch.set_num_threads(2)
torch.manual_seed(0)
K, D, B = 35, 128, 64
m = IstModule(D, hidden=128, heads=4, layers=2, mode="image", image_chunk=64)
with torch.no_grad():
    m.out_proj.weight.normal_(0, 0.05)  # a trained IST: zero-initialised, no gradient reaches the GAT
ei = torch.randint(0, K, (2, 60))
f = torch.randn(B, K, D, requires_grad=True)
out = m(f, torch.randn(K, D), ei, torch.rand(60))
(out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
h = hashlib.sha1(f.grad.numpy().tobytes())
for p in m.parameters():
    h.update(p.grad.numpy().tobytes())
print(h.hexdigest())
"""


def test_image_mode_gradients_are_the_same_in_every_process() -> None:
    """Trainings with IST must repeat bit for bit: with advanced indexing's backward, 4 of 5
    processes got other gradients for the same inputs on 2 threads (the rows repeated in the
    neighbour table were summed in a varying order)."""
    import subprocess
    import sys

    digests = {
        subprocess.run([sys.executable, "-c", _REPRODUCIBLE_BACKWARD], capture_output=True, text=True, check=True).stdout
        for _ in range(4)
    }
    assert len(digests) == 1, digests


# ------------------------------------------------------------------ transfer options (issue 20)
@pytest.mark.parametrize("seed", range(2))
def test_gather_layer_without_self_loops_equals_torch_geometric(seed: int) -> None:
    """`self_loops=False`: GATv2Conv(add_self_loops=False); a node without in-edges gets the bias alone."""
    from torch_geometric.nn import GATv2Conv

    from c2srt.heads.ist import gatv2_gather

    g = torch.Generator().manual_seed(seed)
    n, e = 30, 80
    src, dst = torch.randint(0, n, (e,), generator=g), torch.randint(0, n - 5, (e,), generator=g)  # 25..29: no edge in
    ei, ew = torch.stack([src, dst]), torch.rand(e, generator=g)
    torch.manual_seed(seed)
    conv = GATv2Conv(16, 4, heads=4, edge_dim=1, add_self_loops=False)
    torch.nn.init.normal_(conv.bias)
    h = torch.randn(n, 16, generator=g, requires_grad=True)
    table = neighbor_table(ei, ew, n, self_loops=False)
    assert not table.mask[25:].any() and table.mask[:25].sum() <= e
    from torch_geometric.utils import remove_self_loops

    ei_ns, ew_ns = remove_self_loops(ei, ew)
    ref = conv(h, ei_ns, edge_attr=ew_ns.unsqueeze(-1))
    got = gatv2_gather(conv, h, table)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[25:], conv.bias.expand(5, -1))
    got.square().sum().backward()
    assert torch.isfinite(h.grad).all()


def _readout(m: IstModule) -> IstModule:
    torch.nn.init.normal_(m.readout.weight, std=0.5)
    return m


def test_untrained_evidence_ist_scores_like_the_region_feature() -> None:
    f_img, text = _inputs()
    m = _module(trained=False, evidence=True)
    expected = m.logit_scale.exp() * torch.einsum("bkd,kd->bk", F.normalize(f_img, dim=-1), text)
    torch.testing.assert_close(m(f_img, text, EDGES, WEIGHTS), expected)


def test_evidence_readout_passes_a_neighbours_strength_along_edges_only() -> None:
    """With the readout trained, how strongly label 0 is present moves 0, 1 and 2 (its graph reach), not 3-5."""
    m = _readout(_module(evidence=True))
    f_img, text = _inputs()
    stronger = f_img.clone()
    stronger[:, 0] = text[0] * 3.0  # label 0 clearly present: its cosine goes to 1
    moved = (m(stronger, text, EDGES, WEIGHTS) - m(f_img, text, EDGES, WEIGHTS)).abs().amax(0)
    assert (moved[:3] > 1e-4).all() and (moved[3:] < 1e-6).all()
    h_shift = m.shift(torch.randn(4, 16))
    assert h_shift.shape == (4,)


@pytest.mark.parametrize("top_m", [K, 1])
def test_evidence_approximate_mode_matches_its_rules(top_m: int) -> None:
    """M >= K is exact; M < K keeps each unpropagated label's no-evidence score, shift included."""
    f_img, text = _aligned_inputs([5])
    m = _readout(_module(top_m=top_m, evidence=True))
    exact = _module(top_m=0, evidence=True)
    exact.load_state_dict(m.state_dict())
    got, ref = m(f_img, text, EDGES, WEIGHTS), exact(f_img, text, EDGES, WEIGHTS)
    if top_m == K:
        torch.testing.assert_close(got, ref)
    else:
        torch.testing.assert_close(got[:, 4:], ref[:, 4:], rtol=1e-5, atol=1e-5)
        d = text.shape[1]
        h = m.in_proj(torch.cat([torch.zeros_like(text), text, torch.zeros(K, 1)], dim=-1))  # FFN([0; t; 0])
        for conv, norm in zip(m.convs, m.norms):
            h = norm(h + _pyg_layer(conv, h, EDGES, WEIGHTS))
        no_evidence = m.logit_scale.exp() * F.cosine_similarity(f_img + m.out_proj(h), text.unsqueeze(0), dim=-1) + m.readout(h).squeeze(-1)
        torch.testing.assert_close(got[:, :4], no_evidence[:, :4], rtol=1e-5, atol=1e-5)
        assert d == D


def test_evidence_dropout_hides_own_evidence_in_training_only() -> None:
    """In training, a drawn share of nodes score as if their region feature were zero (no evidence)."""
    f_img, text = _inputs(8)
    m = _readout(_module(evidence=True, evidence_dropout=0.5))
    plain = _module(evidence=True)
    plain.load_state_dict(m.state_dict())
    torch.testing.assert_close(m.eval()(f_img, text, EDGES, WEIGHTS), plain.eval()(f_img, text, EDGES, WEIGHTS))
    torch.manual_seed(1)
    got = m.train()(f_img, text, EDGES, WEIGHTS)  # one chunk: one draw of [8, K]
    torch.manual_seed(1)
    hidden = torch.rand(8, K) < 0.5
    assert 0 < hidden.float().mean() < 1
    expected = plain.eval()(f_img.masked_fill(hidden.unsqueeze(-1), 0.0), text, EDGES, WEIGHTS)
    torch.testing.assert_close(got, expected)


def test_evidence_options_are_image_mode_only() -> None:
    with pytest.raises(ValueError, match="image"):
        IstModule(D, hidden=16, heads=4, mode="label", evidence=True)
    with pytest.raises(ValueError, match="evidence_dropout"):
        IstModule(D, hidden=16, heads=4, evidence_dropout=1.0)
