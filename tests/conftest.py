"""Shared fixtures: real files from ../shared/data and tiny models the tests make themselves."""

from __future__ import annotations

import atexit
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pytest
import torch

if TYPE_CHECKING:
    import numpy as np

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


PHOTO_NAMES = ["bus.jpg", "cat.jpg", "tennis.jpg", "zidane.jpg"]


def _photo_decision_scores(checkpoint: Path, photos: Path, labels: list[str] = TINY_LABELS) -> "np.ndarray":
    """[photos, labels] decision scores of the shared photos, straight from the model (not through
    `predict`): the checkpoint's own graph, the model's evaluation transform."""
    from c2srt.checkpoint import load_checkpoint
    from c2srt.graph import CategoryGraph
    from c2srt.images import open_rgb
    from c2srt.model import eval_transform

    model, info = load_checkpoint(checkpoint)
    model.eval()
    x = torch.stack([eval_transform(model)(open_rgb(photos / name)) for name in PHOTO_NAMES])
    with torch.no_grad():
        return model.decision_scores(x, model.label_set(labels, CategoryGraph.from_dict(info.graph))).numpy()


@pytest.fixture(scope="session")
def photo_decision_scores() -> Callable[..., "np.ndarray"]:
    """`(checkpoint, photos, labels=TINY_LABELS) -> [photos, labels]` decision scores of the shared
    photos (bus, cat, tennis, zidane), computed straight from the model."""
    return _photo_decision_scores


@pytest.fixture(scope="session")
def calibrated_checkpoint(tiny_checkpoint: Path, photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint with a calibrator whose 0.5 falls at the median decision score of the
    shared photos (so some labels pass 0.5 and some do not), stored with `write_calibrator`."""
    import numpy as np

    from c2srt.calibration import Calibrator
    from c2srt.checkpoint import write_calibrator

    median = float(np.median(_photo_decision_scores(tiny_checkpoint, photos)))
    slope = torch.tensor(40.0, dtype=torch.float64)
    cal = Calibrator("platt", {"a": slope, "b": -slope * median})
    return write_calibrator(tiny_checkpoint, cal, out=tmp_path_factory.mktemp("calibrated") / "tiny.safetensors")


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
