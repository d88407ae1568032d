"""The `c2srt` command: a thin layer that parses a few flags and calls the library.

Experiments live in YAML configs (`--config`, plus `a.b=value` overrides); flags are for the
invocation only. Every failure a user can cause (bad input, a missing package, no network, no
permission, a full disk, no memory, Ctrl-C) ends in one line on stderr naming what and where, and
an exit code from `EXIT_CODES`, never a traceback (`-v` shows it).
"""

from __future__ import annotations

import argparse
import csv
import errno
import io
import json
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .logs import process_rank, setup_console_logging

if TYPE_CHECKING:
    from .predict import Prediction

_logger = logging.getLogger("c2srt")
_OVERRIDE = re.compile(r"^[A-Za-z_][\w.-]*=")  # a config override: key.path=value
_VERBOSE_HELP = "show the detail: debug messages, the libraries' INFO lines, every DDP rank, tracebacks"

# Exit codes, documented in `c2srt --help` and the README.
EXIT_OK = 0
EXIT_BUG = 1  # an uncaught exception: a bug in c2srt (Python prints the traceback)
EXIT_BAD_INPUT = 2
EXIT_MISSING_PACKAGE = 3
EXIT_NETWORK = 4
EXIT_PERMISSION = 5
EXIT_DISK = 6
EXIT_MEMORY = 7
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a reader that went away
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_CODES: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "done"),
    (EXIT_BUG, "a bug in c2srt (a traceback is printed: please report it)"),
    (EXIT_BAD_INPUT, "bad input: arguments, config, data (also found by `c2srt data check`), vocabulary, missing file"),
    (EXIT_MISSING_PACKAGE, "an optional package is missing (the message names the pip extra)"),
    (EXIT_NETWORK, "network: weights could not be downloaded, or the language-model endpoint failed"),
    (EXIT_PERMISSION, "permission denied on a file or folder (named)"),
    (EXIT_DISK, "disk full, or another operating-system I/O error (file named); nothing half-written is left"),
    (EXIT_MEMORY, "out of memory (lower the batch size)"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C); training saves a checkpoint first (continue with --resume)"),
    (EXIT_BROKEN_PIPE, "the program reading the output stopped (e.g. `| head`)"),
)


# ------------------------------------------------------------------ shared helpers
def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="experiment YAML (see configs/)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.lr=1e-4")
    p.add_argument("--output-dir", help="where the run writes its files (config: output_dir)")
    p.add_argument("--seed", type=int, help="random seed (config: seed)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def _load_cfg(args: argparse.Namespace):
    from .config import dump_config, load_config

    overrides = list(args.overrides or [])
    if getattr(args, "output_dir", None):
        overrides.append(f"output_dir={args.output_dir}")
    if getattr(args, "seed", None) is not None:
        overrides.append(f"seed={args.seed}")
    cfg = load_config(args.config, overrides)
    if args.print_config:
        sys.stdout.write(dump_config(cfg))
        return None
    return cfg


# --------------------------------------------------------------------------- verbs
def cmd_demo(args: argparse.Namespace) -> int:
    from .miniworld.demo import run_demo

    report = run_demo(
        output_dir=Path(args.output_dir),
        quick=args.quick,
        seeds=args.seeds,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        graph_source=args.graph_source,
        pretrain=args.pretrain,
        controls=args.controls,
        on_progress=lambda line: print(line, flush=True),
    )
    print()
    print(report["table"])
    machine = report["machine"]
    print(
        f"\nresults: {Path(args.output_dir) / 'results.json'} (world report: world.json); total {report['timings_s']['total_s']:.0f} s "
        f"on a CPU doing {machine['cpu_gflops']:.0f} GFLOP/s (fp32 matrix products, {machine['threads']} threads)"
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .training import fit

    cfg = _load_cfg(args)
    if cfg is None:
        return 0
    if args.devices:
        import dataclasses

        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, devices=args.devices))
    path = fit(cfg, resume=args.resume)
    if process_rank() == 0:  # under DDP every process runs this command
        print(f"model written to {path}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .checkpoint import read_checkpoint_info
    from .config import apply_overrides, load_config, validate
    from .evaluate import evaluate_checkpoint, format_table

    cfg = None
    if args.config:
        cfg = load_config(args.config, args.overrides)
    elif args.overrides:  # overrides apply to the checkpoint's own config
        cfg = validate(apply_overrides(read_checkpoint_info(args.checkpoint).cfg, args.overrides))
    results = evaluate_checkpoint(args.checkpoint, cfg, output_dir=args.output_dir)
    print(format_table(results))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibration import calibrate_checkpoint
    from .checkpoint import read_checkpoint_info
    from .config import apply_overrides, load_config, validate

    cfg = None
    if args.config:
        cfg = load_config(args.config, args.overrides)
    elif args.overrides:  # overrides apply to the checkpoint's own config
        cfg = validate(apply_overrides(read_checkpoint_info(args.checkpoint).cfg, args.overrides))
    # without --config the data are the checkpoint's own training listing: only its held-out part
    path, cal = calibrate_checkpoint(args.checkpoint, cfg, split=args.split, heldout=args.config is None, out=args.out)
    fit = cal.provenance.get("fit", {})
    print(
        f"calibrator ({cal.method}) fitted on {cal.provenance.get('images')} images, {len(cal.provenance.get('labels', []))} labels "
        f"({fit.get('entries')} annotated entries, {fit.get('positives')} positive): ECE {fit.get('ece', float('nan')):.3f}, "
        f"Brier {fit.get('brier', float('nan')):.3f} on these images"
    )
    print(f"written to {path}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .checkpoint import convert_mkt
    from .config import load_config

    cfg = load_config(args.config, args.overrides)
    path = convert_mkt(args.out, cfg, image=args.mkt_image, text=args.mkt_text)
    print(f"c2srt checkpoint written to {path}")
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from .graph import CategoryGraph, build_graph
    from .vocabulary import read_label_file

    if args.graph_cmd == "build":
        labels = read_label_file(args.labels, "label file")
        seen = read_label_file(args.seen, "seen label file") if args.seen else None
        graph = build_graph(
            labels,
            seen=seen,
            source=args.source,
            path=args.graph_file,
            candidates=args.candidates,
            llm_backend=args.llm_backend,
            llm_model=args.llm_model,
            llm_mode=args.llm_mode,
            llm_concurrency=args.llm_concurrency,
            link_unseen=args.link_unseen,
            base_url=args.base_url,
            cache_dir=args.cache,
            progress=True,
        )
        graph.save(args.out)
        counts = [len(graph.neighbors(n)) for n in graph.labels]
        print(
            f"{args.out}: {len(graph.labels)} labels, {sum(counts)} edges, neighbours per label "
            f"min {min(counts)} / mean {sum(counts) / len(counts):.1f} / max {max(counts)}"
        )
        return 0
    from .graph.draw import draw_graph

    graph = CategoryGraph.load(args.graph)
    out = draw_graph(graph, args.out, label=args.label)
    print(f"wrote {out}")
    return 0


PREDICTION_FORMATS = ("table", "json", "csv")
CSV_HEADER = ("image", "rank", "label", "score", "probability", "present", "patches", "error")


def _decision_cells(p: Prediction, label: str) -> tuple[str, str]:
    """(probability, present) as CSV cells: empty without a calibrator."""
    if not p.decided:
        return "", ""
    return f"{p.probabilities[label]:.6f}", "1" if p.present(label) else "0"


def format_predictions(preds: Sequence[Prediction], fmt: str = "table", *, header: bool = True) -> str:
    """Predictions as `c2srt predict` prints them: a text table, JSON or CSV (`header`: CSV's first line).

    Each label carries its ranking score and, for a model with a calibrator, its probability and
    whether it is present (probability >= the threshold): JSON `probability` / `present` (null /
    absent without a calibrator), CSV `probability` / `present` (1 or 0; empty cells without), the
    table `P=0.83 present`.
    """
    if fmt == "json":
        return json.dumps([p.to_dict() for p in preds], indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        if header:
            w.writerow(CSV_HEADER)
        for p in preds:
            if p.error:
                w.writerow([p.source, "", "", "", "", "", "", p.error])
            for r, (n, s) in enumerate(p.labels, 1):
                w.writerow([p.source, r, n, f"{s:.6f}", *_decision_cells(p, n), p.counts.get(n, ""), ""])
        return buf.getvalue()
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}; use {', '.join(PREDICTION_FORMATS)}")
    lines = []
    for p in preds:
        lines.append(p.source)
        if p.error:
            lines.append(f"  error: {p.error}")
        for r, (n, s) in enumerate(p.labels, 1):
            decided = f"  P={p.probabilities[n]:.3f} {'present' if p.present(n) else 'absent '}" if p.decided else ""
            extra = f"  ({p.counts[n]} patch{'' if p.counts[n] == 1 else 'es'})" if n in p.counts else ""
            lines.append(f"  {r:>2}. {n:<30} {s:8.4f}{decided}{extra}")
        if p.explanation:
            lines.append(f"  explanation: {p.explanation}")
    return "\n".join(lines)


def cmd_predict(args: argparse.Namespace) -> int:
    from .predict import DEFAULT_TOP, Recognizer
    from .vocabulary import read_vocabulary

    labels = read_vocabulary(labels=args.labels, labels_file=args.labels_file)
    if args.checkpoint:
        rec = Recognizer.from_checkpoint(args.checkpoint, device=args.device)
    else:
        rec = Recognizer.from_clip(args.clip, args.pretrained, device=args.device)
    if args.graph:
        from .graph import CategoryGraph

        if rec.model.ist is None:
            _logger.warning("--graph %s is not used: this model has no IST (plain CLIP or ist.mode=off)", args.graph)
        rec.graph = CategoryGraph.load(args.graph)
    if args.top is not None:
        top = args.top
    else:
        top = None if args.threshold is not None else DEFAULT_TOP  # --threshold alone: every label present
    decide = {"threshold": args.threshold, "present_only": True} if args.threshold is not None else {}
    stream = rec.iter_predict(  # checks the arguments and embeds the vocabulary before any output
        args.images,
        labels,
        top=top,
        **decide,
        batch_size=args.batch_size,
        explain_dir=args.explain,
        progress=not args.no_progress,
        workers=args.workers,
    )
    n_ok = n_bad = 0
    first = True
    try:
        for pred in stream:  # printed as they come: large folders stream
            n_bad += pred.error is not None
            n_ok += pred.error is None
            if args.format == "json":
                sys.stdout.write(("[\n  " if first else ",\n  ") + json.dumps(pred.to_dict()))
            elif args.format == "csv":
                sys.stdout.write(format_predictions([pred], "csv", header=first))
            else:
                sys.stdout.write(format_predictions([pred], "table") + "\n")
            sys.stdout.flush()
            first = False
    finally:  # also when interrupted: what was printed stays valid JSON
        if args.format == "json" and not first:
            sys.stdout.write("\n]\n")
            sys.stdout.flush()
    if n_ok == 0 and n_bad == 0:
        raise ValueError(f"no images found in {', '.join(map(str, args.images))}")
    if n_bad:
        print(f"{n_bad} unreadable image(s) skipped, {n_ok} tagged", file=sys.stderr)
    if n_ok == 0:
        raise ValueError(f"none of the {n_bad} image(s) could be read")
    if args.explain:
        print(f"explanations written to {args.explain}", file=sys.stderr)
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from .data import check_dataset

    if args.config_file is not None:
        if _OVERRIDE.match(args.config_file):  # with --config, the first override lands here
            args.overrides = [args.config_file, *(args.overrides or [])]
        elif args.config is not None:
            raise ValueError(f"give the config once: {args.config_file} and --config {args.config}")
        else:
            args.config = Path(args.config_file)
    cfg = _load_cfg(args)
    if cfg is None:
        return EXIT_OK
    splits = ("train", "test") if args.split == "all" else (args.split,)
    n_problems = 0
    for split in splits:
        n_images, problems = check_dataset(cfg, split)
        for problem in problems:
            print(problem)
        n_problems += len(problems)
        if problems:
            print(f"{cfg.data.name} {split}: {len(problems)} problem(s)", file=sys.stderr)
        else:
            print(f"{cfg.data.name} {split}: {n_images} images, no problem", file=sys.stderr)
    if n_problems:
        print(
            f"c2srt data check: {n_problems} problem(s): fix them, or set data.skip_bad=true to drop "
            "the rows at fault (they are counted and logged)",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve

    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's start-up self-checks, one line each
    serve(  # blocks until Ctrl-C
        args.checkpoint,
        clip=args.clip,
        pretrained=args.pretrained,
        host=args.host,
        port=args.port,
        allow_remote=args.allow_remote,
        vocab_dir=args.vocab_dir,
        device=args.device,
    )
    return 0


# ------------------------------------------------------------------------- parser
def _parser() -> argparse.ArgumentParser:
    from .version import __version__

    parser = argparse.ArgumentParser(
        prog="c2srt",
        description="Open-vocabulary multi-label image recognition (C2SRT, MKT).",
        epilog="exit codes:\n" + "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"c2srt {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help=_VERBOSE_HELP)
    sub = parser.add_subparsers(dest="verb", metavar="{demo,train,eval,calibrate,predict,serve,graph,data,convert}")

    p = sub.add_parser("demo", help="the mini-world benchmark: the whole method end to end, offline")
    p.add_argument("--output-dir", default="runs/demo", help="where tables, JSON and pictures go")
    p.add_argument("--quick", action="store_true", help="a small version (noise-level numbers, under a minute on 2 cores)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds: each gives intervals and paired differences (default: 0)")
    p.add_argument("--cache-dir", help="cache of the pretrained mini-world CLIP and the LLM")
    p.add_argument("--graph-source", choices=("llm", "embedding"), default=None, help="category graph source")
    p.add_argument("--pretrain", action="store_true", help="rebuild the CLIP stand-in instead of using the shipped weights")
    p.add_argument("--controls", action="store_true", help="also run the control rows that split IST's gain: its scoring rule alone, no edges, random edges, the oracle's edges")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="fine-tune C2SRT or MKT as a YAML config says")
    _add_config_args(p)
    p.add_argument("--resume", action="store_true", help="continue from <output-dir>/checkpoints/last.ckpt")
    p.add_argument("--devices", help="lightning devices, e.g. 1, 4, auto")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint (NUS-WIDE / Open Images / generic protocol)")
    p.add_argument("--checkpoint", required=True, type=Path, help="model.safetensors from c2srt train")
    p.add_argument("--config", type=Path, help="YAML whose data/eval sections to use (default: the checkpoint's)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. data.root=/data")
    p.add_argument("--output-dir", help="where eval.json goes (default: beside the checkpoint)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "calibrate",
        help="fit the map from a checkpoint's scores to probabilities on annotated images (stored in the checkpoint)",
        description="Score annotated images with a checkpoint and fit its calibrator (decision score -> "
        "P(label present), one map for every label, so it also applies to labels never seen), then store "
        "it in the checkpoint. With --config, every image of the config's data split (e.g. a few hundred "
        "of your own labelled photos); without, the images the checkpoint's training held out "
        "(calibration.holdout).",
    )
    p.add_argument("--checkpoint", required=True, type=Path, help="model.safetensors from c2srt train")
    p.add_argument("--config", type=Path, help="YAML whose data section is the annotated listing (default: the checkpoint's own)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. data.root=photos calibration.method=isotonic")
    p.add_argument("--split", choices=("train", "test"), default="train", help="the data split to read (default: train)")
    p.add_argument("--out", type=Path, help="write the calibrated checkpoint here (default: rewrite --checkpoint, atomically; weights unchanged)")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("predict", help="tag images with any vocabulary (ranked labels, optional explanations)")
    p.add_argument("images", nargs="+", help="image files and/or folders")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="a trained c2srt model.safetensors")
    src.add_argument("--clip", help="plain CLIP (zero-shot): an open_clip model name, e.g. ViT-B-16")
    p.add_argument("--pretrained", help="with --clip: hub tag (e.g. openai) or weights file")
    voc = p.add_mutually_exclusive_group(required=True)
    voc.add_argument("--labels", help='comma-separated vocabulary, e.g. "dog,cat,frisbee"')
    voc.add_argument("--labels-file", type=Path, help="vocabulary file, one label per line")
    p.add_argument("--top", type=int, help="labels kept per image (default 5, or all present with --threshold)")
    p.add_argument(
        "--threshold",
        type=float,
        help="a probability in [0, 1]: keep the labels whose P(label present) is at least this (0.5: more "
        "likely present than not; higher: fewer, surer labels). Every label shows its probability and "
        "whether it passes 0.5 without this flag. Needs a checkpoint with a calibrator (c2srt calibrate)",
    )
    p.add_argument("--format", choices=PREDICTION_FORMATS, default="table")
    p.add_argument("--explain", type=Path, help="folder for per-image PNGs of the ISR regions of the top labels")
    p.add_argument("--graph", type=Path, help="category graph JSON for the vocabulary (default: built on the fly)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, help="processes reading images while the model runs (default: cores - 1, at most 8; 0: none)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("serve", help="a local web page: drop images, type a vocabulary, see labels and regions")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="a trained c2srt model.safetensors")
    src.add_argument("--clip", help="plain CLIP (zero-shot): an open_clip model name, e.g. ViT-B-16")
    p.add_argument("--pretrained", help="with --clip: hub tag (e.g. openai) or weights file")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host (no authentication!)")
    p.add_argument("--vocab-dir", type=Path, help="folder of saved vocabularies, *.txt with one label a line")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("graph", help="build or draw a category graph")
    gsub = p.add_subparsers(dest="graph_cmd", required=True)
    b = gsub.add_parser("build", help="build a category graph for a vocabulary")
    b.add_argument("--labels", required=True, type=Path, help="text file, one label per line")
    b.add_argument("--seen", type=Path, help="text file of the seen labels (the rest are unseen)")
    b.add_argument("--source", choices=("llm", "embedding", "file"), default="embedding")
    b.add_argument("--graph-file", type=Path, help="with --source file: the graph to check and import")
    b.add_argument("--out", required=True, type=Path, help="graph JSON to write")
    b.add_argument("--llm-backend", choices=("local", "openai"), default="local")
    b.add_argument("--llm-model", help="endpoint model id, or a local model folder")
    b.add_argument("--base-url", help="OpenAI-compatible endpoint (API key from $OPENAI_API_KEY)")
    b.add_argument("--candidates", type=int, default=30, help="candidates per label (text-embedding neighbours; not used by --llm-mode contexts)")
    b.add_argument("--llm-mode", choices=("contexts", "pmi"), default="contexts", help="local LLM: contexts (whole vocabulary, default) or pmi (version 1)")
    b.add_argument("--llm-concurrency", type=int, default=8, help="openai backend: requests in flight at once")
    b.add_argument("--link-unseen", action="store_true", help="with --seen: unseen labels may also receive edges from each other")
    b.add_argument("--cache", type=Path, help="cache folder (local model copy, endpoint answers)")
    s = gsub.add_parser("show", help="draw a graph (or one label's neighbourhood) as PNG")
    s.add_argument("graph", type=Path)
    s.add_argument("--out", required=True, type=Path)
    s.add_argument("--label", help="draw this label's neighbourhood")
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser("data", help="check a dataset before training")
    dsub = p.add_subparsers(dest="data_cmd", required=True)
    c = dsub.add_parser(
        "check",
        help="read every listing and decode every image once; list every problem (file, line, reason)",
        description="Read the listings and decode every image of a config's dataset once (in parallel; "
        "verdicts cached per file by path, size and modification time, so a second run only looks at "
        "changed files). Prints one problem per line; exit code 2 when there is any.",
    )
    c.add_argument("config_file", nargs="?", metavar="CONFIG", help="experiment YAML (or give --config)")
    _add_config_args(c)
    c.add_argument("--split", choices=("train", "test", "all"), default="all", help="which split(s) to check")
    c.set_defaults(func=cmd_data_check)

    p = sub.add_parser("convert", help="write MKT's released .pth weights as a c2srt checkpoint")
    p.add_argument("--config", required=True, type=Path, help="an MKT config, e.g. configs/nus_wide/mkt_stage2.yaml")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--mkt-image", required=True, type=Path, help="MKT's stage-1 checkpoint (its CLIPVIT state dict)")
    p.add_argument("--mkt-text", type=Path, help="MKT's stage-2 checkpoint (its PromptLearner state dict)")
    p.add_argument("--out", required=True, type=Path, help="the .safetensors to write")
    p.set_defaults(func=cmd_convert)
    _verbose_after_the_verb(sub, gsub, dsub)
    return parser


def _reason(e: BaseException) -> str:
    """An exception's message; for one re-raised from a DataLoader worker, the original message.

    torch re-raises a worker's exception with the worker's whole traceback as its message; the
    original message follows the last traceback's frames, after `module.ClassName: `.
    """
    text = str(e).strip()
    if "\nOriginal Traceback" not in text:
        return text
    block = text.rsplit("Traceback (most recent call last):", 1)[1].splitlines()
    rest = [line for line in block if line.strip()]
    while rest and rest[0].startswith(" "):  # the frames
        rest.pop(0)
    if not rest:
        return text
    head, _, message = rest[0].partition(": ")
    return "\n".join([message if message else head, *rest[1:]])


def _classify(e: BaseException) -> tuple[int, str] | None:
    """(exit code, message naming what and where) for a failure a user can cause; None for a bug."""
    from .graph.llm import LLMRequestError

    if isinstance(e, LLMRequestError):
        return EXIT_NETWORK, f"language model request failed: {_reason(e)}"
    if isinstance(e, ImportError):
        return EXIT_MISSING_PACKAGE, _reason(e)
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError
        first = _reason(e).splitlines()[0][:200] if str(e) else "MemoryError"
        return EXIT_MEMORY, f"out of memory: lower the batch size ({first})"
    if isinstance(e, (ConnectionError, TimeoutError)) or type(e).__name__ == "URLError":
        return EXIT_NETWORK, _reason(e)
    if isinstance(e, OSError):
        where = f": {e.filename}" if e.filename is not None else ""
        if isinstance(e, PermissionError):
            return EXIT_PERMISSION, f"permission denied{where}" if where else _reason(e)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            return EXIT_DISK, f"disk full ({e.strerror}){where}"
        if e.errno is not None and not isinstance(e, (FileNotFoundError, IsADirectoryError, NotADirectoryError)):
            return EXIT_DISK, f"I/O error ({e.strerror}){where}"
        return EXIT_BAD_INPUT, f"{e.strerror}{where}" if e.strerror and where else _reason(e)
    if isinstance(e, ValueError):  # our messages name the file, line, label or field
        return EXIT_BAD_INPUT, _reason(e)
    return None


def _verbose_after_the_verb(*verb_groups: argparse._SubParsersAction) -> None:
    """`-v` also after a verb (`c2srt train ... -v`, `c2srt graph build ... -v`)."""
    for group in verb_groups:
        for verb in group.choices.values():
            verb.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=_VERBOSE_HELP)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `c2srt` command; returns the exit code."""
    parser = _parser()
    # `a.b=value` overrides may come before, between or after the flags (argparse alone takes them
    # only in one block): collect the strays of verbs that take overrides.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if hasattr(args, "overrides") and all(_OVERRIDE.match(e) for e in extra):
            args.overrides = [*(args.overrides or []), *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    setup_console_logging(args.verbose)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt as e:
        detail = f": {e}" if str(e) else ""
        print(f"c2srt {args.verb}: interrupted{detail}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except (ValueError, OSError, ImportError, MemoryError, RuntimeError) as e:
        found = _classify(e)  # None for anything a user cannot cause: re-raised, a bug to report
        if found is None or args.verbose:
            raise
        code, message = found
        print(f"c2srt {args.verb}: error: {message}", file=sys.stderr)
        return code


def _silence_stdout() -> None:
    """Point stdout at /dev/null so Python's flush at exit does not fail on the broken pipe again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # not a real file (e.g. captured by a test)
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
