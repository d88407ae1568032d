"""Self-contained model checkpoints: safetensors weights with the config, vocabulary and graph inside.

A checkpoint is one `.safetensors` file: the weights of everything but the teacher, and as
metadata the resolved config, the training vocabulary (seen / unseen) and the category graph, so
`c2srt predict` and `c2srt eval` need nothing else. No pickle is involved.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import __version__
from .config import Cfg, config_from_dict, config_to_dict

if TYPE_CHECKING:
    from .graph import CategoryGraph
    from .model import C2SRT

_logger = logging.getLogger(__name__)

FORMAT = "c2srt-checkpoint"
FORMAT_VERSION = "1"


@dataclass
class CheckpointInfo:
    """The metadata stored beside the weights."""

    cfg: Cfg
    seen: list[str] = field(default_factory=list)
    unseen: list[str] = field(default_factory=list)
    graph: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    version: str = __version__


def save_checkpoint(
    path: str | Path,
    model: "C2SRT",
    cfg: Cfg,
    *,
    seen: list[str] | None = None,
    unseen: list[str] | None = None,
    graph: "CategoryGraph | None" = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write weights + metadata atomically (a crash never leaves a half-written checkpoint)."""
    from safetensors.torch import save

    from .io import atomic_write_bytes

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict_to_save().items()}
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
    # serialised here and written by Python: safetensors' own file writer does not report a full disk
    return atomic_write_bytes(path, save(_dedupe_shared(tensors), metadata=metadata))


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
        return CheckpointInfo(
            cfg=cfg,
            seen=json.loads(meta.get("seen", "[]")),
            unseen=json.loads(meta.get("unseen", "[]")),
            graph=graph,
            extra=json.loads(meta.get("extra", "{}")),
            version=meta.get("c2srt_version", "?"),
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
    model = create_model(
        dataclasses.replace(mcfg, pretrained=mcfg.pretrained if teacher else None), device=device, teacher=teacher
    )
    state = load_file(str(path), device=str(device))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(model.rebuilt_prefixes())]
    if missing or unexpected:
        raise ValueError(
            f"{path}: weights do not match the model its config describes "
            f"(missing: {missing[:5]}{'...' if len(missing) > 5 else ''}; unexpected: {unexpected[:5]})"
        )
    model.eval()
    return model, info
