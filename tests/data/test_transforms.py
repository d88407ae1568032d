"""c2srt.data.transforms: output shapes, normalisation and seeded randomness."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from c2srt.constants import IMAGENET_MEAN, IMAGENET_STD, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from c2srt.data.transforms import build_transform, normalization

COLOUR = (200, 100, 50)


def test_eval_transform_shape_and_normalisation_by_hand() -> None:
    tf = build_transform(32, IMAGENET_MEAN, IMAGENET_STD, train=False)
    out = tf(Image.new("RGB", (64, 48), COLOUR))
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    for c in range(3):
        expected = (COLOUR[c] / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        assert torch.allclose(out[c], torch.full((32, 32), expected), atol=1e-5)


def test_eval_transform_is_deterministic_and_handles_grey_and_rgba() -> None:
    tf = build_transform(16, *normalization("openai"), train=False)
    img = Image.effect_noise((40, 30), 50)  # mode "L"
    assert torch.equal(tf(img), tf(img)) and tf(img).shape == (3, 16, 16)
    assert tf(Image.new("RGBA", (20, 20))).shape == (3, 16, 16)
    assert normalization("openai") == (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)


@pytest.mark.parametrize("rand_augment", [False, True])
def test_train_transform_is_random_but_seeded(rand_augment: bool) -> None:
    tf = build_transform(16, train=True, rand_augment=rand_augment)
    img = Image.effect_noise((40, 30), 80).convert("RGB")
    torch.manual_seed(0)
    a = tf(img)
    torch.manual_seed(0)
    b = tf(img)
    c = tf(img)
    assert a.shape == (3, 16, 16) and torch.equal(a, b) and not torch.equal(b, c)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="image_size"):
        build_transform(0)
    with pytest.raises(ValueError, match="3 values"):
        build_transform(8, (0.5,), (0.5,))
    with pytest.raises(ValueError, match="valid names: imagenet, openai"):
        normalization("laion")
