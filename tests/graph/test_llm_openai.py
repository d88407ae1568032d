"""OpenAI-compatible backend against a fake local HTTP server: answers, retries, resumable cache."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from c2srt.graph import build_graph
from c2srt.graph.llm import LLMRequestError, OpenAIChatScorer, make_scorer

LABELS = ["dog", "cat", "ball", "fork", "knife", "spoon"]
EMB = np.array([[1, 0.2, 0], [0.9, 0.3, 0], [0.7, 0.6, 0], [0, 1, 0.1], [0, 0.95, 0.2], [0.1, 0.9, 0.3]])


def encoder(names: list[str]) -> np.ndarray:
    return np.stack([EMB[LABELS.index(n)] for n in names])


def chat(content: str) -> tuple[int, bytes]:
    return 200, json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()


def good_answer(category: str, candidates: list[str]) -> tuple[int, bytes]:
    """The first two candidates, plus garbage the parser must drop for 'fork'."""
    related = [{"name": candidates[0], "strength": 0.9}, {"name": candidates[1], "strength": 0.6}]
    if category == "fork":
        related += [{"name": "Spoons", "strength": 0.5}, {"name": "giraffe", "strength": 0.5}, {"name": "fork", "strength": 1}, {"name": "knife", "strength": 7}]
    return chat("```json\n" + json.dumps({"related": related}) + "\n```")


class FakeServer:
    """Answers POST /v1/chat/completions with `respond(category, candidates, n)`; logs the requests."""

    def __init__(self, respond: Callable[[str, list[str], int], tuple[int, bytes]]) -> None:
        self.respond = respond
        self.log: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                user = body["messages"][-1]["content"]
                category = re.search(r"^Category: (.*)$", user, re.M).group(1)
                candidates = json.loads(re.search(r"^Candidates: (.*)$", user, re.M).group(1))
                outer.log.append({"path": self.path, "category": category, "auth": self.headers.get("Authorization"), "body": body})
                status, payload = outer.respond(category, candidates, len(outer.log))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server_factory() -> Iterator[Callable[..., FakeServer]]:
    servers: list[FakeServer] = []

    def make(respond: Callable[[str, list[str], int], tuple[int, bytes]]) -> FakeServer:
        servers.append(FakeServer(respond))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def test_build_with_endpoint_and_defensive_parse(server_factory: Callable[..., FakeServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "sk-test")
    srv = server_factory(lambda c, cands, n: good_answer(c, cands))
    scorer = OpenAIChatScorer(base_url=srv.base_url, model="fake-1", api_key_env="MY_KEY", cache_file=tmp_path / "answers.jsonl", sleep=lambda s: None)
    g = build_graph(LABELS, source="llm", encoder=encoder, candidates=3, scorer=scorer)
    assert srv.log[0]["path"] == "/v1/chat/completions" and srv.log[0]["auth"] == "Bearer sk-test"
    assert srv.log[0]["body"]["model"] == "fake-1"
    assert len(srv.log) == len(LABELS)
    # Each category keeps the model's first two candidates (its nearest labels by embedding).
    assert [n for n, _ in g.neighbors("dog")] == ["cat", "ball"]
    assert g.neighbors("dog")[0][1] == pytest.approx(0.9)
    fork = [n for n, _ in g.neighbors("fork")]
    assert fork[:2] == ["knife", "spoon"] and "giraffe" not in fork and "fork" not in fork
    dropped = g.report["dropped"]
    assert dropped["unknown_name"] == 1 and dropped["self_loop"] == 1 and dropped["duplicate"] == 2
    assert g.provenance["source"] == "llm" and g.provenance["llm_backend"] == "openai" and g.provenance["model"] == "fake-1"
    assert len(g.provenance["prompt_hash"]) == 16 and g.provenance["candidates"] == 3


def test_retries_with_backoff(server_factory: Callable[..., FakeServer], tmp_path: Path) -> None:
    srv = server_factory(lambda c, cands, n: (503, b"busy") if n <= 2 else good_answer(c, cands))
    sleeps: list[float] = []
    scorer = OpenAIChatScorer(base_url=srv.base_url, model="m", cache_file=None, sleep=sleeps.append, backoff=1.0)
    [answer] = scorer.relate([("dog", ["cat", "ball"])])
    assert answer.pairs == [("cat", 0.9), ("ball", 0.6)]
    assert sleeps == [1.0, 2.0] and scorer.requests == 3

    srv2 = server_factory(lambda c, cands, n: (500, b"down"))
    sleeps.clear()
    scorer = OpenAIChatScorer(base_url=srv2.base_url, model="m", max_retries=2, sleep=sleeps.append)
    with pytest.raises(LLMRequestError, match="giving up after 3 attempts.*HTTP 500"):
        scorer.relate([("dog", ["cat"])])
    assert sleeps == [1.0, 2.0]

    srv3 = server_factory(lambda c, cands, n: (401, b'{"error": "bad key"}'))
    scorer = OpenAIChatScorer(base_url=srv3.base_url, model="m", sleep=sleeps.append)
    with pytest.raises(LLMRequestError, match="HTTP 401"):
        scorer.relate([("dog", ["cat"])])
    assert scorer.requests == 1  # a refused request is not retried

    # Nothing listening: connection errors are retried, then reported.
    dead = OpenAIChatScorer(base_url="http://127.0.0.1:9/v1", model="m", max_retries=1, timeout=2, sleep=lambda s: None)
    with pytest.raises(LLMRequestError, match="2 attempts"):
        dead.relate([("dog", ["cat"])])


def test_malformed_envelope_counted_and_not_cached(server_factory: Callable[..., FakeServer], tmp_path: Path) -> None:
    srv = server_factory(lambda c, cands, n: (200, b"<html>proxy error</html>") if c == "cat" else chat("no idea, sorry"))
    cache = tmp_path / "a.jsonl"
    scorer = OpenAIChatScorer(base_url=srv.base_url, model="m", cache_file=cache, sleep=lambda s: None)
    g = build_graph(LABELS, source="llm", encoder=encoder, candidates=3, scorer=scorer)
    assert g.num_edges == 0
    assert g.report["dropped"]["malformed"] == len(LABELS)
    assert len(cache.read_text().splitlines()) == len(LABELS) - 1  # the unreadable envelope is retried next time


def test_resumable_cache(server_factory: Callable[..., FakeServer], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    n_ok = 3
    srv = server_factory(lambda c, cands, n: good_answer(c, cands) if n <= n_ok else (500, b"crash"))
    s1 = make_scorer("openai", model="fake/model:1", base_url=srv.base_url, cache_dir=cache, sleep=lambda s: None)
    with pytest.raises(LLMRequestError):
        build_graph(LABELS, source="llm", encoder=encoder, candidates=3, scorer=s1)
    [answers] = list((cache / "llm-answers").glob("*.jsonl"))
    assert len(answers.read_text().splitlines()) == n_ok
    first = {r["category"] for r in srv.log[:n_ok]}
    # Simulate a write cut short by the crash: a truncated last line is skipped, not fatal.
    with answers.open("a") as fh:
        fh.write('{"key": "abc", "content')

    srv2 = server_factory(lambda c, cands, n: good_answer(c, cands))
    s2 = make_scorer("openai", model="fake/model:1", base_url=srv2.base_url, cache_dir=cache, sleep=lambda s: None)
    g = build_graph(LABELS, source="llm", encoder=encoder, candidates=3, scorer=s2)
    asked = [r["category"] for r in srv2.log]
    assert len(asked) == len(LABELS) - n_ok and not set(asked) & first
    assert all(len(g.neighbors(c)) >= 1 for c in LABELS)

    srv3 = server_factory(lambda c, cands, n: (500, b"must not be called"))
    s3 = make_scorer("openai", model="fake/model:1", base_url=srv3.base_url, cache_dir=cache, sleep=lambda s: None)
    g3 = build_graph(LABELS, source="llm", encoder=encoder, candidates=3, scorer=s3)
    assert srv3.log == [] and g3.edges() == g.edges()


def test_make_scorer_errors() -> None:
    with pytest.raises(ValueError, match="valid backends: local, openai"):
        make_scorer("bard")
    with pytest.raises(ValueError, match="--base-url"):
        make_scorer("openai", model="m")
    with pytest.raises(ValueError, match="--llm-model"):
        make_scorer("openai", base_url="http://127.0.0.1:1/v1")
