"""Self-contained model checkpoints: safetensors weights with the config, vocabulary and graph inside.

A checkpoint is one `.safetensors` file: the weights of everything but the teacher, and as
metadata the resolved config, the training vocabulary (seen / unseen) and the category graph, so
`c2srt predict` and `c2srt eval` need nothing else. No pickle is involved. A calibrator
(`c2srt.calibration`), when fitted, rides along: its tensors under `calibrator.*` and its
provenance as the `calibration` metadata entry; `write_calibrator` adds or replaces it without
touching the weights.

Also here: the weights a run starts from (`model.init_from`: a stage-1 checkpoint before stage 2,
or MKT's released `.pth` files, read with `torch.load(weights_only=True)`) and their conversion.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .version import __version__
from .config import Cfg, config_from_dict, config_to_dict

if TYPE_CHECKING:
    from .graph import CategoryGraph
    from .model import C2SRT

_logger = logging.getLogger(__name__)

FORMAT = "c2srt-checkpoint"
FORMAT_VERSION = "1"
CALIBRATOR_PREFIX = "calibrator."  # tensors of the calibrator, beside the model's weights
CALIBRATION_KEY = "calibration"  # metadata entry: the calibrator's method and provenance (JSON)


@dataclass
class CheckpointInfo:
    """The metadata stored beside the weights."""

    cfg: Cfg
    seen: list[str] = field(default_factory=list)
    unseen: list[str] = field(default_factory=list)
    graph: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    version: str = __version__
    calibration: dict[str, Any] | None = None  # the calibrator's method and provenance; None: no calibrator


def save_checkpoint(
    path: str | Path,
    model: "C2SRT",
    cfg: Cfg,
    *,
    seen: list[str] | None = None,
    unseen: list[str] | None = None,
    graph: "CategoryGraph | None" = None,
    extra: dict[str, Any] | None = None,
    calibrator: Any = None,
) -> Path:
    """Write weights + metadata atomically (a crash never leaves a half-written checkpoint).

    Args:
        calibrator: a `c2srt.calibration.Calibrator` to store with the model (None: none).
    """
    from safetensors.torch import save

    from .io import atomic_write_bytes

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict_to_save().items()}
    if calibrator is not None:
        tensors.update(_calibrator_tensors(calibrator))
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "c2srt_version": __version__,
        "config": json.dumps(config_to_dict(cfg)),
        "seen": json.dumps(list(seen or [])),
        "unseen": json.dumps(list(unseen or [])),
        "graph": json.dumps(graph.to_dict()) if graph is not None else "",
        "extra": json.dumps(extra or {}),
    }
    if calibrator is not None:
        metadata[CALIBRATION_KEY] = json.dumps(calibrator.metadata())
    # serialised here and written by Python: safetensors' own file writer does not report a full disk
    return atomic_write_bytes(path, save(_dedupe_shared(tensors), metadata=metadata))


def _calibrator_tensors(calibrator: Any) -> dict[str, torch.Tensor]:
    return {CALIBRATOR_PREFIX + k: v.detach().cpu().contiguous() for k, v in calibrator.state_dict().items()}


def write_calibrator(path: str | Path, calibrator: Any, *, out: str | Path | None = None) -> Path:
    """Store `calibrator` in the checkpoint `path` (replacing any it holds), atomically.

    Every other tensor and metadata entry is copied unchanged (the weights stay bit-identical);
    the new file is written to a temporary name and renamed, so a failure leaves `path` as it was.

    Args:
        path: a c2srt checkpoint.
        calibrator: a `c2srt.calibration.Calibrator` (`state_dict()`, `metadata()`).
        out: where to write (default: `path` itself, rewritten).

    Returns:
        The path written.
    """
    from safetensors import safe_open
    from safetensors.torch import save

    from .io import atomic_write_bytes

    read_checkpoint_info(path)  # a c2srt checkpoint, or a clear error
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
        tensors = {k: f.get_tensor(k) for k in f.keys() if not k.startswith(CALIBRATOR_PREFIX)}
    tensors.update(_calibrator_tensors(calibrator))
    meta[CALIBRATION_KEY] = json.dumps(calibrator.metadata())
    out = Path(out) if out is not None else Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(out, save(tensors, metadata=meta))


def read_calibrator(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The calibrator stored in a checkpoint: (its tensors, without the prefix; its metadata), or None."""
    from safetensors import safe_open

    info = read_checkpoint_info(path)
    if info.calibration is None:
        return None
    with safe_open(str(path), framework="pt") as f:
        tensors = {k[len(CALIBRATOR_PREFIX) :]: f.get_tensor(k) for k in f.keys() if k.startswith(CALIBRATOR_PREFIX)}
    return tensors, info.calibration


def _model_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors without the calibrator's."""
    return {k: v for k, v in state.items() if not k.startswith(CALIBRATOR_PREFIX)}


def _dedupe_shared(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share memory: give each its own storage."""
    seen_ptrs: set[int] = set()
    out = {}
    for k, v in tensors.items():
        ptr = v.untyped_storage().data_ptr()
        out[k] = v.clone() if ptr in seen_ptrs else v
        seen_ptrs.add(ptr)
    return out


def read_checkpoint_info(path: str | Path) -> CheckpointInfo:
    """Read only the metadata (fast: no tensor is loaded)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own SafetensorError for non-safetensors files
        if type(e).__name__ != "SafetensorError":
            raise
        raise ValueError(f"{path}: not a safetensors checkpoint ({e})") from e
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a c2srt checkpoint (no '{FORMAT}' metadata); for plain CLIP use --clip")
    try:
        cfg = config_from_dict(json.loads(meta["config"]))
        graph = json.loads(meta["graph"]) if meta.get("graph") else None
        calibration = json.loads(meta[CALIBRATION_KEY]) if meta.get(CALIBRATION_KEY) else None
        return CheckpointInfo(
            cfg=cfg,
            seen=json.loads(meta.get("seen", "[]")),
            unseen=json.loads(meta.get("unseen", "[]")),
            graph=graph,
            extra=json.loads(meta.get("extra", "{}")),
            version=meta.get("c2srt_version", "?"),
            calibration=calibration,
        )
    except (KeyError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: corrupt c2srt metadata ({e})") from e


def load_checkpoint(
    path: str | Path, *, device: str | torch.device = "cpu", teacher: bool = False
) -> tuple["C2SRT", CheckpointInfo]:
    """Rebuild the model from a checkpoint; no pretrained weights or network are needed.

    Args:
        path: a `.safetensors` file written by `save_checkpoint`.
        device: where to put the model.
        teacher: also rebuild the frozen teacher from `cfg.model.pretrained` (to continue training).
    """
    import dataclasses

    from safetensors.torch import load_file

    from .model import create_model

    info = read_checkpoint_info(path)
    mcfg = info.cfg.model
    model = create_model(  # the file holds the weights: no pretrained download
        dataclasses.replace(mcfg, pretrained=mcfg.pretrained if teacher else None),
        device=device,
        teacher=teacher,
    )
    state = _model_weights(load_file(str(path), device=str(device)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(model.rebuilt_prefixes())]
    if missing or unexpected:
        raise ValueError(
            f"{path}: weights do not match the model its config describes "
            f"(missing: {missing[:5]}{'...' if len(missing) > 5 else ''}; unexpected: {unexpected[:5]})"
        )
    model.eval()
    return model, info


# ------------------------------------------------------------------------ weights to start from
MKT_IMAGE_KEYS = {  # MKT's CLIPVIT (models/clip_vit.py) -> our image tower
    "conv1.": "conv1.",
    "class_embedding": "class_embedding",
    "positional_embedding": "positional_embedding",
    "ln_pre.": "ln_pre.",
    "transformer.resblocks.": "transformer.resblocks.",
    "ln_post.": "ln_post.",
    "projection_dist": "proj",
}
MKT_UNUSED_PREFIXES = ("projection.",)  # CLIPVIT's MLP head, built but never used in its forward
MKT_TEXT_TABLE = "token_embedding.weight"  # MKT stage 2 trains this table (PromptLearner)
_VISUAL = "backbone.visual."


def _strip_ddp(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """MKT saves stage 2 from a DistributedDataParallel wrapper: drop its `module.` prefix."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}
    return state


def _read_torch_state(path: Path) -> dict[str, torch.Tensor]:
    """A plain state dict saved with torch.save, read without unpickling code (weights_only)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, ValueError) as e:  # torch.load's errors for files it cannot read safely
        raise ValueError(f"{path}: not a state dict torch can read safely ({type(e).__name__}: {e})") from e
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict (parameter name -> tensor)")
    return _strip_ddp(dict(state))


def is_mkt_image_state(state: dict[str, torch.Tensor]) -> bool:
    return "projection_dist" in state and "conv1.weight" in state


def is_mkt_text_state(state: dict[str, torch.Tensor]) -> bool:
    return MKT_TEXT_TABLE in state and "text_projection" in state


def mkt_image_state(state: dict[str, torch.Tensor], *, where: str = "MKT image weights") -> dict[str, torch.Tensor]:
    """MKT's `CLIPVIT` state dict (stage 1) as our model's `backbone.visual.*` entries.

    `projection_dist` (the CLIP projection, used for the patch and global embeddings alike) becomes
    `proj`; the unused MLP `projection.*` is dropped; any other key is an error naming it.
    """
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        if key.startswith(MKT_UNUSED_PREFIXES):
            continue
        for src, dst in MKT_IMAGE_KEYS.items():
            if key == src or (src.endswith(".") and key.startswith(src)):
                out[_VISUAL + dst + key[len(src) :]] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"{where}: keys that MKT's CLIPVIT does not have: {unknown[:5]}")
    return out


def mkt_text_context(model: "C2SRT", state: dict[str, torch.Tensor], *, where: str = "MKT text weights") -> dict[str, torch.Tensor]:
    """MKT's stage-2 `PromptLearner` state dict as our template prompt context.

    MKT learns the token-embedding rows of its template's tokens (the label's own tokens keep
    CLIP's embeddings); those rows are exactly our "template" context, read at the same token ids.

    Raises:
        ValueError: the model has no template prompt context, or the table does not fit it.
    """
    enc = model.label_encoder
    if not enc.prompt_tuning or enc.prompt_init != "template":
        raise ValueError(f"{where}: the model needs model.prompt_tuning=true and model.prompt_init=template")
    table = state[MKT_TEXT_TABLE]
    ours = enc.ctx_prefix[0]
    if table.ndim != 2 or table.shape[1] != ours.shape[1]:
        raise ValueError(f"{where}: token table of shape {tuple(table.shape)} does not fit a text width of {ours.shape[1]}")
    out = {}
    for t, span in enumerate(enc._spans):
        ids = torch.cat([span.prefix_ids, span.suffix_ids])
        if int(ids.max()) >= table.shape[0]:
            raise ValueError(f"{where}: token table has {table.shape[0]} rows; the template needs id {int(ids.max())}")
        out[f"label_encoder.ctx_prefix.{t}"] = table[span.prefix_ids].clone()
        out[f"label_encoder.ctx_suffix.{t}"] = table[span.suffix_ids].clone()
    frozen = {k: v for k, v in state.items() if k != MKT_TEXT_TABLE}
    mine = {k[len("label_encoder.clip.") :]: v for k, v in model.state_dict().items() if k.startswith("label_encoder.clip.")}
    differ = [k for k, v in frozen.items() if k in mine and (mine[k].shape != v.shape or not torch.allclose(mine[k].float(), v.float()))]
    if differ:
        _logger.warning("%s: the frozen text tower differs from this model's (%d tensors, e.g. %s): other CLIP weights?", where, len(differ), differ[0])
    return out


def _part(key: str) -> str:
    """The part of the model a parameter belongs to: `backbone.visual`, `label_encoder.ctx_prefix`, ..."""
    return ".".join(key.split(".")[:2])


def load_init_weights(model: "C2SRT", path: str | Path) -> None:
    """Load the weights a run starts from (`model.init_from`) into a freshly built model.

    Accepts a c2srt checkpoint (`.safetensors`; e.g. stage 1 before prompt tuning), MKT's stage-1
    `CLIPVIT` state dict, or MKT's stage-2 `PromptLearner` state dict (both `torch.save` files,
    read with `weights_only=True`). Parameters the file lacks keep their initial values: the
    prompt context (it starts from the template), and what building restores (teacher, frozen
    package text tower); anything else missing is logged.

    Raises:
        FileNotFoundError: no such file. ValueError: a file of another model (names the keys).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model.init_from: {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        read_checkpoint_info(path)  # a c2srt checkpoint, or a clear error
        state = _model_weights(load_file(str(path)))
    else:
        raw = _read_torch_state(path)
        if is_mkt_image_state(raw):
            state = mkt_image_state(raw, where=str(path))
        elif is_mkt_text_state(raw):
            state = mkt_text_context(model, raw, where=str(path))
        else:
            raise ValueError(f"{path}: neither MKT's CLIPVIT nor its PromptLearner state dict (keys: {list(raw)[:5]})")
    own = model.state_dict()
    bad = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if bad:
        raise ValueError(f"{path}: shapes differ from the model's for {bad[:5]} (another backbone?)")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected:
        raise ValueError(f"{path}: weights the model does not have: {unexpected[:5]}")
    context = tuple(n for n, _ in model.label_encoder.named_parameters(prefix="label_encoder") if "ctx" in n)
    quiet = model.rebuilt_prefixes() + context
    covered = {_part(k) for k in state}  # an MKT file covers one part (image tower or prompt): the rest is CLIP's
    noted = [k for k in missing if not k.startswith(quiet) and _part(k) in covered]
    if noted:
        _logger.warning("%s sets no value for %d parameter(s), kept as built: %s", path, len(noted), ", ".join(noted[:5]))
    _logger.info("model weights from %s (%d tensors)", path, len(state))


def convert_mkt(
    out: str | Path, cfg: Cfg, *, image: str | Path, text: str | Path | None = None, device: str = "cpu"
) -> Path:
    """Write MKT's released weights as a c2srt checkpoint that `c2srt eval` / `predict` read.

    Args:
        out: the `.safetensors` file to write.
        cfg: the config of an MKT-head model (e.g. `configs/nus_wide/mkt_stage2.yaml`); its
            `model.pretrained` provides the CLIP text tower MKT keeps frozen.
        image: MKT's stage-1 `CLIPVIT` state dict.
        text: MKT's stage-2 `PromptLearner` state dict (needs `model.prompt_tuning: true`).
    """
    import dataclasses

    from .model import create_model

    mcfg = dataclasses.replace(cfg.model, init_from=None)
    model = create_model(mcfg, device=device, teacher=False)
    load_init_weights(model, image)
    if text is not None:
        load_init_weights(model, text)
    cfg = dataclasses.replace(cfg, model=mcfg)
    extra = {"converted_from": {"image": str(image), "text": None if text is None else str(text)}}
    return save_checkpoint(out, model, cfg, extra=extra)
