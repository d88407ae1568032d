"""Stage 2 (MKT's prompt tuning) end to end through the CLI, on the real COCO8 images.

Stage 1 trains the tiny model; stage 2 starts from it (`model.init_from`), freezes the whole
image tower and learns the prompt context. Every image-tower weight must come out bit-identical.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from c2srt.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "coco8" / "tiny.yaml"


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_stage_two_learns_the_prompt_and_leaves_the_image_tower_bit_identical(coco8: Path, tmp_path: Path) -> None:
    one, two = tmp_path / "stage1", tmp_path / "stage2"
    common = ["--config", str(TINY), f"data.root={coco8}", "train.epochs=1", "train.log_every=1"]
    assert main(["train", *common, "--output-dir", str(one)]) == 0
    stage2 = [
        f"model.init_from={one / 'model.safetensors'}",
        "model.train_image=false",
        "model.distill=false",
        "model.prompt_tuning=true",
        "train.warmup_epochs=0",
        "train.lr=0.05",
        "graph.source=file",
        f"graph.path={one / 'graph.json'}",
    ]
    assert main(["train", *common, *stage2, "--output-dir", str(two)]) == 0
    first, second = _weights(one / "model.safetensors"), _weights(two / "model.safetensors")
    visual = [k for k in first if k.startswith("backbone.visual.")]
    assert visual and all(torch.equal(first[k], second[k]) for k in visual), "an image-tower weight changed"
    tower = [k for k in first if k.startswith("label_encoder.clip.")]
    assert tower and all(torch.equal(first[k], second[k]) for k in tower), "the text tower changed"
    ctx = [k for k in second if ".ctx_" in k]
    table = first["label_encoder.clip.token_embedding.weight"]
    from c2srt.checkpoint import load_checkpoint

    model, info = load_checkpoint(two / "model.safetensors")
    span = model.label_encoder._spans[0]
    start = torch.cat([table[span.prefix_ids], table[span.suffix_ids]])
    learned = torch.cat([second["label_encoder.ctx_prefix.0"], second["label_encoder.ctx_suffix.0"]])
    assert len(ctx) == 2 and not torch.equal(learned, start)  # the context moved from the template's own embeddings
    assert info.cfg.model.train_image is False and info.cfg.model.prompt_tuning is True
