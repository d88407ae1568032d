"""Image transforms for training and evaluation (torchvision).

Why these choices: multi-label targets describe the whole picture, so training crops stay mild
(a crop that cuts out a small labelled object would make its +1 target a lie); RandAugment
follows MKT's recipe. Evaluation resizes the short side and centre-crops, as CLIP does.
torchvision is imported inside the builder, so importing this module stays cheap.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from PIL import Image

from ..constants import IMAGENET_MEAN, IMAGENET_STD, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

TRAIN_MIN_SCALE = 0.7  # smallest crop area kept by the training crop, as a fraction of the image
TRAIN_RATIO = (3.0 / 4.0, 4.0 / 3.0)  # aspect ratio range of the training crop
RANDAUG_NUM_OPS = 2  # RandAugment operations per image
RANDAUG_MAGNITUDE = 9  # RandAugment magnitude (of 31 bins)
FLIP_PROB = 0.5  # horizontal flip probability

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


class _ToRGB:
    """Convert any PIL mode (L, P, RGBA, CMYK) to RGB; a class, so DataLoader workers can pickle it."""

    def __call__(self, img: Image.Image) -> Image.Image:
        return img if img.mode == "RGB" else img.convert("RGB")

    def __repr__(self) -> str:
        return "ToRGB()"


def build_transform(
    image_size: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    train: bool = False,
    rand_augment: bool = False,
) -> Callable[[Image.Image], torch.Tensor]:
    """The image pipeline: PIL image -> normalised float tensor [3, image_size, image_size].

    Args:
        image_size: output side in px (square).
        mean, std: per-channel normalisation; default ImageNet's (MKT). For OpenAI statistics use
            `normalization("openai")`.
        train: training pipeline (mild random resized crop + horizontal flip [+ RandAugment]);
            otherwise resize the short side to `image_size` and centre-crop.
        rand_augment: add RandAugment (training only).

    Returns:
        A torchvision `Compose` (picklable, so it works in DataLoader workers).

    Raises:
        ValueError: a non-positive size or mean/std without three values.

    Example:
        >>> tf = build_transform(224, train=False)
        >>> tf(Image.new("RGB", (320, 240))).shape
        torch.Size([3, 224, 224])
    """
    from torchvision import transforms as T

    if int(image_size) < 1:
        raise ValueError(f"image_size must be a positive number of pixels, got {image_size}")
    mean = tuple(IMAGENET_MEAN if mean is None else mean)
    std = tuple(IMAGENET_STD if std is None else std)
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need 3 values (RGB), got mean={mean}, std={std}")
    size = int(image_size)
    bicubic = T.InterpolationMode.BICUBIC
    steps: list[Callable] = [_ToRGB()]
    if train:
        steps += [
            T.RandomResizedCrop(size, scale=(TRAIN_MIN_SCALE, 1.0), ratio=TRAIN_RATIO, interpolation=bicubic),
            T.RandomHorizontalFlip(FLIP_PROB),
        ]
        if rand_augment:
            steps.append(T.RandAugment(num_ops=RANDAUG_NUM_OPS, magnitude=RANDAUG_MAGNITUDE))
    else:
        steps += [T.Resize(size, interpolation=bicubic), T.CenterCrop(size)]
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(steps)
