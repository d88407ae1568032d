"""The real local LLM (Gemma 3 270M from the packaged GGUF): cache, batched scoring, a tiny build.

One real run, kept small (5 labels, 4 candidates each). The converted model is cached under a
session temp dir, never in the user's home.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from c2srt.graph import build_graph
from c2srt.graph import llm as llm_mod
from c2srt.graph.contexts import ContextScorer, LocalNextTokenLM
from c2srt.graph.llm import LOCAL_MODEL_DIRNAME, LocalLMScorer
from c2srt.io import CACHE_ENV

LABELS = ["dog", "cat", "fork", "knife", "traffic light"]


@pytest.fixture(scope="session")
def gemma_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("c2srt-cache")


def _brute_force_logprob(model: object, tok: object, prefix: str, cont: str) -> float:
    """Sum of log p(token) over `cont`, from one unpadded full-sequence forward pass."""
    p = tok(prefix).input_ids
    c = tok(cont, add_special_tokens=False).input_ids
    ids = torch.tensor([p + c])
    with torch.no_grad():
        logp = model(input_ids=ids).logits[0].float().log_softmax(-1)  # [L, vocab]
    return float(sum(logp[len(p) - 1 + k, c[k]] for k in range(len(c))))


@pytest.mark.slow
def test_local_gemma_build(gemma_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CACHE_ENV, raising=False)
    scorer = LocalLMScorer(cache_dir=gemma_cache)
    cached = gemma_cache / LOCAL_MODEL_DIRNAME
    assert (cached / "config.json").is_file() and not list(gemma_cache.glob(f".{LOCAL_MODEL_DIRNAME}.*"))
    assert "quantization_config" not in (cached / "config.json").read_text()

    # Batched, padded, cache-sharing scoring equals plain one-sequence forward passes.
    items = [("In this photo there is a traffic light and a", [" stop sign", " cat"]), ("In this photo there is a dog and a", [" cat", " traffic light", " knife"])]
    got = scorer.continuation_logprobs(items)
    for (prefix, conts), row in zip(items, got):
        want = [_brute_force_logprob(scorer.model, scorer.tokenizer, prefix, c) for c in conts]
        np.testing.assert_allclose(row, want, atol=2e-3)

    # A second scorer on the same cache loads the saved copy instead of converting the GGUF again.
    def _no_rebuild(target: Path) -> None:
        raise AssertionError("the cache was rebuilt")

    monkeypatch.setattr(llm_mod, "_build_local_cache", _no_rebuild)
    monkeypatch.setenv(CACHE_ENV, str(gemma_cache))
    again = LocalLMScorer()  # cache root from $C2SRT_CACHE
    g = build_graph(LABELS, seen=LABELS[:3], source="llm", candidates=4, scorer=again)
    assert g.provenance["llm_backend"] == "local" and g.provenance["mode"] == "pmi" and g.provenance["candidates"] == 4
    assert g.provenance["parameters"]["relative_cut"] == pytest.approx(0.8)
    for cat in LABELS:
        for n, w in g.neighbors(cat):
            assert n != cat and 0.0 < w <= 1.0
    assert g.num_edges >= 1
    assert "fork" in [n for n, _ in g.neighbors("knife")]  # the one relation a 270M model cannot miss (knife is unseen)
    assert sum(g.report["dropped"][r] for r in ("unknown_name", "duplicate", "self_loop", "out_of_range", "malformed")) == 0

    # The contexts mode on the same model: a label's log-probability read from the hidden state
    # equals the full forward pass's; a tiny build links knife (unseen) from fork.
    lm = LocalNextTokenLM(model=again.model, tokenizer=again.tokenizer)
    prefixes = ["A photo of a fork. In the background there is a", "A photo of a dog. In the background is the"]
    hidden, lse = lm.encode(prefixes)
    got = lm.readout(hidden, [lm.first_token(" knife"), lm.first_token(" traffic light")]) - lse[:, None]
    for row, prefix in zip(got, prefixes):
        with torch.no_grad():
            logp = again.model(input_ids=torch.tensor([again.tokenizer(prefix).input_ids])).logits[0, -1].float().log_softmax(-1)
        np.testing.assert_allclose(row, [float(logp[lm.first_token(" knife")]), float(logp[lm.first_token(" traffic light")])], atol=2e-3)
    g = build_graph(LABELS, seen=LABELS[:3], source="llm", scorer=ContextScorer(lm))
    assert g.provenance["mode"] == "contexts" and "fork" in [n for n, _ in g.neighbors("knife")]


def test_first_use_conversion_shows_no_transformers_bar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd) -> None:
    """`c2srt graph build` converts the packaged GGUF on first use; transformers' own "Writing model
    shards" bar (and its loading bars) must not appear beside c2srt's progress."""
    import logging
    from types import SimpleNamespace

    import transformers
    from transformers.utils import logging as hf_logging

    class FakeModel:
        config = SimpleNamespace()
        hf_quantizer = None

        def to(self, dtype: object) -> "FakeModel":
            return self

        def save_pretrained(self, path: Path) -> None:  # as transformers writes its shards
            for _ in hf_logging.tqdm(range(3), desc="Writing model shards"):
                pass
            (Path(path) / "config.json").write_text("{}")

    class FakeTokenizer:
        def save_pretrained(self, path: Path) -> None:
            pass

    monkeypatch.setattr(llm_mod, "_require_llm_extra", lambda: SimpleNamespace(MODEL_NAME="m.gguf", assemble=lambda p: None))
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: FakeModel())
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: FakeTokenizer())
    ours = logging.getLogger("c2srt")
    level, bars = ours.level, hf_logging.is_progress_bar_enabled()
    ours.setLevel(logging.INFO)  # not `-v`: at DEBUG, transformers may speak
    try:
        llm_mod._build_local_cache(tmp_path / "gemma")
    finally:
        ours.setLevel(level)
    assert (tmp_path / "gemma" / "config.json").is_file()
    assert "Writing model shards" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled() == bars  # the setting is restored afterwards
