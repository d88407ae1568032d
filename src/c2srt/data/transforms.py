"""Image transforms for training and evaluation, as config values (MKT's recipe is one setting).

Training pipelines (`DataCfg.train_transform`):
- "timm": timm's own `create_transform(is_training=True, ...)`, what MKT trains with
  (`utils/transforms.py` of sunanhe/MKT: random resized crop over `crop_scale` (0.08 to 1),
  horizontal flip, timm RandAugment `auto_augment="rand-m9-mstd0.5-inc1"`, bicubic, no colour
  jitter, no random erasing).
- "light": a milder crop (`crop_scale`, 0.7 to 1 by default: a crop that cuts out a small
  labelled object makes its +1 target a lie) + flip [+ torchvision RandAugment]; the mini-world's.

Evaluation: resize the short side to `image_size / crop_pct` (bicubic), centre-crop `image_size`
(MKT: 224 / 0.875 = 256, then 224). Normalisation: mean / std by name (`ModelCfg.normalization`),
the same for student and teacher, which see the same tensor. torchvision and timm are imported
inside the builders, so importing this module stays cheap.
"""

from __future__ import annotations

import random
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ..constants import IMAGENET_MEAN, IMAGENET_STD, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

TRAIN_MIN_SCALE = 0.7  # "light" pipeline: smallest crop area kept by default, as a fraction of the image
TRAIN_RATIO = (3.0 / 4.0, 4.0 / 3.0)  # aspect ratio range of the training crop (timm's default too)
RANDAUG_NUM_OPS = 2  # RandAugment operations per image
RANDAUG_MAGNITUDE = 9  # RandAugment magnitude (of 31 bins)
FLIP_PROB = 0.5  # horizontal flip probability
MKT_AUTO_AUGMENT = "rand-m9-mstd0.5-inc1"  # timm RandAugment policy of MKT's training
MKT_CROP_PCT = 224 / 256  # MKT's evaluation: resize to 256, centre-crop 224
TRAIN_PIPELINES = ("light", "timm")
_SEED_BOUND = 2**31 - 1  # seeds drawn for Python's and numpy's generators

NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),  # MKT fine-tunes with these
    "openai": (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD),  # what OpenAI CLIP towers were trained with
}


def normalization(name: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """(mean, std) by name: "imagenet" or "openai".

    Raises:
        ValueError: unknown name (listing the valid ones).
    """
    if name not in NORMALIZATIONS:
        raise ValueError(f"unknown normalisation {name!r}; valid names: {', '.join(NORMALIZATIONS)}")
    return NORMALIZATIONS[name]


def eval_resize(image_size: int, crop_pct: float) -> int:
    """Short side (px) images are resized to before the centre crop of `image_size` (timm's rule)."""
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"crop_pct must lie in (0, 1], got {crop_pct}")
    return int(image_size / crop_pct)


class _ToRGB:
    """Convert any PIL mode (L, P, RGBA, CMYK) to RGB; a class, so DataLoader workers can pickle it."""

    def __call__(self, img: Image.Image) -> Image.Image:
        return img if img.mode == "RGB" else img.convert("RGB")

    def __repr__(self) -> str:
        return "ToRGB()"


class TorchSeeded:
    """Runs a transform that draws from Python's and numpy's generators (timm's) under a seed taken
    from torch's generator, restoring both afterwards.

    Training seeds torch per (seed, epoch, image) for deterministic, resumable runs; timm's crops
    and RandAugment draw from `random` and `np.random`, which that seeding does not reach.
    """

    def __init__(self, transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.transform = transform

    def __call__(self, img: Image.Image) -> torch.Tensor:
        seed = int(torch.randint(_SEED_BOUND, ()))
        py_state, np_state = random.getstate(), np.random.get_state()
        random.seed(seed)
        np.random.seed(seed)
        try:
            return self.transform(img)
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)

    def __repr__(self) -> str:
        return f"TorchSeeded({self.transform!r})"


def _check(image_size: int, mean: Sequence[float] | None, std: Sequence[float] | None) -> tuple[int, tuple, tuple]:
    if int(image_size) < 1:
        raise ValueError(f"image_size must be a positive number of pixels, got {image_size}")
    mean = tuple(IMAGENET_MEAN if mean is None else mean)
    std = tuple(IMAGENET_STD if std is None else std)
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need 3 values (RGB), got mean={mean}, std={std}")
    return int(image_size), mean, std


def build_transform(
    image_size: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    train: bool = False,
    rand_augment: bool = False,
    *,
    pipeline: str = "light",
    crop_scale: Sequence[float] = (TRAIN_MIN_SCALE, 1.0),
    auto_augment: str | None = MKT_AUTO_AUGMENT,
    crop_pct: float = 1.0,
) -> Callable[[Image.Image], torch.Tensor]:
    """The image pipeline: PIL image -> normalised float tensor [3, image_size, image_size].

    Args:
        image_size: output side in px (square).
        mean, std: per-channel normalisation; default ImageNet's (MKT). For OpenAI statistics use
            `normalization("openai")`.
        train: a training pipeline (see the module docstring); otherwise the evaluation one.
        rand_augment: "light" pipeline: add torchvision's RandAugment.
        pipeline: training pipeline, "light" or "timm".
        crop_scale: training crop: (min, max) fraction of the image area kept.
        auto_augment: "timm" pipeline: timm's augmentation policy (None or "": none).
        crop_pct: evaluation: centre-crop `image_size` from the short side resized to
            `image_size / crop_pct` (1: resize to `image_size`).

    Returns:
        A picklable callable (it works in DataLoader workers).

    Raises:
        ValueError: a non-positive size, mean/std without three values, an unknown pipeline, a
            crop scale or `crop_pct` out of range.

    Example:
        >>> tf = build_transform(224, train=False)
        >>> tf(Image.new("RGB", (320, 240))).shape
        torch.Size([3, 224, 224])
    """
    from torchvision import transforms as T

    size, mean, std = _check(image_size, mean, std)
    lo, hi = (float(v) for v in crop_scale)
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"crop_scale must be (min, max) with 0 < min <= max <= 1, got {tuple(crop_scale)}")
    bicubic = T.InterpolationMode.BICUBIC
    if not train:
        resize = eval_resize(size, crop_pct)
        return T.Compose([_ToRGB(), T.Resize(resize, interpolation=bicubic), T.CenterCrop(size), T.ToTensor(), T.Normalize(mean, std)])
    if pipeline == "timm":
        from timm.data import create_transform

        tf = create_transform(
            input_size=size,
            is_training=True,
            scale=(lo, hi),
            ratio=TRAIN_RATIO,
            hflip=FLIP_PROB,
            color_jitter=0.0,  # MKT: off (timm turns it off anyway under RandAugment)
            auto_augment=auto_augment or None,
            interpolation="bicubic",
            mean=mean,
            std=std,
        )
        return TorchSeeded(T.Compose([_ToRGB(), tf]))
    if pipeline != "light":
        raise ValueError(f"unknown training pipeline {pipeline!r}; valid: {', '.join(TRAIN_PIPELINES)}")
    steps: list[Callable] = [
        _ToRGB(),
        T.RandomResizedCrop(size, scale=(lo, hi), ratio=TRAIN_RATIO, interpolation=bicubic),
        T.RandomHorizontalFlip(FLIP_PROB),
    ]
    if rand_augment:
        steps.append(T.RandAugment(num_ops=RANDAUG_NUM_OPS, magnitude=RANDAUG_MAGNITUDE))
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(steps)
