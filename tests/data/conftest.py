"""Fixtures for the dataset tests: tiny real JPEG files written on the fly."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
from PIL import Image

IMAGE_SIDE = 8  # px; the readers never look at the pixels


def write_image(
    path: Path, colour: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (IMAGE_SIDE, IMAGE_SIDE)
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


@pytest.fixture
def make_image() -> Callable[..., Path]:
    return write_image
