"""Shared fixtures: real files from ../shared/data and tiny models the tests make themselves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
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
