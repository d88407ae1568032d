"""Training and evaluation with Lightning: the only module that imports it.

One LightningModule wraps the pure `C2SRT` model with its loss and the streaming evaluator; one
DataModule builds the datasets through the registry. Training sees seen labels only (and the
seen-only subgraph); validation and `evaluate_checkpoint` score each block (ZSL: unseen, GZSL:
all, seen) as a pass over the block's labels (`C2SRT.score_blocks`, `BlockwiseEvaluator`).
Determinism: the data order and every augmentation are functions of (seed, epoch, index), so a run
resumed from an epoch-end checkpoint continues exactly as the uninterrupted one would have.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import math
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch.utils.data import DataLoader, Dataset, Sampler

from .config import Cfg, config_from_dict, config_to_dict, dump_config
from .data.base import build_dataset
from .data.transforms import eval_transform, train_transform
from .evaluate import BlockwiseEvaluator, format_table
from .losses import distillation_loss, ranking_loss
from .model import C2SRT, LabelSet, create_model
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
            torch.manual_seed((self.seed * _SEED_STRIDE + self.epoch) * _SEED_STRIDE + int(index))
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
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        # our own checkpoints hold only tensors and plain containers: the safe loader suffices
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)


# ------------------------------------------------------------------------------ data module
class C2SRTDataModule(L.LightningDataModule):
    """Datasets from `DataCfg` through the registry; deterministic order and augmentation."""

    def __init__(self, cfg: Cfg, model: C2SRT) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = model  # its image size, crop and pixel statistics decide the transforms
        self.train_set: Dataset | None = None
        self.test_set: Dataset | None = None

    def setup(self, stage: str | None = None) -> None:
        d = self.cfg.data
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = build_dataset(d, "train", train_transform(self.model, d))
        if self.test_set is None:
            self.test_set = build_dataset(d, "test", eval_transform(self.model))

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
            self.log("train/loss_dist", loss_dist, batch_size=bs)
        self.log("train/loss_rank", loss_rank, batch_size=bs)
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        return loss

    # -- evaluation (validation during training, and `c2srt eval`): each block its own pass
    def _start_eval(self) -> None:
        self._evaluated: set[int] = set()
        e = self.cfg.eval
        self._evaluator = BlockwiseEvaluator(
            e.protocol, self.seen_mask, ~self.seen_mask, topk=tuple(e.topk), empty=e.empty, row_pooled=e.row_pooled
        )
        self._eval_blocks = {b.value: torch.as_tensor(c, device=self.device) for b, c in self._evaluator.columns.items()}
        with torch.no_grad():  # once per evaluation: the label encoder notices a changed prompt context
            self._eval_labels = self.model.label_set(self.label_names, self.graph)

    def _eval_step(self, batch: dict[str, Any]) -> None:
        assert self._evaluator is not None and self._eval_labels is not None
        blocks = self.model.score_blocks(batch["image"], self._eval_labels, self._eval_blocks)
        k = len(self.label_names)
        gathered = {b: self.all_gather(v.float()).reshape(-1, v.shape[-1]) for b, v in blocks.items()}  # [world * B, K_b]
        target = self.all_gather(batch["target"]).reshape(-1, k)
        index = self.all_gather(torch.as_tensor(batch["index"], device=self.device)).reshape(-1)
        if self.trainer.is_global_zero:
            # the sampler pads the last round so every rank gets as many images: count each image once
            keep = [j for j, i in enumerate(index.tolist()) if i not in self._evaluated]
            self._evaluated.update(index[keep].tolist())
            if keep:
                sel = torch.as_tensor(keep, device=target.device)
                scores = {b: v.index_select(0, sel).cpu() for b, v in gathered.items()}
                self._evaluator.update(scores, target.index_select(0, sel).cpu())

    def _end_eval(self, prefix: str) -> None:
        assert self._evaluator is not None
        if self.trainer.is_global_zero:
            results = self._evaluator.compute()
            self.last_results = results
            _logger.info("evaluation:\n%s", format_table(results))
        else:
            results = {}
        results = self.trainer.strategy.broadcast(results, src=0)
        for k, v in results.items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                self.log(f"{prefix}/{k}", float(v), sync_dist=False, rank_zero_only=True)
        self._evaluator.close()
        self._evaluator = None
        self._eval_labels = None

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

    from . import __version__

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


class _ExportBest(Callback):
    """Writes the safetensors model after each validation (and at the end of fitting)."""

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


_LOG_CSV = Path("logs") / "metrics.csv"
_LOG_BEFORE_RESUME = Path("logs") / "metrics.before_resume.csv"


def _keep_logs_for_resume(out: Path) -> None:
    """Set the metrics CSV aside: the resumed run's CSVLogger starts the file afresh."""
    src, dst = out / _LOG_CSV, out / _LOG_BEFORE_RESUME
    if src.is_file() and not dst.is_file():  # an earlier resume that crashed has it set aside already
        os.replace(src, dst)


def _merge_resumed_logs(out: Path) -> None:
    """One metrics CSV over the whole run: the earlier rows before the resumed step, then the new ones.

    Rows logged after the checkpoint (a run killed mid-epoch) are dropped, as the resumed run
    repeats those steps.
    """
    before, now = out / _LOG_BEFORE_RESUME, out / _LOG_CSV
    if not before.is_file():
        return

    def rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
        if not path.is_file():
            return [], []
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            return list(reader.fieldnames or []), list(reader)

    old_keys, old_rows = rows(before)
    new_keys, new_rows = rows(now)
    steps = [int(r["step"]) for r in new_rows if r.get("step", "").isdigit()]
    first = min(steps) if steps else None
    kept = [r for r in old_rows if first is None or not r.get("step", "").isdigit() or int(r["step"]) < first]
    keys = list(dict.fromkeys(old_keys + new_keys))
    from .io import atomic_write_text

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(kept + new_rows)
    atomic_write_text(now, buf.getvalue())
    before.unlink()


def build_trainer(cfg: Cfg, out: Path, *, callbacks: list[Callback] | None = None, **kwargs: Any) -> L.Trainer:
    t = cfg.train
    loggers: list[Any] = [L.pytorch.loggers.CSVLogger(str(out), name="logs", version="")]
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
        limit_val_batches=1.0 if t.val_every > 0 else 0,
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


def fit(cfg: Cfg, *, resume: bool = False, progress: bool = True, **trainer_kwargs: Any) -> Path:
    """Train as `cfg` says; returns the exported `model.safetensors`.

    `resume=True` continues from `<output_dir>/checkpoints/last.ckpt` (optimizer, schedule, epoch and
    data order included). Raises FileNotFoundError when there is nothing to resume.
    """
    out = Path(cfg.output_dir)
    last = out / "checkpoints" / "last.ckpt"
    if resume and not last.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {last}")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    write_run_files(cfg, out)
    model = create_model(cfg.model)
    dm = C2SRTDataModule(cfg, model)
    dm.setup("fit")
    names, seen, _ = _masks(dm.train_set)
    seen_names = [n for n, s in zip(names, seen) if s]
    graph = category_graph(cfg, names, seen_names, model, out=out)
    module = C2SRTModule(
        config_to_dict(cfg), names, seen.tolist(), graph.to_dict() if graph is not None else None, model=model
    )
    export = out / "model.safetensors"
    trainer = build_trainer(cfg, out, callbacks=[_ExportBest(export, cfg)], enable_progress_bar=progress, **trainer_kwargs)
    if resume and trainer.is_global_zero:
        _keep_logs_for_resume(out)
    trainer.fit(module, datamodule=dm, ckpt_path=str(last) if resume else None)
    if trainer.is_global_zero:
        from .io import write_json

        _merge_resumed_logs(out)

        write_json(out / "metrics.json", json_results(module.last_results))
        try:
            from .viz import plot_curves

            plot_curves(out / "logs" / "metrics.csv", out / "curves.png")
        except (ImportError, FileNotFoundError, ValueError) as e:
            _logger.warning("could not draw the learning curves: %s", e)
    return export


def evaluate_checkpoint(
    checkpoint: str | Path, cfg: Cfg | None = None, *, output_dir: str | Path | None = None, progress: bool = True
) -> dict[str, float]:
    """Evaluate a saved model on the test split of `cfg.data` (default: the checkpoint's own config)."""
    from .checkpoint import load_checkpoint

    model, info = load_checkpoint(checkpoint)
    cfg = dataclasses.replace(cfg or info.cfg, model=info.cfg.model)  # data/eval may differ; the model may not
    out = Path(output_dir or Path(checkpoint).parent)
    dm = C2SRTDataModule(cfg, model)
    dm.setup("test")
    names, seen, _ = _masks(dm.test_set)
    graph = None
    if cfg.model.ist.mode != "off":
        from .graph import CategoryGraph

        base = CategoryGraph.from_dict(info.graph, where=str(checkpoint)) if info.graph is not None else None
        seen_names = [n for n, s in zip(names, seen) if s]
        graph = category_graph(cfg, names, seen_names, model, base=base).to_dict()
    module = C2SRTModule(config_to_dict(cfg), names, seen.tolist(), graph, model=model)
    trainer = L.Trainer(
        default_root_dir=str(out),
        accelerator=cfg.train.accelerator,
        devices=1,
        logger=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
    )
    trainer.test(module, datamodule=dm, verbose=False)
    results = module.last_results
    from .io import write_json

    write_json(out / "eval.json", json_results(results))
    return results
