"""`c2srt graph build` and `c2srt graph show` end to end, in process (main([...])), on temporary files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from c2srt.cli import main
from c2srt.graph import CategoryGraph
from test_llm_openai import FakeServer, good_answer

LABELS = ["dog", "cat", "horse", "fork", "knife", "spoon", "car", "bus", "traffic light"]


@pytest.fixture
def vocab(tmp_path: Path) -> tuple[Path, Path]:
    labels = tmp_path / "labels.txt"
    labels.write_text("# a vocabulary\n" + "\n".join(LABELS) + "\n")
    seen = tmp_path / "seen.txt"
    seen.write_text("\n".join(LABELS[:6]) + "\n")
    return labels, seen


def test_build_then_show(vocab: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels, seen = vocab
    out = tmp_path / "g" / "graph.json"
    assert main(["graph", "build", "--labels", str(labels), "--seen", str(seen), "--source", "embedding", "--out", str(out), "--candidates", "4"]) == 0
    g = CategoryGraph.load(out)
    assert g.labels == LABELS and g.seen == LABELS[:6]
    assert g.provenance["source"] == "embedding" and g.provenance["candidates"] == 4
    assert {n for n, _ in g.neighbors("fork")} & {"knife", "spoon"}  # MiniLM puts cutlery together
    counts = [len(g.neighbors(n)) for n in g.labels]
    printed = capsys.readouterr().out
    assert f"{out}: {len(LABELS)} labels, {sum(counts)} edges" in printed and f"max {max(counts)}" in printed

    whole, ego = tmp_path / "pics" / "all.png", tmp_path / "dog.png"
    assert main(["graph", "show", str(out), "--out", str(whole)]) == 0
    assert main(["graph", "show", str(out), "--label", "dog", "--out", str(ego)]) == 0
    for png in (whole, ego):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {ego}" in capsys.readouterr().out

    # --source file imports the graph again, checked against the vocabulary.
    again = tmp_path / "again.json"
    assert main(["graph", "build", "--labels", str(labels), "--source", "file", "--graph-file", str(out), "--out", str(again)]) == 0
    assert CategoryGraph.load(again).edges() == g.edges()


def test_show_unknown_label_is_one_error_line(vocab: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "graph.json"
    CategoryGraph(LABELS, {"dog": [("cat", 0.5)]}).save(out)
    png = tmp_path / "x.png"
    assert main(["graph", "show", str(out), "--label", "unicorn", "--out", str(png)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'unicorn'" in err[0]
    assert not png.exists()


def test_build_errors_name_the_problem(vocab: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels, _ = vocab
    bad_seen = tmp_path / "seen.txt"
    bad_seen.write_text("dog\nunicorn\n")
    out = tmp_path / "graph.json"
    assert main(["graph", "build", "--labels", str(labels), "--seen", str(bad_seen), "--source", "embedding", "--out", str(out)]) != 0
    assert "'unicorn'" in capsys.readouterr().err and not out.exists()
    assert main(["graph", "build", "--labels", str(labels), "--source", "file", "--out", str(out)]) != 0
    assert "--graph-file" in capsys.readouterr().err and not out.exists()


@pytest.fixture
def server() -> Iterator[FakeServer]:
    srv = FakeServer(lambda c, cands, n: good_answer(c, cands))
    yield srv
    srv.close()


def test_build_with_an_endpoint(vocab: tuple[Path, Path], tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The llm source through the CLI, on a loopback OpenAI-compatible server; answers cached under --cache."""
    labels, _ = vocab
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    out, cache = tmp_path / "graph.json", tmp_path / "cache"
    argv = ["graph", "build", "--labels", str(labels), "--source", "llm", "--llm-backend", "openai", "--base-url", server.base_url,
            "--llm-model", "fake-1", "--cache", str(cache), "--candidates", "3", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    g = CategoryGraph.load(out)
    assert len(server.log) == len(LABELS) and g.provenance["llm_backend"] == "openai" and g.provenance["model"] == "fake-1"
    assert all(len(g.neighbors(n)) == 2 for n in LABELS)  # the fake model relates the first two candidates
    [answers] = (cache / "llm-answers").glob("*.jsonl")
    assert len(answers.read_text().splitlines()) == len(LABELS)
    first = g.edges()
    assert main(argv) == 0 and len(server.log) == len(LABELS)  # the second build reads the cache
    assert CategoryGraph.load(out).edges() == first
