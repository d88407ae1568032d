"""Optimiser parameter groups and the warm-up + cosine learning-rate schedule, without Lightning.

MKT's recipe (`utils/lr_decay.py`, `utils/lr_sched.py` of sunanhe/MKT, after BEiT): AdamW groups
with layer-wise lr decay over the vision blocks and no weight decay on 1-D parameters; the lr is
set every step from the fractional epoch e: linear warm-up `lr * e / warmup`, then a half-cycle
cosine from `lr` down to `min_lr`. Fine-tuning (`c2srt.training`) and the mini-world pretraining both
build on these functions, so the schedule lives in one place.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Iterable

import torch

if TYPE_CHECKING:
    from .config import TrainCfg
    from .model import C2SRT

NO_DECAY_NAMES = ("logit_scale",)  # parameters never weight-decayed, whatever their shape


def param_groups(
    named_parameters: Iterable[tuple[str, torch.nn.Parameter]],
    *,
    lr: float,
    weight_decay: float,
    lr_scale: Callable[[str], float] | None = None,
    no_decay_names: tuple[str, ...] = NO_DECAY_NAMES,
) -> list[dict[str, Any]]:
    """AdamW parameter groups of the trainable parameters, one per (lr scale, weight decay).

    Args:
        named_parameters: e.g. `model.named_parameters()`; frozen ones are left out.
        lr: peak learning rate; each group gets `lr * lr_scale(name)`.
        weight_decay: decoupled weight decay, not applied to 1-D parameters, biases or names
            containing one of `no_decay_names`.
        lr_scale: per-parameter lr multiplier (layer-wise decay); default 1 for all.
        no_decay_names: substrings of parameter names never decayed.

    Returns:
        Groups with `params`, `lr`, `weight_decay` and `lr_scale` (read by `set_lr`).
    """
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, p in named_parameters:
        if not p.requires_grad:
            continue
        scale = 1.0 if lr_scale is None else float(lr_scale(name))
        no_decay = p.ndim <= 1 or name.endswith(".bias") or any(n in name for n in no_decay_names)
        groups.setdefault((scale, 0.0 if no_decay else weight_decay), []).append(p)
    return [{"params": ps, "lr": lr * s, "weight_decay": wd, "lr_scale": s} for (s, wd), ps in groups.items()]


def optimizer_param_groups(model: "C2SRT", t: "TrainCfg") -> list[dict[str, Any]]:
    """AdamW groups of a C2SRT model's trainable parameters (`t` is a `TrainCfg`).

    Vision parameters at depth d (blocks 1..L, `ln_post`/`proj` L+1, see `ClipBackbone.layer_id`)
    get `t.layer_decay ** (L + 1 - d)`; everything else (prompt context, IST) the full lr.
    """
    backbone = model.backbone
    num_layers = backbone.num_blocks + 1
    prefix = "backbone.visual."

    def scale(name: str) -> float:
        if name.startswith(prefix):
            return t.layer_decay ** (num_layers - backbone.layer_id(name[len(prefix) :]))
        return 1.0

    return param_groups(model.named_parameters(), lr=t.lr, weight_decay=t.weight_decay, lr_scale=scale)


def warmup_cosine(step: int, *, warmup_steps: int, total_steps: int, floor: float) -> float:
    """The lr multiplier at optimiser step `step` (0-based), as MKT's `adjust_learning_rate`.

    Linear warm-up `step / warmup_steps` (MKT's first step runs at lr 0), then a half-cycle cosine
    from 1 to `floor` (= min_lr / lr) over the remaining steps; `floor` after the end.

    Example:
        >>> warmup_cosine(0, warmup_steps=0, total_steps=10, floor=0.0)
        1.0
        >>> round(warmup_cosine(5, warmup_steps=0, total_steps=10, floor=0.0), 3)
        0.5
    """
    if warmup_steps > 0 and step < warmup_steps:
        return step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine_scheduler(
    optimizer: torch.optim.Optimizer, *, warmup_steps: int, total_steps: int, lr: float, min_lr: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step `LambdaLR` following `warmup_cosine` (each group's lr = its initial lr x factor)."""
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    floor = min_lr / lr

    def factor(step: int) -> float:
        return warmup_cosine(step, warmup_steps=warmup_steps, total_steps=total_steps, floor=floor)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
