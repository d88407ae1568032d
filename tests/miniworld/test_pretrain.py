import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from c2srt.backbone import create_clip
from c2srt.miniworld import pretrain as pt
from c2srt.miniworld.world import MiniWorld

TINY = pt.PretrainCfg(steps=4, batch_size=8, n_web=24, lr=3e-3)  # a step: 4 photos + 4 mosaics of 4


@pytest.fixture(scope="module")
def world() -> MiniWorld:
    return MiniWorld(seed=0)


@pytest.fixture(scope="module")
def trained(world):
    history: list[dict[str, float]] = []
    bundle = pt.pretrain_clip(world, TINY, history=history, log_every=0)
    return bundle, history


# --- losses against plain loops ----------------------------------------------------------------
def test_clip_loss_matches_a_loop():
    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    txt = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    scale = 3.0
    sims = [[scale * float(img[i] @ txt[j]) for j in range(5)] for i in range(5)]
    i2t = sum(-sims[i][i] + math.log(sum(math.exp(s) for s in sims[i])) for i in range(5)) / 5
    t2i = sum(-sims[j][j] + math.log(sum(math.exp(sims[i][j]) for i in range(5))) for j in range(5)) / 5
    assert float(pt.clip_loss(img, txt, torch.tensor(scale))) == pytest.approx((i2t + t2i) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="clip_loss"):
        pt.clip_loss(img, txt[:4], torch.tensor(scale))


def test_attention_pool_and_phrase_loss_match_loops():
    g = torch.Generator().manual_seed(1)
    patches = F.normalize(torch.randn(2, 4, 6, generator=g), dim=-1)
    phrases = F.normalize(torch.randn(3, 6, generator=g), dim=-1)
    tau = 0.2
    pooled = pt.attention_pool(patches, phrases, tau)
    for b in range(2):
        for u in range(3):
            sims = [float(patches[b, n] @ phrases[u]) for n in range(4)]
            w = [math.exp(s / tau) for s in sims]
            assert float(pooled[b, u]) == pytest.approx(sum(wi * si for wi, si in zip(w, sims)) / sum(w), rel=1e-5)
    targets = torch.tensor([[1, 0, 1], [0, 0, 1]])
    scale, bias = 4.0, -1.5
    total = 0.0
    for b in range(2):
        for u in range(3):
            p = 1 / (1 + math.exp(-(scale * float(pooled[b, u]) + bias)))
            total -= math.log(p) if targets[b, u] else math.log(1 - p)
    assert float(pt.phrase_loss(pooled, targets, torch.tensor(scale), torch.tensor(bias))) == pytest.approx(total / 6, rel=1e-5)
    with pytest.raises(ValueError, match="phrase_loss"):
        pt.phrase_loss(pooled, targets[:, :2], torch.tensor(scale), torch.tensor(bias))


def test_mosaic_and_its_quarters_against_loops():
    photos = torch.arange(8 * 3 * 4 * 4, dtype=torch.float32).reshape(8, 3, 4, 4)
    m = pt.mosaic(photos)
    assert m.shape == (2, 3, 4, 4)
    for j in range(2):
        for q, (r, c) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
            photo = photos[4 * j + q]
            for y in range(2):
                for x in range(2):
                    block = photo[:, 2 * y : 2 * y + 2, 2 * x : 2 * x + 2].mean((1, 2))  # 2 x 2 mean pooling
                    torch.testing.assert_close(m[j, :, 2 * r + y, 2 * c + x], block)
    patches = torch.randn(2, 16, 5, generator=torch.Generator().manual_seed(0))  # a 4 x 4 grid
    quarters = pt.quarter_embeddings(patches, 4)
    for j in range(2):
        for q, (r, c) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
            cells = [4 * (2 * r + y) + 2 * c + x for y in range(2) for x in range(2)]  # row-major patch ids
            torch.testing.assert_close(quarters[4 * j + q], patches[j, cells].mean(0))
    with pytest.raises(ValueError, match="multiple of 4"):
        pt.mosaic(photos[:3])


def test_pooled_features_match_the_text_tower(trained):
    bundle, _ = trained
    texts = ["a red ball.", "a photo of a sailboat on the sea, taken yesterday", "snow"]
    pooled = pt.pooled_text_features(bundle, texts, batch_size=2)  # trimmed padding, sorted by length
    with torch.no_grad():
        ref = bundle.model.encode_text(bundle.tokenizer(texts))  # the full forward: transformer, pooler, proj
        torch.testing.assert_close(bundle.model.text.proj(pooled), ref, rtol=1e-4, atol=1e-5)


# --- pretraining -------------------------------------------------------------------------------
def test_pretraining_never_touches_a_target_scene_or_a_label(world, monkeypatch):
    """The stand-in learns from web photos and captions only: benchmark scenes are off limits."""
    from c2srt.miniworld.world import MiniWorld as World

    def forbidden(*args, **kwargs):
        raise AssertionError("pretraining read a benchmark (target-domain) scene")

    calls = []
    real_web = World.sample_web

    def web(self, n, **kwargs):
        calls.append(kwargs)
        return real_web(self, n, **kwargs)

    monkeypatch.setattr(World, "sample_target", forbidden)
    monkeypatch.setattr(World, "plan_target", forbidden)
    monkeypatch.setattr(World, "sample_web", web)
    pt.pretrain_clip(world, pt.PretrainCfg(steps=1, batch_size=4, n_web=12), log_every=0)
    assert calls == [{}]  # images and captions only: no ground truth asked for


def test_pretraining_lowers_the_losses_and_trains_only_the_right_parts(trained):
    bundle, history = trained
    assert len(history) == TINY.steps
    assert np.mean([h["loss"] for h in history[-2:]]) < np.mean([h["loss"] for h in history[:2]])
    fresh = create_clip("miniworld-vit")
    after = bundle.model.state_dict()
    for name, before in fresh.model.state_dict().items():
        if name.startswith("text.transformer."):
            assert torch.equal(before, after[name]), f"frozen MiniLM weight {name} changed"
    assert not torch.equal(fresh.model.text.proj.weight, bundle.model.text.proj.weight)
    assert not bundle.model.training


def test_pretraining_is_deterministic(trained, world):
    _, history = trained
    again: list[dict[str, float]] = []
    pt.pretrain_clip(world, TINY, history=again, log_every=0)
    assert [h["loss"] for h in again] == [h["loss"] for h in history]
    other: list[dict[str, float]] = []
    pt.pretrain_clip(world, pt.PretrainCfg(**{**TINY.__dict__, "seed": 1, "steps": 1}), history=other, log_every=0)
    assert other[0]["loss"] != history[0]["loss"]  # another initialisation and data order


def test_the_recipe_hash_covers_every_setting():
    keys = {pt.PretrainCfg(**{**TINY.__dict__, field: value}).key() for field, value in [("steps", 7), ("lr", 1e-3), ("n_web", 32), ("seed", 2), ("phrase_weight", 0.0)]}
    assert len(keys | {TINY.key()}) == 6


def test_saved_weights_load_back_with_their_metadata(trained, world, tmp_path):
    from safetensors.torch import load_file

    from c2srt.miniworld.report import probe_stand_in

    bundle, _ = trained
    path = pt.save_clip(bundle, tmp_path / "clip.safetensors", meta={"recipe_hash": "abc"})
    full = pt.save_clip(bundle, tmp_path / "full.safetensors", include_frozen_text=True)
    assert not any(k.startswith("text.transformer.") for k in load_file(str(path)))  # a few MB, not 90
    assert path.stat().st_size < 5e6 < full.stat().st_size
    assert pt.read_meta(path) == {"recipe_hash": "abc"} and pt.read_meta(full) == {}
    again = create_clip("miniworld-vit", pretrained=str(path))
    a, b = probe_stand_in(bundle, world, n=12), probe_stand_in(again, world, n=12)
    assert a == b


def test_load_stand_in_ships_caches_and_rebuilds(world, tmp_path, monkeypatch):
    cfg = pt.PretrainCfg(steps=1, batch_size=4, n_web=12)
    monkeypatch.setattr(pt, "shipped_weights", lambda: tmp_path / "assets" / pt.SHIPPED)
    path, meta = pt.load_stand_in(world, cfg, cache_dir=tmp_path, evaluate=lambda b: {"probe": 1})
    assert path.parent == tmp_path / "miniworld" and path.suffix == ".safetensors"
    assert meta["recipe_hash"] == cfg.key() and meta["figures"] == {"probe": 1} and pt.read_meta(path) == meta
    calls = []
    real = pt.pretrain_clip
    monkeypatch.setattr(pt, "pretrain_clip", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert pt.load_stand_in(world, cfg, cache_dir=tmp_path)[0] == path and not calls  # cached
    (tmp_path / "assets").mkdir()
    path.rename(tmp_path / "assets" / pt.SHIPPED)
    assert pt.load_stand_in(world, cfg, cache_dir=tmp_path)[0] == tmp_path / "assets" / pt.SHIPPED and not calls  # shipped
    other = pt.PretrainCfg(steps=2, batch_size=4, n_web=12)  # another recipe: the shipped file does not match
    assert pt.load_stand_in(world, other, cache_dir=tmp_path)[0].name.startswith(other.stem()) and calls == [1]
    pt.load_stand_in(world, cfg, cache_dir=tmp_path, rebuild=True)  # --pretrain rebuilds even when shipped
    assert calls == [1, 1]


def test_bad_settings_raise(world):
    with pytest.raises(ValueError, match="image_size"):
        pt.pretrain_clip(MiniWorld(0, image_size=96), TINY)
    with pytest.raises(ValueError, match="batch_size"):
        pt.pretrain_clip(world, pt.PretrainCfg(steps=1, batch_size=8, n_web=4))
