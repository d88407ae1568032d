"""The OpenAI-compatible graph backend against a slow endpoint: one request at a time vs several in flight.

Usage:
    python benchmarks/llm_concurrency.py [--labels ../shared/data/coco8/classes.txt] [--delay 0.2]
        [--concurrency 1 8] [--smoke]

A fake chat endpoint on 127.0.0.1 (nothing leaves the machine) answers every request after
`--delay` seconds with the category's first three candidates, as a server busy generating would;
`c2srt.graph.build_graph` (source "llm", backend "openai", no answer cache) builds the graph of the
vocabulary once per `--concurrency` value. Prints wall seconds, requests per second, the most
requests the server saw at once and the speed-up over the first value, and writes CSV + JSON to
benchmarks/results/. The graphs must be identical (answers come back in the order asked).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_io import print_rows, run_environment, write_rows  # noqa: E402

from c2srt.graph import build_graph  # noqa: E402
from c2srt.graph.llm import OpenAIChatScorer  # noqa: E402
from c2srt.vocabulary import read_label_file  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_LABELS = next(
    (c for c in (REPO.parent / "shared" / "data" / "coco8" / "classes.txt", REPO.parents[1] / "shared" / "data" / "coco8" / "classes.txt") if c.is_file()),
    None,
)


class SlowEndpoint:
    """POST /v1/chat/completions answered after `delay` seconds; counts requests in flight."""

    def __init__(self, delay: float) -> None:
        self.delay, self.inflight, self.peak, self.requests = delay, 0, 0, 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                user = body["messages"][-1]["content"]
                cands = json.loads(re.search(r"^Candidates: (.*)$", user, re.M).group(1))
                with lock:
                    outer.requests += 1
                    outer.inflight += 1
                    outer.peak = max(outer.peak, outer.inflight)
                time.sleep(outer.delay)
                with lock:
                    outer.inflight -= 1
                related = [{"name": c, "strength": 0.9 - 0.1 * i} for i, c in enumerate(cands[:3])]
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": json.dumps({"related": related})}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=Path, default=DEFAULT_LABELS, help="label file (default: COCO8's 80 classes)")
    ap.add_argument("--delay", type=float, default=0.2, help="seconds the endpoint takes per answer")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8], help="requests in flight, one build each")
    ap.add_argument("--smoke", action="store_true", help="12 labels, 0.05 s per answer")
    ap.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args(argv)
    labels = read_label_file(args.labels) if args.labels is not None else [f"concept {i:02d}" for i in range(80)]
    if args.smoke:
        labels, args.delay = labels[:12], 0.05
    rng = np.random.default_rng(0)
    emb = {n: rng.normal(size=16) for n in labels}  # any encoder will do: only the requests are timed

    def encoder(names: list[str]) -> np.ndarray:
        return np.stack([emb[n] for n in names])

    load_before = __import__("os").getloadavg()[0]
    rows, graphs = [], []
    for k in args.concurrency:
        server = SlowEndpoint(args.delay)
        try:
            scorer = OpenAIChatScorer(base_url=server.base_url, model="slow-fake", concurrency=k)
            t0 = time.perf_counter()
            graphs.append(build_graph(labels, source="llm", encoder=encoder, candidates=10, scorer=scorer))
            sec = time.perf_counter() - t0
        finally:
            server.close()
        rows.append({"labels": len(labels), "delay_s": args.delay, "concurrency": k, "seconds": round(sec, 2),
                     "requests_per_s": round(server.requests / sec, 1), "peak_in_flight": server.peak})  # fmt: skip
    for r in rows:
        r["speedup"] = round(rows[0]["seconds"] / r["seconds"], 2)
    same = all(g.to_dict()["neighbors"] == graphs[0].to_dict()["neighbors"] for g in graphs)
    env = run_environment(torch.device("cpu"), load_before=load_before)
    print(f"git {env['git_sha']}, {env['cpus']} CPUs, load {env['load_1min_before']} -> {env['load_1min_after']}; identical graphs: {same}")
    print_rows(rows)
    write_rows(args.out_dir, f"llm_concurrency_{len(labels)}labels_{args.delay:g}s_{env['git_sha']}", rows, args=vars(args), environment=env, identical_graphs=same)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
