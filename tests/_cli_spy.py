"""`c2srt ARGS...` as the command line runs it, watched: the DDP tests run this script.

Lightning's `ddp` launcher starts the other ranks by running this same script again, so every
process is watched. Each one appends to files in `$C2SRT_SPY` (never in the run folder):
- `writes.rank<R>.txt`: every file it creates or changes under `--output-dir` (opened for writing,
  renamed into place, or linked), relative to that folder;
- `losses.rank<R>.jsonl`: the loss of each of its training steps (`{"step": S, "loss": L}`).
With `$C2SRT_SPY_SNAPSHOT` set, rank 0 also copies `checkpoints/last.ckpt`, `logs/metrics.csv`
and `graph.json` there when epoch 1 starts: the run folder as a process killed at that moment
leaves it, for a resume test.
"""

from __future__ import annotations

import builtins
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

SPY = Path(os.environ["C2SRT_SPY"])
OUT = Path(sys.argv[sys.argv.index("--output-dir") + 1]).resolve()
_open, _replace, _symlink = builtins.open, os.replace, os.symlink


def _rank() -> str:
    return os.environ.get("LOCAL_RANK", "0")  # rank 0 is the launching process (set when it launches)


def _record(path: Any) -> None:
    try:
        rel = Path(os.path.abspath(os.fsdecode(path))).relative_to(OUT)
    except (TypeError, ValueError):
        return
    with _open(SPY / f"writes.rank{_rank()}.txt", "a", encoding="utf-8") as fh:
        fh.write(f"{rel}\n")


def _spy_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
    if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+"):
        _record(file)
    return _open(file, mode, *args, **kwargs)


def _spy_replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
    _record(dst)
    _replace(src, dst, *args, **kwargs)


def _spy_symlink(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
    _record(dst)
    _symlink(src, dst, *args, **kwargs)


def _callbacks() -> list[Any]:
    import lightning as L

    class Losses(L.Callback):
        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            row = {"step": trainer.global_step - 1, "loss": float(outputs["loss"])}
            with _open(SPY / f"losses.rank{trainer.global_rank}.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")

    class Snapshot(L.Callback):
        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            target = os.environ.get("C2SRT_SPY_SNAPSHOT")
            if target and trainer.current_epoch == 1 and trainer.is_global_zero:
                for rel in ("checkpoints/last.ckpt", "logs/metrics.csv", "graph.json"):
                    (Path(target) / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(OUT / rel, Path(target) / rel)  # follows the last.ckpt link

    return [Losses(), Snapshot()]


def main() -> int:
    from c2srt.training import run as train
    from c2srt.cli import main as cli_main

    build = train.build_trainer

    def build_watched(*args: Any, callbacks: list[Any] | None = None, **kwargs: Any) -> Any:
        return build(*args, callbacks=[*(callbacks or []), *_callbacks()], **kwargs)

    train.build_trainer = build_watched
    builtins.open, os.replace, os.symlink = _spy_open, _spy_replace, _spy_symlink
    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
