import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from c2srt import pretrain as pt
from c2srt.backbone import create_clip
from c2srt.data.miniworld import MiniWorld

TINY = dict(steps=12, batch_size=16, n_images=16, lr=3e-3, seed=0)


@pytest.fixture(scope="module")
def world() -> MiniWorld:
    return MiniWorld(seed=0)


@pytest.fixture(scope="module")
def trained(world):
    history: list[dict[str, float]] = []
    bundle = pt.pretrain_clip(world, history=history, log_every=0, **TINY)
    return bundle, history


# --- losses against plain loops ----------------------------------------------------------------
def test_clip_loss_matches_a_loop():
    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    txt = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    scale = torch.tensor(3.0)
    sims = [[float(scale) * float(img[i] @ txt[j]) for j in range(5)] for i in range(5)]
    i2t = sum(-sims[i][i] + math.log(sum(math.exp(s) for s in sims[i])) for i in range(5)) / 5
    t2i = sum(-sims[j][j] + math.log(sum(math.exp(sims[i][j]) for i in range(5))) for j in range(5)) / 5
    assert float(pt.clip_loss(img, txt, scale)) == pytest.approx((i2t + t2i) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="clip_loss"):
        pt.clip_loss(img, txt[:4], scale)


def test_multi_positive_loss_matches_a_loop():
    g = torch.Generator().manual_seed(1)
    img = F.normalize(torch.randn(3, 6, generator=g), dim=-1)
    lab = F.normalize(torch.randn(4, 6, generator=g), dim=-1)
    targets = torch.tensor([[1, -1, 1, -1], [-1, -1, -1, -1], [-1, 1, -1, -1]])
    scale = torch.tensor(2.0)
    total, rows = 0.0, 0
    for b in range(3):
        pos = [k for k in range(4) if targets[b, k] == 1]
        if not pos:
            continue  # rows without a positive are left out
        logits = [float(scale * img[b] @ lab[k]) for k in range(4)]
        lse = math.log(sum(math.exp(v) for v in logits))
        total += sum(-(logits[k] - lse) / len(pos) for k in pos)
        rows += 1
    assert float(pt.multi_positive_loss(img, lab, targets, scale)) == pytest.approx(total / rows, rel=1e-5)
    with pytest.raises(ValueError, match="targets"):
        pt.multi_positive_loss(img, lab, targets[:, :3], scale)


def test_sigmoid_label_loss_matches_a_loop():
    g = torch.Generator().manual_seed(2)
    img = F.normalize(torch.randn(2, 6, generator=g), dim=-1)
    lab = F.normalize(torch.randn(3, 6, generator=g), dim=-1)
    targets = torch.tensor([[1, -1, -1], [-1, 1, 1]])
    scale, bias = torch.tensor(4.0), torch.tensor(-1.5)
    total = 0.0
    for b in range(2):
        for k in range(3):
            z = float(scale * img[b] @ lab[k] + bias)
            y = 1.0 if targets[b, k] == 1 else 0.0
            total += -(y * math.log(1 / (1 + math.exp(-z))) + (1 - y) * math.log(1 - 1 / (1 + math.exp(-z))))
    assert float(pt.sigmoid_label_loss(img, lab, targets, scale, bias)) == pytest.approx(total / 6, rel=1e-5)


def test_lr_schedule_warms_up_and_decays():
    lrs = [pt._lr_at(s, 100, 1.0) for s in range(100)]
    assert lrs[0] < lrs[5] < lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] >= pt.MIN_LR_FRACTION


# --- frozen text features ----------------------------------------------------------------------
def test_pooled_features_match_the_text_tower(trained):
    bundle, _ = trained
    texts = ["a red ball.", "a photo of a boat and a fish on blue water under the sky.", "snow"]
    pooled = pt.pooled_text_features(bundle, texts, batch_size=2)  # trimmed padding, sorted by length
    with torch.no_grad():
        ref = bundle.model.encode_text(bundle.tokenizer(texts))  # the full forward: transformer, pooler, proj
        torch.testing.assert_close(bundle.model.text.proj(pooled), ref, rtol=1e-4, atol=1e-5)


# --- pretraining -------------------------------------------------------------------------------
def test_pretraining_lowers_the_losses_and_trains_only_the_right_parts(trained, world):
    bundle, history = trained
    assert len(history) == TINY["steps"]
    first, last = history[0], history[-1]
    assert last["clip"] < first["clip"] and last["label"] < first["label"]
    fresh = create_clip("miniworld-vit")
    after = bundle.model.state_dict()
    for name, before in fresh.model.state_dict().items():
        changed = not torch.equal(before, after[name])
        if name.startswith("text.transformer."):
            assert not changed, f"frozen MiniLM weight {name} changed"
    assert not torch.equal(fresh.model.text.proj.weight, bundle.model.text.proj.weight)
    assert not bundle.model.training


def test_pretraining_is_deterministic(trained, world):
    bundle, history = trained
    again_hist: list[dict[str, float]] = []
    again = pt.pretrain_clip(world, history=again_hist, log_every=0, **{**TINY, "steps": 3})
    assert [h["loss"] for h in again_hist] == [h["loss"] for h in history[:3]]
    other = pt.pretrain_clip(world, log_every=0, **{**TINY, "steps": 1, "seed": 1})
    assert not torch.equal(other.model.visual.conv1.weight, again.model.visual.conv1.weight)


def test_zero_shot_scores_shape_and_map_keys(trained, world):
    bundle, _ = trained
    images, _, _ = world.sample(4, seed=9)
    scores = pt.zero_shot_scores(bundle, images, world.label_names[:5])
    assert scores.shape == (4, 5) and np.isfinite(scores).all() and np.abs(scores).max() <= 1.0 + 1e-5
    zs = pt.zero_shot_map(bundle, world, n=40)
    assert set(zs) == {"all", "seen", "unseen"} and all(0.0 <= v <= 1.0 for v in zs.values())


def test_saved_weights_load_back_through_create_clip(trained, world, tmp_path):
    from safetensors.torch import load_file

    bundle, _ = trained
    path = pt.save_clip(bundle, tmp_path / "clip.safetensors")
    full = pt.save_clip(bundle, tmp_path / "full.safetensors", include_frozen_text=True)
    assert not list(tmp_path.glob("*.tmp"))
    # the frozen MiniLM is left out: a few MB instead of about 90
    assert not any(k.startswith("text.transformer.") for k in load_file(str(path)))
    assert path.stat().st_size < 10e6 < full.stat().st_size
    images, _, _ = world.sample(3, seed=2)
    names = ["red ball", "sky", "boat"]
    for saved in (path, full):
        again = create_clip("miniworld-vit", pretrained=str(saved))
        np.testing.assert_array_equal(pt.zero_shot_scores(bundle, images, names), pt.zero_shot_scores(again, images, names))


def test_weights_with_a_foreign_key_are_refused(trained, tmp_path):
    from safetensors.torch import load_file, save_file

    bundle, _ = trained
    path = pt.save_clip(bundle, tmp_path / "clip.safetensors")
    state = load_file(str(path))
    save_file({**state, "visual.extra": torch.zeros(1)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="unexpected"):
        create_clip("miniworld-vit", pretrained=str(tmp_path / "bad.safetensors"))
    del state["visual.proj"]
    save_file(state, str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match="missing"):
        create_clip("miniworld-vit", pretrained=str(tmp_path / "missing.safetensors"))


def test_load_or_pretrain_caches(world, tmp_path, monkeypatch):
    kw = dict(steps=2, batch_size=8, n_images=8, eval_images=16)
    path, meta = pt.load_or_pretrain(world, tmp_path, **kw)
    assert path.is_file() and path.suffix == ".safetensors"
    stored = json.loads(path.with_suffix(".json").read_text())
    assert stored == meta and meta["steps"] == 2 and meta["world_seed"] == 0 and meta["image_size"] == 64
    assert set(meta["zero_shot"]) == {"all", "seen", "unseen"} and meta["time_s"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, path.with_suffix(".json").name])

    def boom(*a, **k):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(pt, "pretrain_clip", boom)
    again, meta2 = pt.load_or_pretrain(world, tmp_path, **kw)
    assert again == path and meta2 == meta
    with pytest.raises(AssertionError, match="cache"):  # another step count is another key
        pt.load_or_pretrain(world, tmp_path, **{**kw, "steps": 3})
    create_clip("miniworld-vit", pretrained=str(path))  # loads (every non-frozen key checked) without error


def test_bad_settings_raise(world):
    with pytest.raises(ValueError, match="image_size"):
        pt.pretrain_clip(MiniWorld(0, image_size=96), **TINY)
    with pytest.raises(ValueError, match="batch_size"):
        pt.pretrain_clip(world, **{**TINY, "n_images": 4})
