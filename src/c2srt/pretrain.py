"""Contrastive pretraining of the mini-world CLIP stand-in (the `miniworld-vit` preset).

Why: open-vocabulary recognition starts from a CLIP that has seen every concept in web captions.
The mini-world has no such model, so we make one: the image tower (a small ViT) is trained from
scratch against the real, frozen all-MiniLM-L6-v2 sentence model on captions of the pretrain split,
which name the FULL vocabulary (seen and unseen labels alike), exactly as web-scale pretraining
would have. Only the text tower's linear projection trains on the text side, so the frozen MiniLM
features of the captions are computed once and reused every step.

Two objectives (summed):
- CLIP InfoNCE, symmetric, between each image and its caption:
  :math:`L_{clip} = \\tfrac12[\\mathrm{CE}(s I T^\\top, \\mathrm{id}) + \\mathrm{CE}(s T I^\\top, \\mathrm{id})]`.
- A label-level term, the stand-in for the many short web captions that name a single concept:
  each image against the embeddings of all K label phrases ("a photo of a {}."), scored per label
  with a sigmoid (SigLIP-style binary cross-entropy on `scale * cos + bias`; a multi-positive
  softmax is the option). It makes single-label prompts rank well zero-shot, which whole-scene
  captions alone teach poorly (on 1000 test scenes, after 150 steps: mAP 27 with it, 23 without).

`load_or_pretrain` caches the result by world seed, image size, steps and the other settings, so
`c2srt demo` pays for it once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from .constants import DEFAULT_TEMPLATE, POSITIVE

if TYPE_CHECKING:  # pragma: no cover
    from .backbone import ClipBundle
    from .data.miniworld import MiniWorld

_logger = logging.getLogger(__name__)

PRETRAIN_VERSION = 2  # bump when the recipe changes: cached checkpoints are then rebuilt (2: avg-pooled patches)
BACKBONE = "miniworld-vit"
LABEL_PHRASE = "a photo of a {}."  # label-level captions; deliberately not the evaluation prompt
DEFAULT_STEPS = 150
QUICK_STEPS = 40
DEFAULT_IMAGES = 3000  # pretrain-split scenes with one caption each
QUICK_IMAGES = 640
DEFAULT_BATCH = 128
QUICK_BATCH = 64
DEFAULT_LR = 3e-3  # peak AdamW learning rate
WEIGHT_DECAY = 0.05  # not applied to 1-D parameters
WARMUP_FRACTION = 0.1  # of the steps, linear
MIN_LR_FRACTION = 0.01  # cosine floor, relative to the peak
LABEL_LOSS_WEIGHT = 3.0
LABEL_LOSS = "sigmoid"  # or "softmax" (multi-positive)
INIT_TEMPERATURE = 0.07  # CLIP's initial softmax temperature
MAX_LOGIT_SCALE = 100.0
INIT_LABEL_BIAS = -5.0  # sigmoid label loss: most labels are absent from a scene
TEXT_BATCH = 256  # captions per MiniLM forward
EVAL_IMAGES = 1000  # held-out scenes for the zero-shot mAP stored with the checkpoint
QUICK_EVAL_IMAGES = 200
EVAL_SPLIT = "test"


@dataclass(frozen=True)
class PretrainCfg:
    """Every setting that changes the pretrained weights (and therefore the cache key)."""

    world_seed: int
    image_size: int  # px
    steps: int
    batch_size: int
    lr: float
    n_images: int
    seed: int
    label_loss_weight: float
    label_loss: str
    version: int = PRETRAIN_VERSION

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]

    def stem(self) -> str:
        return f"miniworld-clip-w{self.world_seed}-{self.image_size}px-{self.steps}steps-v{self.version}-{self.key()}"


# ---------------------------------------------------------------------------------------------
# Frozen text features
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def pooled_text_features(bundle: "ClipBundle", texts: list[str], *, batch_size: int = TEXT_BATCH) -> torch.Tensor:
    """MiniLM mean-pooled features of `texts`, before the trainable projection.

    Texts are encoded in order of length and padding is trimmed per batch, which changes nothing
    (padding is masked out of attention and pooling) but saves most of the compute.

    Shapes:
        texts: K strings -> [K, W] (W = 384 for MiniLM).
    """
    text = bundle.model.text
    if not hasattr(text, "transformer") or not hasattr(text, "pooler"):
        raise ValueError(f"{bundle.name!r} has no HF text tower; pretraining needs the miniworld-vit preset")
    was_training = text.training
    text.eval()
    tokens = bundle.tokenizer(texts)  # [K, context_length]
    pad = text.config.pad_token_id
    lengths = (tokens != pad).sum(1)
    order = torch.argsort(lengths, descending=True)
    out = torch.empty(len(texts), text.config.hidden_size)
    try:
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            width = int(lengths[idx].max())
            ids = tokens[idx, :width]  # [b, width]
            mask = (ids != pad).long()
            hidden = text.transformer(input_ids=ids, attention_mask=mask)
            out[idx] = text.pooler(hidden, mask)
    finally:
        text.train(was_training)
    return out


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------
def clip_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE between matching rows of L2-normalised `image` and `text`.

    Shapes:
        image: [B, D], text: [B, D] -> scalar.
    """
    if image.shape != text.shape or image.ndim != 2:
        raise ValueError(f"clip_loss needs two [B, D] tensors of one shape, got {tuple(image.shape)} and {tuple(text.shape)}")
    logits = logit_scale * torch.einsum("bd,cd->bc", image, text)  # [B, B]
    target = torch.arange(image.shape[0], device=image.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def multi_positive_loss(image: torch.Tensor, labels_text: torch.Tensor, targets: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy over K label embeddings with a target spread over present labels.

    Rows without a positive label are left out.

    Shapes:
        image: [B, D], labels_text: [K, D], targets: [B, K] in {+1, -1} -> scalar.
    """
    if targets.shape != (image.shape[0], labels_text.shape[0]):
        raise ValueError(f"targets {tuple(targets.shape)} do not match images {tuple(image.shape)} x labels {tuple(labels_text.shape)}")
    logits = logit_scale * torch.einsum("bd,kd->bk", image, labels_text)  # [B, K]
    pos = (targets == POSITIVE).float()  # [B, K]
    n_pos = pos.sum(1, keepdim=True)  # [B, 1]
    keep = n_pos.squeeze(1) > 0  # [B]
    if not bool(keep.any()):
        return logits.sum() * 0.0
    p = pos[keep] / n_pos[keep]  # [B', K]
    return -(p * F.log_softmax(logits[keep], dim=1)).sum(1).mean()


def sigmoid_label_loss(
    image: torch.Tensor, labels_text: torch.Tensor, targets: torch.Tensor, logit_scale: torch.Tensor, logit_bias: torch.Tensor
) -> torch.Tensor:
    """Per-label binary cross-entropy on `scale * cos + bias` (SigLIP-style), mean over B x K.

    Shapes:
        image: [B, D], labels_text: [K, D], targets: [B, K] in {+1, -1} -> scalar.
    """
    if targets.shape != (image.shape[0], labels_text.shape[0]):
        raise ValueError(f"targets {tuple(targets.shape)} do not match images {tuple(image.shape)} x labels {tuple(labels_text.shape)}")
    logits = logit_scale * torch.einsum("bd,kd->bk", image, labels_text) + logit_bias  # [B, K]
    return F.binary_cross_entropy_with_logits(logits, (targets == POSITIVE).float())


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
def _lr_at(step: int, steps: int, peak: float) -> float:
    warm = max(1, round(WARMUP_FRACTION * steps))
    if step < warm:
        return peak * (step + 1) / warm
    t = (step - warm) / max(1, steps - warm)
    floor = peak * MIN_LR_FRACTION
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * t))


def _normalise(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 [B, 3, H, W] -> normalised float [B, 3, H, W]."""
    x = images.float().div_(255.0)
    return (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)  # [3] -> [1, 3, 1, 1]


def to_model_input(images: np.ndarray, bundle: "ClipBundle") -> torch.Tensor:
    """uint8 [B, H, W, 3] scenes -> the normalised float [B, 3, H, W] batch the model expects."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 [B, H, W, 3], got {images.shape}")
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # [B, H, W, 3] -> [B, 3, H, W]
    return _normalise(x, torch.tensor(bundle.mean), torch.tensor(bundle.std))


def pretrain_clip(
    world: "MiniWorld",
    *,
    steps: int = DEFAULT_STEPS,
    batch_size: int = DEFAULT_BATCH,
    lr: float = DEFAULT_LR,
    seed: int = 0,
    n_images: int = DEFAULT_IMAGES,
    label_loss_weight: float = LABEL_LOSS_WEIGHT,
    label_loss: str = LABEL_LOSS,
    device: str | torch.device = "cpu",
    progress: bool = False,
    log_every: int = 20,
    history: list[dict[str, float]] | None = None,
) -> "ClipBundle":
    """Pretrain the `miniworld-vit` CLIP on captions of the world's pretrain split.

    Args:
        world: the mini-world (its image size must match the preset's).
        steps: optimiser steps.
        batch_size: image-caption pairs per step.
        lr: peak AdamW learning rate (linear warm-up, cosine decay).
        seed: seeds the initialisation (torch.manual_seed) and the data order (a torch.Generator).
        n_images: pretrain-split scenes (one caption each; their MiniLM features are computed once).
        label_loss_weight: weight of the label-level term (0: captions only).
        label_loss: "sigmoid" (per-label binary cross-entropy) or "softmax" (multi-positive).
        device: where to train.
        progress: show a tqdm bar.
        log_every: steps between log lines.
        history: if given, one dict per step (`step`, `loss`, `clip`, `label`, `lr`) is appended.

    Returns:
        The trained ClipBundle, in eval mode.

    Raises:
        ValueError: bad sizes, or a world whose image size differs from the preset.
    """
    from .backbone import create_clip, load_preset
    from .data.miniworld import SPLITS

    if steps < 1 or batch_size < 2 or n_images < batch_size:
        raise ValueError(f"pretrain_clip: need steps >= 1 and 2 <= batch_size <= n_images, got {steps}, {batch_size}, {n_images}")
    preset_size = int(load_preset(BACKBONE)["model_cfg"]["vision_cfg"]["image_size"])
    if world.image_size != preset_size:
        raise ValueError(f"MiniWorld image_size {world.image_size} differs from the {BACKBONE} preset's {preset_size} px")
    t0 = time.time()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    bundle = create_clip(BACKBONE)
    model = bundle.model
    images, labels, captions = world.sample(n_images, (SPLITS["pretrain"],))
    t_data = time.time()
    caption_feats = pooled_text_features(bundle, captions)  # [N, W]
    label_feats = pooled_text_features(bundle, [LABEL_PHRASE.format(n) for n in world.label_names])  # [K, W]
    _logger.info(
        "pretrain data: %d scenes in %.1f s, MiniLM features of %d captions in %.1f s",
        n_images, t_data - t0, len(captions), time.time() - t_data,
    )  # fmt: skip

    with torch.no_grad():
        model.logit_scale.fill_(math.log(1.0 / INIT_TEMPERATURE))
    model.text.transformer.requires_grad_(False)
    model.text.transformer.eval()
    model.to(device)
    train_params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in train_params if p.ndim >= 2]
    no_decay = [p for p in train_params if p.ndim < 2]
    label_bias = torch.nn.Parameter(torch.full((), INIT_LABEL_BIAS, device=device))
    if label_loss == "sigmoid":
        no_decay.append(label_bias)
    elif label_loss != "softmax":
        raise ValueError(f"pretrain_clip: label_loss must be 'softmax' or 'sigmoid', got {label_loss!r}")
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}], lr=lr)

    x_all = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # [N, H, W, 3] -> [N, 3, H, W] uint8
    y_all = torch.from_numpy(labels.astype(np.int64))  # [N, K]
    mean, std = torch.tensor(bundle.mean, device=device), torch.tensor(bundle.std, device=device)
    caption_feats, label_feats = caption_feats.to(device), label_feats.to(device)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc="pretrain", unit="step")
    model.visual.train()
    model.text.proj.train()
    perm = torch.randperm(n_images, generator=gen)
    cursor = 0
    for step in range(steps):
        if cursor + batch_size > n_images:  # a new epoch: a new order
            perm, cursor = torch.randperm(n_images, generator=gen), 0
        idx = perm[cursor : cursor + batch_size]
        cursor += batch_size
        flip = torch.rand(batch_size, generator=gen) < 0.5
        x = x_all[idx]
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)  # [B] -> [B, 1, 1, 1]: mirror half the batch
        x = _normalise(x.to(device), mean, std)
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, lr)
        img = F.normalize(model.encode_image(x), dim=-1)  # [B, D]
        txt = F.normalize(model.text.proj(caption_feats[idx.to(device)]), dim=-1)  # [B, W] -> [B, D]
        scale = model.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)
        l_clip = clip_loss(img, txt, scale)
        if label_loss_weight > 0:
            lab = F.normalize(model.text.proj(label_feats), dim=-1)  # [K, W] -> [K, D]
            if label_loss == "sigmoid":
                l_label = sigmoid_label_loss(img, lab, y_all[idx].to(device), scale, label_bias)
            else:
                l_label = multi_positive_loss(img, lab, y_all[idx].to(device), scale)
        else:
            l_label = torch.zeros((), device=device)
        loss = l_clip + label_loss_weight * l_label
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        rec = {"step": step, "loss": loss.item(), "clip": l_clip.item(), "label": l_label.item(), "lr": opt.param_groups[0]["lr"]}
        if history is not None:
            history.append(rec)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{rec['loss']:.3f}")
        if log_every and (step % log_every == 0 or step == steps - 1):
            _logger.info(
                "pretrain step %d/%d loss %.4f (clip %.4f, label %.4f) %.0f s",
                step + 1, steps, rec["loss"], rec["clip"], rec["label"], time.time() - t0,
            )  # fmt: skip
    if bar is not None:
        bar.close()
    model.eval()
    return bundle


@torch.no_grad()
def zero_shot_scores(
    bundle: "ClipBundle", images: np.ndarray, label_names: list[str], *, template: str = DEFAULT_TEMPLATE, batch_size: int = 256
) -> np.ndarray:
    """Cosine similarity of each image with each prompted label (CLIP zero-shot multi-label).

    Shapes:
        images: uint8 [B, H, W, 3] -> scores float32 [B, K].
    """
    model = bundle.model
    was_training = model.training
    model.eval()
    try:
        text = F.normalize(model.encode_text(bundle.tokenizer([template.format(n) for n in label_names])), dim=-1)  # [K, D]
        out = []
        for start in range(0, len(images), batch_size):
            x = to_model_input(images[start : start + batch_size], bundle)
            img = F.normalize(model.encode_image(x), dim=-1)  # [b, D]
            out.append(torch.einsum("bd,kd->bk", img, text))  # [b, K]
    finally:
        model.train(was_training)
    return torch.cat(out).numpy().astype(np.float32)


def zero_shot_map(
    bundle: "ClipBundle", world: "MiniWorld", *, n: int = EVAL_IMAGES, template: str = DEFAULT_TEMPLATE
) -> dict[str, float]:
    """Zero-shot mAP (fractions in [0, 1]) on `n` scenes of the world's test split.

    Returns:
        {"all": mAP over all K labels, "seen": over seen labels, "unseen": over unseen labels}.
    """
    from .data.miniworld import SPLITS
    from .metrics import mean_average_precision

    images, labels, _ = world.sample(n, (SPLITS[EVAL_SPLIT],))
    scores = zero_shot_scores(bundle, images, world.label_names, template=template)
    seen = world.seen_mask.numpy()
    return {
        "all": mean_average_precision(scores, labels),
        "seen": mean_average_precision(scores[:, seen], labels[:, seen]),
        "unseen": mean_average_precision(scores[:, ~seen], labels[:, ~seen]),
    }


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------
def _atomic_write_bytes(path: Path, write: Any) -> None:
    """Call `write(tmp_path)` then rename onto `path`, so readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_clip(bundle: "ClipBundle", path: str | Path, *, include_frozen_text: bool = False) -> Path:
    """Write the model's weights as safetensors (atomically); `create_clip(name, pretrained=path)` loads them.

    The frozen MiniLM text tower (88 MB) is left out unless `include_frozen_text`: pretraining
    never changes it and `create_clip` takes it from its package, so the file holds only the
    image tower, the text projection and the logit scale (a few MB).
    """
    from safetensors.torch import save_file

    from .backbone import FROZEN_HF_PREFIX

    path = Path(path)
    state = {
        k: v.detach().cpu().contiguous()
        for k, v in bundle.model.state_dict().items()
        if include_frozen_text or not k.startswith(FROZEN_HF_PREFIX)
    }
    _atomic_write_bytes(path, lambda tmp: save_file(state, tmp, metadata={"format": "pt", "c2srt": "miniworld-clip"}))
    return path


def load_or_pretrain(
    world: "MiniWorld",
    cache_dir: str | Path,
    *,
    steps: int | None = None,
    seed: int = 0,
    quick: bool = False,
    batch_size: int | None = None,
    lr: float = DEFAULT_LR,
    n_images: int | None = None,
    eval_images: int | None = None,
    progress: bool = False,
    device: str | torch.device = "cpu",
) -> tuple[Path, dict[str, Any]]:
    """The pretrained mini-world CLIP from `cache_dir`, pretraining and caching it when missing.

    Args:
        world: the mini-world.
        cache_dir: folder of cached checkpoints (created if needed).
        steps: optimiser steps (default DEFAULT_STEPS, or QUICK_STEPS when `quick`).
        seed: pretraining seed.
        quick: the fast recipe (fewer steps and scenes) for `c2srt demo --quick` and smoke tests.
        batch_size, lr, n_images: see `pretrain_clip` (batch_size and n_images default by `quick`).
        eval_images: test scenes for the zero-shot mAP stored in the meta (not part of the key;
            default by `quick`).
        progress: show a tqdm bar while pretraining.
        device: where to pretrain.

    Returns:
        (path to the `.safetensors` file, meta dict: the settings, `time_s`, `zero_shot` mAPs
        (fractions) on `eval_images` test scenes, `final_loss`, versions).
    """
    steps = int(steps if steps is not None else (QUICK_STEPS if quick else DEFAULT_STEPS))
    n_images = int(n_images if n_images is not None else (QUICK_IMAGES if quick else DEFAULT_IMAGES))
    batch_size = int(batch_size if batch_size is not None else (QUICK_BATCH if quick else DEFAULT_BATCH))
    eval_images = int(eval_images if eval_images is not None else (QUICK_EVAL_IMAGES if quick else EVAL_IMAGES))
    n_images = max(n_images, batch_size)
    cfg = PretrainCfg(
        world_seed=world.seed, image_size=world.image_size, steps=steps, batch_size=batch_size, lr=lr,
        n_images=n_images, seed=seed, label_loss_weight=LABEL_LOSS_WEIGHT, label_loss=LABEL_LOSS,
    )  # fmt: skip
    cache_dir = Path(cache_dir)
    weights = cache_dir / f"{cfg.stem()}.safetensors"
    meta_path = cache_dir / f"{cfg.stem()}.json"
    if weights.is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{meta_path}: corrupt pretraining metadata ({e}); delete it to rebuild") from e
        _logger.info("pretrained mini-world CLIP from cache: %s", weights)
        return weights, meta
    _logger.info("pretraining the mini-world CLIP (%d steps, %d scenes); cached at %s", steps, n_images, weights)
    t0 = time.time()
    history: list[dict[str, float]] = []
    bundle = pretrain_clip(
        world, steps=steps, batch_size=batch_size, lr=lr, seed=seed, n_images=n_images, device=device,
        label_loss_weight=cfg.label_loss_weight, label_loss=cfg.label_loss, progress=progress, history=history,
    )  # fmt: skip
    train_s = time.time() - t0
    bundle.model.to("cpu")
    zs = zero_shot_map(bundle, world, n=eval_images)
    import open_clip

    meta = {
        **asdict(cfg),
        "backbone": BACKBONE,
        "time_s": round(train_s, 2),
        "zero_shot": {k: round(v, 4) for k, v in zs.items()},
        "zero_shot_images": eval_images,
        "zero_shot_template": DEFAULT_TEMPLATE,
        "final_loss": float(np.mean([h["loss"] for h in history[-10:]])),
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "file": weights.name,
    }
    save_clip(bundle, weights)
    _atomic_write_bytes(meta_path, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2) + "\n"))
    _logger.info(
        "pretrained in %.0f s; zero-shot mAP all %.1f, seen %.1f, unseen %.1f",
        train_s, 100 * zs["all"], 100 * zs["seen"], 100 * zs["unseen"],
    )  # fmt: skip
    return weights, meta
