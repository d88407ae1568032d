"""Shared fixtures: real files from ../shared/data and tiny models the tests make themselves."""

from __future__ import annotations

import atexit
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Callable

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
if "C2SRT_CACHE" not in os.environ:  # caches the tests write (e.g. image-check verdicts) stay out of ~/.cache
    _CACHE = tempfile.mkdtemp(prefix="c2srt-test-cache-")
    atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
    os.environ["C2SRT_CACHE"] = _CACHE
torch.set_num_threads(2)

REPO = Path(__file__).resolve().parents[1]


def _shared_data() -> Path:
    for cand in (REPO.parent / "shared" / "data", Path("/work/shared/data")):
        if cand.is_dir():
            return cand
    pytest.skip("../shared/data is not beside the repository")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return _shared_data()


@pytest.fixture(scope="session")
def coco8(shared_data: Path) -> Path:
    return shared_data / "coco8"


@pytest.fixture(scope="session")
def photos(shared_data: Path) -> Path:
    return shared_data / "photos"


TINY_LABELS = ["person", "bus", "dog", "cat", "tennis racket", "tie", "car", "sky"]
TINY_SEEN = TINY_LABELS[:6]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A c2srt checkpoint of the tiny random backbone with ISR + IST (label mode) and a graph."""
    from c2srt.checkpoint import save_checkpoint
    from c2srt.config import Cfg, HeadCfg, IstCfg, ModelCfg
    from c2srt.graph import build_graph
    from c2srt.model import create_model

    torch.manual_seed(0)
    mcfg = ModelCfg(
        backbone="test-tiny",
        pretrained=None,
        distill=False,
        head=HeadCfg(name="isr", k_max=8),
        ist=IstCfg(mode="label", hidden=32),
    )
    cfg = Cfg(model=mcfg)
    model = create_model(mcfg, teacher=False)

    def encode(names: list[str]):
        with torch.no_grad():
            return model.label_encoder.encode_labels(names).numpy()

    graph = build_graph(TINY_LABELS, seen=TINY_SEEN, source="embedding", encoder=encode)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(path, model, cfg, seen=TINY_SEEN, unseen=TINY_LABELS[6:], graph=graph)
    return path


# ------------------------------------------------------------------------- broken image files
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_bad_images(folder: Path) -> dict[str, str]:
    """Four undecodable images as real datasets hold them; returns file name -> a word of its verdict.

    An empty download, a JPEG cut in half, an HTML error page saved as .jpg, and a 70-byte PNG whose
    header claims 60,000 x 60,000 px (3.6 gigapixels: a decompression bomb).
    """
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.jpg").write_bytes(b"")
    noise = Image.effect_noise((64, 64), 64).convert("RGB")  # incompressible: a cut loses pixel data
    noise.save(folder / "full.jpg", quality=95)
    data = (folder / "full.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "full.jpg").unlink()
    (folder / "page.jpg").write_text("<html><body>404 Not Found</body></html>\n")
    ihdr = struct.pack(">IIBBBBB", 60_000, 60_000, 8, 2, 0, 0, 0)  # width, height, 8 bit, RGB
    bomb = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b"")
    (folder / "bomb.png").write_bytes(bomb)
    return {"empty.jpg": "empty", "truncated.jpg": "truncated", "page.jpg": "not a known image format", "bomb.png": "too large"}


@pytest.fixture
def bad_images() -> Callable[[Path], dict[str, str]]:
    """`write_bad_images(folder)`: the bad-image corpus, written where a test wants it."""
    return write_bad_images
