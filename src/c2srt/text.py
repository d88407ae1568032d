"""Label embeddings from the frozen CLIP text tower, with prompt ensembles and optional prompt tuning.

The text tower is never fine-tuned: its embeddings of label names are what makes any vocabulary,
seen or unseen, scorable. Prompt tuning (MKT's second stage) learns only context vectors shared by
every label, so it stays open-vocabulary. Two kinds of context:

- "template" (MKT's stage 2): the template's own tokens are the context. MKT trains the rows of
  the token-embedding table its template uses (start, "there is a", "in the scene", end) while
  the label's own tokens keep their original embeddings (`models/prompt_model.py` of sunanhe/MKT);
  here those rows are parameters initialised from the same word embeddings, and the label's
  tokens come from the frozen table.
- "random" (CoOp): `n_ctx` vectors placed after the start token, before the template, N(0, 0.02).
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


_NON_PAD = 0  # CLIP BPE and WordPiece both pad with id 0; a prompt ends at its last non-padding token
PROMPT_INITS = ("template", "random")
_TOKEN_CACHE_SIZE = 256  # tokenised label chunks kept while prompt tuning (256 prompts each)


def _last_token(tokens: torch.Tensor) -> torch.Tensor:
    """Index of the end token of each row: its last non-padding position. Shapes: [K, L] -> [K]."""
    positions = torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)  # [K, L]
    return torch.where(tokens != _NON_PAD, positions, torch.zeros_like(positions)).amax(dim=1)


class _TemplateSpan:
    """Where a template's own tokens sit in its tokenised prompts, found by tokenising its parts.

    For "There is a {} in the scene": position 0 is the start token, 1..n_prefix the words before
    the label, then the label's tokens, then the n_suffix words after it and the end token.
    """

    def __init__(self, template: str, tokenizer: Callable[[list[str]], torch.Tensor]) -> None:
        prefix, suffix = (part.strip() for part in template.split("{}", 1))
        tok = tokenizer([prefix, suffix])  # [2, L]
        ends = _last_token(tok)
        self.template = template
        self.n_prefix = int(ends[0]) - 1
        self.n_suffix = int(ends[1]) - 1
        self.prefix_ids = tok[0, : 1 + self.n_prefix].clone()  # start + words before the label
        self.suffix_ids = torch.cat([tok[1, 1 : 1 + self.n_suffix], tok[0, ends[0] : ends[0] + 1]])  # words after + end

    def suffix_starts(self, tokens: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
        """First suffix position of each prompt; checks the prompt is prefix + label + suffix. [K, L] -> [K]."""
        ends = _last_token(tokens)  # [K]
        starts = ends - self.n_suffix
        pre = self.prefix_ids.to(tokens.device)
        suf = self.suffix_ids.to(tokens.device)
        cols = (starts.unsqueeze(1) + torch.arange(suf.numel(), device=tokens.device)).clamp_max(tokens.shape[1] - 1)
        ok = (tokens[:, : pre.numel()] == pre).all(1) & (tokens.gather(1, cols) == suf).all(1) & (starts > self.n_prefix)
        if not bool(ok.all()):
            k = int((~ok).nonzero()[0])
            raise ValueError(
                f"prompt tuning: {self.template.format(names[k])!r} does not tokenise as the template's words "
                "around the label's (too long for the text tower's context, or words merged across the gap)"
            )
        return starts


class LabelEncoder(nn.Module):
    """Embeds label names through prompt templates; frozen, cached per vocabulary.

    Shapes:
        encode_labels(names: K) -> [K, D], averaged over the T templates and L2-normalised.

    Args:
        clip: the open_clip model whose text tower is used (its image tower is ignored here).
        tokenizer: the model's tokenizer.
        templates: prompt templates with one `{}` for the label.
        prompt_tuning: learn context vectors shared by every label (the text tower stays frozen).
        n_ctx: number of learnable context tokens ("random" context only).
        prompt_init: "template" (MKT: each template's own tokens, from their word embeddings) or
            "random" (`n_ctx` vectors before the template, N(0, 0.02)).
    """

    def __init__(
        self,
        clip: nn.Module,
        tokenizer: Callable[[list[str]], torch.Tensor],
        *,
        templates: Sequence[str] = (DEFAULT_TEMPLATE,),
        prompt_tuning: bool = False,
        n_ctx: int = 4,
        prompt_init: str = "template",
    ) -> None:
        super().__init__()
        if not templates or any("{}" not in t for t in templates):
            raise ValueError(f"each prompt template needs a '{{}}' for the label, got {list(templates)!r}")
        if prompt_init not in PROMPT_INITS:
            raise ValueError(f"prompt_init must be one of {', '.join(PROMPT_INITS)}, got {prompt_init!r}")
        self.clip = clip
        self.clip.requires_grad_(False)
        self.tokenizer = tokenizer
        self.templates = list(templates)
        self.prompt_tuning = prompt_tuning
        self.prompt_init = prompt_init
        self.n_ctx = n_ctx
        self.ctx: nn.Parameter | None = None  # "random": [n_ctx, W]
        self.ctx_prefix = nn.ParameterList()  # "template": per template [1 + n_prefix, W]
        self.ctx_suffix = nn.ParameterList()  # "template": per template [n_suffix + 1, W]
        self._spans: list[_TemplateSpan] = []
        if prompt_tuning:
            width = _input_embedding(clip).weight.shape[1]
            if prompt_init == "random":
                self.ctx = nn.Parameter(torch.empty(n_ctx, width))
            else:
                self._spans = [_TemplateSpan(t, tokenizer) for t in self.templates]
                for span in self._spans:
                    self.ctx_prefix.append(nn.Parameter(torch.empty(span.prefix_ids.numel(), width)))
                    self.ctx_suffix.append(nn.Parameter(torch.empty(span.suffix_ids.numel(), width)))
        self._cache: dict[tuple[str, ...], torch.Tensor] = {}
        self._ctx_snapshot: list[torch.Tensor] = []  # the context the cached embeddings were computed with
        self._token_cache: dict[tuple[int, tuple[str, ...]], tuple[torch.Tensor, torch.Tensor | None]] = {}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.ctx is not None:
            nn.init.normal_(self.ctx, std=_CTX_INIT_STD)
        if self._spans:
            table = _input_embedding(self.clip).weight
            with torch.no_grad():
                for span, pre, suf in zip(self._spans, self.ctx_prefix, self.ctx_suffix):
                    pre.copy_(table[span.prefix_ids.to(table.device)])
                    suf.copy_(table[span.suffix_ids.to(table.device)])
        self._cache.clear()

    def context_parameters(self) -> list[nn.Parameter]:
        """The learnable prompt context (empty without prompt tuning)."""
        return ([self.ctx] if self.ctx is not None else []) + list(self.ctx_prefix) + list(self.ctx_suffix)

    def train(self, mode: bool = True) -> "LabelEncoder":
        super().train(mode)
        self.clip.eval()  # the tower is frozen; keep dropout off
        return self

    def _prompts(self, names: Sequence[str], template: str) -> list[str]:
        if self.prompt_tuning and self.prompt_init == "random":
            prefix = " ".join([_PLACEHOLDER] * self.n_ctx)
            return [f"{prefix} {template.format(n)}" for n in names]
        return [template.format(n) for n in names]

    def _tokens(self, names: Sequence[str], t: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Tokenised prompts [K, L] (and "template" context: suffix starts [K]), kept while prompt tuning trains."""
        key = (t, tuple(names))
        hit = self._token_cache.get(key)
        if hit is not None and hit[0].device == device:
            return hit
        tokens = self.tokenizer(self._prompts(names, self.templates[t])).to(device)  # [K, L]
        starts = self._spans[t].suffix_starts(tokens, names) if self._spans else None
        if self.prompt_tuning:  # tokenising every step would dominate a prompt-tuning step at 7,586 labels
            if len(self._token_cache) > _TOKEN_CACHE_SIZE:
                self._token_cache.clear()
            self._token_cache[key] = (tokens, starts)
        return tokens, starts

    def _encode(self, names: Sequence[str], t: int) -> torch.Tensor:
        device = next(self.clip.parameters()).device
        tokens, starts = self._tokens(names, t, device)
        if not self.prompt_tuning:
            return _encode_text(self.clip, tokens)
        if self.ctx is not None:
            ctx = self.ctx

            def swap_ctx(_module: nn.Module, _inp: tuple, out: torch.Tensor) -> torch.Tensor:
                # out: [K, L, W]; positions 1..n_ctx hold the placeholders after the start token
                ctx_k = ctx.to(out.dtype).unsqueeze(0).expand(out.shape[0], -1, -1)  # [n_ctx, W] -> [K, n_ctx, W]
                return torch.cat([out[:, :1], ctx_k, out[:, 1 + self.n_ctx :]], dim=1)

        else:
            pre, suf = self.ctx_prefix[t], self.ctx_suffix[t]
            assert starts is not None  # "template" context always has spans
            rows = torch.arange(tokens.shape[0], device=device).unsqueeze(1)  # [K, 1]
            cols = starts.unsqueeze(1) + torch.arange(suf.shape[0], device=device)  # [K, n_suffix + 1]

            def swap_ctx(_module: nn.Module, _inp: tuple, out: torch.Tensor) -> torch.Tensor:
                # out: [K, L', W] (L' <= L: the tower may run only up to the longest prompt)
                out = out.clone()
                k = out.shape[0]
                out[:, : pre.shape[0]] = pre.to(out.dtype).unsqueeze(0).expand(k, -1, -1)  # start + prefix words
                out[rows, cols] = suf.to(out.dtype).unsqueeze(0).expand(k, -1, -1)  # suffix words + end, per row
                return out

        handle = _input_embedding(self.clip).register_forward_hook(swap_ctx)
        try:
            return _encode_text(self.clip, tokens)
        finally:
            handle.remove()

    def _check_cache(self) -> None:
        """Drop cached embeddings computed with another prompt context (an optimiser step, a load)."""
        params = self.context_parameters()
        if not params:
            return
        same = len(params) == len(self._ctx_snapshot) and all(
            p.shape == q.shape and torch.equal(p.detach(), q) for p, q in zip(params, self._ctx_snapshot)
        )
        if not same:
            self._cache.clear()
            self._ctx_snapshot = [p.detach().clone() for p in params]

    @property
    def trainable(self) -> bool:
        """True while the prompt context learns: embeddings then change every step."""
        return any(p.requires_grad for p in self.context_parameters())

    def encode_labels(self, names: Sequence[str], *, chunk: int = 256) -> torch.Tensor:
        """[K, D] label embeddings; cached per vocabulary (and prompt context) unless the context is training."""
        names = [str(n) for n in names]
        if not names:
            raise ValueError("the label vocabulary is empty")
        if any(not n.strip() for n in names):
            raise ValueError(f"empty label name at position {[i for i, n in enumerate(names) if not n.strip()]}")
        trainable = self.trainable and torch.is_grad_enabled()
        key = tuple(names)
        if not trainable:
            self._check_cache()
            if key in self._cache:
                return self._cache[key]
        with torch.set_grad_enabled(trainable):
            per_template = []
            for t in range(len(self.templates)):
                emb = torch.cat([self._encode(names[i : i + chunk], t) for i in range(0, len(names), chunk)])
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
        return (
            f"templates={len(self.templates)}, prompt_tuning={self.prompt_tuning}, prompt_init={self.prompt_init}, "
            f"n_ctx={self.n_ctx}"
        )
