"""Label embeddings from the frozen CLIP text tower, with prompt ensembles and optional prompt tuning.

The text tower is never fine-tuned: its embeddings of label names are what makes any vocabulary,
seen or unseen, scorable. Prompt tuning (MKT's second stage) learns only shared context vectors
that replace placeholder tokens of the prompt, so it stays open-vocabulary.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .constants import DEFAULT_TEMPLATE

_PLACEHOLDER = "X"  # a word that tokenises to one token in both CLIP BPE and WordPiece
_CTX_INIT_STD = 0.02  # std of the initial context vectors (CoOp's value)


def _input_embedding(clip: nn.Module) -> nn.Module:
    """The token-embedding module of a CLIP or CustomTextCLIP text tower."""
    if hasattr(clip, "token_embedding"):
        return clip.token_embedding
    text = getattr(clip, "text", None)
    if text is not None and hasattr(text, "transformer") and hasattr(text.transformer, "get_input_embeddings"):
        return text.transformer.get_input_embeddings()
    raise ValueError(f"cannot find the token embedding of a {type(clip).__name__} text tower for prompt tuning")


def _encode_text(clip: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """`clip.encode_text(tokens, normalize=True)`, skipping the padding after the longest prompt.

    An open_clip `CLIP` text tower is causal and pools at the end-of-text token, so positions
    after the last end-of-text of the batch cannot change the result: running only the first L
    positions (L about 10 for a label prompt, instead of 77) gives the same embeddings several
    times faster. Other towers (e.g. Hugging Face ones, which mask padding themselves) run as is.
    """
    import open_clip
    from open_clip.transformer import text_global_pool

    causal = getattr(clip, "attn_mask", None) is not None and getattr(clip, "text_pool_type", None) == "argmax"
    if not isinstance(clip, open_clip.CLIP) or not causal or tokens.ndim != 2:
        return clip.encode_text(tokens, normalize=True)
    length = int(tokens.argmax(dim=-1).max()) + 1  # end-of-text has the highest id of each row
    tokens = tokens[:, :length]  # [K, 77] -> [K, L]
    cast = clip.transformer.get_cast_dtype()
    x = clip.token_embedding(tokens).to(cast) + clip.positional_embedding[:length].to(cast)  # [K, L, W]
    x = clip.transformer(x, attn_mask=clip.attn_mask[:length, :length])
    x = text_global_pool(clip.ln_final(x), tokens, "argmax")  # [K, L, W] -> [K, W]
    proj = clip.text_projection
    x = proj(x) if isinstance(proj, nn.Linear) else x @ proj  # [K, W] -> [K, D]
    return F.normalize(x, dim=-1)


class LabelEncoder(nn.Module):
    """Embeds label names through prompt templates; frozen, cached per vocabulary.

    Shapes:
        encode_labels(names: K) -> [K, D], averaged over the T templates and L2-normalised.

    Args:
        clip: the open_clip model whose text tower is used (its image tower is ignored here).
        tokenizer: the model's tokenizer.
        templates: prompt templates with one `{}` for the label.
        prompt_tuning: learn `n_ctx` shared context vectors placed before the label.
        n_ctx: number of learnable context tokens.
    """

    def __init__(
        self,
        clip: nn.Module,
        tokenizer: Callable[[list[str]], torch.Tensor],
        *,
        templates: Sequence[str] = (DEFAULT_TEMPLATE,),
        prompt_tuning: bool = False,
        n_ctx: int = 4,
    ) -> None:
        super().__init__()
        if not templates or any("{}" not in t for t in templates):
            raise ValueError(f"each prompt template needs a '{{}}' for the label, got {list(templates)!r}")
        self.clip = clip
        self.clip.requires_grad_(False)
        self.tokenizer = tokenizer
        self.templates = list(templates)
        self.prompt_tuning = prompt_tuning
        self.n_ctx = n_ctx
        self.ctx: nn.Parameter | None = None
        if prompt_tuning:
            emb = _input_embedding(clip)
            self.ctx = nn.Parameter(torch.empty(n_ctx, emb.weight.shape[1]))
        self._cache: dict[tuple[str, ...], torch.Tensor] = {}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.ctx is not None:
            nn.init.normal_(self.ctx, std=_CTX_INIT_STD)
        self._cache.clear()

    def train(self, mode: bool = True) -> "LabelEncoder":
        super().train(mode)
        self.clip.eval()  # the tower is frozen; keep dropout off
        return self

    def _prompts(self, names: Sequence[str], template: str) -> list[str]:
        if self.prompt_tuning:
            prefix = " ".join([_PLACEHOLDER] * self.n_ctx)
            return [f"{prefix} {template.format(n)}" for n in names]
        return [template.format(n) for n in names]

    def _encode(self, prompts: list[str]) -> torch.Tensor:
        device = next(self.clip.parameters()).device
        tokens = self.tokenizer(prompts).to(device)
        if self.ctx is None:
            return _encode_text(self.clip, tokens)
        ctx = self.ctx

        def swap_ctx(_module: nn.Module, _inp: tuple, out: torch.Tensor) -> torch.Tensor:
            # out: [K, L, W]; positions 1..n_ctx hold the placeholders after the start token
            ctx_k = ctx.to(out.dtype).unsqueeze(0).expand(out.shape[0], -1, -1)  # [n_ctx, W] -> [K, n_ctx, W]
            return torch.cat([out[:, :1], ctx_k, out[:, 1 + self.n_ctx :]], dim=1)

        handle = _input_embedding(self.clip).register_forward_hook(swap_ctx)
        try:
            return _encode_text(self.clip, tokens)
        finally:
            handle.remove()

    def encode_labels(self, names: Sequence[str], *, chunk: int = 256) -> torch.Tensor:
        """[K, D] label embeddings; cached per vocabulary unless context vectors are training."""
        names = [str(n) for n in names]
        if not names:
            raise ValueError("the label vocabulary is empty")
        if any(not n.strip() for n in names):
            raise ValueError(f"empty label name at position {[i for i, n in enumerate(names) if not n.strip()]}")
        trainable = self.ctx is not None and self.ctx.requires_grad and torch.is_grad_enabled()
        key = tuple(names)
        if not trainable and key in self._cache:
            return self._cache[key]
        with torch.set_grad_enabled(trainable):
            per_template = []
            for template in self.templates:
                prompts = self._prompts(names, template)
                emb = torch.cat([self._encode(prompts[i : i + chunk]) for i in range(0, len(prompts), chunk)])
                per_template.append(emb)  # [K, D]
            out = F.normalize(torch.stack(per_template).mean(0), dim=-1)  # [T, K, D] -> [K, D]
        if not trainable:
            out = out.detach()
            if len(self._cache) > 8:  # a few vocabularies at most; they can be large
                self._cache.clear()
            self._cache[key] = out
        return out

    def clear_cache(self) -> None:
        self._cache.clear()

    def extra_repr(self) -> str:
        return f"templates={len(self.templates)}, prompt_tuning={self.prompt_tuning}, n_ctx={self.n_ctx}"
