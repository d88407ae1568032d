"""The LightningModule: the pure `C2SRT` model, its training loss and validation.

Training sees the seen labels only (and the seen-only subgraph); validation scores each block
(ZSL: unseen, GZSL: all, seen) as a pass over the block's labels, through the one evaluation step
(`c2srt.evaluate.EvalPass`) that `c2srt eval` and `evaluate_model` also run.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import lightning as L
import numpy as np
import torch

from ..config import config_from_dict
from ..data.base import LabelSplit
from ..evaluate import EvalPass, format_table
from ..losses import training_loss
from ..model import C2SRT, LabelSet, create_model
from ..optim import optimizer_param_groups, warmup_cosine_scheduler
from .sampling import step_seeded

_logger = logging.getLogger(__name__)


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
        self.split = LabelSplit(self.label_names, self.seen_mask, ~self.seen_mask)
        self.graph = None
        if graph is not None:
            from ..graph import CategoryGraph

            self.graph = CategoryGraph.from_dict(graph)
        self._eval: EvalPass | None = None
        self.last_results: dict[str, float] = {}
        # built once per fit / per evaluation, not per batch (the edge index is a Python loop over edges)
        self._train_labels: LabelSet | None = None
        self._seen_idx: torch.Tensor | None = None

    @property
    def seen_names(self) -> list[str]:
        return self.split.seen_names

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
        with step_seeded(self.cfg.seed, self.global_rank, self.global_step, self.device):  # dropout resumes too
            out = self.model(batch["image"], labels, with_teacher=use_distill)
        loss = training_loss(
            out.logits, target, g=out.g, g_teacher=out.g_teacher if use_distill else None,
            margin=self.cfg.train.margin, distill_weight=self.cfg.model.distill_weight,
        )  # fmt: skip
        bs = target.shape[0]
        if loss.dist is not None:
            self.log("train/loss_dist", loss.dist, batch_size=bs, sync_dist=True)
        self.log("train/loss_rank", loss.rank, batch_size=bs, sync_dist=True)  # under DDP: the mean over ranks
        self.log("train/loss", loss.total, prog_bar=True, batch_size=bs, sync_dist=True)
        return loss.total

    # -- validation: Lightning's loop (sharded over DDP ranks) through the one evaluation step
    def _start_eval(self) -> None:
        e = self.cfg.eval
        self._eval = EvalPass(
            self.model, self.label_names, self.seen_mask, graph=self.graph, protocol=e.protocol, topk=e.topk,
            empty=e.empty, row_pooled=e.row_pooled, evaluate=self.trainer.is_global_zero,  # rank 0 alone computes
        )  # fmt: skip

    def _eval_step(self, batch: dict[str, Any]) -> None:
        assert self._eval is not None  # every rank scores; rank 0 gathers every rank's scores and evaluates
        blocks = self._eval.score(batch["image"])
        k = len(self.label_names)
        gathered = {b: self.all_gather(v.float()).reshape(-1, v.shape[-1]) for b, v in blocks.items()}  # [world * B, K_b]
        target = self.all_gather(batch["target"]).reshape(-1, k)
        index = self.all_gather(torch.as_tensor(batch["index"], device=self.device)).reshape(-1)
        self._eval.update(gathered, target, index=index)  # the sampler pads the last round: each image once

    def _end_eval(self, prefix: str) -> None:
        results: dict[str, float] = {}
        assert self._eval is not None
        if self._eval.evaluator is not None:
            results = self._eval.compute().figures
            if prefix == "val":
                _logger.info("%s validation: %s", self._epoch_label(), _eval_summary(results, self.cfg.eval.topk))
            _logger.debug("evaluation:\n%s", format_table(results))
        self._eval.close()
        self._eval = None
        results = self.trainer.strategy.broadcast(results, src=0)
        self.last_results = results
        for k, v in results.items():
            if _finite(v):
                # the same value on every rank (broadcast): `max` synchronises it exactly
                self.log(f"{prefix}/{k}", float(v), sync_dist=True, reduce_fx="max")

    def _epoch_label(self) -> str:
        total = self.trainer.max_epochs
        return f"epoch {self.current_epoch + 1}" + (f"/{total}" if total and total > 0 else "")

    def on_validation_epoch_start(self) -> None:
        self._start_eval()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_validation_epoch_end(self) -> None:
        self._end_eval("val")

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
