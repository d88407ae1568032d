"""The run's callbacks: the exported model, the images skipped while loading, Ctrl-C's checkpoint."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from ..config import Cfg
from ..data.base import SKIPPED_KEY, log_skipped
from ..evaluate import json_results
from .trainer import in_process_group

if TYPE_CHECKING:
    from .module import C2SRTModule

_logger = logging.getLogger(__name__)


class ExportModel(Callback):
    """Writes the safetensors model at the end of fitting, from rank 0 only, with its calibrator
    when the data module held images out (`calibration.holdout`): fitted there, on rank 0 alone
    (the other ranks wait for rank 0's files: `trainer.leave_process_group`)."""

    def __init__(self, path: Path, cfg: Cfg) -> None:
        self.path = path
        self.cfg = cfg
        self.calibrator: Any = None  # the one exported, if any

    def _calibrate(self, module: "C2SRTModule", held: Any) -> Any:
        """The calibrator fitted on the held-out images (seen labels), or None with a warning when
        they cannot give one (e.g. no positive among them): the model is exported either way."""
        from ..calibration import data_provenance, fit_calibrator

        c = self.cfg.calibration
        try:
            cal = fit_calibrator(
                module.model, held, method=c.method, graph=module.graph, batch_size=self.cfg.eval.batch_size,
                num_workers=self.cfg.data.num_workers,
                provenance={**data_provenance(self.cfg, "train", heldout=True), "step": module.global_step},
            )  # fmt: skip
        except ValueError as e:
            _logger.warning("no calibrator: %s (the model ranks labels, it does not decide them; `c2srt calibrate` fits one)", e)
            return None
        fit = cal.provenance.get("fit", {})
        _logger.info(
            "calibrator (%s) fitted on %d held-out training images: ECE %.3f, Brier %.3f on them",
            cal.method, len(held), fit.get("ece", float("nan")), fit.get("brier", float("nan")),
        )  # fmt: skip
        return cal

    def _export(self, module: "C2SRTModule", held: Any) -> None:
        from ..checkpoint import save_checkpoint

        self.calibrator = self._calibrate(module, held) if held is not None else None
        save_checkpoint(
            self.path,
            module.model,
            self.cfg,
            seen=module.split.seen_names,
            unseen=module.split.unseen_names,
            graph=module.graph,
            extra={"results": json_results(module.last_results), "step": module.global_step},
            calibrator=self.calibrator,
        )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            held = getattr(trainer.datamodule, "holdout_set", None)
            self._export(pl_module, held)  # type: ignore[arg-type]


class SkippedImages(Callback):
    """Counts the images skipped while loading (`data.skip_bad`), each once, over all ranks.

    The datasets put the row index of each skipped image in the batch (`collate_samples`); the count
    ends the run's log and its `metrics.json` (`summary`).
    """

    def __init__(self) -> None:
        self.rows: dict[str, set[int]] = {"train": set(), "test": set()}

    def _add(self, batch: Any, split: str) -> None:
        if isinstance(batch, dict) and batch.get(SKIPPED_KEY):
            self.rows[split].update(int(i) for i in batch[SKIPPED_KEY])

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._add(batch, "train")

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._add(batch, "test")

    def _gather(self, trainer: L.Trainer) -> None:
        if in_process_group(trainer):
            for split, rows in self.rows.items():
                parts: list[Any] = [None] * trainer.world_size
                torch.distributed.all_gather_object(parts, sorted(rows))
                self.rows[split] = set().union(*map(set, parts))

    def _report(self, trainer: L.Trainer) -> None:
        self._gather(trainer)
        if not trainer.is_global_zero or not any(self.rows.values()):
            return
        dm = trainer.datamodule
        for split, rows in self.rows.items():
            data = getattr(dm, f"{split}_set", None)
            if rows and data is not None:
                log_skipped(data, rows, split)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer)

    def summary(self, dm: Any) -> dict[str, int]:
        """Counts for the run's JSON report: rows dropped before training, images skipped while loading."""
        before = sum(len(getattr(d, "skipped", ())) for d in (dm.train_set, dm.test_set) if d is not None)
        return {"data/skipped_rows": before, "data/skipped_images": sum(len(r) for r in self.rows.values())}


class _SaveOnInterrupt(Callback):
    """On Ctrl-C, save a resumable checkpoint (Lightning calls this before it tears down)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.saved = False

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt) and trainer.state.fn == "fit":
            trainer.save_checkpoint(self.path, weights_only=False)  # atomic (AtomicCheckpointIO); replaces the `last` link
            self.saved = True


@contextlib.contextmanager
def checkpoint_on_interrupt(trainer: L.Trainer, path: Path) -> Iterator[None]:
    """Ctrl-C during `trainer.fit` saves `path` (resume with `--resume`), then raises KeyboardInterrupt.

    Lightning catches KeyboardInterrupt itself, ignores SIGINT from then on and calls `sys.exit(1)`;
    this turns that back into a KeyboardInterrupt (the CLI's exit code 130) and restores the
    SIGINT handler.
    """
    import signal
    import threading

    from lightning.pytorch.trainer.states import TrainerStatus

    hook = _SaveOnInterrupt(path)
    trainer.callbacks.append(hook)
    main_thread = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if main_thread else None
    try:
        yield
    except SystemExit:
        if trainer.state.status != TrainerStatus.INTERRUPTED:
            raise
        if main_thread and handler is not None:
            signal.signal(signal.SIGINT, handler)
        if not hook.saved:
            raise KeyboardInterrupt() from None
        config = path.parent.parent / "config.yaml"
        raise KeyboardInterrupt(f"checkpoint saved to {path}; continue with: c2srt train --config {config} --resume") from None
