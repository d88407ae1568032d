"""OpenAI-compatible backend (the `openai` client) against a fake loopback server: answers, retries,
timeouts, refusals, malformed bodies and the resumable answer cache. Bounded: 127.0.0.1 only, short
timeouts, and the server's `Retry-After` keeps the client's back-off to milliseconds."""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from c2srt.graph import build_graph
from c2srt.graph.llm import NO_API_KEY, LLMRequestError, OpenAIChatScorer, make_scorer

LABELS = ["dog", "cat", "ball", "fork", "knife", "spoon"]
EMB = np.array([[1, 0.2, 0], [0.9, 0.3, 0], [0.7, 0.6, 0], [0, 1, 0.1], [0, 0.95, 0.2], [0.1, 0.9, 0.3]])
RETRY_SOON = {"retry-after-ms": "5"}  # what a busy server sends; keeps the client's back-off short
Reply = tuple[int, bytes] | tuple[int, bytes, dict[str, str]]


def encoder(names: list[str]) -> np.ndarray:
    return np.stack([EMB[LABELS.index(n)] for n in names])


def chat(content: str | None) -> tuple[int, bytes]:
    return 200, json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}).encode()


def good_answer(category: str, candidates: list[str]) -> tuple[int, bytes]:
    """The first two candidates, plus garbage the parser must drop for 'fork'."""
    related = [{"name": candidates[0], "strength": 0.9}, {"name": candidates[1], "strength": 0.6}]
    if category == "fork":
        related += [{"name": "Spoons", "strength": 0.5}, {"name": "giraffe", "strength": 0.5}, {"name": "fork", "strength": 1}, {"name": "knife", "strength": 7}]
    return chat("```json\n" + json.dumps({"related": related}) + "\n```")


class FakeServer:
    """Answers POST /v1/chat/completions with `respond(category, candidates, n)`; logs the requests."""

    def __init__(self, respond: Callable[[str, list[str], int], Reply]) -> None:
        self.respond = respond
        self.log: list[dict[str, Any]] = []
        self.release = threading.Event()  # set on close: a handler told to hang returns
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                user = body["messages"][-1]["content"]
                category = re.search(r"^Category: (.*)$", user, re.M).group(1)
                candidates = json.loads(re.search(r"^Candidates: (.*)$", user, re.M).group(1))
                outer.log.append({"path": self.path, "category": category, "auth": self.headers.get("Authorization"), "body": body})
                status, payload, *extra = outer.respond(category, candidates, len(outer.log))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in (extra[0] if extra else {}).items():
                    self.send_header(key, value)
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server_factory() -> Iterator[Callable[..., FakeServer]]:
    servers: list[FakeServer] = []

    def make(respond: Callable[[str, list[str], int], Reply]) -> FakeServer:
        servers.append(FakeServer(respond))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def test_build_with_endpoint_and_defensive_parse(server_factory: Callable[..., FakeServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "sk-test")
    srv = server_factory(lambda c, cands, n: good_answer(c, cands))
    scorer = OpenAIChatScorer(base_url=srv.base_url, model="fake-1", api_key_env="MY_KEY", cache_file=tmp_path / "answers.jsonl")
    g = build_graph(LABELS, source="llm", encoder=encoder, candidates=3, scorer=scorer)
    assert srv.log[0]["path"] == "/v1/chat/completions" and srv.log[0]["auth"] == "Bearer sk-test"
    assert srv.log[0]["body"]["model"] == "fake-1" and srv.log[0]["body"]["temperature"] == 0.0
    assert len(srv.log) == len(LABELS)
    # Each category keeps the model's first two candidates (its nearest labels by embedding).
    assert [n for n, _ in g.neighbors("dog")] == ["cat", "ball"]
    assert g.neighbors("dog")[0][1] == pytest.approx(0.9)
    fork = [n for n, _ in g.neighbors("fork")]
    assert fork[:2] == ["knife", "spoon"] and "giraffe" not in fork and "fork" not in fork
    dropped = g.report["dropped"]
    assert dropped["unknown_name"] == 1 and dropped["self_loop"] == 1 and dropped["duplicate"] == 2
    assert g.provenance["source"] == "llm" and g.provenance["llm_backend"] == "openai" and g.provenance["model"] == "fake-1"
    assert g.provenance["base_url"] == srv.base_url
    assert len(g.provenance["prompt_hash"]) == 16 and g.provenance["candidates"] == 3


def test_no_key_sends_a_placeholder(server_factory: Callable[..., FakeServer], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UNSET_KEY", raising=False)
    srv = server_factory(lambda c, cands, n: good_answer(c, cands))
    OpenAIChatScorer(base_url=srv.base_url + "/", model="m", api_key_env="UNSET_KEY").relate([("dog", ["cat", "ball"])])
    assert srv.log[0]["auth"] == f"Bearer {NO_API_KEY}" and srv.log[0]["path"] == "/v1/chat/completions"


def test_retries_on_429_and_5xx(server_factory: Callable[..., FakeServer]) -> None:
    replies = {1: (429, b'{"error": "slow down"}', RETRY_SOON), 2: (503, b"busy", RETRY_SOON), 3: (502, b"bad gateway", RETRY_SOON)}
    srv = server_factory(lambda c, cands, n: replies.get(n) or good_answer(c, cands))
    [answer] = OpenAIChatScorer(base_url=srv.base_url, model="m", max_retries=3).relate([("dog", ["cat", "ball"])])
    assert answer.pairs == [("cat", 0.9), ("ball", 0.6)]
    assert len(srv.log) == 4


def test_gives_up_naming_endpoint_and_cause(server_factory: Callable[..., FakeServer]) -> None:
    srv = server_factory(lambda c, cands, n: (500, b"model crashed\nstack trace", RETRY_SOON))
    scorer = OpenAIChatScorer(base_url=srv.base_url, model="m", max_retries=2)
    with pytest.raises(LLMRequestError) as info:
        scorer.relate([("dog", ["cat"])])
    assert str(info.value) == f"{srv.base_url}/chat/completions: HTTP 500 after 3 attempts: model crashed stack trace"
    assert len(srv.log) == 3


def test_refusal_is_not_retried(server_factory: Callable[..., FakeServer]) -> None:
    srv = server_factory(lambda c, cands, n: (401, b'{"error": "bad key"}'))
    with pytest.raises(LLMRequestError, match=r'/v1/chat/completions: HTTP 401: \{"error": "bad key"\}$'):
        OpenAIChatScorer(base_url=srv.base_url, model="m", max_retries=3).relate([("dog", ["cat"])])
    assert len(srv.log) == 1


def test_timeout_is_retried_then_reported(server_factory: Callable[..., FakeServer]) -> None:
    holder: list[FakeServer] = []

    def hang(c: str, cands: list[str], n: int) -> Reply:
        holder[0].release.wait(10)  # bounded even if the client never gives up
        return chat('{"related": []}')

    holder.append(server_factory(hang))
    scorer = OpenAIChatScorer(base_url=holder[0].base_url, model="m", timeout=0.3, max_retries=1)
    with pytest.raises(LLMRequestError, match=r"/v1/chat/completions: no answer within 0.3 s \(2 attempts\)$"):
        scorer.relate([("dog", ["cat"])])
    assert len(holder[0].log) == 2


def test_unreachable_endpoint() -> None:
    with socket.socket() as s:  # a free loopback port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    scorer = OpenAIChatScorer(base_url=f"http://127.0.0.1:{port}/v1", model="m", timeout=2, max_retries=1)
    with pytest.raises(LLMRequestError, match=rf"^http://127.0.0.1:{port}/v1/chat/completions: cannot connect \(.*; 2 attempts\)$") as info:
        scorer.relate([("dog", ["cat"])])
    assert "\n" not in str(info.value)


BAD_BODIES = {
    "dog": (200, b"<html>proxy error</html>"),
    "cat": (200, b'{"choices": []}'),
    "ball": chat(None),  # a reasoning model that put everything in its thoughts
    "fork": (200, b"\xff\xfe\x00"),
    "knife": (200, b"[1, 2]"),
    "spoon": (200, b'{"choices": [{"message": {"content": 5}}]}'),
}


def test_malformed_bodies_counted_and_not_cached(server_factory: Callable[..., FakeServer], tmp_path: Path) -> None:
    srv = server_factory(lambda c, cands, n: BAD_BODIES[c] if n <= len(LABELS) else chat("no idea, sorry"))
    cache = tmp_path / "a.jsonl"
    g = build_graph(LABELS, source="llm", encoder=encoder, candidates=3, scorer=OpenAIChatScorer(base_url=srv.base_url, model="m", cache_file=cache))
    assert g.num_edges == 0 and g.report["dropped"]["malformed"] == len(LABELS)
    assert not cache.exists()  # nothing worth keeping: the next build asks again
    g = build_graph(LABELS, source="llm", encoder=encoder, candidates=3, scorer=OpenAIChatScorer(base_url=srv.base_url, model="m", cache_file=cache))
    assert g.num_edges == 0 and g.report["dropped"]["malformed"] == len(LABELS)  # an apology: nothing readable
    assert len(cache.read_text().splitlines()) == len(LABELS)  # but a real answer, cached


def test_resumable_cache(server_factory: Callable[..., FakeServer], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    n_ok = 3
    srv = server_factory(lambda c, cands, n: good_answer(c, cands) if n <= n_ok else (500, b"crash"))
    s1 = make_scorer("openai", model="fake/model:1", base_url=srv.base_url, cache_dir=cache, max_retries=0)
    with pytest.raises(LLMRequestError):
        build_graph(LABELS, source="llm", encoder=encoder, candidates=3, scorer=s1)
    [answers] = list((cache / "llm-answers").glob("*.jsonl"))
    assert answers.name == "fake_model_1.jsonl" and len(answers.read_text().splitlines()) == n_ok
    first = {r["category"] for r in srv.log[:n_ok]}
    # Simulate a write cut short by the crash: a truncated last line is skipped, not fatal.
    with answers.open("a") as fh:
        fh.write('{"key": "abc", "content')

    srv2 = server_factory(lambda c, cands, n: good_answer(c, cands))
    s2 = make_scorer("openai", model="fake/model:1", base_url=srv2.base_url, cache_dir=cache)
    g = build_graph(LABELS, source="llm", encoder=encoder, candidates=3, scorer=s2)
    asked = [r["category"] for r in srv2.log]
    assert len(asked) == len(LABELS) - n_ok and not set(asked) & first
    assert all(len(g.neighbors(c)) >= 1 for c in LABELS)

    srv3 = server_factory(lambda c, cands, n: (500, b"must not be called"))
    s3 = make_scorer("openai", model="fake/model:1", base_url=srv3.base_url, cache_dir=cache)
    g3 = build_graph(LABELS, source="llm", encoder=encoder, candidates=3, scorer=s3)
    assert srv3.log == [] and g3.edges() == g.edges()


def test_make_scorer_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="valid backends: local, openai"):
        make_scorer("bard")
    with pytest.raises(ValueError, match="--base-url"):
        make_scorer("openai", model="m")
    with pytest.raises(ValueError, match="--llm-model"):
        make_scorer("openai", base_url="http://127.0.0.1:1/v1")
    monkeypatch.setitem(sys.modules, "openai", None)  # as if the llm extra were not installed
    with pytest.raises(ImportError, match=r"pip install 'c2srt\[llm\]'"):
        make_scorer("openai", model="m", base_url="http://127.0.0.1:1/v1")


def _slow(delay: float, inflight: list[int], peak: list[int], lock: threading.Lock) -> Callable[[str, list[str], int], Reply]:
    """good_answer after `delay` seconds, recording how many requests were in flight at once."""
    import time

    def respond(c: str, cands: list[str], n: int) -> Reply:
        with lock:
            inflight[0] += 1
            peak[0] = max(peak[0], inflight[0])
        time.sleep(delay)
        with lock:
            inflight[0] -= 1
        return good_answer(c, cands)

    return respond


def test_requests_go_out_concurrently_in_a_fixed_order(server_factory: Callable[..., FakeServer], tmp_path: Path) -> None:
    import time

    labels = [f"{n} {i}" for i in range(4) for n in LABELS]  # 24 categories
    emb = np.concatenate([EMB + 0.01 * i for i in range(4)])

    def enc(names: list[str]) -> np.ndarray:
        return np.stack([emb[labels.index(n)] for n in names])

    graphs, seconds, peaks = {}, {}, {}
    for concurrency in (1, 8):
        inflight, peak, lock = [0], [0], threading.Lock()
        srv = server_factory(_slow(0.1, inflight, peak, lock))
        cache = tmp_path / f"c{concurrency}.jsonl"
        scorer = OpenAIChatScorer(base_url=srv.base_url, model="m", cache_file=cache, concurrency=concurrency)
        t0 = time.perf_counter()
        graphs[concurrency] = build_graph(labels, source="llm", encoder=enc, candidates=3, scorer=scorer)
        seconds[concurrency] = time.perf_counter() - t0
        peaks[concurrency] = peak[0]
        assert len(srv.log) == len(labels)
        lines = [json.loads(x) for x in cache.read_text().splitlines()]  # appends from 8 threads: whole lines
        assert sorted(r["category"] for r in lines) == sorted(labels) and len({r["key"] for r in lines}) == len(labels)
    assert peaks[1] == 1 and 2 <= peaks[8] <= 8
    assert graphs[8].to_dict()["neighbors"] == graphs[1].to_dict()["neighbors"]
    assert seconds[8] < seconds[1] / 2.5, seconds  # 24 x 0.1 s one at a time vs about 4 rounds of 8


def test_a_failure_among_concurrent_requests_keeps_the_answers_that_arrived(server_factory: Callable[..., FakeServer], tmp_path: Path) -> None:
    srv = server_factory(lambda c, cands, n: (401, b'{"error": "no"}') if c == "fork" else good_answer(c, cands))
    cache = tmp_path / "a.jsonl"
    scorer = OpenAIChatScorer(base_url=srv.base_url, model="m", cache_file=cache, concurrency=4, max_retries=0)
    with pytest.raises(LLMRequestError, match="HTTP 401"):
        scorer.relate([(c, ["dog", "cat"]) for c in LABELS])
    cached = {json.loads(x)["category"] for x in cache.read_text().splitlines()}
    assert "fork" not in cached and cached <= set(LABELS)
    with pytest.raises(ValueError, match="concurrency must be >= 1"):
        OpenAIChatScorer(base_url=srv.base_url, model="m", concurrency=0)
