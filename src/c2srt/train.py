"""Training and evaluation with Lightning: the only module that imports it.

One LightningModule wraps the pure `C2SRT` model with its loss and the streaming evaluator; one
DataModule builds the datasets through the registry. Training sees seen labels only (and the
seen-only subgraph); validation and `evaluate_checkpoint` score each block (ZSL: unseen, GZSL:
all, seen) as a pass over the block's labels (`C2SRT.score_blocks`, `BlockwiseEvaluator`).
Determinism: the data order and every augmentation are functions of (seed, epoch, index), so a run
resumed from an epoch-end checkpoint continues exactly as the uninterrupted one would have.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import logging
import math
import platform
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from torch.utils.data import DataLoader, Dataset, Sampler

from .config import Cfg, config_from_dict, config_to_dict, dump_config
from .data.base import SKIPPED_KEY, build_dataset, collate_samples
from .evaluate import BlockwiseEvaluator, block_columns, format_table
from .losses import distillation_loss, ranking_loss
from .model import C2SRT, LabelSet, Transform, create_model, create_model_and_transforms, eval_transform
from .optim import optimizer_param_groups, warmup_cosine_scheduler

_logger = logging.getLogger(__name__)

_SEED_STRIDE = 1_000_003  # spreads (seed, epoch, index) into distinct augmentation seeds


# ----------------------------------------------------------------------------- determinism
class _EpochSeeded(Dataset):
    """Applies the wrapped dataset's random transform under a seed fixed by (seed, epoch, index)."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        with torch.random.fork_rng(devices=[]):
            # the CPU generator only (what fork_rng restores): torch.manual_seed also queues a CUDA
            # seed with a formatted stack trace, ~5 ms a sample inside Lightning's deep call stack
            torch.default_generator.manual_seed((self.seed * _SEED_STRIDE + self.epoch) * _SEED_STRIDE + int(index))
            return self.dataset[index]


class EpochSampler(Sampler[int]):
    """Shuffles with a permutation that depends on (seed, epoch) only, sharded over DDP ranks."""

    def __init__(self, data: _EpochSeeded, *, seed: int, shuffle: bool, rank: int = 0, world_size: int = 1) -> None:
        self.data = data
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.data.epoch = epoch  # workers are created after this call, so they see the epoch

    def __iter__(self) -> Iterator[int]:
        n = len(self.data)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * _SEED_STRIDE + self.epoch)
            order = torch.randperm(n, generator=g).tolist()
        else:
            order = list(range(n))
        per_rank = math.ceil(n / self.world_size)
        order = (order * 2)[: per_rank * self.world_size]  # pad so every rank gets the same count
        return iter(order[self.rank :: self.world_size])

    def __len__(self) -> int:
        return math.ceil(len(self.data) / self.world_size)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written to a temporary file and renamed: a crash never corrupts one."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        from .io import atomic_open

        with atomic_open(path) as fh:
            torch.save(checkpoint, fh)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        # our own checkpoints hold only tensors and plain containers: the safe loader suffices
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)


# ------------------------------------------------------------------------------ data module
class C2SRTDataModule(L.LightningDataModule):
    """Datasets from `DataCfg` through the registry; deterministic order and augmentation.

    The transforms come with the model (`create_model_and_transforms`): its image size, crop and
    pixel statistics decide them, and the data module never sees the model.
    """

    def __init__(self, cfg: Cfg, *, train_transform: Transform | None = None, eval_transform: Transform) -> None:
        super().__init__()
        self.cfg = cfg
        self.train_transform = train_transform
        self.eval_transform = eval_transform
        self.train_set: Dataset | None = None
        self.test_set: Dataset | None = None

    def setup(self, stage: str | None = None) -> None:
        d = self.cfg.data
        if stage in (None, "fit") and self.train_set is None:
            if self.train_transform is None:
                raise ValueError("training needs the training transform (create_model_and_transforms)")
            self.train_set = build_dataset(d, "train", self.train_transform)
        if self.test_set is None:
            self.test_set = build_dataset(d, "test", self.eval_transform)

    def _loader(self, dataset: Dataset, *, train: bool, batch_size: int) -> DataLoader:
        wrapped = _EpochSeeded(dataset, self.cfg.seed)
        rank, world = 0, 1
        if self.trainer is not None:
            rank, world = self.trainer.global_rank, self.trainer.world_size
        sampler = EpochSampler(wrapped, seed=self.cfg.seed, shuffle=train, rank=rank, world_size=world)
        workers = self.cfg.data.num_workers
        return DataLoader(
            wrapped,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=workers,
            drop_last=train and len(dataset) > batch_size,  # type: ignore[arg-type]
            pin_memory=torch.cuda.is_available(),
            persistent_workers=False,  # workers must be re-created each epoch to see it
            collate_fn=collate_samples,  # counts images skipped while loading (data.skip_bad)
        )

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None
        return self._loader(self.train_set, train=True, batch_size=self.cfg.data.batch_size)

    def val_dataloader(self) -> DataLoader:
        assert self.test_set is not None
        return self._loader(self.test_set, train=False, batch_size=self.cfg.eval.batch_size)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()


# ---------------------------------------------------------------------------- the module
def _eval_summary(results: dict[str, Any], topk: list[int] | tuple[int, ...]) -> str:
    """One line of the headline figures (%): `4 images · zsl mAP 11.1 F1@3 15.4 · gzsl ...`."""
    k = min(topk)
    blocks = list(dict.fromkeys(key.split("/", 1)[0] for key in results if "/" in key))
    n = max((int(results.get(f"{b}/n_images") or 0) for b in blocks), default=0)
    parts = [f"{n} images"]
    for b in blocks:
        figures = [(name, results.get(f"{b}/{name}")) for name in ("mAP", f"F1@{k}")]
        parts.append(" ".join([b] + [f"{name} {100 * v:.1f}" for name, v in figures if _finite(v)]))
    return " · ".join(parts)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _masks(dataset: Any) -> tuple[list[str], np.ndarray, np.ndarray]:
    names = list(dataset.label_names)
    seen = np.asarray(dataset.seen_mask, dtype=bool)
    unseen = np.asarray(dataset.unseen_mask, dtype=bool)
    return names, seen, unseen


class C2SRTModule(L.LightningModule):
    """The pure model + ranking/distillation losses + streaming evaluation."""

    def __init__(
        self,
        cfg: dict[str, Any],
        label_names: list[str],
        seen: list[bool],
        graph: dict[str, Any] | None = None,
        model: C2SRT | None = None,
    ) -> None:
        super().__init__()
        # plain containers only, so checkpoints load with torch.load(weights_only=True)
        self.save_hyperparameters({"cfg": cfg, "label_names": label_names, "seen": seen, "graph": graph})
        self.cfg = config_from_dict(cfg)
        self.model: C2SRT = model if model is not None else create_model(self.cfg.model)
        self.label_names = list(label_names)
        self.seen_mask = np.asarray(seen, dtype=bool)
        self.graph = None
        if graph is not None:
            from .graph import CategoryGraph

            self.graph = CategoryGraph.from_dict(graph)
        self._evaluator: BlockwiseEvaluator | None = None
        self.last_results: dict[str, float] = {}
        # built once per fit / per evaluation, not per batch (the edge index is a Python loop over edges)
        self._train_labels: LabelSet | None = None
        self._seen_idx: torch.Tensor | None = None
        self._eval_labels: LabelSet | None = None
        self._eval_blocks: dict[str, torch.Tensor] = {}

    @property
    def seen_names(self) -> list[str]:
        return [n for n, s in zip(self.label_names, self.seen_mask) if s]

    def on_fit_start(self) -> None:
        self._train_labels = None  # the device may have changed since the last fit

    def _training_labels(self) -> LabelSet:
        """The seen vocabulary with its seen-only edges; the text again only while the prompt learns."""
        if self._train_labels is None or self._train_labels.text.device != self.device:
            with torch.no_grad():
                self._train_labels = self.model.label_set(self.seen_names, self.graph)
            self._seen_idx = torch.as_tensor(np.flatnonzero(self.seen_mask), device=self.device)
        if self.model.label_encoder.trainable:  # prompt tuning: the embeddings change every step
            text = self.model.label_encoder.encode_labels(self._train_labels.names)
            return dataclasses.replace(self._train_labels, text=text)
        return self._train_labels

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        labels = self._training_labels()
        assert self._seen_idx is not None
        target = batch["target"].index_select(1, self._seen_idx)  # [B, K_all] -> [B, K_seen]
        use_distill = self.cfg.model.distill
        out = self.model(batch["image"], labels, with_teacher=use_distill)
        loss_rank = ranking_loss(out.logits, target, margin=self.cfg.train.margin)
        loss = loss_rank
        bs = target.shape[0]
        if use_distill and out.g_teacher is not None:
            loss_dist = distillation_loss(out.g, out.g_teacher)
            loss = loss + self.cfg.model.distill_weight * loss_dist
            self.log("train/loss_dist", loss_dist, batch_size=bs, sync_dist=True)
        self.log("train/loss_rank", loss_rank, batch_size=bs, sync_dist=True)  # under DDP: the mean over ranks
        self.log("train/loss", loss, prog_bar=True, batch_size=bs, sync_dist=True)
        return loss

    # -- evaluation (validation during training, and `c2srt eval`): each block its own pass
    def _start_eval(self) -> None:
        self._evaluated: set[int] = set()
        e = self.cfg.eval
        columns = block_columns(e.protocol, self.seen_mask, ~self.seen_mask)
        self._eval_blocks = {b.value: torch.as_tensor(c, device=self.device) for b, c in columns.items()}
        with torch.no_grad():  # once per evaluation: the label encoder notices a changed prompt context
            self._eval_labels = self.model.label_set(self.label_names, self.graph)
        self._evaluator = None
        if self.trainer.is_global_zero:  # rank 0 gathers every rank's scores and alone computes
            self._evaluator = BlockwiseEvaluator(
                e.protocol, self.seen_mask, ~self.seen_mask, topk=tuple(e.topk), empty=e.empty, row_pooled=e.row_pooled
            )

    def _eval_step(self, batch: dict[str, Any]) -> None:
        assert self._eval_labels is not None  # every rank scores; rank 0 alone evaluates
        blocks = self.model.score_blocks(batch["image"], self._eval_labels, self._eval_blocks)
        k = len(self.label_names)
        gathered = {b: self.all_gather(v.float()).reshape(-1, v.shape[-1]) for b, v in blocks.items()}  # [world * B, K_b]
        target = self.all_gather(batch["target"]).reshape(-1, k)
        index = self.all_gather(torch.as_tensor(batch["index"], device=self.device)).reshape(-1)
        if self._evaluator is not None:
            # the sampler pads the last round so every rank gets as many images: count each image once
            keep = [j for j, i in enumerate(index.tolist()) if i not in self._evaluated]
            self._evaluated.update(index[keep].tolist())
            if keep:
                sel = torch.as_tensor(keep, device=target.device)
                scores = {b: v.index_select(0, sel).cpu() for b, v in gathered.items()}
                self._evaluator.update(scores, target.index_select(0, sel).cpu())

    def _end_eval(self, prefix: str) -> None:
        results: dict[str, float] = {}
        if self._evaluator is not None:
            results = self._evaluator.compute()
            if prefix == "val":  # `c2srt eval` prints its own table
                _logger.info("%s validation: %s", self._epoch_label(), _eval_summary(results, self.cfg.eval.topk))
            _logger.debug("evaluation:\n%s", format_table(results))
        results = self.trainer.strategy.broadcast(results, src=0)
        self.last_results = results
        for k, v in results.items():
            if _finite(v):
                # the same value on every rank (broadcast): `max` synchronises it exactly
                self.log(f"{prefix}/{k}", float(v), sync_dist=True, reduce_fx="max")
        self._evaluator = None
        self._eval_labels = None

    def _epoch_label(self) -> str:
        total = self.trainer.max_epochs
        return f"epoch {self.current_epoch + 1}" + (f"/{total}" if total and total > 0 else "")

    def on_validation_epoch_start(self) -> None:
        self._start_eval()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_validation_epoch_end(self) -> None:
        self._end_eval("val")

    def on_test_epoch_start(self) -> None:
        self._start_eval()

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_test_epoch_end(self) -> None:
        self._end_eval("test")

    # -- optimisation: AdamW, layer-wise lr decay, no wd on 1-D params, warm-up + cosine per step
    def configure_optimizers(self) -> Any:
        t = self.cfg.train
        opt = torch.optim.AdamW(optimizer_param_groups(self.model, t), lr=t.lr)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        batches = self.trainer.num_training_batches
        steps_per_epoch = max(1, int(batches) // t.accumulate) if math.isfinite(batches) else total
        sched = warmup_cosine_scheduler(
            opt, warmup_steps=int(t.warmup_epochs * steps_per_epoch), total_steps=total, lr=t.lr, min_lr=t.min_lr
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


# ------------------------------------------------------------------------------- run files
def json_results(results: dict[str, Any]) -> dict[str, Any]:
    """Metrics for a JSON report: undefined figures (NaN, e.g. top-5 over 3 columns) become null.

    NaN is not JSON; strict readers (jq, JavaScript, most non-Python tools) reject a file holding it.
    """
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in results.items()}


def _git_sha() -> str:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment() -> dict[str, Any]:
    """What a result depends on besides the config: code and library versions, hardware."""
    import lightning
    import open_clip

    from .version import __version__

    return {
        "c2srt": __version__,
        "git_sha": _git_sha(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "lightning": lightning.__version__,
        "open_clip": open_clip.__version__,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def write_run_files(cfg: Cfg, out: Path) -> None:
    """config.yaml (re-runnable with --config) and env.json beside every run."""
    from .io import atomic_write_text, write_json

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", dump_config(cfg))
    write_json(out / "env.json", {**environment(), "seed": cfg.seed})


def category_graph(
    cfg: Cfg, names: list[str], seen: list[str], model: C2SRT, *, out: Path | None = None, base: Any = None
) -> Any:
    """The category graph IST needs (None when IST is off), by `c2srt.graph.prepare_graph`'s rules.

    `graph.path` names a graph to use when it exists, else where a new build is saved (besides
    `<out>/graph.json`); `base` is a checkpoint's graph, extended to labels it lacks.
    """
    if cfg.model.ist.mode == "off":
        return None
    from .graph import prepare_graph, text_tower_encoder

    return prepare_graph(
        names,
        seen=seen,
        cfg=cfg.graph,
        base=base,
        path=cfg.graph.path,
        cache=out / "graph.json" if out is not None else None,
        clip_encoder=text_tower_encoder(model.label_encoder),
        progress=True,
    )


class _ExportModel(Callback):
    """Writes the safetensors model at the end of fitting, from rank 0 only."""

    def __init__(self, path: Path, cfg: Cfg) -> None:
        self.path = path
        self.cfg = cfg

    def _export(self, module: "C2SRTModule") -> None:
        from .checkpoint import save_checkpoint

        unseen = [n for n, s in zip(module.label_names, module.seen_mask) if not s]
        save_checkpoint(
            self.path,
            module.model,
            self.cfg,
            seen=module.seen_names,
            unseen=unseen,
            graph=module.graph,
            extra={"results": json_results(module.last_results), "step": module.global_step},
        )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self._export(pl_module)  # type: ignore[arg-type]


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

    on_test_batch_end = on_validation_batch_end

    def _gather(self, trainer: L.Trainer) -> None:
        if _in_process_group(trainer):
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
                names = [str(data.image_path(i)) for i in sorted(rows)]
                _logger.warning(
                    "data.skip_bad: %d unreadable %s image(s) skipped while loading: %s%s",
                    len(rows), split, ", ".join(names[:10]), ", ..." if len(names) > 10 else "",
                )  # fmt: skip

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
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
        from .io import atomic_write_text

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


def _quiet_lightning() -> None:
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
def _known_warnings_silenced(*, resume: bool = False) -> Iterator[None]:
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
    _quiet_lightning()
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


def _run_summary(trainer: L.Trainer, dm: C2SRTDataModule, seen: np.ndarray, out: Path, resume: Path | None) -> str:
    """The one line that says what is about to happen, and where."""
    device = type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()
    world = trainer.world_size
    where = f"{device}, {world} processes ({type(trainer.strategy).__name__.removesuffix('Strategy')})" if world > 1 else device
    epochs = f"{trainer.max_epochs} epochs" if trainer.max_epochs and trainer.max_epochs > 0 else f"{trainer.max_steps} steps"
    validation = f"validation on {len(dm.test_set)} images ({seen.size} labels)" if trainer.limit_val_batches else "no validation"  # type: ignore[arg-type]
    line = (
        f"training on {len(dm.train_set)} images ({int(seen.sum())} seen labels) for {epochs} on {where}; "  # type: ignore[arg-type]
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
        cfg, out, callbacks=[_ExportModel(export, cfg), skipped], resume_step=resume_step, enable_progress_bar=progress, **trainer_kwargs
    )
    if trainer.is_global_zero:
        write_run_files(cfg, out)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    model, train_tf, eval_tf = create_model_and_transforms(cfg.model, cfg.data)
    if cfg.model.init_from:  # the weights the run starts from: read here, never by the model factory
        from .checkpoint import load_init_weights

        load_init_weights(model, cfg.model.init_from)
    dm = C2SRTDataModule(cfg, train_transform=train_tf, eval_transform=eval_tf)
    dm.setup("fit")
    names, seen, _ = _masks(dm.train_set)
    seen_names = [n for n, s in zip(names, seen) if s]
    # under `ddp` the other ranks start inside trainer.fit below: they find rank 0's graph.json
    graph = category_graph(cfg, names, seen_names, model, out=out)
    module = C2SRTModule(
        config_to_dict(cfg), names, seen.tolist(), graph.to_dict() if graph is not None else None, model=model
    )
    _logger.info("%s", _run_summary(trainer, dm, seen, out, last if resume else None))
    with _known_warnings_silenced(resume=resume), checkpoint_on_interrupt(trainer, last):
        trainer.fit(module, datamodule=dm, ckpt_path=str(last) if resume else None)
    if trainer.is_global_zero:
        from .io import write_json

        write_json(out / "metrics.json", {**json_results(module.last_results), **skipped.summary(dm)})
        try:
            from .viz import plot_curves

            plot_curves(out / "logs" / "metrics.csv", out / "curves.png")
        except (FileNotFoundError, ValueError) as e:  # no or an empty metrics.csv
            _logger.warning("could not draw the learning curves: %s", e)
    _leave_process_group(trainer)
    return export


def _in_process_group(trainer: L.Trainer) -> bool:
    """This process is one of several DDP ranks, with the process group up (collectives work)."""
    return trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()


def _leave_process_group(trainer: L.Trainer) -> None:
    """Under DDP, every rank waits until rank 0 has written the run's last files, then all leave the
    process group together. A rank that exits first with the group still open can abort in the
    group's teardown at interpreter exit ("terminate called without an active exception"), and
    Lightning's process observer then kills the other ranks, rank 0 included, wherever it is."""
    if _in_process_group(trainer):
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def evaluate_checkpoint(
    checkpoint: str | Path, cfg: Cfg | None = None, *, output_dir: str | Path | None = None, progress: bool = True
) -> dict[str, float]:
    """Evaluate a saved model on the test split of `cfg.data` (default: the checkpoint's own config)."""
    from .checkpoint import load_checkpoint

    model, info = load_checkpoint(checkpoint)
    cfg = dataclasses.replace(cfg or info.cfg, model=info.cfg.model)  # data/eval may differ; the model may not
    out = Path(output_dir or Path(checkpoint).parent)
    dm = C2SRTDataModule(cfg, eval_transform=eval_transform(model))
    dm.setup("test")
    names, seen, _ = _masks(dm.test_set)
    graph = None
    if cfg.model.ist.mode != "off":
        from .graph import CategoryGraph

        base = CategoryGraph.from_dict(info.graph, where=str(checkpoint)) if info.graph is not None else None
        seen_names = [n for n, s in zip(names, seen) if s]
        graph = category_graph(cfg, names, seen_names, model, base=base).to_dict()
    module = C2SRTModule(config_to_dict(cfg), names, seen.tolist(), graph, model=model)
    skipped = SkippedImages()
    _quiet_lightning()
    trainer = L.Trainer(
        default_root_dir=str(out),
        accelerator=cfg.train.accelerator,
        devices=1,
        logger=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        callbacks=[skipped],
    )
    with _known_warnings_silenced():
        trainer.test(module, datamodule=dm, verbose=False)
    results = module.last_results
    from .io import write_json

    write_json(out / "eval.json", {**json_results(results), **skipped.summary(dm)})
    return results
