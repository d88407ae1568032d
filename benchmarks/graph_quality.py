"""Graph quality: how many of a category graph's edges a known co-occurrence confirms, beside random edges.

Usage:
    python benchmarks/graph_quality.py                   # the mini-world: shipped graph + the sources built now
    python benchmarks/graph_quality.py --reference /tmp/voc_adj.pkl \\
        --labels benchmarks/references/voc2007_labels.txt --images 5011        # Pascal VOC 2007 (ML-GCN's counts)
    python benchmarks/graph_quality.py --reference counts.json --graph mine=graph.json --build none
    python benchmarks/graph_quality.py --dataset coco --root ../shared/data/coco8 --split train

References: `miniworld` (the statistics of world 0's 1,000 fine-tuning scenes, unseen labels
included, with its seen / unseen split), a file (`c2srt.graph.quality.load_reference`: a JSON
`{labels, counts, joint, images}`, or ML-GCN's `voc_adj.pkl` / `coco_adj.pkl` with `--labels` and
`--images`: benchmarks/references/README.md says where to get them), or `--dataset` (a dataset
the library reads, counted from its label matrix). `--seen FILE` splits a real vocabulary.

Sources: graph files (`--graph NAME=FILE`; on the mini-world the shipped graph is added as
"shipped"), and graphs built now for the reference's vocabulary (`--build`): `contexts` (the local
LLM's default mode), `pmi` (the local LLM's version-1 mode, `c2srt graph build` defaults), and
`embedding` (MiniLM). Each is timed (seconds per label, model loading excluded, no answer cache).

Figures (`c2srt.graph.quality`, every definition in its docstring): edge precision, precision
of edges into the targets (the unseen labels, or every label without a split), the share of
targets whose strongest true partner (highest P(s | u)) is a neighbour, correlated targets
covered (a true partner among their neighbours), neighbours per label; each share beside the
same figure for `--draws` random graphs of the same degrees (`controls.random_like`): mean and
2.5-97.5 % range. Prints a table and writes CSV + JSON to benchmarks/results/ (git SHA, versions
and machine load in the JSON; reference and SHA in the name).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_io import print_rows, run_environment, write_rows  # noqa: E402

from c2srt.graph import CategoryGraph, build_graph  # noqa: E402
from c2srt.graph.cooccurrence import TRUE_LIFT, TRUE_P_GIVEN, Cooccurrence  # noqa: E402
from c2srt.graph.quality import SHARES, graph_quality, load_reference, random_baseline  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("contexts", "pmi", "embedding")
# how the version-1 mini-world graph was built (demo.yaml before issue 20: candidates 12, at most 6
# neighbours; GraphCfg's relative_cut 0.9 reached the LLM source through prepare_graph)
V1_DEMO_SETTINGS = {"candidates": 12, "max_neighbors": 6, "relative_cut": 0.9}


def _reference(args: argparse.Namespace) -> tuple[Cooccurrence, list[str] | None, str, dict[str, Any]]:
    """(counts, seen labels or None, a short name, the demo's graph settings when on the mini-world)."""
    from c2srt.vocabulary import read_label_file

    seen = read_label_file(args.seen, "seen label file") if args.seen else None
    if args.dataset:
        from c2srt.config import DataCfg
        from c2srt.constants import POSITIVE
        from c2srt.data import build_dataset

        options = dict(kv.split("=", 1) for kv in args.option)
        ds = build_dataset(DataCfg(name=args.dataset, root=args.root, check_images=False, options=options), args.split)
        labels = ds.labels.toarray() if hasattr(ds.labels, "toarray") else ds.labels
        stats = Cooccurrence.from_matrix(list(ds.label_names), labels == POSITIVE)
        return stats, seen, f"{args.dataset}-{args.split}", {}
    if args.reference == "miniworld":
        from c2srt.miniworld.demo import load_demo_spec
        from c2srt.miniworld.report import world_cooccurrence
        from c2srt.miniworld.world import MiniWorld

        world = MiniWorld(0)
        return world_cooccurrence(world), seen or list(world.seen_names), "miniworld", dict(load_demo_spec()["base"]["graph"])
    labels = read_label_file(args.labels, "label file") if args.labels else None
    stats = load_reference(args.reference, labels=labels, images=args.images)
    return stats, seen, Path(args.reference).stem, {}


def _build(source: str, labels: list[str], seen: list[str] | None, settings: dict[str, Any], args: argparse.Namespace) -> tuple[CategoryGraph, float]:
    """A graph built now and its wall seconds (the model loaded beforehand; no answer cache)."""
    kw: dict[str, Any] = {}
    if source == "embedding":
        from c2srt.graph.encoders import minilm_encoder

        enc = minilm_encoder()
        enc(labels[:2])  # load
        kw.update(source="embedding", encoder=enc)
    elif source == "pmi":
        from c2srt.graph.llm import LocalLMScorer

        kw.update(source="llm", scorer=LocalLMScorer(cache_dir=args.cache), llm_mode="pmi")
    else:
        from c2srt.graph.contexts import ContextScorer, LocalNextTokenLM

        kw.update(source="llm", scorer=ContextScorer(LocalNextTokenLM(cache_dir=args.cache)))  # cache_file None: in memory
        for key in ("mutual_k", "min_pmi", "link_unseen"):
            if key in settings:
                kw[key] = settings[key]
    if source != "pmi" and "max_neighbors" in settings:
        kw["max_neighbors"] = settings["max_neighbors"]
    if source == "pmi" and settings:  # on the mini-world: the settings of the version-1 demo graph
        kw.update(V1_DEMO_SETTINGS)
    t0 = time.perf_counter()
    graph = build_graph(labels, seen=seen, **kw)
    return graph, time.perf_counter() - t0


def _fmt(x: float, digits: int = 2) -> str:
    return "nan" if isinstance(x, float) and math.isnan(x) else f"{x:.{digits}f}"


def _row(name: str, q: Any, base: dict[str, dict[str, float]], seconds: float | None, labels: int) -> dict[str, Any]:
    row: dict[str, Any] = {"source": name, "labels": q.labels, "edges": q.edges}
    for key, label in zip(SHARES, ("precision", "into_targets", "strongest", "correlated", "correlated_any", "correlated_strict")):
        row[label] = _fmt(getattr(q, key))
        r = base[key]
        row[f"{label}_random"] = f"{_fmt(r['mean'])} [{_fmt(r['lo'])}-{_fmt(r['hi'])}]"
    row["correlated_n"] = f"{q.correlated_covered}/{q.correlated_total}"
    row["correlated_any_n"] = f"{q.correlated_covered_any}/{q.correlated_total}"
    row["correlated_strict_n"] = f"{q.correlated_strict}/{q.correlated_total}"
    row["strongest_n"] = f"{q.strongest_hit}/{q.strongest_total}"
    row["neighbours"] = f"{q.degree_min}/{q.degree_mean:.1f}/{q.degree_max}"
    row["s_per_label"] = "" if seconds is None else f"{seconds / labels:.3f}"
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", default="miniworld", help="'miniworld', or a reference file (.json, or ML-GCN's .pkl)")
    ap.add_argument("--labels", type=Path, help="label names of a .pkl reference, in its order (benchmarks/references/)")
    ap.add_argument("--images", type=int, help="images counted by a .pkl reference (VOC 2007 trainval: 5011; COCO 2014 train: 82081)")
    ap.add_argument("--dataset", help="count this dataset instead (a registered name: jsonl, csv, coco, ...)")
    ap.add_argument("--root", help="--dataset: its folder")
    ap.add_argument("--split", default="train", help="--dataset: the split counted")
    ap.add_argument("--option", action="append", default=[], help="--dataset: reader option key=value (repeatable)")
    ap.add_argument("--seen", type=Path, help="seen labels (one a line): scores edges into the others as unseen")
    ap.add_argument("--graph", action="append", default=[], metavar="NAME=FILE", help="a graph file to score (repeatable)")
    ap.add_argument("--build", nargs="*", default=list(SOURCES), choices=(*SOURCES, "none"), help="sources to build and time now")
    ap.add_argument("--draws", type=int, default=100, help="random graphs per source")
    ap.add_argument("--min-lift", type=float, default=TRUE_LIFT, help="true edge: lift at least this")
    ap.add_argument("--min-p-given", type=float, default=TRUE_P_GIVEN, help="true edge n -> c: P(n | c) at least this")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", type=Path, help="cache root for the converted local model (default $C2SRT_CACHE or ~/.cache/c2srt)")
    ap.add_argument("--save-graphs", type=Path, help="write the graphs built now to this folder")
    ap.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]

    stats, seen, ref_name, settings = _reference(args)
    labels = list(stats.labels)
    graphs: list[tuple[str, CategoryGraph, float | None]] = []
    if ref_name == "miniworld":
        shipped = REPO / "src" / "c2srt" / "miniworld" / "assets" / "miniworld-graph-llm.json"
        graphs.append(("shipped", CategoryGraph.load(shipped), None))
    for spec in args.graph:
        name, _, path = spec.partition("=")
        if not path:
            name, path = Path(spec).stem, spec
        graphs.append((name, CategoryGraph.load(path), None))
    for source in [s for s in args.build if s != "none"]:
        graph, sec = _build(source, labels, seen, settings, args)
        print(f"built {source}: {graph.num_edges} edges in {sec:.1f} s ({sec / len(labels):.3f} s a label)", flush=True)
        graphs.append((source, graph, sec))
        if args.save_graphs:
            graph.save(args.save_graphs / f"{ref_name}-{source}.json")

    rules = dict(min_lift=args.min_lift, min_p_given=args.min_p_given)
    rows, details = [], {}
    for name, graph, sec in graphs:
        split = seen if seen is not None else graph.seen
        q = graph_quality(graph, stats, seen=split, **rules)
        base = random_baseline(graph, stats, draws=args.draws, seen=split, **rules)
        rows.append(_row(name, q, base, sec, len(graph.labels)))
        details[name] = {
            "figures": q.summary(),
            "random": base,
            "seconds": sec,
            "provenance": {k: v for k, v in graph.provenance.items() if k != "steps"},
            "per_label": [vars(r) for r in q.per_label],
        }
    env = run_environment(torch.device("cpu"), load_before=load_before)
    print(f"reference {ref_name}: {len(labels)} labels, {stats.images} images, true edge: lift >= {args.min_lift:g} and P(n | c) >= {args.min_p_given:g}")
    print(f"targets: {'unseen labels' if (seen or graphs and graphs[0][1].seen) else 'all labels'}; random: {args.draws} draws, mean [2.5-97.5 %]")
    print(f"git {env['git_sha']}, {env['cpus']} CPUs, torch threads {args.threads}, load {env['load_1min_before']} -> {env['load_1min_after']}")
    shown = ("source", "edges", "neighbours", "precision", "precision_random", "into_targets", "into_targets_random", "strongest_n",
             "strongest_random", "correlated_n", "correlated_random", "correlated_any_n", "correlated_strict_n", "s_per_label")
    print_rows([{k: r[k] for k in shown} for r in rows])
    rule = f"lift{args.min_lift:g}_p{args.min_p_given:g}"
    tag = f"graph_quality_{ref_name}_{rule}_{env['git_sha']}"
    write_rows(args.out_dir, tag, rows, args=vars(args), environment=env, reference={"name": ref_name, "labels": labels, "images": stats.images}, details=details)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
