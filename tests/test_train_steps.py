"""The LightningModule's steps and stage 2 (MKT's prompt tuning), end to end on the real COCO8 images.

Stage 1 trains the tiny model; stage 2 starts from it (`model.init_from`), freezes the whole
image tower and learns the prompt context. Every image-tower weight must come out bit-identical.
The vocabulary (text embeddings, graph edge index) is prepared once per fit and per evaluation,
not per batch; only the prompt-tuned text is recomputed, as it changes every step.
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


@pytest.mark.parametrize("prompt_tuning", [False, True])
def test_vocabulary_is_prepared_once_per_fit_and_per_evaluation(coco8: Path, tmp_path: Path, monkeypatch, prompt_tuning: bool) -> None:
    from c2srt.graph import CategoryGraph
    from c2srt.model import C2SRT
    from c2srt.text import LabelEncoder
    from c2srt.training import C2SRTModule

    calls = {"label_set": 0, "edges": 0, "encode": 0, "steps": 0, "evals": 0}

    def counting(key, fn):
        def wrapper(*a, **k):
            calls[key] += 1
            return fn(*a, **k)

        return wrapper

    monkeypatch.setattr(C2SRT, "label_set", counting("label_set", C2SRT.label_set))
    monkeypatch.setattr(CategoryGraph, "edge_index_for", counting("edges", CategoryGraph.edge_index_for))
    monkeypatch.setattr(LabelEncoder, "encode_labels", counting("encode", LabelEncoder.encode_labels))
    monkeypatch.setattr(C2SRTModule, "training_step", counting("steps", C2SRTModule.training_step))
    monkeypatch.setattr(C2SRTModule, "validation_step", counting("evals", C2SRTModule.validation_step))
    args = ["--config", str(TINY), f"data.root={coco8}", "train.epochs=2", "data.batch_size=1", "eval.batch_size=1", "train.log_every=1"]
    if prompt_tuning:
        args.append("model.prompt_tuning=true")
    assert main(["train", *args, "--output-dir", str(tmp_path / "run")]) == 0
    assert calls["steps"] >= 4 and calls["evals"] >= 4  # several batches each time
    # one training vocabulary per fit, one per validation (2 epochs): never per batch
    assert calls["label_set"] == 3 and calls["edges"] == 3
    # text: once per vocabulary, and again each step only while the prompt learns
    assert calls["encode"] == 3 + (calls["steps"] if prompt_tuning else 0)
