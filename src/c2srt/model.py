"""The C2SRT model: CLIP backbone + region head (MKT or ISR) + optional IST, for any label set.

Every ablation of the paper is a config value (`ModelCfg`): head = mkt | isr, ist = off | label |
image, distillation on | off, prompt tuning on | off. Labels are given by name at call time, so a
vocabulary never seen in training is scored without retraining.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import torch
from torch import nn

from .backbone import ClipBackbone, create_clip
from .config import DataCfg, GraphCfg, ModelCfg
from .data.transforms import build_transform, normalization
from .heads import CosineScore, HeadOutput, build_head, fuse_block
from .heads.ist import IstModule
from .registry import drop_none
from .text import LabelEncoder
from .vocabulary import check_unique

if TYPE_CHECKING:
    from PIL import Image

    from .graph import CategoryGraph

Transform = Callable[["Image.Image"], torch.Tensor]

_logger = logging.getLogger(__name__)

DECISION_KEY = "decision"  # `C2SRT.score_blocks(..., decision=True)`: the decision scores [B, K]


@dataclass
class LabelSet:
    """A vocabulary ready to score: names, text embeddings [K,D] and its category graph."""

    names: list[str]
    text: torch.Tensor  # [K, D], L2-normalised
    edge_index: torch.Tensor | None = None  # [2, E] long, neighbour -> category
    edge_weight: torch.Tensor | None = None  # [E]

    def __len__(self) -> int:
        return len(self.names)


@dataclass
class ModelOutput:
    """What `C2SRT.forward` returns."""

    logits: torch.Tensor  # [B, K]
    g: torch.Tensor  # [B, D] student global embedding (for distillation)
    g_teacher: torch.Tensor | None = None  # [B, D] frozen teacher's global embedding
    counts: torch.Tensor | None = None  # [B, K] patches kept per label (ISR) or top-k (MKT)
    weights: torch.Tensor | None = None  # [B, N, K] patch weights per label, when asked
    decision: torch.Tensor | None = None  # [B, K] decision scores (`C2SRT.decision_scores`), when asked


class C2SRT(nn.Module):
    """CLIP image tower + region head + optional IST, scoring any vocabulary.

    Shapes:
        images: [B, 3, H, W]; labels: K names (or a LabelSet) -> logits [B, K].
    """

    def __init__(
        self,
        backbone: ClipBackbone,
        label_encoder: LabelEncoder,
        head: nn.Module,
        ist: nn.Module | None,
        cfg: ModelCfg,
        *,
        scorer: nn.Module | None = None,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        crop_pct: float = 1.0,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.label_encoder = label_encoder
        self.head = head
        self.ist = ist
        self.scorer = scorer  # per-label scoring without IST (`model.head.scoring: cosine`)
        self.cfg = cfg
        self.image_size = image_size
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.crop_pct = float(crop_pct)  # evaluation crop: image_size of the short side resized to image_size / crop_pct
        self._refined_cache: tuple[tuple[str, ...], torch.Tensor, torch.Tensor] | None = None  # names, text, refined

    # ----------------------------------------------------------------- labels
    def label_set(self, names: Sequence[str], graph: "CategoryGraph | None" = None) -> LabelSet:
        """Embed a vocabulary and attach its graph edges (needed when IST is on)."""
        names = list(names)
        check_unique(names)
        text = self.label_encoder.encode_labels(names)
        edge_index = edge_weight = None
        if self.ist is not None:
            if graph is None:
                raise ValueError("IST is on (model.ist.mode != 'off'): a category graph is needed for the labels")
            edge_index, edge_weight = graph.edge_index_for(names, device=text.device)
        return LabelSet(names, text, edge_index, edge_weight)

    def _refined(self, labels: LabelSet) -> torch.Tensor:
        """IST label mode: graph-refined label embeddings, cached at inference per vocabulary and
        per text tensor (the label encoder returns a new tensor whenever the prompt context changed)."""
        key = tuple(labels.names)
        use_cache = not torch.is_grad_enabled() and not self.training
        cached = self._refined_cache
        if use_cache and cached is not None and cached[0] == key and cached[1] is labels.text:
            return cached[2]
        refined = self.ist.refine_labels(labels.text, labels.edge_index, labels.edge_weight)
        if use_cache:
            self._refined_cache = (key, labels.text, refined)
        return refined

    def train(self, mode: bool = True) -> "C2SRT":
        self._refined_cache = None
        return super().train(mode)

    # ---------------------------------------------------------------- forward
    @property
    def per_label(self) -> bool:
        """Whether each label's score is computed on its own (IST, or cosine scoring) rather than
        normalised across the labels scored (MKT's fusion)."""
        return self.ist is not None or self.scorer is not None

    def _per_label_scale(self) -> torch.Tensor:
        """e^s of the per-label rule (IST's, or cosine scoring's): its logits are e^s times a cosine."""
        module = self.scorer if self.scorer is not None else self.ist
        return module.logit_scale.exp()

    def _decision(self, out: HeadOutput, logits: torch.Tensor) -> torch.Tensor:
        """Decision scores [B, K]: the per-label rule's logits over e^s (its cosine; with IST's
        `evidence`, plus the readout's shift over e^s), else the head's cos(f_img^c, t_c)
        (`HeadOutput.cosine`)."""
        if self.per_label:
            return logits / self._per_label_scale()
        if out.cosine is None:
            raise ValueError("the head was not asked for its decision scores (need_cosine)")
        return out.cosine

    def _logits(self, out: HeadOutput, labels: LabelSet) -> torch.Tensor:
        """Scores of every label of `labels` from the head's output (through IST when it is on)."""
        if self.scorer is not None:
            return self.scorer(out.f_img, labels.text)
        if self.ist is None:
            return out.logits
        if self.cfg.ist.mode == "label":
            return self.ist.score(out.f_img, self._refined(labels))
        return self.ist(out.f_img, labels.text, labels.edge_index, labels.edge_weight)

    def forward(
        self,
        images: torch.Tensor,
        labels: LabelSet | Sequence[str],
        *,
        graph: "CategoryGraph | None" = None,
        return_weights: bool = False,
        with_teacher: bool = False,
        decision: bool = False,
    ) -> ModelOutput:
        """Score `labels` for each image.

        Args:
            images: [B, 3, H, W], normalised as `self.mean` / `self.std` say.
            labels: label names, or a LabelSet from `label_set` (reuse it across batches).
            graph: the category graph when `labels` are names and IST is on.
            return_weights: also return the per-label patch weights [B, N, K] (explanations).
            with_teacher: also run the frozen teacher (distillation during training).
            decision: also return the decision scores [B, K] (see `decision_scores`) from the same pass.
        """
        if not isinstance(labels, LabelSet):
            labels = self.label_set(labels, graph)
        g, patches = self.backbone.encode_image(images)  # [B, D], [B, N, D]
        need_cosine = decision and not self.per_label
        out = self.head(g, patches, labels.text, return_weights=return_weights, need_features=self.per_label, need_cosine=need_cosine)
        logits = self._logits(out, labels)
        g_teacher = None
        if with_teacher and self.backbone.teacher is not None:
            g_teacher = self.backbone.encode_teacher(images)
        return ModelOutput(logits, g, g_teacher, out.counts, out.weights, self._decision(out, logits) if decision else None)

    def decision_scores(
        self,
        images: torch.Tensor,
        labels: LabelSet | Sequence[str],
        *,
        graph: "CategoryGraph | None" = None,
        zero_shot: bool = False,
    ) -> torch.Tensor:
        r"""A score per (image, label) for deciding whether the label is present (a cosine, in [-1, 1]
        but for IST's evidence shift).

        The fused logits (`forward`) rank the labels of one image, and MKT's fusion L2-normalises
        them across the labels scored, so a label's logit changes with the rest of the vocabulary.
        A decision score is normalised across nothing; `c2srt.calibration` maps it to P(present):

        - MKT / ISR heads (fused scoring): :math:`\cos(f^{img}_{bc}, t_c)`,
          :math:`f^{img}_{bc} = (f^L_{bc} + g_b)/2` (`heads.base.region_cosine`; the rule that
          cosine scoring and IST score with);
        - cosine scoring: the same cosine (the logits over their scale :math:`e^s`);
        - IST image mode: :math:`\cos(f^{img}_{bc} + W_o h^L_{bc}, t_c)`, IST label mode:
          :math:`\cos(f^{img}_{bc}, t'_c)` (the logits over :math:`e^s`). With
          `model.ist.evidence` IST's logit is :math:`e^s \cos(\cdot) + r(h^L_{bc})`, the readout's
          shift added; the decision score is still the logit over :math:`e^s`, so it is
          :math:`\cos(\cdot) + r(h^L_{bc}) / e^s`, shift included (scaled), and may leave [-1, 1]:
          nothing of the logit is hidden from the calibrator, which sees the model's own ranking
          of (image, label) pairs, divided by one positive number;
        - `zero_shot`: CLIP's :math:`\cos(g_b, t_c)` (`zero_shot`).

        Without IST a label's score is the same under any vocabulary that contains it (up to
        floating-point rounding). With IST it depends on the labels of the vocabulary within two
        hops upstream in the category graph (IST's GATv2 layers; docs/REPRODUCE.md, "Tag
        decisions", has the rule and its measured size); labels farther away change nothing.

        Args:
            images: [B, 3, H, W].
            labels: label names or a LabelSet.
            graph: the category graph when `labels` are names and IST is on.
            zero_shot: CLIP's cos(g, t) instead of the trained heads.

        Returns:
            [B, K] decision scores.
        """
        if zero_shot:
            return self.zero_shot(images, labels)
        return self(images, labels, graph=graph, decision=True).decision

    def score_blocks(
        self,
        images: torch.Tensor,
        labels: LabelSet,
        blocks: Mapping[str, torch.Tensor],
        *,
        zero_shot: bool = False,
        decision: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Scores of several sub-vocabularies of `labels` (e.g. ZSL = unseen, GZSL = all) from one image pass.

        Each block is scored as a pass over the block's labels alone scores it: the head's two
        streams are per label, and their fusion (L2 across labels) runs over the block's labels
        only. With IST the graph of the whole of `labels` propagates, so seen labels still send
        messages to unseen ones; IST's scores (scaled cosines) involve no normalisation across
        labels, so a block keeps its columns, as with cosine scoring. `zero_shot`: CLIP's cos(g, t), per label, likewise.

        Args:
            images: [B, 3, H, W].
            labels: the whole vocabulary (with its graph edges when IST is on).
            blocks: block name -> column indices into `labels` (LongTensor [K_b]).
            zero_shot: score with `zero_shot` instead of the trained heads.
            decision: also return the decision scores of the whole of `labels` ([B, K], see
                `decision_scores`), from the same image pass, under the key `DECISION_KEY`.

        Returns:
            block name -> logits [B, K_b] (and `DECISION_KEY` -> [B, K] when asked).
        """
        if zero_shot:
            s = self.zero_shot(images, labels)
            scores = {name: s[:, idx.to(s.device)] for name, idx in blocks.items()}
            return {**scores, DECISION_KEY: s} if decision else scores
        g, patches = self.backbone.encode_image(images)  # [B, D], [B, N, D]
        out = self.head(g, patches, labels.text, need_features=self.per_label, need_cosine=decision and not self.per_label)
        if self.per_label:
            s = self._logits(out, labels)
            scores = {name: s[:, idx.to(s.device)] for name, idx in blocks.items()}
        else:
            scores = {name: fuse_block(out, idx.to(out.logits.device)) for name, idx in blocks.items()}
            s = out.logits
        return {**scores, DECISION_KEY: self._decision(out, s)} if decision else scores

    @torch.no_grad()
    def zero_shot(self, images: torch.Tensor, labels: LabelSet | Sequence[str]) -> torch.Tensor:
        """Plain CLIP zero-shot scores cos(g, t) [B, K] (the teacher's, if there is one)."""
        if not isinstance(labels, LabelSet):
            labels = LabelSet(list(labels), self.label_encoder.encode_labels(list(labels)))
        if self.backbone.teacher is not None:
            g = self.backbone.encode_teacher(images)
        else:
            g, _ = self.backbone.encode_image(images)
        g = nn.functional.normalize(g, dim=-1)
        return torch.einsum("bd,kd->bk", g, labels.text)  # [B, D] x [K, D] -> [B, K]

    # ------------------------------------------------------------- weights
    def rebuilt_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes that building the model restores by itself, so checkpoints omit them.

        The teacher is the pretrained tower (rebuilt from `cfg.pretrained`); a preset's frozen,
        package-provided text tower (the mini-world's MiniLM, 90 MB) is loaded from its package.
        """
        from .backbone import FROZEN_HF_PREFIX, list_presets, load_preset

        prefixes = ["backbone.teacher."]
        if self.cfg.backbone in list_presets():
            text_cfg = load_preset(self.cfg.backbone)["model_cfg"].get("text_cfg", {})
            if text_cfg.get("hf_model_pretrained"):
                prefixes.append(f"label_encoder.clip.{FROZEN_HF_PREFIX}")
        return tuple(prefixes)

    def state_dict_to_save(self) -> dict[str, torch.Tensor]:
        """Everything that training may change or that building the model cannot restore."""
        skip = self.rebuilt_prefixes()
        return {k: v for k, v in self.state_dict().items() if not k.startswith(skip)}

    def extra_repr(self) -> str:
        return f"head={self.cfg.head.name}, scoring={self.cfg.head.scoring}, ist={self.cfg.ist.mode}, distill={self.cfg.distill}"


def create_model(
    cfg_or_name: ModelCfg | str,
    *,
    pretrained: str | None = None,
    device: str | torch.device = "cpu",
    teacher: bool | None = None,
    **overrides: Any,
) -> C2SRT:
    """Build a C2SRT model from a `ModelCfg` (or a backbone name with defaults).

    Args:
        cfg_or_name: the model config, or an open_clip / preset backbone name.
        pretrained: overrides `cfg.pretrained` (hub tag or weights path).
        device: where to build it.
        teacher: build the frozen teacher copy (default: when `cfg.distill`); inference needs none.
        **overrides: top-level `ModelCfg` fields; `None` values are dropped.

    `cfg.init_from` (the weights a run starts from) is not read here: the code that builds a run
    loads it (`checkpoint.load_init_weights`), so building a model never reads a checkpoint.

    Example:
        >>> model = create_model("test-tiny", pretrained=None)
        >>> model(torch.randn(2, 3, 32, 32), ["dog", "cat"]).logits.shape
        torch.Size([2, 2])
    """
    if isinstance(cfg_or_name, str):
        cfg = ModelCfg(backbone=cfg_or_name, pretrained=None)
    else:
        cfg = cfg_or_name
    overrides = drop_none({"pretrained": pretrained, **overrides})
    if overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    bundle = create_clip(cfg.backbone, cfg.pretrained, device=device)
    visual = bundle.model.visual
    bundle.model.visual = nn.Identity()  # the label encoder keeps only the text tower
    backbone = ClipBackbone(
        visual,
        trainable_blocks=cfg.trainable_blocks,
        teacher=cfg.distill if teacher is None else teacher,
    )
    if not cfg.train_image:
        backbone.freeze()
    label_encoder = LabelEncoder(
        bundle.model,
        bundle.tokenizer,
        templates=cfg.templates,
        prompt_tuning=cfg.prompt_tuning,
        n_ctx=cfg.n_ctx,
        prompt_init=cfg.prompt_init,
    )
    head = build_head(cfg.head, backbone.embed_dim)
    ist = None
    if cfg.ist.mode != "off":
        ist = IstModule(
            backbone.embed_dim,
            hidden=cfg.ist.hidden,
            layers=cfg.ist.layers,
            heads=cfg.ist.heads,
            dropout=cfg.ist.dropout,
            mode=cfg.ist.mode,
            image_chunk=cfg.ist.image_chunk,
            top_m=cfg.ist.top_m,
            evidence=cfg.ist.evidence and cfg.ist.mode == "image",  # label mode has no image evidence
            self_loops=cfg.ist.self_loops,
            evidence_dropout=cfg.ist.evidence_dropout if cfg.ist.mode == "image" else 0.0,
        )
    scorer = CosineScore() if cfg.head.scoring == "cosine" and ist is None else None
    mean, std = (bundle.mean, bundle.std) if cfg.normalization == "backbone" else normalization(cfg.normalization)
    model = C2SRT(
        backbone, label_encoder, head, ist, cfg, scorer=scorer, image_size=bundle.image_size, mean=mean, std=std, crop_pct=cfg.crop_pct
    )
    return model.to(device)


# ------------------------------------------------------------------------------ transforms
def eval_transform(model: C2SRT) -> Transform:
    """The evaluation pipeline a model expects: its image size, crop fraction and pixel statistics."""
    return build_transform(model.image_size, model.mean, model.std, train=False, crop_pct=model.crop_pct)


def train_transform(model: C2SRT, data: DataCfg) -> Transform:
    """The training pipeline of `data` (`DataCfg`) at the model's image size and statistics."""
    return build_transform(
        model.image_size,
        model.mean,
        model.std,
        train=True,
        rand_augment=data.rand_augment,
        pipeline=data.train_transform,
        crop_scale=data.crop_scale,
        auto_augment=data.auto_augment,
    )


def create_model_and_transforms(
    cfg_or_name: ModelCfg | str, data: DataCfg | None = None, **kwargs: Any
) -> tuple[C2SRT, Transform, Transform]:
    """`create_model` with the image pipelines that go with the model (open_clip's function of the same name).

    Args:
        cfg_or_name, **kwargs: as `create_model`.
        data: the `DataCfg` whose training pipeline to build (default: `DataCfg()`'s).

    Returns:
        (model, training transform, evaluation transform); data code then never needs the model.
    """
    model = create_model(cfg_or_name, **kwargs)
    return model, train_transform(model, data if data is not None else DataCfg()), eval_transform(model)


def category_graph(
    model: C2SRT,
    names: Sequence[str],
    *,
    seen: Sequence[str] | None,
    cfg: GraphCfg,
    base: "CategoryGraph | None" = None,
    cache: str | Path | None = None,
) -> "CategoryGraph | None":
    """The category graph IST needs for `names` (None when the model has no IST), by `prepare_graph`'s rules.

    `cfg.path` names a graph to use when it exists, else where a new build is saved (besides
    `cache`, e.g. a run's `graph.json`); `base` (a checkpoint's graph) is extended to the labels it
    lacks; the "clip" encoder is the model's own text tower.
    """
    if model.ist is None:
        return None
    from .graph import prepare_graph, text_tower_encoder

    return prepare_graph(
        list(names),
        seen=None if seen is None else list(seen),
        cfg=cfg,
        base=base,
        path=cfg.path,
        cache=cache,
        clip_encoder=text_tower_encoder(model.label_encoder),
        progress=True,
    )


def vocabulary_graph(model: C2SRT, names: Sequence[str], base: "CategoryGraph | None") -> "CategoryGraph":
    """The category graph IST propagates over for a vocabulary at inference (`c2srt predict`, the
    web page, calibration): `base` (the checkpoint's graph) extended on the fly to the labels it
    lacks, by `prepare_graph`'s rules (embedding source, the model's own text tower, adaptive cut);
    the base graph's edges are kept as they are. Without `base`, a graph built from the names.
    """
    from .graph import prepare_graph, text_tower_encoder

    return prepare_graph(
        list(names),
        cfg=GraphCfg(source="embedding", encoder="clip"),
        base=base,
        clip_encoder=text_tower_encoder(model.label_encoder),
    )
