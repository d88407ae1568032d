"""MKT head against the formula computed by a plain loop, and its contracts."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from c2srt.heads.mkt import MktHead, topk_patch_weights


def _inputs(seed: int = 0, B: int = 2, N: int = 12, D: int = 16, K: int = 6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, D, generator=g), torch.randn(B, N, D, generator=g), torch.randn(K, D, generator=g)


def test_logits_match_a_plain_loop() -> None:
    g, patches, text = _inputs()
    k = 4
    out = MktHead(topk=k)(g, patches, text)
    gn, pn, tn = F.normalize(g, dim=-1), F.normalize(patches, dim=-1), F.normalize(text, dim=-1)
    local = torch.zeros(2, 6)
    glob = torch.zeros(2, 6)
    for b in range(2):
        for c in range(6):
            sims = sorted((float(pn[b, n] @ tn[c]) for n in range(12)), reverse=True)
            local[b, c] = sum(sims[:k]) / k
            glob[b, c] = float(gn[b] @ tn[c])
    ref = 0.5 * (local / local.norm(dim=1, keepdim=True) + glob / glob.norm(dim=1, keepdim=True))
    torch.testing.assert_close(out.logits, ref, rtol=1e-5, atol=1e-6)
    assert out.counts.tolist() == [[k] * 6] * 2


def test_feature_path_scores_the_same_and_pools_the_top_patches() -> None:
    g, patches, text = _inputs(2)
    head = MktHead(topk=3, label_chunk=4)
    plain = head(g, patches, text)
    full = head(g, patches, text, need_features=True, return_weights=True)
    torch.testing.assert_close(plain.logits, full.logits)
    pn, tn = F.normalize(patches, dim=-1), F.normalize(text, dim=-1)
    idx = torch.einsum("nd,d->n", pn[1], tn[5]).topk(3).indices
    f_l = pn[1, idx].mean(0)
    torch.testing.assert_close(full.f_img[1, 5], 0.5 * (f_l + F.normalize(g[1], dim=-1)))
    torch.testing.assert_close(full.weights.sum(1), torch.ones(2, 6))


def test_topk_weights_pick_the_most_similar_patches() -> None:
    sim = torch.tensor([[[0.1, 0.9, -0.3, 0.5, 0.2], [1.0, 0.0, 0.0, 0.0, 2.0]]])  # [B=1, K=2, N=5]
    w = topk_patch_weights(sim, 2)
    assert w.tolist() == [[[0.0, 0.5, 0.0, 0.5, 0.0], [0.5, 0.0, 0.0, 0.0, 0.5]]]


def test_k_larger_than_the_patch_count_uses_every_patch() -> None:
    g, patches, text = _inputs(N=3)
    out = MktHead(topk=16)(g, patches, text, return_weights=True)
    assert out.counts.unique().tolist() == [3]
    torch.testing.assert_close(out.weights, torch.full((2, 3, 6), 1 / 3))


def test_permuting_labels_permutes_logits() -> None:
    g, patches, text = _inputs(1)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    head = MktHead(topk=4)
    torch.testing.assert_close(head(g, patches, text[perm]).logits, head(g, patches, text).logits[:, perm])


def test_raw_similarity_is_mkts_formula() -> None:
    """MKT's models/clip_vit.py, written out: raw tokens through proj, top-16 mean over patches,
    each stream L2-normalised across the labels, averaged. Nothing is normalised before."""
    gen = torch.Generator().manual_seed(3)
    B, N, W, D, K = 3, 40, 24, 16, 7
    x = torch.randn(B, N + 1, W, generator=gen) * 3  # ln_post output: class token, then patches
    proj = torch.randn(W, D, generator=gen)
    text = torch.randn(K, D, generator=gen) * 2  # any scale: the formula does not normalise it
    pred = x[:, 1:] @ proj  # [B, N, D]
    dist = x[:, 0] @ proj  # [B, D]
    s1 = torch.zeros(B, K)
    for b in range(B):
        for c in range(K):
            col = sorted((float(pred[b, n] @ text[c]) for n in range(N)), reverse=True)
            s1[b, c] = sum(col[:16]) / 16
    s2 = dist @ text.T
    ref = (s1 / s1.norm(dim=-1, keepdim=True) + s2 / s2.norm(dim=-1, keepdim=True)) / 2
    out = MktHead(topk=16, similarity="raw")(dist, pred, text)
    torch.testing.assert_close(out.logits, ref, rtol=1e-5, atol=1e-6)
    # and it is not the cosine variant on these inputs
    assert not torch.allclose(MktHead(topk=16)(dist, pred, text).logits, ref, atol=1e-3)


def test_a_block_fused_alone_equals_the_head_on_the_block_labels() -> None:
    from c2srt.heads.base import fuse_block

    g, patches, text = _inputs(4, K=9)
    for similarity in ("raw", "cosine"):
        head = MktHead(topk=4, similarity=similarity)
        full = head(g, patches, text)
        block = torch.tensor([7, 2, 5])
        torch.testing.assert_close(fuse_block(full, block), head(g, patches, text[block]).logits)
        assert not torch.allclose(full.logits[:, block], head(g, patches, text[block]).logits)
