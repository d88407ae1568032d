"""Lightning's plumbing for a run: the Trainer, atomic checkpoints, the CSV log that continues on
resume, Lightning's output quietened, and leaving a DDP process group cleanly."""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import warnings
from pathlib import Path
from typing import Any, Iterator

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.warnings import PossibleUserWarning

from ..config import Cfg
from ..io import atomic_open, atomic_write_text


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written to a temporary file and renamed: a crash never corrupts one."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        with atomic_open(path) as fh:
            torch.save(checkpoint, fh)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        # our own checkpoints hold only tensors and plain containers: the safe loader suffices
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)


class _ContinuedCsvWriter(ExperimentWriter):
    """Lightning's CSV writer, continuing an existing `metrics.csv` where Lightning's deletes it.

    It keeps the rows logged before `resume_step`, the checkpoint's step (the resumed run logs the
    later ones again), and appends the new rows under the file's header.
    """

    def __init__(self, log_dir: str, resume_step: int) -> None:
        self._resume_step = resume_step
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:  # Lightning's: warn, then delete metrics.csv
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            keys = list(reader.fieldnames or [])
            rows = [r for r in reader if r.get("step", "").isdigit() and int(r["step"]) < self._resume_step]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(path, buf.getvalue())
        self.metrics_keys = keys  # the header `save()` appends under (and widens for new columns)


class _CsvLogger(CSVLogger):
    """`<output_dir>/logs/metrics.csv`, continued on resume; each row is on disk once logged, so
    the file of a killed run holds every row up to its last checkpoint."""

    def __init__(self, out: Path, *, resume_step: int | None) -> None:
        super().__init__(str(out), name="logs", version="", flush_logs_every_n_steps=1)
        self._resume_step = resume_step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None and self._resume_step is not None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuedCsvWriter(self.log_dir, self._resume_step)
        return super().experiment


# ------------------------------------------------------------------------- Lightning's output
_LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")
_TIP = "\N{ELECTRIC LIGHT BULB} Tip:"  # Lightning's advertisements for its cloud products


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_TIP)


def quiet_lightning() -> None:
    """Lightning's log lines once, and without its advertising tips.

    Importing `lightning` gives its top logger a console handler of its own, so once an application
    has set up logging (the CLI does) every Lightning line is printed twice. Then, as
    `lightning.pytorch` itself does, leave Lightning's records to the application's handlers.
    """
    if logging.getLogger().handlers:
        for name in _LIGHTNING_LOGGERS:
            lightning_logger = logging.getLogger(name)
            for handler in list(lightning_logger.handlers):
                lightning_logger.removeHandler(handler)
            lightning_logger.propagate = True
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        tips = logging.getLogger(name)
        if not any(isinstance(f, _NoTips) for f in tips.filters):
            tips.addFilter(_NoTips())


@contextlib.contextmanager
def known_warnings_silenced(*, resume: bool = False) -> Iterator[None]:
    """While Lightning runs, silence the warnings that are neither the user's nor ours to fix.

    - "Found N module(s) in eval mode at the start of training": the frozen CLIP towers are in eval
      mode by design (their dropout / norm statistics must not change).
    - torch deprecations raised from inside Lightning's own code (its pytree helper, its
      `all_gather`), until Lightning moves to the new APIs.
    - on resume, "Checkpoint directory ... exists and is not empty": it holds what we resume from.
    """
    with warnings.catch_warnings():
        if resume:
            warnings.filterwarnings("ignore", r"Checkpoint directory .* exists and is not empty")
        warnings.filterwarnings("ignore", r"Found \d+ module\(s\) in eval mode", PossibleUserWarning)
        warnings.filterwarnings(
            "ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning, r"lightning\."
        )
        warnings.filterwarnings(
            "ignore", r"torch\.distributed\.nn\.functional\.all_gather is deprecated", FutureWarning, r"lightning\."
        )
        yield


def build_trainer(
    cfg: Cfg, out: Path, *, callbacks: list[Callback] | None = None, resume_step: int | None = None, **kwargs: Any
) -> L.Trainer:
    """The Trainer of a run writing into `out`; `resume_step`: the step of the checkpoint resumed."""
    t = cfg.train
    quiet_lightning()
    loggers: list[Any] = [_CsvLogger(out, resume_step=resume_step)]
    try:
        import tensorboard  # noqa: F401

        loggers.append(L.pytorch.loggers.TensorBoardLogger(str(out), name="tb", version=""))
    except ImportError:
        pass
    # Every epoch end: `epoch=E-step=S.ckpt` (only the newest kept) and `last.ckpt` linking to it,
    # which `--resume` reads. (save_top_k=0 would write no epoch checkpoint, and then no last.ckpt
    # either, until the very end of training: nothing to resume from after a crash.)
    ckpt = ModelCheckpoint(
        dirpath=str(out / "checkpoints"),
        save_last="link",
        save_top_k=1,
        every_n_epochs=1,
        save_on_train_epoch_end=True,  # also on epochs without validation (val_every > 1 or 0)
    )
    cbs: list[Callback] = [ckpt, *(callbacks or [])]
    if t.checkpoint_every > 0:
        cbs.append(ModelCheckpoint(dirpath=str(out / "checkpoints"), filename="step{step}", every_n_train_steps=t.checkpoint_every, save_top_k=-1))
    return L.Trainer(
        default_root_dir=str(out),
        max_epochs=t.epochs,
        max_steps=t.max_steps,
        accelerator=t.accelerator,
        devices=t.devices if t.devices == "auto" else (int(t.devices) if str(t.devices).isdigit() else t.devices),
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,  # type: ignore[arg-type]
        accumulate_grad_batches=t.accumulate,
        gradient_clip_val=t.grad_clip or None,
        check_val_every_n_epoch=t.val_every if t.val_every > 0 else None,
        limit_val_batches=None if t.val_every > 0 else 0,  # None: all batches, without Lightning saying so
        log_every_n_steps=t.log_every,
        logger=loggers,
        callbacks=cbs,
        plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False,  # EpochSampler shards itself, deterministically
        deterministic=False,
        num_sanity_val_steps=0,
        enable_model_summary=False,
        **kwargs,
    )


def in_process_group(trainer: L.Trainer) -> bool:
    """This process is one of several DDP ranks, with the process group up (collectives work)."""
    return trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()


def leave_process_group(trainer: L.Trainer) -> None:
    """Under DDP, every rank waits until rank 0 has written the run's last files, then all leave the
    process group together. A rank that exits first with the group still open can abort in the
    group's teardown at interpreter exit ("terminate called without an active exception"), and
    Lightning's process observer then kills the other ranks, rank 0 included, wherever it is."""
    if in_process_group(trainer):
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
