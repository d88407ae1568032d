"""ISR patch selection against a plain loop, hand-worked cases, and the head's contracts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from c2srt.heads.isr import IsrHead, select_patches


def brute_select(sim: torch.Tensor, alpha: float, k_max: int, k_min: int, tau: float, pool: str):
    """One (image, label) at a time, in float64, straight from the definition."""
    B, P, C = sim.shape
    weights = torch.zeros(B, P, C, dtype=torch.float64)
    counts = torch.zeros(B, C, dtype=torch.long)
    for b in range(B):
        for c in range(C):
            logits = [float(sim[b, n, c]) / tau for n in range(P)]
            top = max(logits)
            ex = [math.exp(v - top) for v in logits]
            p = [v / sum(ex) for v in ex]
            order = sorted(range(P), key=lambda n: (-p[n], n))  # ties: lower index first
            mass, m = 0.0, 0
            while m < P and mass < alpha:
                mass += p[order[m]]
                m += 1
            m = max(min(k_min, P), min(m, k_max, P))
            kept = order[:m]
            for n in kept:
                weights[b, n, c] = p[n] / sum(p[i] for i in kept) if pool == "weighted" else 1.0 / m
            counts[b, c] = m
    return weights, counts


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("pool", ["weighted", "mean"])
def test_select_patches_matches_a_plain_loop(seed: int, pool: str) -> None:
    g = torch.Generator().manual_seed(seed)
    B, P, C = 3, 1 + seed * 7, 5
    sim = torch.randn(B, P, C, generator=g)
    alpha = [0.3, 0.5, 0.8, 1.0][seed]
    tau = [0.05, 0.2, 1.0, 0.5][seed]
    k_min, k_max = [(1, 32), (2, 4), (1, 3), (3, 6)][seed]
    w, n = select_patches(sim, alpha, k_max, k_min, tau, pool=pool)
    w_ref, n_ref = brute_select(sim, alpha, k_max, k_min, tau, pool)
    assert n.dtype == torch.long and torch.equal(n, n_ref)
    torch.testing.assert_close(w.double(), w_ref, rtol=1e-5, atol=1e-6)


def test_hand_worked_case() -> None:
    # softmax([4, 3, 0]) = [0.7214, 0.2654, 0.0132]: cumulative 0.7214, 0.9868, 1
    sim = torch.tensor([[[4.0], [3.0], [0.0]]])
    for alpha, expected in [(0.5, 1), (0.72, 1), (0.73, 2), (0.98, 2), (0.99, 3)]:
        _, n = select_patches(sim, alpha=alpha, tau=1.0)
        assert n.item() == expected, alpha
    w, _ = select_patches(sim, alpha=0.9, tau=1.0)
    p = torch.softmax(sim[0, :, 0], 0)
    torch.testing.assert_close(w[0, :, 0], torch.stack([p[0], p[1], torch.tensor(0.0)]) / (p[0] + p[1]))


def test_ties_keep_the_lower_patch_index() -> None:
    sim = torch.zeros(1, 4, 1)  # all four patches equally likely (0.25 each)
    w, n = select_patches(sim, alpha=0.5, tau=1.0)
    assert n.item() == 2
    assert w[0, :, 0].tolist() == [0.5, 0.5, 0.0, 0.0]


def test_counts_are_clamped() -> None:
    sim = torch.zeros(1, 10, 1)  # uniform: alpha 0.95 wants 10 patches
    assert select_patches(sim, alpha=0.95, k_max=4, tau=1.0)[1].item() == 4
    peaked = torch.tensor([[[50.0]] + [[0.0]] * 9])  # one patch holds all the mass
    assert select_patches(peaked, alpha=0.5, k_min=3, tau=1.0)[1].item() == 3
    assert select_patches(torch.zeros(1, 2, 1), alpha=1.0, k_min=5, k_max=8)[1].item() == 2  # at most P


def test_weights_are_a_distribution_over_the_kept_patches() -> None:
    sim = torch.randn(2, 9, 6, generator=torch.Generator().manual_seed(1))
    w, n = select_patches(sim, alpha=0.6, k_max=5, tau=0.1)
    torch.testing.assert_close(w.sum(1), torch.ones(2, 6))
    assert torch.equal((w > 0).sum(1), n)


@pytest.mark.parametrize(
    "kwargs",
    [{"alpha": 0.0}, {"alpha": 1.5}, {"k_min": 0}, {"k_min": 5, "k_max": 4}, {"tau": 0.0}, {"pool": "max"}],
)
def test_bad_parameters_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        select_patches(torch.zeros(1, 3, 2), **kwargs)


def test_bad_shape_names_it() -> None:
    with pytest.raises(ValueError, match=r"\[B, P, C\]"):
        select_patches(torch.zeros(3, 2))


def test_gradient_flows_through_the_kept_probabilities() -> None:
    sim = torch.randn(2, 6, 3, requires_grad=True)
    w, _ = select_patches(sim, alpha=0.7, tau=0.5)
    (w * torch.randn_like(w)).sum().backward()
    assert sim.grad is not None and sim.grad.abs().sum() > 0


# ------------------------------------------------------------------------------ the head
def _inputs(seed: int = 0, B: int = 2, N: int = 16, D: int = 16, K: int = 5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, D, generator=g), torch.randn(B, N, D, generator=g), torch.randn(K, D, generator=g)


def test_head_shapes_determinism_and_weights() -> None:
    head = IsrHead(alpha=0.5, k_max=8, tau=0.1).eval()
    g, patches, text = _inputs()
    out = head(g, patches, text, return_weights=True, need_features=True)
    assert out.logits.shape == (2, 5) and out.f_img.shape == (2, 5, 16)
    assert out.counts.shape == (2, 5) and out.weights.shape == (2, 16, 5)
    assert torch.isfinite(out.logits).all()
    again = head(g, patches, text)
    torch.testing.assert_close(out.logits, again.logits, rtol=0, atol=0)


def test_head_matches_the_definition() -> None:
    """logits = fuse(<f_L, t>, <g, t>) and f_img = (f_L + g)/2 on L2-normalised inputs."""
    import torch.nn.functional as F

    head = IsrHead(alpha=0.6, k_max=6, tau=0.2, label_chunk=2)  # chunking must not change anything
    g, patches, text = _inputs(3)
    out = head(g, patches, text, need_features=True, return_weights=True)
    gn, pn, tn = F.normalize(g, dim=-1), F.normalize(patches, dim=-1), F.normalize(text, dim=-1)
    sim = torch.einsum("bnd,kd->bnk", pn, tn)
    w, _ = select_patches(sim, 0.6, 6, 1, 0.2)
    f_l = torch.einsum("bnk,bnd->bkd", w, pn)
    local = torch.einsum("bkd,kd->bk", f_l, tn)
    glob = gn @ tn.T
    ref = 0.5 * (local / local.norm(dim=1, keepdim=True) + glob / glob.norm(dim=1, keepdim=True))
    torch.testing.assert_close(out.logits, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.f_img, 0.5 * (f_l + gn.unsqueeze(1)), rtol=1e-5, atol=1e-6)


def test_permuting_labels_permutes_logits() -> None:
    head = IsrHead(k_max=8, tau=0.1)
    g, patches, text = _inputs(1, K=7)
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(0))
    a = head(g, patches, text).logits
    b = head(g, patches, text[perm]).logits
    torch.testing.assert_close(b, a[:, perm])


def test_number_of_regions_adapts_to_the_label() -> None:
    """A label that matches half the image keeps many patches; one matching a single patch keeps one."""
    D, N = 8, 16
    big, small, other = torch.eye(D)[0], torch.eye(D)[1], torch.eye(D)[2]
    patches = other.repeat(N, 1)
    patches[:8] = big  # 'sky': 8 patches
    patches[12] = small  # 'kite': 1 patch
    head = IsrHead(alpha=0.9, k_max=16, tau=0.05)
    out = head(torch.ones(1, D), patches.unsqueeze(0), torch.stack([big, small]))
    assert out.counts[0].tolist() == [8, 1]


def test_inference_writes_the_same_region_features_as_training() -> None:
    """Without autograd the head writes f_img chunk by chunk in place: bit-identical to the
    training path (which keeps the graph), over several label chunks, and to (f_L + g) / 2."""
    gen = torch.Generator().manual_seed(3)
    g, patches, text = torch.randn(3, 8, generator=gen), torch.randn(3, 10, 8, generator=gen), torch.randn(7, 8, generator=gen)
    head = IsrHead(k_max=4, label_chunk=3)  # chunks of 3, 3 and 1 labels
    with torch.no_grad():
        fast = head(g, patches, text, need_features=True, return_weights=True)
    slow = head(g, patches.clone().requires_grad_(True), text, need_features=True, return_weights=True)
    assert slow.f_img.requires_grad and not fast.f_img.requires_grad
    assert torch.equal(fast.f_img, slow.f_img.detach()) and torch.equal(fast.logits, slow.logits.detach())
    pn, gn = F.normalize(patches, dim=-1), F.normalize(g, dim=-1)
    ref = 0.5 * (torch.einsum("bnk,bnd->bkd", fast.weights, pn) + gn[:, None])  # [B, K, D]
    torch.testing.assert_close(fast.f_img, ref, rtol=1e-5, atol=1e-6)
