"""c2srt.images: one reader with one exception for every broken file, and the eval crop box.

The crop box is checked against torchvision's own Resize + CenterCrop (an independent computation):
an image white exactly inside the box comes out all white, and one white only inside a slightly
smaller box does not.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from c2srt.images import (
    MAX_PIXELS,
    ImageReadError,
    center_crop_box,
    has_image_suffix,
    image_problem,
    open_rgb,
)


def test_open_rgb_converts_any_mode(tmp_path: Path) -> None:
    grey = tmp_path / "grey.png"
    Image.new("L", (5, 3), 7).save(grey)
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (4, 4), (1, 2, 3, 4)).save(rgba)
    img = open_rgb(grey)
    assert img.mode == "RGB" and img.size == (5, 3) and img.getpixel((0, 0)) == (7, 7, 7)
    assert open_rgb(rgba).getpixel((1, 1)) == (1, 2, 3)
    assert image_problem(grey) is None


def test_every_broken_file_gets_one_exception_naming_it_and_why(tmp_path: Path, bad_images) -> None:
    expected = bad_images(tmp_path)
    for name, word in expected.items():
        path = tmp_path / name
        with pytest.raises(ImageReadError) as err:
            open_rgb(path)
        assert err.value.path == str(path) and word in err.value.reason
        assert str(err.value) == f"{path}: {err.value.reason}"  # one line: file and reason
        assert "\n" not in str(err.value)
        assert image_problem(path) == err.value.reason
    assert image_problem(tmp_path / "missing.jpg") == "no such file"
    assert image_problem(tmp_path) == "is a folder, not an image"
    assert isinstance(ImageReadError("x.jpg", "gone"), ValueError)  # callers catching ValueError still do


def test_the_bomb_is_refused_even_when_pillow_checks_are_off(tmp_path: Path, bad_images, monkeypatch) -> None:
    bad_images(tmp_path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # some libraries switch Pillow's check off
    reason = image_problem(tmp_path / "bomb.png")
    assert reason is not None and "too large" in reason and "60000 x 60000" in reason
    assert 60_000 * 60_000 > MAX_PIXELS


def test_an_error_rebuilt_from_its_message_keeps_it() -> None:
    """DataLoader workers re-raise an exception as `type(e)(message)`: that must not fail."""
    e = ImageReadError("Caught ImageReadError in DataLoader worker process 0.\nOriginal Traceback ...")
    assert str(e).startswith("Caught ImageReadError")


def test_image_suffixes() -> None:
    assert has_image_suffix("a/B.JPG") and has_image_suffix(Path("x.webp")) and not has_image_suffix("notes.txt")


@pytest.mark.parametrize(
    "size, resize, crop, box",
    [
        ((640, 480), None, None, (80.0, 0.0, 560.0, 480.0)),  # the whole short side
        ((480, 640), 224, 224, (0.0, 80.0, 480.0, 560.0)),
        ((640, 480), 256, 224, (110.0, 30.0, 530.0, 450.0)),  # side 480 * 224 / 256 = 420
    ],
)
def test_center_crop_box_hand_worked(size, resize, crop, box) -> None:
    assert center_crop_box(*size, resize=resize, crop=crop) == pytest.approx(box)


@pytest.mark.parametrize("size", [(640, 480), (300, 517), (256, 256)])
@pytest.mark.parametrize("resize, crop", [(224, 224), (256, 224)])
def test_center_crop_box_matches_torchvision(size, resize, crop) -> None:
    from torchvision import transforms as T

    tf = T.Compose([T.Resize(resize, interpolation=T.InterpolationMode.NEAREST), T.CenterCrop(crop), T.PILToTensor()])
    w, h = size
    left, top, right, bottom = center_crop_box(w, h, resize=resize, crop=crop)

    def white_inside(margin: float) -> Image.Image:
        a = np.zeros((h, w), np.uint8)
        a[round(top + margin) : round(bottom - margin), round(left + margin) : round(right - margin)] = 255
        return Image.fromarray(a)

    kept = tf(white_inside(0.0))
    assert kept.shape[-2:] == (crop, crop)
    assert kept[0, 1:-1, 1:-1].min() == 255  # everything the transform keeps lies inside the box
    margin = 0.03 * (right - left)
    assert tf(white_inside(margin))[0].min() == 0  # and the box is not larger than what it keeps


def test_center_crop_box_rejects_impossible_sizes() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        center_crop_box(10, 10, resize=224, crop=256)
    with pytest.raises(ValueError, match="positive"):
        center_crop_box(0, 10)


def test_permission_denied_is_a_verdict(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    path = tmp_path / "secret.png"
    Image.new("RGB", (2, 2)).save(path)
    path.chmod(0)
    assert image_problem(path) == "permission denied"
