r"""Contrastive pretraining of the mini-world CLIP stand-in (the `miniworld-vit` preset) on web photos.

Why: open-vocabulary recognition starts from a CLIP that met every concept in web captions of
*other* photos. The stand-in is made the same way: a small ViT trained from scratch against the
real, frozen all-MiniLM-L6-v2 sentence model (only a linear text projection trains), on the
mini-world's web photos and their free-text captions (`MiniWorld.sample_web`). It never sees a
benchmark scene and never a label: captions name only some of what a photo shows, with synonyms,
sometimes wrongly.

Two objectives, both from the captions alone:

- CLIP InfoNCE between each photo's embedding (the mean of its projected patch tokens) and its
  caption: :math:`L_{clip} = \tfrac12[\mathrm{CE}(s\,I T^\top, \mathrm{id}) + \mathrm{CE}(s\,T I^\top, \mathrm{id})]`.
- Mosaic region contrast: half of each batch are 2 x 2 mosaics of four other web photos (each
  shrunk to a quarter), and the mean patch embedding of each quarter is contrasted with the four
  captions as CLIP contrasts photos: its own caption against every other caption of the batch,
  the three neighbours in the same mosaic included. Patches must then carry what *they* show,
  not the whole picture (the localisation region heads need; whole-photo contrast leaves patch
  tokens global: 400 steps without it, a present label's best patch lay on it 36 % of the time
  against 21 % by chance, 10 % against 6 % for small labels), and things appear at half size too.
- Phrase grounding (FILIP / GLIP style): the caption is split into its noun phrases
  (`captions.caption_phrases`, from the text only); each single photo is scored against every
  distinct phrase of the batch by attention pooling of its patch tokens,
  :math:`r_{bu} = \sum_n \mathrm{softmax}_n(\langle F_{bn}, t_u\rangle/\tau_p)\,\langle F_{bn}, t_u\rangle`,
  and a sigmoid loss on :math:`s_p r_{bu} + b_p` says which phrases its caption used.

`load_stand_in` returns the shipped weights when their recipe hash matches this module's recipe,
else the cached ones, else pretrains (deterministic for a given seed and thread count) and caches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..optim import param_groups, warmup_cosine_scheduler
from .captions import caption_phrases

if TYPE_CHECKING:  # pragma: no cover
    from ..backbone import ClipBundle
    from .world import MiniWorld

_logger = logging.getLogger(__name__)

PRETRAIN_VERSION = 3  # bump when the recipe changes: shipped and cached weights are then rebuilt (3: web domain)
BACKBONE = "miniworld-vit"
SHIPPED = "miniworld-clip.safetensors"  # inside c2srt/miniworld/assets/
CACHE_SUBDIR = "miniworld"
INIT_TEMPERATURE = 0.07  # CLIP's initial softmax temperature
MAX_LOGIT_SCALE = 100.0
PHRASE_TAU = 0.1  # attention pooling temperature over patches (cosine units)
PHRASE_INIT_SCALE, PHRASE_INIT_BIAS = 10.0, -10.0  # SigLIP's initial sigmoid scale and bias
TEXT_BATCH = 256  # texts per MiniLM forward
WEIGHT_DECAY = 0.05
WARMUP_FRACTION = 0.05  # of the steps, linear from 0 (c2srt.optim.warmup_cosine)
MIN_LR_FRACTION = 0.01  # cosine floor, relative to the peak
FLIP_P = 0.5


@dataclass(frozen=True)
class PretrainCfg:
    """Every setting that changes the pretrained weights; its hash is the recipe hash."""

    world_seed: int = 0
    image_size: int = 64  # px
    steps: int = 1500
    batch_size: int = 128
    lr: float = 2e-3  # peak AdamW learning rate
    n_web: int = 20000  # web photos (one caption each)
    seed: int = 0
    mosaic_fraction: float = 0.5  # share of each batch that are 2 x 2 mosaics of four other photos
    phrase_weight: float = 1.0  # weight of the phrase-grounding term (0: captions only, as CLIP)
    version: int = PRETRAIN_VERSION

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]

    def stem(self) -> str:
        return f"miniworld-clip-{self.steps}steps-{self.key()}"


QUICK = PretrainCfg(steps=40, batch_size=64, n_web=1024)  # `demo --quick --pretrain`, smoke tests


# ---------------------------------------------------------------------------------------------
# Frozen text features
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def pooled_text_features(bundle: "ClipBundle", texts: list[str], *, batch_size: int = TEXT_BATCH) -> torch.Tensor:
    """MiniLM mean-pooled features of `texts`, before the trainable projection.

    Texts are encoded in order of length and padding is trimmed per batch, which changes nothing
    (padding is masked out of attention and pooling) but saves most of the compute.

    Shapes:
        texts: K strings -> [K, W] (W = 384 for MiniLM).
    """
    text = bundle.model.text
    if not hasattr(text, "transformer") or not hasattr(text, "pooler"):
        raise ValueError(f"{bundle.name!r} has no HF text tower; pretraining needs the {BACKBONE} preset")
    was_training = text.training
    text.eval()
    tokens = bundle.tokenizer(texts)  # [K, context_length]
    pad = text.config.pad_token_id
    lengths = (tokens != pad).sum(1)
    order = torch.argsort(lengths, descending=True)
    out = torch.empty(len(texts), text.config.hidden_size)
    try:
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            width = int(lengths[idx].max())
            ids = tokens[idx, :width]  # [b, width]
            mask = (ids != pad).long()
            out[idx] = text.pooler(text.transformer(input_ids=ids, attention_mask=mask), mask)
    finally:
        text.train(was_training)
    return out


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------
def clip_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE between matching rows of L2-normalised `image` and `text`.

    Shapes:
        image: [B, D], text: [B, D] -> scalar.
    """
    if image.shape != text.shape or image.ndim != 2:
        raise ValueError(f"clip_loss needs two [B, D] tensors of one shape, got {tuple(image.shape)} and {tuple(text.shape)}")
    logits = logit_scale * torch.einsum("bd,cd->bc", image, text)  # [B, B]
    target = torch.arange(image.shape[0], device=image.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def attention_pool(patches: torch.Tensor, phrases: torch.Tensor, tau: float = PHRASE_TAU) -> torch.Tensor:
    """Each phrase's similarity to its best-matching patches: softmax over patches, weighted mean.

    Shapes:
        patches: [B, N, D], phrases: [U, D] (both L2-normalised) -> [B, U].
    """
    sim = torch.einsum("bnd,ud->bun", patches, phrases)  # [B, N, D] x [U, D] -> [B, U, N]
    return (torch.softmax(sim / tau, dim=-1) * sim).sum(-1)  # [B, U, N] -> [B, U]


def phrase_loss(pooled: torch.Tensor, targets: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Sigmoid binary cross-entropy of `scale * pooled + bias` against which phrases a caption used.

    Shapes:
        pooled: [B, U], targets: [B, U] in {0, 1} -> scalar (mean over B x U).
    """
    if pooled.shape != targets.shape:
        raise ValueError(f"phrase_loss: pooled {tuple(pooled.shape)} and targets {tuple(targets.shape)} differ")
    return F.binary_cross_entropy_with_logits(scale * pooled + bias, targets.float())


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
def normalise_images(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 [B, 3, H, W] -> normalised float [B, 3, H, W]."""
    x = images.float().div_(255.0)
    return (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)  # [3] -> [1, 3, 1, 1]


def to_model_input(images: np.ndarray, bundle: "ClipBundle") -> torch.Tensor:
    """uint8 [B, H, W, 3] images -> the normalised float [B, 3, H, W] batch the model expects."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 [B, H, W, 3], got {images.shape}")
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # [B, H, W, 3] -> [B, 3, H, W]
    return normalise_images(x, torch.tensor(bundle.mean), torch.tensor(bundle.std))


def patch_embeddings(visual: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Projected patch tokens [B, N, D] of an open_clip ViT (ln_post applied, class token excluded)."""
    prev = visual.output_tokens
    visual.output_tokens = True
    try:
        _, tokens = visual(x)  # [B, N, W]
    finally:
        visual.output_tokens = prev
    return tokens @ visual.proj  # [B, N, W] @ [W, D] -> [B, N, D]


def mosaic(photos: torch.Tensor) -> torch.Tensor:
    """2 x 2 mosaics of photos shrunk to half size (2 x 2 mean pooling, exact for even sides).

    Shapes:
        photos: [4M, 3, H, W] (consecutive fours: top-left, top-right, bottom-left, bottom-right)
        -> [M, 3, H, W].
    """
    n, c, h, w = photos.shape
    if n % 4 or h % 2 or w % 2:
        raise ValueError(f"mosaic needs a multiple of 4 photos with even sides, got {tuple(photos.shape)}")
    small = F.avg_pool2d(photos.float(), 2)  # [4M, 3, H/2, W/2]
    small = small.reshape(n // 4, 2, 2, c, h // 2, w // 2)  # [M, row, col, 3, H/2, W/2]
    return small.permute(0, 3, 1, 4, 2, 5).reshape(n // 4, c, h, w)  # [M, 3, row, H/2, col, W/2] -> [M, 3, H, W]


def quarter_embeddings(patches: torch.Tensor, grid: int) -> torch.Tensor:
    """Mean patch embedding of each quarter of a mosaic, in the photo order of `mosaic`.

    Shapes:
        patches: [M, G*G, D] (row-major grid) -> [4M, D].
    """
    m, _, d = patches.shape
    half = grid // 2
    q = patches.reshape(m, 2, half, 2, half, d)  # [M, row, y, col, x, D]
    return q.mean((2, 4)).reshape(m * 4, d)  # [M, row, col, D] -> [4M, D]


def _phrase_table(captions: list[str]) -> tuple[list[str], list[list[int]]]:
    """Distinct phrases of all captions, and each caption's phrase ids."""
    index: dict[str, int] = {}
    per_caption = []
    for c in captions:
        ids = [index.setdefault(p, len(index)) for p in caption_phrases(c)]
        per_caption.append(sorted(set(ids)))
    return list(index), per_caption


def pretrain_clip(
    world: "MiniWorld",
    cfg: PretrainCfg = PretrainCfg(),
    *,
    device: str | torch.device = "cpu",
    progress: bool = False,
    history: list[dict[str, float]] | None = None,
    log_every: int = 100,
) -> "ClipBundle":
    """Pretrain the `miniworld-vit` CLIP on the world's web photos and captions (nothing else).

    Args:
        world: the mini-world (its image size must match the preset's).
        cfg: the recipe (steps, batch, lr, web photos, seed, phrase weight).
        device: where to train.
        progress: show a tqdm bar.
        history: if given, one dict per step (`step`, `loss`, `clip`, `phrase`, `lr`) is appended.
        log_every: steps between debug log lines (0: none).

    Returns:
        The trained ClipBundle, in eval mode.

    Raises:
        ValueError: bad sizes, or a world whose image size differs from the preset.
    """
    from ..backbone import create_clip, load_preset

    if cfg.steps < 1 or cfg.batch_size < 4 or cfg.n_web < cfg.batch_size or not 0 <= cfg.mosaic_fraction < 1:
        raise ValueError(
            f"pretrain_clip: need steps >= 1, 4 <= batch_size <= n_web and 0 <= mosaic_fraction < 1, got "
            f"{cfg.steps}, {cfg.batch_size}, {cfg.n_web}, {cfg.mosaic_fraction}"
        )
    preset_size = int(load_preset(BACKBONE)["model_cfg"]["vision_cfg"]["image_size"])
    if world.image_size != preset_size or cfg.image_size != preset_size:
        raise ValueError(f"MiniWorld image_size {world.image_size} differs from the {BACKBONE} preset's {preset_size} px")
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    bundle = create_clip(BACKBONE)
    model = bundle.model
    images, captions = world.sample_web(cfg.n_web)
    phrases, caption_phrase_ids = _phrase_table(captions)
    caption_feats = pooled_text_features(bundle, captions).to(device)  # [N, W]
    phrase_feats = pooled_text_features(bundle, phrases).to(device)  # [U_all, W]
    _logger.debug("pretrain data: %d web photos, %d distinct phrases, %.1f s", cfg.n_web, len(phrases), time.time() - t0)

    with torch.no_grad():
        model.logit_scale.fill_(math.log(1.0 / INIT_TEMPERATURE))
    model.text.transformer.requires_grad_(False)
    model.text.transformer.eval()
    model.to(device)
    phrase_scale = torch.nn.Parameter(torch.tensor(math.log(PHRASE_INIT_SCALE), device=device))
    phrase_bias = torch.nn.Parameter(torch.tensor(PHRASE_INIT_BIAS, device=device))
    named = [*model.named_parameters(), ("phrase_scale", phrase_scale), ("phrase_bias", phrase_bias)]
    opt = torch.optim.AdamW(param_groups(named, lr=cfg.lr, weight_decay=WEIGHT_DECAY), lr=cfg.lr)
    warmup = max(1, round(WARMUP_FRACTION * cfg.steps))
    sched = warmup_cosine_scheduler(opt, warmup_steps=warmup, total_steps=cfg.steps, lr=cfg.lr, min_lr=cfg.lr * MIN_LR_FRACTION)

    x_all = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # [N, H, W, 3] -> [N, 3, H, W] uint8
    mean, std = torch.tensor(bundle.mean, device=device), torch.tensor(bundle.std, device=device)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, desc="pretrain", unit="step")
    model.visual.train()
    model.text.proj.train()
    n_mosaic = round(cfg.batch_size * cfg.mosaic_fraction)
    n_single = cfg.batch_size - n_mosaic
    per_step = n_single + 4 * n_mosaic  # photos drawn per step
    grid = int(model.visual.grid_size[0])
    if per_step > cfg.n_web or (n_mosaic and grid % 2):
        raise ValueError(f"pretrain_clip: a step needs {per_step} of the {cfg.n_web} web photos and an even patch grid (got {grid})")
    perm, cursor = torch.randperm(cfg.n_web, generator=gen), 0
    for step in range(cfg.steps):
        if cursor + per_step > cfg.n_web:  # a new epoch: a new order
            perm, cursor = torch.randperm(cfg.n_web, generator=gen), 0
        drawn = perm[cursor : cursor + per_step]
        cursor += per_step
        flip = torch.rand(per_step, generator=gen) < FLIP_P
        x = x_all[drawn]
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)  # [P] -> [P, 1, 1, 1]: mirror some photos
        idx, quartered = drawn[:n_single], drawn[n_single:]
        x = torch.cat([x[:n_single].float(), mosaic(x[n_single:])]) if n_mosaic else x  # [B, 3, H, W]
        x = normalise_images(x.to(device), mean, std)
        raw = patch_embeddings(model.visual, x)  # [B, N, D]
        img = F.normalize(raw[:n_single].mean(1), dim=-1)  # the model's avg-pooled image embedding g: [b, N, D] -> [b, D]
        patches = F.normalize(raw[:n_single], dim=-1)
        txt = F.normalize(model.text.proj(caption_feats[idx.to(device)]), dim=-1)  # [b, W] -> [b, D]
        scale = model.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)
        l_clip = clip_loss(img, txt, scale)
        if n_mosaic:
            quarters = F.normalize(quarter_embeddings(raw[n_single:], grid), dim=-1)  # [4m, D]
            q_txt = F.normalize(model.text.proj(caption_feats[quartered.to(device)]), dim=-1)  # [4m, W] -> [4m, D]
            l_clip = 0.5 * (l_clip + clip_loss(quarters, q_txt, scale))
        l_phrase = torch.zeros((), device=device)
        if cfg.phrase_weight > 0:
            ids = sorted({u for i in idx.tolist() for u in caption_phrase_ids[i]})
            col = {u: j for j, u in enumerate(ids)}
            target = torch.zeros(n_single, len(ids), device=device)
            for row, i in enumerate(idx.tolist()):
                target[row, [col[u] for u in caption_phrase_ids[i]]] = 1.0
            t_ph = F.normalize(model.text.proj(phrase_feats[ids]), dim=-1)  # [U, W] -> [U, D]
            l_phrase = phrase_loss(attention_pool(patches, t_ph), target, phrase_scale.exp(), phrase_bias)
        loss = l_clip + cfg.phrase_weight * l_phrase
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        rec = {"step": step, "loss": loss.item(), "clip": l_clip.item(), "phrase": l_phrase.item(), "lr": opt.param_groups[0]["lr"]}
        if history is not None:
            history.append(rec)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{rec['loss']:.3f}")
        if log_every and (step % log_every == 0 or step == cfg.steps - 1):
            _logger.debug("pretrain step %d/%d loss %.4f (clip %.4f, phrase %.4f) %.0f s", step + 1, cfg.steps, rec["loss"], rec["clip"], rec["phrase"], time.time() - t0)
    if bar is not None:
        bar.close()
    model.eval()
    return bundle


# ---------------------------------------------------------------------------------------------
# Weights: save, ship, cache
# ---------------------------------------------------------------------------------------------
def save_clip(bundle: "ClipBundle", path: str | Path, *, meta: dict[str, Any] | None = None, include_frozen_text: bool = False) -> Path:
    """Write the model's weights as safetensors (atomically); `create_clip(name, pretrained=path)` loads them.

    The frozen MiniLM text tower (88 MB) is left out unless `include_frozen_text`: pretraining
    never changes it and `create_clip` takes it from its package, so the file holds only the
    image tower, the text projection and the logit scale (a few MB). `meta` (the recipe, its hash,
    the figures measured) is stored as JSON in the file's metadata.
    """
    from safetensors.torch import save_file

    from ..backbone import FROZEN_HF_PREFIX
    from ..io import atomic_path

    state = {
        k: v.detach().cpu().contiguous()
        for k, v in bundle.model.state_dict().items()
        if include_frozen_text or not k.startswith(FROZEN_HF_PREFIX)
    }
    metadata = {"format": "pt", "c2srt": "miniworld-clip", "meta": json.dumps(meta or {}, sort_keys=True)}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return Path(path)


def read_meta(path: str | Path) -> dict[str, Any]:
    """The JSON metadata `save_clip` stored in a weights file ({} when there is none)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        raw = (f.metadata() or {}).get("meta")
    try:
        return json.loads(raw) if raw else {}
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: corrupt metadata ({e}); delete the file to rebuild it") from e


def shipped_weights() -> Path:
    """Where the package keeps the pretrained stand-in (it may be absent in a source checkout)."""
    return Path(str(resources.files("c2srt.miniworld") / "assets" / SHIPPED))


def miniworld_cache(cache_dir: str | Path | None = None) -> Path:
    """The mini-world's folder under the c2srt cache root (`c2srt.io.cache_root`)."""
    from ..io import cache_root

    return cache_root(cache_dir) / CACHE_SUBDIR


def load_stand_in(
    world: "MiniWorld",
    cfg: PretrainCfg = PretrainCfg(),
    *,
    cache_dir: str | Path | None = None,
    rebuild: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = False,
    evaluate: Callable[["ClipBundle"], dict[str, Any]] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """The pretrained stand-in for `cfg`: shipped, cached, or pretrained now and cached.

    Args:
        world: the mini-world (web photos come from it).
        cfg: the recipe; its hash selects the weights.
        cache_dir: cache root (default $C2SRT_CACHE or ~/.cache/c2srt); files go to `<root>/miniworld/`.
        rebuild: pretrain again even when shipped or cached weights match (`c2srt demo --pretrain`).
        device: where to pretrain.
        progress: show a tqdm bar while pretraining.
        evaluate: called on a freshly pretrained bundle; its figures are stored in the metadata.

    Returns:
        (path of the `.safetensors` weights, their metadata: recipe, `recipe_hash`, `time_s`, figures).
    """
    key = cfg.key()
    if not rebuild:
        shipped = shipped_weights()
        if shipped.is_file() and read_meta(shipped).get("recipe_hash") == key:
            _logger.debug("mini-world CLIP: shipped weights %s", shipped)
            return shipped, read_meta(shipped)
        cached = miniworld_cache(cache_dir) / f"{cfg.stem()}.safetensors"
        if cached.is_file() and read_meta(cached).get("recipe_hash") == key:
            _logger.debug("mini-world CLIP: cached weights %s", cached)
            return cached, read_meta(cached)
    path = miniworld_cache(cache_dir) / f"{cfg.stem()}.safetensors"
    _logger.info("pretraining the mini-world CLIP (%d steps on %d web photos) into %s", cfg.steps, cfg.n_web, path)
    t0 = time.time()
    history: list[dict[str, float]] = []
    bundle = pretrain_clip(world, cfg, device=device, progress=progress, history=history)
    bundle.model.to("cpu")
    import open_clip

    meta: dict[str, Any] = {
        "recipe": asdict(cfg),
        "recipe_hash": key,
        "backbone": BACKBONE,
        "time_s": round(time.time() - t0, 1),
        "final_loss": float(np.mean([h["loss"] for h in history[-20:]])),
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "threads": torch.get_num_threads(),
    }
    if evaluate is not None:
        meta["figures"] = evaluate(bundle)
    save_clip(bundle, path, meta=meta)
    return path, meta
