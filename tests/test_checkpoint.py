"""Checkpoints: safetensors round trip with config, vocabulary and graph inside; clear errors."""

from __future__ import annotations

import pytest
import torch

from c2srt.checkpoint import load_checkpoint, read_checkpoint_info, save_checkpoint
from c2srt.config import Cfg, HeadCfg, IstCfg, ModelCfg
from c2srt.graph import build_graph
from c2srt.model import create_model

NAMES = ["dog", "cat", "car", "sky", "horse"]


@pytest.mark.parametrize("ist", ["off", "image"])
def test_round_trip_gives_identical_scores(tmp_path, ist: str) -> None:
    torch.manual_seed(0)
    mcfg = ModelCfg(backbone="test-tiny", pretrained=None, head=HeadCfg(name="isr", k_max=8), ist=IstCfg(mode=ist, hidden=32))
    model = create_model(mcfg).eval()
    torch.nn.init.normal_(model.backbone.visual.proj)  # not the init values: weights must really load
    graph = None
    if ist != "off":
        torch.nn.init.normal_(model.ist.out_proj.weight)
        enc = lambda n: model.label_encoder.encode_labels(n).detach().numpy()  # noqa: E731
        graph = build_graph(NAMES, seen=NAMES[:3], source="embedding", encoder=enc)
    path = save_checkpoint(tmp_path / "m.safetensors", model, Cfg(model=mcfg), seen=NAMES[:3], unseen=NAMES[3:], graph=graph)
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically: no temporary file left behind
    again, info = load_checkpoint(path)
    assert info.seen == NAMES[:3] and info.unseen == NAMES[3:] and info.cfg.model == mcfg
    assert (info.graph is not None) == (ist != "off")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a = model(x, model.label_set(NAMES, graph)).logits
        b = again(x, again.label_set(NAMES, graph)).logits
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert again.backbone.teacher is None  # inference needs no teacher
    assert not any(k.startswith("backbone.teacher.") for k in model.state_dict_to_save())


def test_not_a_checkpoint_is_named(tmp_path) -> None:
    bad = tmp_path / "notes.safetensors"
    bad.write_bytes(b"hello, not a checkpoint")
    with pytest.raises(ValueError, match="notes.safetensors"):
        read_checkpoint_info(bad)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        read_checkpoint_info(tmp_path / "missing.safetensors")


def test_plain_safetensors_without_our_metadata_is_refused(tmp_path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "clip.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="not a c2srt checkpoint"):
        read_checkpoint_info(path)


def test_a_frozen_package_text_tower_is_not_stored(tmp_path) -> None:
    """The mini-world preset's MiniLM comes from its package: checkpoints stay a few MB, and reload exactly."""
    torch.manual_seed(0)
    mcfg = ModelCfg(backbone="miniworld-vit", pretrained=None, distill=False, head=HeadCfg(name="isr", k_max=8))
    model = create_model(mcfg).eval()
    path = save_checkpoint(tmp_path / "m.safetensors", model, Cfg(model=mcfg))
    assert path.stat().st_size < 20 * 2**20  # the MiniLM tower alone is about 90 MB
    again, _ = load_checkpoint(path)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(again(x, NAMES).logits, model(x, NAMES).logits, rtol=0, atol=0)
