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


# ----------------------------------------------------------------------------- MKT's recipe
MKT_TRAIN = dict(auto_augment="rand-m9-mstd0.5-inc1", interpolation="bicubic", color_jitter=0)


def _photo(photos) -> Image.Image:
    with Image.open(photos / "bus.jpg") as im:  # 810 x 1080, portrait: the crop is vertical
        return im.convert("RGB")


def test_mkt_eval_transform_pixel_for_pixel(photos) -> None:
    """Resize(256, bicubic) + CenterCrop(224) + ImageNet statistics, against MKT's torchvision
    pipeline, timm's own eval transform, and the same steps by hand with PIL and numpy."""
    import numpy as np
    from timm.data import create_transform
    from torchvision import transforms as T

    img = _photo(photos)
    ours = build_transform(224, IMAGENET_MEAN, IMAGENET_STD, train=False, crop_pct=224 / 256)(img)
    mkt = T.Compose(
        [
            T.Resize(256, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )(img)
    timm_eval = create_transform(224, is_training=False, interpolation="bicubic", crop_pct=0.875)(img)
    assert torch.equal(ours, mkt)
    assert torch.equal(ours, timm_eval)
    w, h = img.size
    short = 256
    new_w, new_h = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    small = img.resize((new_w, new_h), Image.BICUBIC)
    top, left = int(round((new_h - 224) / 2.0)), int(round((new_w - 224) / 2.0))
    pix = np.asarray(small, dtype=np.float32)[top : top + 224, left : left + 224] / np.float32(255)  # [H, W, 3]
    by_hand = (pix - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    torch.testing.assert_close(ours, torch.from_numpy(by_hand).permute(2, 0, 1), rtol=0, atol=1e-6)


def test_mkt_train_transform_is_timms_own(photos) -> None:
    """The "timm" pipeline is timm.data.create_transform with MKT's arguments: the same steps and,
    under the same seeds, the same pixels."""
    import random

    import numpy as np
    from timm.data import create_transform

    from c2srt.data.transforms import TorchSeeded

    img = _photo(photos)
    ours = build_transform(224, IMAGENET_MEAN, IMAGENET_STD, train=True, pipeline="timm", crop_scale=(0.08, 1.0))
    ref = create_transform(224, is_training=True, mean=IMAGENET_MEAN, std=IMAGENET_STD, **MKT_TRAIN)
    assert isinstance(ours, TorchSeeded)
    assert repr(ours.transform.transforms[1]) == repr(ref)
    for seed in range(3):
        torch.manual_seed(seed)
        got = ours(img)
        torch.manual_seed(seed)
        s = int(torch.randint(2**31 - 1, ()))
        random.seed(s)
        np.random.seed(s)
        assert torch.equal(got, ref(img)), seed


def test_timm_pipeline_follows_torch_seeding_only() -> None:
    """Resumable training seeds torch per image; the timm pipeline must follow that seed alone and
    leave Python's and numpy's generators as it found them."""
    import random

    import numpy as np

    tf = build_transform(32, train=True, pipeline="timm", crop_scale=(0.08, 1.0))
    img = Image.effect_noise((64, 48), 80).convert("RGB")
    random.seed(1)
    np.random.seed(1)
    state = (random.getstate(), np.random.get_state()[1].copy())
    torch.manual_seed(5)
    a = tf(img)
    random.seed(99)  # other generator states do not matter
    torch.manual_seed(5)
    b = tf(img)
    c = tf(img)
    assert torch.equal(a, b) and not torch.equal(b, c)
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(5)
    tf(img)
    assert random.getstate() == state[0] and np.array_equal(np.random.get_state()[1], state[1])


def test_transform_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="crop_pct"):
        build_transform(32, crop_pct=1.5)
    with pytest.raises(ValueError, match="crop_scale"):
        build_transform(32, train=True, crop_scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="pipeline"):
        build_transform(32, train=True, pipeline="albumentations")


def test_predict_crop_box_is_the_square_the_eval_transform_keeps() -> None:
    """The box drawn over a photo (explanations, the web page) is what `crop_pct` keeps: paint the
    left quarter of the box white and the model's input must be white on its left quarter only."""
    from types import SimpleNamespace

    from c2srt.predict import Recognizer

    w, h, size, pct = 300, 200, 64, 0.875
    img = Image.new("RGB", (w, h), (0, 0, 0))
    model = SimpleNamespace(image_size=size, crop_pct=pct)
    left, top, right, bottom = Recognizer._crop_box(SimpleNamespace(_resize=int(size / pct), model=model), img.size)
    assert right - left == bottom - top == pytest.approx(h * size / int(size / pct))
    img.paste((255, 255, 255), (0, 0, round(left + (right - left) / 4), h))
    out = build_transform(size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), train=False, crop_pct=pct)(img)
    assert out[:, :, : size // 4 - 1].min() > 0.9 and out[:, :, size // 4 + 1 :].max() < 0.1
