"""The config schema (nested dataclasses) and its loading: YAML -> defaults -> overrides -> validate.

Every ablation of the paper is a value here, so all experiments are runs of one program.
Unknown keys are errors, so a typo fails instead of silently falling back to a default.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import types
import typing
import warnings
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .choices import CalibrationMethod, EmptyColumn, GraphSource, IstMode, LocalLlmMode, Protocol, Scoring
from .constants import DEFAULT_TEMPLATE
from .registry import HEADS, Registry


@dataclass
class HeadCfg:
    name: str = "isr"  # region head, a registered name (c2srt.heads.list_heads()): "mkt" (fixed top-k patches), "isr" (category-adaptive)
    topk: int = 16  # MKT: patches averaged per label
    alpha: float = 0.5  # ISR: probability mass the kept patches must reach, in (0, 1]
    k_min: int = 1  # ISR: fewest patches kept per (image, label)
    k_max: int = 32  # ISR: most patches kept per (image, label)
    tau: float = 0.02  # ISR: softmax temperature over patch-label cosine similarities
    pool: str = "weighted"  # ISR: "weighted" (renormalised probabilities) or "mean"
    similarity: str = "cosine"  # "raw": MKT's formula (unnormalised x @ proj against the labels); "cosine": L2-normalised first
    scoring: str = "fused"  # without IST: "fused" (MKT's fusion, normalised across the labels scored) or "cosine" (IST's e^s cos(f_img, t) per label, s learnt)
    label_chunk: int = 2048  # labels scored per chunk (bounds memory at 7,586 labels)


@dataclass
class IstCfg:
    mode: str = "off"  # "off", "label" (refine label embeddings once) or "image" (per-image node features)
    layers: int = 2  # GATv2 layers
    heads: int = 4  # attention heads per layer
    hidden: int = 256  # node feature width inside the GAT, in channels
    dropout: float = 0.0  # attention dropout
    image_chunk: int = 16  # images per GAT pass in "image" mode (bounds memory)
    top_m: int = 0  # "image" mode: propagate over each image's top-M labels by region score and their graph neighbours only (0: every label, exact)
    evidence: bool = True  # "image" mode (label mode ignores it): each node's own evidence cos(f_img, t) as an input, and a logit shift read from its final state (transfer of how strongly a neighbour is present)
    self_loops: bool = True  # attention includes the node itself (GATv2Conv's default); false: neighbours only, the node's own state passes through the residual
    evidence_dropout: float = 0.25  # "image" mode (label mode ignores it), training: share of (image, label) nodes whose own evidence is hidden from IST, in [0, 1)


@dataclass
class ModelCfg:
    backbone: str = "ViT-B-16"  # open_clip model name or a c2srt preset (c2srt.backbone.list_presets())
    pretrained: str | None = "openai"  # hub tag, path to an OpenAI .pt / open_clip checkpoint, or None
    init_from: str | None = None  # weights loaded after building: a c2srt .safetensors (stage 1) or MKT's image .pth
    trainable_blocks: int = 2  # last N vision blocks that train (plus ln_post and proj); -1: all
    train_image: bool = True  # false: the whole image tower frozen, ln_post and proj included (MKT stage 2)
    templates: list[str] = field(default_factory=lambda: [DEFAULT_TEMPLATE])  # prompt ensemble
    prompt_tuning: bool = False  # learn prompt context shared by all labels (MKT stage 2); text tower stays frozen
    prompt_init: str = "template"  # context: "template" (its own tokens, from their word embeddings; MKT) or "random" (n_ctx)
    n_ctx: int = 4  # prompt tuning, "random" context: number of learnable context tokens
    normalization: str = "backbone"  # pixel mean/std for student and teacher: "backbone" (the CLIP's own), "imagenet" (MKT), "openai"
    crop_pct: float = 1.0  # eval: short side resized to image size / crop_pct, then centre-cropped (MKT: 0.875, 256 -> 224)
    distill: bool = True  # L1 distillation of the global embedding to a frozen teacher copy
    distill_weight: float = 1.0  # weight of L_dist in the total loss
    head: HeadCfg = field(default_factory=HeadCfg)
    ist: IstCfg = field(default_factory=IstCfg)


@dataclass
class GraphCfg:
    source: str = "embedding"  # "embedding", "llm" or "file"
    path: str | None = None  # graph JSON to use (source "file") or cache to write/reuse
    encoder: str = "minilm"  # embedding source: "minilm" (all-MiniLM-L6-v2) or "clip" (the model's text tower)
    candidates: int = 30  # candidates per category shown to the LLM / considered by the cut
    relative_cut: float = 0.9  # embedding source: keep neighbours with sim >= cut * best neighbour's sim
    max_neighbors: int = 10  # hard cap on neighbours per category
    llm_backend: str = "local"  # "local" (Gemma 3 270M, offline) or "openai" (any compatible endpoint)
    llm_model: str | None = None  # model id for the endpoint, or a local model path
    llm_base_url: str | None = None  # OpenAI-compatible base URL (API key from $OPENAI_API_KEY)
    llm_mode: str = "contexts"  # local LLM: "contexts" (PMI of every label after photo contexts, mutual top-k) or "pmi" (version 1: judges the embedding candidates)
    mutual_k: int = 3  # llm contexts: keep n -> c only if each is among the other's k best (labels)
    min_pmi: float = 0.75  # llm contexts: floor on the pair's PMI, the lower of both directions (nats)
    link_unseen: bool = False  # unseen labels may also receive edges from other unseen labels (inference; training uses the seen-only subgraph)
    llm_concurrency: int = 8  # openai backend: requests in flight at once


@dataclass
class DataCfg:
    name: str = "miniworld"  # a registered dataset name (c2srt.data.list_datasets())
    root: str | None = None  # dataset folder
    batch_size: int = 64  # images per step per device
    num_workers: int = 4  # loader processes
    train_transform: str = "light"  # "timm": timm create_transform as MKT (crop, flip, auto_augment); "light": crop, flip, rand_augment
    crop_scale: list[float] = field(default_factory=lambda: [0.7, 1.0])  # training crop: range of the image area kept (MKT: 0.08-1)
    auto_augment: str | None = "rand-m9-mstd0.5-inc1"  # "timm" pipeline: timm's augmentation policy (null: none)
    rand_augment: bool = True  # "light" pipeline: torchvision RandAugment on training images
    skip_bad: bool = False  # skip (and count) unreadable images / unknown labels instead of stopping
    check_images: bool = True  # decode every image once before use; verdicts cached per file (path, size, mtime)
    options: dict[str, Any] = field(default_factory=dict)  # reader-specific keyword arguments


@dataclass
class TrainCfg:
    epochs: int = 20  # passes over the training set
    max_steps: int = -1  # stop after this many optimiser steps (-1: no limit)
    lr: float = 1e-3  # peak learning rate (AdamW)
    min_lr: float = 1e-6  # cosine floor
    weight_decay: float = 0.05  # not applied to 1-D parameters
    warmup_epochs: float = 2.0  # linear warm-up, in epochs
    layer_decay: float = 0.65  # layer-wise lr decay over the trainable vision blocks
    accumulate: int = 1  # gradient accumulation steps
    precision: str = "32-true"  # lightning precision: 32-true, bf16-mixed, 16-mixed
    devices: str = "auto"  # lightning devices
    num_nodes: int = 1  # machines
    accelerator: str = "auto"  # cpu, gpu, auto
    strategy: str = "auto"  # lightning strategy (ddp when devices > 1)
    val_every: int = 1  # validate every N epochs (0: never)
    val_images: int = 0  # validate on the first N test images only (0: all): learning curves for less time
    checkpoint_every: int = 0  # also checkpoint every N steps (0: epoch ends only)
    log_every: int = 10  # steps between logged metrics
    grad_clip: float = 0.0  # gradient norm clip (0: off)
    margin: float = 1.0  # ranking loss margin


@dataclass
class EvalCfg:
    protocol: str = "generic"  # "nus_wide", "open_images" or "generic" (seen/unseen masks of the dataset)
    topk: list[int] = field(default_factory=lambda: [3, 5])  # K of the top-K precision/recall/F1
    empty: str = "zero"  # AP of a column without positives: "zero" (published) or "skip"
    row_pooled: bool = False  # also report mAP_row_pooled, the published Open Images (BiAM) AP, beside per-class mAP
    batch_size: int = 64  # images per forward pass


@dataclass
class CalibrationCfg:
    holdout: float = 0.1  # training images held out to fit the calibrator: a fraction in (0, 1) or a number of images (>= 1); 0: none (no calibrator)
    max_holdout: int = 1000  # most images held out, in images (a fraction of a large listing would be far more than the calibrator needs)
    seed: int = 0  # seed of the held-out draw (its own, so the held-out images stay when the training seed changes)
    method: str = "platt"  # calibrator (c2srt.choices.CalibrationMethod): "platt" (logistic in the decision score) or "isotonic" (monotone steps, interpolated)


@dataclass
class Cfg:
    seed: int = 0  # everything random is seeded from this
    output_dir: str = "runs/default"  # where the run writes its files
    model: ModelCfg = field(default_factory=ModelCfg)
    graph: GraphCfg = field(default_factory=GraphCfg)
    data: DataCfg = field(default_factory=DataCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    eval: EvalCfg = field(default_factory=EvalCfg)
    calibration: CalibrationCfg = field(default_factory=CalibrationCfg)


# Closed choices: an enum (c2srt.choices) or a registry where the set is defined elsewhere, else the values.
_CHOICES: dict[str, Collection[str] | type[enum.Enum] | Registry[Any]] = {
    "model.head.name": HEADS,
    "model.head.pool": ("weighted", "mean"),
    "model.head.similarity": ("cosine", "raw"),
    "model.head.scoring": Scoring,
    "model.prompt_init": ("template", "random"),
    "model.normalization": ("backbone", "imagenet", "openai"),
    "data.train_transform": ("light", "timm"),
    "model.ist.mode": IstMode,
    "graph.source": GraphSource,
    "graph.encoder": ("minilm", "clip"),
    "graph.llm_backend": ("local", "openai"),
    "graph.llm_mode": LocalLlmMode,
    "eval.protocol": Protocol,
    "eval.empty": EmptyColumn,
    "calibration.method": CalibrationMethod,
}

# Fields that were removed: still accepted (and ignored, with a warning) in the configs of old runs
# and checkpoints, which store every field.
_REMOVED = {
    "data.image_size": "the image size is the model's (its backbone preset)",
    "train.loss": "the training loss is the ranking loss (+ distillation), with train.margin",
}


def _valid_values(choice: Collection[str] | type[enum.Enum] | Registry[Any]) -> list[str]:
    if isinstance(choice, Registry):
        return choice.list()
    if isinstance(choice, type) and issubclass(choice, enum.Enum):
        return [m.value for m in choice]
    return list(choice)


class ConfigError(ValueError):
    """A config value or key is invalid; the message names the field."""


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check a YAML / command-line value against the annotated type, converting where safe."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} is not a {tp}")
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "2e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        hint = " (YAML reads unquoted off/on/yes/no as booleans: quote them)" if isinstance(value, bool) else ""
        raise ConfigError(f"{where}: expected a string, got {value!r}{hint}")
    return value


def _merge(obj: Any, data: dict[str, Any], prefix: str = "") -> Any:
    """Return a copy of dataclass `obj` with `data` merged in; unknown keys raise."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    changes = {}
    for key, value in data.items():
        where = f"{prefix}{key}"
        if where in _REMOVED:
            warnings.warn(f"config key {where!r} is no longer used and is ignored: {_REMOVED[where]}", DeprecationWarning, stacklevel=2)
            continue
        if key not in names:
            raise ConfigError(f"unknown config key {where!r}; valid keys here: {', '.join(sorted(names))}")
        tp = hints[key]
        if _is_dataclass_type(tp):
            changes[key] = _merge(getattr(obj, key), value or {}, where + ".")
        else:
            changes[key] = _coerce(value, tp, where)
    return dataclasses.replace(obj, **changes)


def _field_type(path: list[str]) -> Any:
    """The annotated type of the `Cfg` field at `path` (None for a key the schema does not have)."""
    tp: Any = Cfg
    for part in path:
        if not _is_dataclass_type(tp):
            return None
        hints = typing.get_type_hints(tp)
        if part not in hints:
            return None
        tp = hints[part]
    return tp


def _takes_text(tp: Any) -> bool:
    """A string field (`str` or `str | None`): a command-line value is its text as written."""
    return tp is str or (typing.get_origin(tp) in (typing.Union, types.UnionType) and set(typing.get_args(tp)) == {str, type(None)})


def _parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b=value` -> (path, value). Values are YAML scalars or lists, except for string fields:
    there the text is taken as written (`model.ist.mode=off` is "off", not YAML's false), unless it
    is quoted, or `null` for a field that may be null. Only YAML files need quotes."""
    import yaml

    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like a.b=value")
    key, raw = item.split("=", 1)
    path = key.strip().split(".")
    if raw == "":
        return path, ""
    value = yaml.safe_load(raw)
    if _takes_text(_field_type(path)) and not isinstance(value, str) and not (value is None and _field_type(path) is not str):
        value = raw.strip()
    return path, value


def apply_overrides(cfg: Cfg, overrides: list[str] | None) -> Cfg:
    """Apply `a.b=value` command-line overrides (values parsed as YAML scalars/lists; text for string fields)."""
    for item in overrides or []:
        path, value = _parse_override(item)
        nested: Any = value
        for part in reversed(path):
            nested = {part: nested}
        cfg = _merge(cfg, nested)
    return cfg


def validate(cfg: Cfg) -> Cfg:
    """Check closed choices and ranges; raise ConfigError naming the field."""
    for dotted, choice in _CHOICES.items():
        value: Any = cfg
        for part in dotted.split("."):
            value = getattr(value, part)
        valid = _valid_values(choice)
        if value not in valid:
            raise ConfigError(f"{dotted}: {value!r} is not one of {', '.join(valid)}")
    h = cfg.model.head
    if not 0.0 < h.alpha <= 1.0:
        raise ConfigError(f"model.head.alpha: {h.alpha} must lie in (0, 1]")
    if not 1 <= h.k_min <= h.k_max:
        raise ConfigError(f"model.head.k_min/k_max: need 1 <= k_min ({h.k_min}) <= k_max ({h.k_max})")
    if h.topk < 1:
        raise ConfigError(f"model.head.topk: {h.topk} must be >= 1")
    if h.tau <= 0:
        raise ConfigError(f"model.head.tau: {h.tau} must be > 0")
    if not cfg.model.templates or any("{}" not in t for t in cfg.model.templates):
        raise ConfigError("model.templates: each template needs a '{}' for the label")
    if cfg.graph.source == "file" and not cfg.graph.path:
        raise ConfigError("graph.path: required when graph.source is 'file'")
    for name in ("mutual_k", "llm_concurrency", "candidates"):
        if getattr(cfg.graph, name) < 1:
            raise ConfigError(f"graph.{name}: {getattr(cfg.graph, name)} must be >= 1")
    if h.scoring == "cosine" and cfg.model.ist.mode != "off":
        raise ConfigError("model.head.scoring: 'cosine' is for heads without IST (IST scores every label by its own scaled cosine)")
    ist = cfg.model.ist
    if not 0.0 <= ist.evidence_dropout < 1.0:
        raise ConfigError(f"model.ist.evidence_dropout: {ist.evidence_dropout} must lie in [0, 1)")
    if cfg.model.ist.top_m < 0:
        raise ConfigError(f"model.ist.top_m: {cfg.model.ist.top_m} must be >= 0 (0: exact)")
    if cfg.model.ist.hidden % cfg.model.ist.heads:
        raise ConfigError(f"model.ist.hidden ({cfg.model.ist.hidden}) must be divisible by model.ist.heads")
    m = cfg.model
    if not 0.0 < m.crop_pct <= 1.0:
        raise ConfigError(f"model.crop_pct: {m.crop_pct} must lie in (0, 1]")
    scale = cfg.data.crop_scale
    if len(scale) != 2 or not 0.0 < scale[0] <= scale[1] <= 1.0:
        raise ConfigError(f"data.crop_scale: {scale} must be [min, max] with 0 < min <= max <= 1")
    if not m.train_image and m.distill:
        raise ConfigError("model.distill: the image tower is frozen (model.train_image=false), distillation has nothing to train")
    if not m.train_image and not m.prompt_tuning and m.ist.mode == "off":
        raise ConfigError("model.train_image=false with no prompt tuning and no IST: nothing would train")
    if cfg.train.accumulate < 1:
        raise ConfigError("train.accumulate: must be >= 1")
    if cfg.train.val_images < 0:
        raise ConfigError(f"train.val_images: {cfg.train.val_images} must be >= 0 (0: every test image)")
    if any(k < 1 for k in cfg.eval.topk):
        raise ConfigError(f"eval.topk: {cfg.eval.topk} must be positive")
    c = cfg.calibration
    if c.holdout < 0 or (c.holdout >= 1 and c.holdout != int(c.holdout)):
        raise ConfigError(f"calibration.holdout: {c.holdout} must be 0, a fraction in (0, 1) or a whole number of images")
    if c.max_holdout < 1:
        raise ConfigError(f"calibration.max_holdout: {c.max_holdout} must be >= 1")
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Cfg:
    """YAML file -> merged onto defaults -> overrides -> validated `Cfg`.

    Raises:
        ConfigError: on an unknown key, a badly typed value or an invalid choice; the message names it.
        FileNotFoundError: when `path` does not exist.
    """
    import yaml

    cfg = Cfg()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({e})") from e
        try:
            cfg = _merge(cfg, data)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from e
    cfg = apply_overrides(cfg, overrides)
    return validate(cfg)


# Fields added with a default that differs from the behaviour before them: a config stored before
# (a checkpoint's, a run's hyper-parameters; they hold every field of their version) that lacks one
# gets the old behaviour, so old models load and score as they were trained.
_ADDED = {
    "model.head.scoring": "fused",
    "model.ist.evidence": False,
    "model.ist.self_loops": True,
    "model.ist.evidence_dropout": 0.0,
}


def _with_added_fields(data: dict[str, Any]) -> dict[str, Any]:
    """A stored config's dict with the fields it predates set to their old behaviour."""
    out = copy.deepcopy(data)
    for dotted, old in _ADDED.items():
        *parents, leaf = dotted.split(".")
        node: Any = out
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf not in node:
            node[leaf] = old
    return out


def config_from_dict(data: dict[str, Any]) -> Cfg:
    """Rebuild a validated Cfg from a stored dict (a checkpoint's, a run's hyper-parameters); fields
    the dict predates keep the behaviour they had (`_ADDED`)."""
    return validate(_merge(Cfg(), _with_added_fields(data)))


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def dump_config(cfg: Cfg) -> str:
    """The resolved config as YAML; `--config` on this text reproduces the run."""
    import yaml

    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def merge_config(cfg: Cfg, data: dict[str, Any]) -> Cfg:
    """`cfg` with a nested dict of changes merged in (as a YAML file would be), validated."""
    return validate(_merge(cfg, data))
