r"""LLM source, mode "contexts": partners a local language model expects in the same photo, over the whole vocabulary.

Co-occurrence partners are often unlike in meaning (fish and water, mouse and keyboard), so
text-embedding neighbours are a poor candidate set, and "a dog and a" favours kin (cat). This mode
asks the model what else is in a photo of c, for every label at once, and keeps a pair only when
each direction picks the other.

**Scores.** For a label c and a photo context t (e.g. "A photo of a fish. In the background there
is a"), one forward pass gives the model's next-token distribution; the first token of every label
n of the vocabulary is read from it (so candidates cost nothing at any vocabulary size). The score
is the pointwise mutual information under the model, averaged over the contexts $t \in T$,

.. math::
    \mathrm{PMI}(n \mid c) = \frac{1}{|T|} \sum_{t \in T} \Big[ \log p(n_1 \mid t(c))
        - \frac{1}{|U|} \sum_{u \in U} \log p(n_1 \mid t(u)) \Big]

with $n_1$ the first token of " n" and $U$ the neutral fillers ("a thing", "something", "an
object"): how much more likely the model finds n once it knows c is in the photo. A row of these
(one prefix label, every label of a pool) is the unit of work and of the answer cache.

**Rule** (`context_links`, for target c and a pool of labels it may receive edges from): n -> c is
kept when

1. n is among the `mutual_k` highest PMI(. | c) of the pool (c's own ranking of the pool),
2. c is among the `mutual_k` highest PMI(. | n) of n's ranking of the pool (c included), and
3. the pair's score, $s = \min(\mathrm{PMI}(n \mid c), \mathrm{PMI}(c \mid n))$, is at least
   `min_pmi` nats;

then at most `max_neighbors` by score, with strength $1 - e^{-s / \mathrm{PMI\_SCALE}}$. Mutual
ranks keep the rule selective at any vocabulary size: a label that many prefer (a hub) keeps only
its own favourites, and a label's partners must also prefer it back, which removes most kin that
one side only "calls to mind".
"""

from __future__ import annotations

import base64
import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..io import cache_root
from .answers import AnswerCache
from .llm import PROMPT_VERSION, load_local_model, prompt_hash, safe_name

_logger = logging.getLogger(__name__)

# The photo contexts; `{a_category}` is the label with its article ("a fish", "an igloo"),
# `{category}` the bare name. Chosen among 24 contexts by the AUC of their PMI against true
# co-occurrence on the mini-world, VOC 2007 and COCO 2014 (README, "Category graphs"): what is "in
# the background" beat "and a", "next to a", "in the", "is often seen with a", ...; "is the"
# suits mass nouns (water, sand) as well as things.
CONTEXT_TEMPLATES: tuple[str, ...] = (
    "A photo of {a_category}. In the background there is a",
    "A photo of {a_category}. In the background is the",
)
# Neutral fillers of the baseline, as (a_category, category).
NEUTRAL_FILLS: tuple[tuple[str, str], ...] = (("a thing", "thing"), ("something", "something"), ("an object", "object"))
DEFAULT_MUTUAL_K = 3  # n -> c needs n in c's top k and c in n's top k
DEFAULT_MIN_PMI = 0.75  # nats; floor on min(PMI(n | c), PMI(c | n))
PMI_SCALE = 4.0  # nats; strength = 1 - exp(-PMI / PMI_SCALE)
ROWS_PER_BATCH = 16  # prefix labels per forward pass (times the number of templates)
READOUT_ROWS = 256  # prefix labels per block of the readout product (bounds memory at large vocabularies)


def with_article(name: str) -> str:
    """ "a dog", "an apple" (by the first letter: a rule of thumb, recorded in the provenance)."""
    return ("an " if name[:1].lower() in "aeiou" else "a ") + name


def spoken(name: str) -> str:
    """The label as text for the model: underscores become spaces ("ice_cream" -> "ice cream")."""
    return " ".join(name.replace("_", " ").split())


def fill(template: str, name: str) -> str:
    text = spoken(name)
    return template.format(a_category=with_article(text), category=text)


def pmi_strength(pmi: float) -> float:
    """A PMI in nats as an edge strength in (0, 1) (for PMI > 0)."""
    return 1.0 - math.exp(-pmi / PMI_SCALE)


class NextTokenLM(Protocol):
    """What `ContextScorer` needs from a language model: the state after a prefix, and the
    next-token logits that state gives (log p = logits - log-normaliser)."""

    model_id: str

    def first_token(self, text: str) -> int:
        """The first token id of `text` (which starts with a space)."""
        ...

    def encode(self, prefixes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The last hidden state after each prefix, float32 [P, D], and the log-normaliser of its
        next-token logits over the whole model vocabulary (logsumexp), float64 [P]."""
        ...

    def readout(self, hidden: np.ndarray, token_ids: Sequence[int]) -> np.ndarray:
        """float64 [P, U]: the next-token logits of `token_ids` from hidden states [P, D]."""
        ...


class LocalNextTokenLM:
    """The local causal LM (default Gemma 3 270M, `llm.load_local_model`) as a `NextTokenLM`.

    Prefixes run in one left-padded batch; the normaliser comes from the logits over the whole
    model vocabulary, and any token's logit is then one dot product with its output embedding.

    Args:
        cache_dir: cache root for the converted model.
        model_path: a transformers model folder to use instead of Gemma.
        model, tokenizer: an already loaded pair (skips loading).
    """

    def __init__(
        self,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        model_path: str | os.PathLike[str] | None = None,
        model: Any = None,
        tokenizer: Any = None,
    ) -> None:
        if model is None:
            model, tokenizer, self.model_id = load_local_model(cache_dir=cache_dir, model_path=model_path)
        else:
            self.model_id = getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
        self.model, self.tokenizer = model, tokenizer
        if getattr(model.config, "final_logit_softcapping", None):
            raise ValueError(f"{self.model_id}: logit soft-capping is not supported by the contexts mode")
        self._out = model.lm_head.weight.detach().float().numpy()  # [vocab, D], a view (tied embeddings: no copy)

    def first_token(self, text: str) -> int:
        ids = self.tokenizer(text, add_special_tokens=False).input_ids
        if not ids:
            raise ValueError("no tokens")
        return int(ids[0])

    def encode(self, prefixes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        import torch

        tok, model = self.tokenizer, self.model
        ids = [tok(p).input_ids for p in prefixes]  # with <bos>
        width = max(len(x) for x in ids)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        inp = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, x in enumerate(ids):  # left padding: every prefix ends at the last column
            inp[i, width - len(x) :] = torch.tensor(x)
            mask[i, width - len(x) :] = 1
        pos = (mask.cumsum(dim=1) - 1).clamp(min=0)  # [P, W]
        with torch.no_grad():
            hidden = model.model(input_ids=inp, attention_mask=mask, position_ids=pos).last_hidden_state[:, -1].float()  # [P, W, D] -> [P, D]
            lse = model.lm_head(hidden).double().logsumexp(dim=-1)  # [P, D] -> [P, vocab] -> [P]
        return hidden.numpy(), lse.numpy()

    def readout(self, hidden: np.ndarray, token_ids: Sequence[int]) -> np.ndarray:
        out = self._out[np.asarray(token_ids, dtype=np.int64)].astype(np.float64)  # [U, D]
        return np.asarray(hidden, dtype=np.float64) @ out.T  # [P, D] x [D, U] -> [P, U]


def _encode(state: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(state, dtype="<f4").tobytes()).decode("ascii")


def _decode(text: Any, shape: tuple[int, int]) -> np.ndarray | None:
    if not isinstance(text, str):
        return None
    try:
        state = np.frombuffer(base64.b64decode(text, validate=True), dtype="<f4")
    except (ValueError, TypeError):
        return None
    return state.reshape(shape) if state.size == shape[0] * shape[1] else None


class ContextScorer:
    """PMI rows of labels under an ensemble of photo contexts (see the module docstring), cached.

    The model runs once per label and template: its hidden state after the prefix (and the
    log-normaliser of the next token) is what is kept, in memory and in the answer cache, keyed by
    the model, the templates and the label. A row against any set of labels is then a product with
    their output embeddings, so the graph over the seen labels and its extension to unseen ones
    share every forward pass, and an interrupted build scores each label once: a new scorer on the
    same cache file serves the states it finds and runs the model only for the others.

    Args:
        lm: the language model (default: the local Gemma, loaded now).
        templates: the photo contexts (`CONTEXT_TEMPLATES`).
        cache_file: JSONL state cache (None: in memory only).
        batch_size: prefix labels per forward pass (each with every template).
        cache_dir, model_path: for the default `LocalNextTokenLM`.

    Raises:
        ValueError: no template, or a template without a category slot.
    """

    def __init__(
        self,
        lm: NextTokenLM | None = None,
        *,
        templates: Sequence[str] = CONTEXT_TEMPLATES,
        cache_file: str | os.PathLike[str] | None = None,
        batch_size: int = ROWS_PER_BATCH,
        cache_dir: str | os.PathLike[str] | None = None,
        model_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.templates = tuple(templates)
        if not self.templates:
            raise ValueError("contexts mode needs at least one template")
        for t in self.templates:
            if "{a_category}" not in t and "{category}" not in t:
                raise ValueError(f"template {t!r} has no {{a_category}} or {{category}} slot")
        self.lm = lm if lm is not None else LocalNextTokenLM(cache_dir=cache_dir, model_path=model_path)
        self.model_id = self.lm.model_id
        self.batch_size = max(1, int(batch_size))
        self.cache = AnswerCache(cache_file, field="state")
        self.cache_file = self.cache.path
        self._states: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # label -> (hidden [T, D], lse [T])
        self._neutral: tuple[np.ndarray, np.ndarray] | None = None
        self._tokens: dict[str, int] = {}
        self.computed: list[str] = []  # labels the model ran for (not served by the cache), in order

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "local",
            "model": self.model_id,
            "mode": "contexts",
            "prompt_version": PROMPT_VERSION,
            "prompt_hash": self.prompt_hash(),
            "prompt": list(self.templates) + [f"neutral: {a}" for a, _ in NEUTRAL_FILLS],
            "scoring": "first-token PMI of every label after each template, mean over templates, both directions, mutual top-k",
            "article": "'an' before a vowel letter, else 'a'",
        }

    def prompt_hash(self) -> str:
        return prompt_hash(str(PROMPT_VERSION), *self.templates, *(a for a, _ in NEUTRAL_FILLS))

    def tokens(self, labels: Sequence[str]) -> list[int]:
        """The first token of " <label>" for each label."""
        for name in labels:
            if name not in self._tokens:
                try:
                    self._tokens[name] = self.lm.first_token(" " + spoken(name))
                except ValueError as err:
                    raise ValueError(f"label {name!r}: {err}") from err
        return [self._tokens[n] for n in labels]

    def _key(self, label: str) -> str:
        return prompt_hash(self.model_id, self.prompt_hash(), label)

    def states(self, labels: Sequence[str], *, progress: Callable[[int], None] | None = None) -> None:
        """Run the model for the labels whose states are neither in memory nor in the cache file;
        each batch is appended to the cache as soon as it is done. `progress` counts the labels
        newly read from the cache file (at once) and computed (per batch); those already in memory
        are not counted again."""
        t = len(self.templates)
        todo, read = [], 0
        for name in dict.fromkeys(labels):
            if name in self._states:
                continue
            rec = self.cache.get(self._key(name))
            width = _width(rec, t) if isinstance(rec, dict) else 0
            hidden = _decode(rec.get("hidden"), (t, width)) if width else None
            if hidden is not None and len(rec.get("lse", [])) == t:
                self._states[name] = (hidden, np.asarray(rec["lse"], dtype=np.float64))
                read += 1
            else:
                todo.append(name)
        if progress is not None and read:
            progress(read)
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            hidden, lse = self.lm.encode([fill(tpl, name) for name in chunk for tpl in self.templates])  # [B*T, D], [B*T]
            hidden = hidden.reshape(len(chunk), t, -1).astype(np.float32)  # [B*T, D] -> [B, T, D]
            lse = np.asarray(lse, dtype=np.float64).reshape(len(chunk), t)  # [B*T] -> [B, T]
            for name, h, z in zip(chunk, hidden, lse):
                self.cache.put(self._key(name), {"hidden": _encode(h), "lse": [float(x) for x in z]}, label=name, model=self.model_id)
                self._states[name] = (h, z)
                self.computed.append(name)
            if progress is not None:
                progress(len(chunk))

    def _baseline(self, token_ids: Sequence[int]) -> np.ndarray:
        """[T, U]: mean log-probability of each token after each template with a neutral filler."""
        if self._neutral is None:
            prefixes = [t.format(a_category=a, category=b) for t in self.templates for a, b in NEUTRAL_FILLS]
            self._neutral = self.lm.encode(prefixes)
        hidden, lse = self._neutral
        lp = self.lm.readout(hidden, token_ids) - np.asarray(lse, dtype=np.float64)[:, None]  # [T*N, U]
        return lp.reshape(len(self.templates), len(NEUTRAL_FILLS), -1).mean(axis=1)  # [T, N, U] -> [T, U]

    def rows(self, prefixes: Sequence[str], labels: Sequence[str], *, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """[P, L]: PMI(label | prefix) for every prefix label and label (see the module docstring).

        Args:
            prefixes: the labels whose photo contexts are scored.
            labels: the labels read after each context.
            progress: called with the number of prefix labels done.

        Returns:
            float32 [P, L]; the same values whether the states were computed now or read back.
        """
        self.states(prefixes, progress=progress)
        token_ids = self.tokens(labels)
        t = len(self.templates)
        base = self._baseline(token_ids)  # [T, U]
        out = np.empty((len(prefixes), len(labels)), dtype=np.float32)
        for start in range(0, len(prefixes), READOUT_ROWS):  # bounded memory; the same blocks on a resumed run
            block = prefixes[start : start + READOUT_ROWS]
            hidden = np.stack([self._states[p][0] for p in block]).reshape(len(block) * t, -1)  # [B, T, D] -> [B*T, D]
            lse = np.stack([self._states[p][1] for p in block]).reshape(-1)  # [B*T]
            lp = self.lm.readout(hidden, token_ids) - lse[:, None]  # [B*T, U]
            pmi = lp.reshape(len(block), t, -1) - base[None]  # [B, T, U] - [1, T, U]
            out[start : start + len(block)] = pmi.mean(axis=1)  # [B, T, U] -> [B, U]
        return out


def _width(rec: dict[str, Any], templates: int) -> int:
    """The hidden width a cached state was written with (its bytes / 4 / templates; 0 if unreadable)."""
    try:
        return len(base64.b64decode(str(rec.get("hidden", "")), validate=True)) // 4 // max(1, templates)
    except (ValueError, TypeError):
        return 0


def make_context_scorer(
    *, model: str | None = None, cache_dir: str | os.PathLike[str] | None = None, templates: Sequence[str] = CONTEXT_TEMPLATES
) -> ContextScorer:
    """The local model's `ContextScorer`, its rows cached in
    `<cache root>/llm-answers/local-contexts-<model>.jsonl` (an interrupted build resumes).

    Args:
        model: a transformers model folder instead of the packaged Gemma 3 270M.
        cache_dir: cache root (default $C2SRT_CACHE or ~/.cache/c2srt).
        templates: the photo contexts.
    """
    name = safe_name(str(model) if model is not None else "gemma3-270m")
    cache_file = cache_root(cache_dir) / "llm-answers" / f"local-contexts-{name}.jsonl"
    return ContextScorer(templates=templates, cache_file=cache_file, cache_dir=cache_dir, model_path=model)


def _rank(scores: np.ndarray, j: int, allowed: np.ndarray) -> int:
    """1 + how many entries of `scores` that `allowed` marks beat entry j (ties: the earlier index wins)."""
    better = (scores > scores[j]) | ((scores == scores[j]) & (np.arange(scores.shape[0]) < j))
    better[j] = False
    return 1 + int((better & allowed).sum())


def context_links(
    targets: Sequence[str],
    pool: Sequence[str],
    rows: Callable[..., np.ndarray],
    *,
    mutual_k: int = DEFAULT_MUTUAL_K,
    min_pmi: float = DEFAULT_MIN_PMI,
    max_neighbors: int,
    bar: Any = None,
) -> tuple[dict[str, list[tuple[str, float]]], int]:
    """Each target's neighbours from `pool` by the mutual rule of the module docstring.

    Args:
        targets: the labels that receive edges.
        pool: the labels they may receive edges from (a target in the pool never links to itself).
        rows: `ContextScorer.rows`-like: (prefixes, labels, progress=) -> [P, L] PMI.
        mutual_k: rank both directions must reach.
        min_pmi: floor on the pair's score (nats).
        max_neighbors: cap per target.
        bar: a tqdm-like progress bar (`total`, `update`, `refresh`), counting rows.

    Returns:
        ({target: [(neighbour, PMI score), ...] strongest first}, number of pairs that passed the
        ranks but fell below `min_pmi` or the cap).
    """
    if mutual_k < 1:
        raise ValueError(f"mutual_k must be >= 1, got {mutual_k}")
    if max_neighbors < 0:
        raise ValueError(f"max_neighbors must be >= 0, got {max_neighbors}")
    targets, pool = list(targets), list(pool)
    pos = {n: j for j, n in enumerate(pool)}
    progress = bar.update if bar is not None else None
    if bar is not None:
        bar.total = len(targets)
        bar.refresh()
    forward = rows(targets, pool, progress=progress)  # [T, V]: PMI(v | target)
    chosen: dict[str, list[int]] = {}
    for t, cat in enumerate(targets):
        own = [pos[cat]] if cat in pos else []
        order = [j for j in np.argsort(-forward[t], kind="stable") if j not in own]
        chosen[cat] = [int(j) for j in order[:mutual_k]]
    # reverse: the rows of the chosen pool labels, over the pool and the targets
    needed = sorted({j for js in chosen.values() for j in js})
    extra = [c for c in targets if c not in pos]
    columns = pool + extra
    col = {n: j for j, n in enumerate(columns)}
    target_set = set(targets)
    extra_rows = [pool[j] for j in needed if pool[j] not in target_set]
    if bar is not None and extra_rows:
        bar.total = len(targets) + len(extra_rows)  # at most: pool labels already scored are not counted
        bar.refresh()
    reverse = rows([pool[j] for j in needed], columns, progress=progress) if needed else np.zeros((0, len(columns)), dtype=np.float32)  # [N, V + X]
    rrow = {j: r for r, j in enumerate(needed)}
    if bar is not None:
        bar.total = bar.n  # every label of this step scored
        bar.refresh()
    in_pool = np.zeros(len(columns), dtype=bool)
    in_pool[: len(pool)] = True  # columns: the pool, then the targets outside it
    out: dict[str, list[tuple[str, float]]] = {}
    below = 0
    for t, cat in enumerate(targets):
        kept = []
        c = col[cat]
        for j in chosen[cat]:
            r = reverse[rrow[j]]
            # n's ranking of the pool with c in it (other targets outside the pool never compete)
            allowed = in_pool.copy()
            allowed[j] = False  # n itself (pool[j] is column j)
            if _rank(r, c, allowed) > mutual_k:
                continue
            score = float(min(forward[t, j], r[c]))
            kept.append((pool[j], score))
        kept.sort(key=lambda ns: (-ns[1], pos[ns[0]]))
        good = [(n, s) for n, s in kept if s >= min_pmi][:max_neighbors]
        below += len(kept) - len(good)
        if good:
            out[cat] = good
    return out, below
