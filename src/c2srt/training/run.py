"""A training run: `fit` builds the model, its data and graph, trains, and writes the run's files.

Every run writes into `cfg.output_dir`: `config.yaml` (re-runnable with `--config`), `env.json`
(`c2srt.environment`), `graph.json`, `logs/metrics.csv`, `checkpoints/` (resume), `metrics.json`,
`curves.png` and the exported `model.safetensors`. Determinism: the data order and every
augmentation are functions of (seed, epoch, index) (`sampling.py`), so a run resumed from an
epoch-end checkpoint continues exactly as the uninterrupted one would have.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from ..config import Cfg, config_to_dict, dump_config
from ..data.base import LabelSplit
from ..environment import environment
from ..evaluate import json_results
from ..io import atomic_write_text, write_json
from ..model import category_graph, create_model_and_transforms
from .callbacks import ExportModel, SkippedImages, checkpoint_on_interrupt
from .datamodule import C2SRTDataModule
from .module import C2SRTModule
from .trainer import build_trainer, known_warnings_silenced, leave_process_group

_logger = logging.getLogger(__name__)

#: what `env.json` records beside the seed (c2srt.environment): key -> distribution
RUN_PACKAGES = {"torch": "torch", "lightning": "lightning", "open_clip": "open_clip_torch"}


def write_run_files(cfg: Cfg, out: Path) -> None:
    """config.yaml (re-runnable with --config) and env.json beside every run."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", dump_config(cfg))
    write_json(out / "env.json", {**environment(RUN_PACKAGES, device=True), "seed": cfg.seed})


def _run_summary(trainer: L.Trainer, dm: C2SRTDataModule, seen: np.ndarray, out: Path, resume: Path | None) -> str:
    """The one line that says what is about to happen, and where."""
    device = type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()
    world = trainer.world_size
    where = f"{device}, {world} processes ({type(trainer.strategy).__name__.removesuffix('Strategy')})" if world > 1 else device
    epochs = f"{trainer.max_epochs} epochs" if trainer.max_epochs and trainer.max_epochs > 0 else f"{trainer.max_steps} steps"
    validation = f"validation on {len(dm.val_set)} images ({seen.size} labels)" if trainer.limit_val_batches else "no validation"  # type: ignore[arg-type]
    held = f" ({len(dm.holdout_set)} more held out for the calibrator)" if dm.holdout_set is not None else ""
    line = (
        f"training on {len(dm.train_set)} images{held} ({int(seen.sum())} seen labels) for {epochs} on {where}; "  # type: ignore[arg-type]
        f"{validation}; writing to {out}"
    )
    return line + (f"; resuming from {resume}" if resume is not None else "")


def fit(cfg: Cfg, *, resume: bool = False, progress: bool = True, **trainer_kwargs: Any) -> Path:
    """Train as `cfg` says; returns the exported `model.safetensors`.

    `resume=True` continues from `<output_dir>/checkpoints/last.ckpt` (optimizer, schedule, epoch and
    data order included; the metrics CSV continues too). Raises FileNotFoundError when there is
    nothing to resume. Under DDP every process calls `fit`; only rank 0 writes files.
    """
    out = Path(cfg.output_dir)
    last = out / "checkpoints" / "last.ckpt"
    if resume and not last.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {last}")
    export = out / "model.safetensors"
    resume_step = torch.load(last, map_location="cpu", weights_only=True, mmap=True)["global_step"] if resume else None
    # the Trainer first: it knows this process's rank, and only rank 0 writes files
    skipped = SkippedImages()
    trainer = build_trainer(
        cfg, out, callbacks=[ExportModel(export, cfg), skipped], resume_step=resume_step, enable_progress_bar=progress, **trainer_kwargs
    )
    if trainer.is_global_zero:
        write_run_files(cfg, out)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    model, train_tf, eval_tf = create_model_and_transforms(cfg.model, cfg.data)
    if cfg.model.init_from:  # the weights the run starts from: read here, never by the model factory
        from ..checkpoint import load_init_weights

        load_init_weights(model, cfg.model.init_from)
    dm = C2SRTDataModule(cfg, train_transform=train_tf, eval_transform=eval_tf)
    dm.setup("fit")
    split = LabelSplit.of(dm.train_set)
    # under `ddp` the other ranks start inside trainer.fit below: they find rank 0's graph.json
    graph = category_graph(model, split.names, seen=split.seen_names, cfg=cfg.graph, cache=out / "graph.json")
    module = C2SRTModule(
        config_to_dict(cfg), split.names, split.seen.tolist(), graph.to_dict() if graph is not None else None, model=model
    )
    _logger.info("%s", _run_summary(trainer, dm, split.seen, out, last if resume else None))
    with known_warnings_silenced(resume=resume), checkpoint_on_interrupt(trainer, last):
        trainer.fit(module, datamodule=dm, ckpt_path=str(last) if resume else None)
    if trainer.is_global_zero:
        write_json(out / "metrics.json", {**json_results(module.last_results), **skipped.summary(dm)})
        try:
            from ..viz import plot_curves

            plot_curves(out / "logs" / "metrics.csv", out / "curves.png")
        except (FileNotFoundError, ValueError) as e:  # no or an empty metrics.csv
            _logger.warning("could not draw the learning curves: %s", e)
    leave_process_group(trainer)
    return export
