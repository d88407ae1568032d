"""`c2srt demo --quick` end to end, in process, from an empty cache (as CI starts).

The category graph comes from text embeddings here (`--graph-source embedding`): the local LLM
needs a minute or more to convert and load Gemma on first use, which CI cannot afford in this
test, and tests/graph/test_llm_local.py exercises it already. Everything else is the real demo:
mini-world generation, pretraining of the CLIP stand-in into the (temporary) cache, fine-tuning of
every ablation on seen labels only, the table, results.json and the pictures.
"""

from __future__ import annotations

import json
import math
import time

import pytest
from PIL import Image

from c2srt.cli import main
from c2srt.demo import TABLE_COLUMNS, ZERO_SHOT, load_demo_spec

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _valid_png(path) -> bool:
    if not path.is_file() or path.read_bytes()[:8] != PNG_MAGIC:
        return False
    with Image.open(path) as im:
        im.verify()  # raises on a truncated or corrupt file
    return True


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path, capsys):
    out, cache = tmp_path / "demo", tmp_path / "cache"
    t0 = time.time()
    rc = main(["demo", "--quick", "--output-dir", str(out), "--cache-dir", str(cache), "--graph-source", "embedding"])
    elapsed = time.time() - t0
    assert rc == 0

    # the printed table: one row per method, the six columns of the paper's tables
    printed = capsys.readouterr().out
    variants = [v["name"] for v in load_demo_spec()["variants"]]
    methods = [ZERO_SHOT, *variants]
    header = next(line for line in printed.splitlines() if line.startswith("| method |"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "method", "ZSL mAP", "ZSL F1@3", "ZSL F1@5", "GZSL mAP", "GZSL F1@3", "GZSL F1@5",
    ]  # fmt: skip
    for name in methods:
        assert any(line.startswith(f"| {name} |") for line in printed.splitlines()), name

    report = json.loads((out / "results.json").read_text())
    assert list(report["results"]) == methods
    for name in methods:
        for column in TABLE_COLUMNS:
            mean = report["results"][name][column]["mean"]
            assert math.isfinite(mean) and 0.0 <= mean <= 1.0, (name, column, mean)
        assert len(report["per_seed"][name]) == 1
    assert report["quick"] is True and report["seeds"] == [0]
    assert report["graph_source"] == "embedding"
    assert (out / "results.md").read_text().startswith("| method |")

    # the pretrained stand-in is cached (a few MB: the frozen MiniLM is not stored) and reused
    weights = list(cache.glob("miniworld-clip-*.safetensors"))
    assert len(weights) == 1 and weights[0].stat().st_size < 20e6
    assert list(cache.glob("miniworld-graph-embedding-*.json"))

    # pictures: learning curves, the graph, per-label selected regions of a few test images
    pictures = [out / "curves.png", out / "graph.png", *sorted((out / "regions").glob("*.png"))]
    assert len(pictures) >= 4
    for png in pictures:
        assert _valid_png(png), png
    print(f"c2srt demo --quick from an empty cache: {elapsed:.0f} s")
