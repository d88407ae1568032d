"""Evaluating a model: the one evaluation path, from a batch of images to every figure.

`EvalPass` is what each batch goes through: the model scores every block of the protocol as a pass
over the block's labels alone (`C2SRT.score_blocks`: ZSL over the unseen labels, GZSL over all,
seen over the seen ones), and a `BlockwiseEvaluator` takes the scores. `run_evaluation` is the one
in-process loop over a dataset (`collate_samples` batches, images skipped under `data.skip_bad`
counted, per-label AP returned): `c2srt eval` (`evaluate_checkpoint`), `evaluate_model` and the
demo's rows call it. Validation during training sends Lightning's batches through the same
`EvalPass` (Lightning's loop shards them over DDP ranks). The protocols and the streaming
evaluator are `c2srt.protocol`'s, re-exported here.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np
import torch

from .data.base import (
    SKIPPED_KEY,
    LabelSplit,
    build_dataset,
    collate_samples,
    log_skipped,
)
from .metrics import EmptyColumn
from .model import DECISION_KEY, LabelSet, category_graph, eval_transform
from .protocol import (
    Block,
    BlockwiseEvaluator,
    Protocol,
    StreamingEvaluator,
    block_columns,
    evaluate,
    format_table,
)

if TYPE_CHECKING:
    from .config import Cfg
    from .graph import CategoryGraph
    from .model import C2SRT

_logger = logging.getLogger(__name__)

__all__ = [
    "Block",
    "BlockwiseEvaluator",
    "EvalPass",
    "Evaluation",
    "Protocol",
    "StreamingEvaluator",
    "block_columns",
    "evaluate",
    "evaluate_checkpoint",
    "evaluate_model",
    "evaluate_split",
    "format_table",
    "json_results",
    "run_evaluation",
]


@dataclasses.dataclass
class Evaluation:
    """What an evaluation gives.

    Attributes:
        figures: every figure, as `StreamingEvaluator.compute` names them (`zsl/mAP`, `gzsl/F1@3`, ...).
        per_label_ap: block name -> AP of each of the block's labels in column order (their
            mean is the block's mAP), e.g. `per_label_ap["zsl"]`: one AP per unseen label.
        skipped: dataset rows of the images skipped while loading (`data.skip_bad`), sorted.
        scores: block name -> scores [N, K_b] of every evaluated image, when asked (`keep_scores`).
        decision: the decision scores [N, K] of every evaluated image over the whole vocabulary
            (`C2SRT.decision_scores`, from the same image pass), when asked (`decision`).
        targets: their targets [N, K] int8 in {+1, -1, 0}, when `decision` is asked.
    """

    figures: dict[str, float]
    per_label_ap: dict[str, np.ndarray]
    skipped: list[int]
    scores: dict[str, np.ndarray] | None = None
    decision: np.ndarray | None = None
    targets: np.ndarray | None = None


class EvalPass:
    """One evaluation of a model on a vocabulary, batch by batch: the step every evaluation runs.

    Args:
        model: a `C2SRT` model (in eval mode).
        label_names: the vocabulary (seen labels first, then unseen).
        seen_mask: bool [K]; unseen_mask: bool [K] (default: not seen).
        graph: the vocabulary's category graph (IST models).
        protocol, topk, empty, row_pooled: as `StreamingEvaluator`.
        zero_shot: score with CLIP's cos(g, t) (`C2SRT.zero_shot`) instead of the heads.
        evaluate: keep a `BlockwiseEvaluator` (under DDP, only the rank that computes the figures).
        keep_scores: also keep every block's scores (`Evaluation.scores`).
        decision: also score the decision scores of the whole vocabulary in the same image pass
            (`score_blocks(..., decision=True)`) and keep them with the targets
            (`Evaluation.decision`, `Evaluation.targets`), with or without `evaluate`.
    """

    def __init__(
        self,
        model: "C2SRT",
        label_names: Iterable[str],
        seen_mask: Any,
        unseen_mask: Any = None,
        *,
        graph: "CategoryGraph | None" = None,
        protocol: str | Protocol = Protocol.GENERIC,
        topk: tuple[int, ...] | list[int] | None = None,
        empty: str | EmptyColumn = EmptyColumn.ZERO,
        row_pooled: bool = False,
        zero_shot: bool = False,
        evaluate: bool = True,
        keep_scores: bool = False,
        decision: bool = False,
    ) -> None:
        names = list(label_names)
        seen = np.asarray(seen_mask, dtype=bool)
        unseen = ~seen if unseen_mask is None else np.asarray(unseen_mask, dtype=bool)
        self.model = model
        self.zero_shot = zero_shot
        device = next(model.parameters()).device
        self.blocks = {b.value: torch.as_tensor(c, device=device) for b, c in block_columns(protocol, seen, unseen).items()}
        with torch.no_grad():  # once per evaluation: the label encoder notices a changed prompt context
            if zero_shot:  # CLIP's own scores: no graph needed, whatever the model's heads
                self.labels = LabelSet(names, model.label_encoder.encode_labels(names))
            else:
                self.labels = model.label_set(names, graph)
        self.evaluator = None
        if evaluate:
            self.evaluator = BlockwiseEvaluator(
                protocol, seen, unseen, topk=None if topk is None else tuple(topk), empty=empty, row_pooled=row_pooled
            )
        self.skipped: set[int] = set()
        self._evaluated: set[int] = set()
        self._scores: dict[str, list[np.ndarray]] | None = {b: [] for b in self.blocks} if keep_scores else None
        self.decision = decision
        self._decision: list[np.ndarray] | None = [] if decision else None
        self._targets: list[np.ndarray] = []

    def score(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Block name -> scores [B, K_b] of a batch of images (on the model's device); with
        `decision`, also `DECISION_KEY` -> the decision scores [B, K]."""
        return self.model.score_blocks(images, self.labels, self.blocks, zero_shot=self.zero_shot, decision=self.decision)

    def update(
        self, scores: Mapping[str, torch.Tensor], target: torch.Tensor, *, index: torch.Tensor | None = None, skipped: Iterable[int] = ()
    ) -> None:
        """Add a batch: its block scores [B, K_b], targets [B, K] and the rows skipped to load it.

        `index` (the dataset rows of the batch): rows seen before, in this batch or an earlier one,
        are left out, so each image counts once: the DDP sampler's padding repeats images, and
        under `data.skip_bad` the next readable image takes an unreadable one's place.
        """
        self.skipped.update(int(i) for i in skipped)
        if self.evaluator is None and self._decision is None:
            return
        if index is not None:
            keep = []
            for j, i in enumerate(torch.as_tensor(index).tolist()):
                if i not in self._evaluated:  # also a repeat within this batch
                    self._evaluated.add(i)
                    keep.append(j)
            if not keep:
                return
            sel = torch.as_tensor(keep, device=target.device)
            scores = {b: v.index_select(0, sel.to(v.device)) for b, v in scores.items()}
            target = target.index_select(0, sel)
        chunk = {b: v.float().cpu() for b, v in scores.items() if b != DECISION_KEY}
        if self._decision is not None:
            if DECISION_KEY not in scores:
                raise ValueError("this pass keeps decision scores: the batch's scores have none (score them with `score`)")
            self._decision.append(scores[DECISION_KEY].float().cpu().numpy())
            self._targets.append(target.cpu().numpy().astype(np.int8))
        if self.evaluator is None:
            return
        self.evaluator.update(chunk, target.cpu())
        if self._scores is not None:
            for b, v in chunk.items():
                self._scores[b].append(v.numpy())

    def compute(self) -> Evaluation:
        """Every figure, the per-label AP of each block, the skipped rows (and the scores and
        decision scores, if kept). Without `evaluate`, the decision scores alone (no figures)."""
        if self.evaluator is None and self._decision is None:
            raise RuntimeError("this pass only scores (evaluate=False): no figures to compute")
        figures = self.evaluator.compute() if self.evaluator is not None else {}
        per_label_ap = self.evaluator.per_label_ap if self.evaluator is not None else {}
        scores = decision = targets = None
        if self._scores is not None:
            scores = {b: np.concatenate(v) if v else np.zeros((0, len(self.blocks[b]))) for b, v in self._scores.items()}
        if self._decision is not None:
            k = len(self.labels.names)
            decision = np.concatenate(self._decision) if self._decision else np.zeros((0, k), dtype=np.float32)
            targets = np.concatenate(self._targets) if self._targets else np.zeros((0, k), dtype=np.int8)
        return Evaluation(figures, per_label_ap, sorted(self.skipped), scores, decision, targets)

    def close(self) -> None:
        if self.evaluator is not None:
            self.evaluator.close()

    def __enter__(self) -> "EvalPass":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@torch.no_grad()
def run_evaluation(
    model: "C2SRT",
    dataset: Any,
    *,
    graph: "CategoryGraph | None" = None,
    protocol: str | Protocol = Protocol.GENERIC,
    topk: tuple[int, ...] | list[int] | None = None,
    empty: str | EmptyColumn = EmptyColumn.ZERO,
    row_pooled: bool = False,
    zero_shot: bool = False,
    batch_size: int = 64,
    workers: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
    keep_scores: bool = False,
    evaluate: bool = True,
    decision: bool = False,
    split: str = "test",
) -> Evaluation:
    """Evaluate a model on a dataset in this process: the one in-process evaluation loop.

    Args:
        model: a `C2SRT` model (moved to `device`, put in eval mode).
        dataset: yields `{"image", "target", "index"}` (with `"skipped"` under `data.skip_bad`)
            and has `label_names`, `seen_mask`, `unseen_mask`, `image_path(i)`.
        graph, protocol, topk, empty, row_pooled, zero_shot, keep_scores, evaluate, decision: as
            `EvalPass` (`evaluate=False, decision=True`: the decision scores alone, e.g. to fit a
            calibrator).
        batch_size: images per forward pass.
        workers: DataLoader processes reading the images.
        device: where to run.
        progress: show a progress bar (tqdm, on stderr, on a terminal).
        split: what the images are, in the warning about images skipped while loading.

    Returns:
        An `Evaluation`; images skipped while loading are also logged (`log_skipped`).
    """
    model = model.to(device).eval()
    split = LabelSplit.of(dataset)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_samples,  # lists the images skipped while loading (data.skip_bad)
        pin_memory=torch.device(device).type == "cuda",
    )
    if progress:
        from tqdm.auto import tqdm

        loader = tqdm(loader, desc="evaluating", unit="batch", disable=None)
    kw = dict(
        protocol=protocol, topk=topk, empty=empty, row_pooled=row_pooled, zero_shot=zero_shot, keep_scores=keep_scores,
        evaluate=evaluate, decision=decision,
    )  # fmt: skip
    with EvalPass(model, split.names, split.seen, split.unseen, graph=graph, **kw) as ev:  # type: ignore[arg-type]
        for batch in loader:
            # index: a skipped image's place goes to the next readable one (data.skip_bad), counted once
            ev.update(ev.score(batch["image"].to(device)), batch["target"], index=batch.get("index"), skipped=batch.get(SKIPPED_KEY, ()))
        result = ev.compute()
    log_skipped(dataset, result.skipped, split)
    return result


def evaluate_model(
    model: Any,
    dataset: Any,
    *,
    protocol: str | Protocol = Protocol.GENERIC,
    topk: tuple[int, ...] | list[int] | None = None,
    empty: str | EmptyColumn = EmptyColumn.ZERO,
    row_pooled: bool = False,
    graph: Any = None,
    zero_shot: bool = False,
    batch_size: int = 64,
    device: Any = "cpu",
) -> dict[str, float]:
    """The figures of `run_evaluation` (no Lightning): for notebooks and quick checks.

    Args: as `run_evaluation`.
    """
    return run_evaluation(
        model, dataset, graph=graph, protocol=protocol, topk=topk, empty=empty, row_pooled=row_pooled,
        zero_shot=zero_shot, batch_size=batch_size, device=device,
    ).figures  # fmt: skip


def evaluate_split(
    model: "C2SRT",
    cfg: "Cfg",
    *,
    graph: "CategoryGraph | None" = None,
    zero_shot: bool = False,
    dataset: Any = None,
    **kwargs: Any,
) -> Evaluation:
    """`run_evaluation` on the test split of `cfg.data` (or `dataset`), as `cfg.eval` says.

    `**kwargs` go to `run_evaluation` (e.g. `device`, `workers`, `progress`, `keep_scores`).
    """
    if dataset is None:
        dataset = build_dataset(cfg.data, "test", eval_transform(model))
    e = cfg.eval
    return run_evaluation(
        model, dataset, graph=graph, protocol=e.protocol, topk=e.topk, empty=e.empty, row_pooled=e.row_pooled,
        zero_shot=zero_shot, batch_size=e.batch_size, **kwargs,
    )  # fmt: skip


def json_results(results: Mapping[str, Any]) -> dict[str, Any]:
    """Figures for a JSON report: undefined ones (NaN, e.g. top-5 over 3 columns) become null.

    NaN is not JSON; strict readers (jq, JavaScript, most non-Python tools) reject a file holding it.
    """
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in results.items()}


def device_for(accelerator: str) -> str:
    """The one device an evaluation runs on for `train.accelerator` ("auto", "gpu"/"cuda", "cpu")."""
    return "cuda" if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available() else "cpu"


def evaluate_checkpoint(
    checkpoint: str | Path, cfg: "Cfg | None" = None, *, output_dir: str | Path | None = None, progress: bool = True
) -> dict[str, float]:
    """`c2srt eval`: evaluate a saved model on the test split of `cfg.data` (default: the checkpoint's own config).

    Writes `eval.json` (the figures, and the rows skipped before and while loading) into
    `output_dir` (default: beside the checkpoint) and returns the figures.
    """
    from .checkpoint import load_checkpoint
    from .graph import CategoryGraph
    from .io import write_json

    model, info = load_checkpoint(checkpoint)
    cfg = dataclasses.replace(cfg or info.cfg, model=info.cfg.model)  # data/eval may differ; the model may not
    out = Path(output_dir or Path(checkpoint).parent)
    dataset = build_dataset(cfg.data, "test", eval_transform(model))
    split = LabelSplit.of(dataset)
    graph = None
    if model.ist is not None:
        base = CategoryGraph.from_dict(info.graph, where=str(checkpoint)) if info.graph is not None else None
        graph = category_graph(model, split.names, seen=split.seen_names, cfg=cfg.graph, base=base)
    result = evaluate_split(
        model, cfg, graph=graph, dataset=dataset, workers=cfg.data.num_workers, device=device_for(cfg.train.accelerator), progress=progress
    )
    counts = {"data/skipped_rows": len(getattr(dataset, "skipped", ())), "data/skipped_images": len(result.skipped)}
    write_json(out / "eval.json", {**json_results(result.figures), **counts})
    return result.figures
