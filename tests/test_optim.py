"""Parameter groups and the lr schedule against MKT's own formulas, written out independently."""

from __future__ import annotations

import math

import pytest
import torch

from c2srt.config import ModelCfg, TrainCfg
from c2srt.model import create_model
from c2srt.optim import optimizer_param_groups, param_groups, warmup_cosine, warmup_cosine_scheduler


def _mkt_lr(epoch: float, *, lr: float, min_lr: float, warmup: float, epochs: float) -> float:
    """MKT's utils/lr_sched.adjust_learning_rate, as written there (fractional epoch)."""
    if epoch < warmup:
        return lr * epoch / warmup
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup) / (epochs - warmup)))


@pytest.mark.parametrize(("warmup", "epochs", "min_lr"), [(2, 20, 1e-6), (0, 4, 1e-8)])  # stage 1, stage 2
def test_schedule_is_mkts(warmup: int, epochs: int, min_lr: float) -> None:
    steps_per_epoch, lr = 7, 1e-3
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([{"params": [p], "lr": lr}], lr=lr)
    sched = warmup_cosine_scheduler(
        opt, warmup_steps=warmup * steps_per_epoch, total_steps=epochs * steps_per_epoch, lr=lr, min_lr=min_lr
    )
    for step in range(epochs * steps_per_epoch):
        want = _mkt_lr(step / steps_per_epoch, lr=lr, min_lr=min_lr, warmup=warmup, epochs=epochs)
        assert opt.param_groups[0]["lr"] == pytest.approx(want, rel=1e-9, abs=1e-15), step
        opt.step()
        sched.step()


def test_warmup_cosine_end_points() -> None:
    assert warmup_cosine(0, warmup_steps=4, total_steps=10, floor=0.1) == 0.0
    assert warmup_cosine(4, warmup_steps=4, total_steps=10, floor=0.1) == 1.0
    assert warmup_cosine(10, warmup_steps=4, total_steps=10, floor=0.1) == pytest.approx(0.1)
    assert warmup_cosine(50, warmup_steps=4, total_steps=10, floor=0.1) == pytest.approx(0.1)


def test_layer_decay_groups_match_mkt() -> None:
    """MKT (fix_layer = L - 2): blocks L-2, L-1 at decay^2, decay^1; ln_post / proj at 1; no wd on 1-D."""
    model = create_model(ModelCfg(backbone="test-tiny", pretrained=None, distill=False, trainable_blocks=2))
    t = TrainCfg(lr=1e-3, weight_decay=0.05, layer_decay=0.65)
    groups = optimizer_param_groups(model, t)
    names = {id(p): n for n, p in model.named_parameters()}
    n_blocks = model.backbone.num_blocks
    for g in groups:
        assert g["lr"] == pytest.approx(t.lr * g["lr_scale"])
        for p in g["params"]:
            name = names[id(p)]
            if ".resblocks." in name:
                depth = int(name.split(".resblocks.")[1].split(".")[0])
                assert depth >= n_blocks - 2
                assert g["lr_scale"] == pytest.approx(0.65 ** (n_blocks - depth))
            elif name.startswith("backbone.visual.ln_post") or name == "backbone.visual.proj":
                assert g["lr_scale"] == 1.0
            assert g["weight_decay"] == (0.0 if p.ndim == 1 else 0.05), name
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {names[id(p)] for g in groups for p in g["params"]} == trainable


def test_param_groups_skip_frozen_and_named_no_decay() -> None:
    lin = torch.nn.Linear(3, 3)
    scale = torch.nn.Parameter(torch.zeros(()))
    frozen = torch.nn.Parameter(torch.zeros(3, 3), requires_grad=False)
    params = [("fc.weight", lin.weight), ("fc.bias", lin.bias), ("logit_scale", scale), ("frozen", frozen)]
    groups = param_groups(params, lr=0.1, weight_decay=0.5)
    by_wd = {g["weight_decay"]: {id(p) for p in g["params"]} for g in groups}
    assert by_wd == {0.5: {id(lin.weight)}, 0.0: {id(lin.bias), id(scale)}}
