"""What a person reads on the console: one handler, each line once, the detail only with `-v`.

The command line is the application, so it alone sets up logging (library modules only log).
By default a run shows c2srt's own messages and every library's warnings; `-v` adds c2srt's debug
messages and the libraries' INFO lines (Lightning's device report, the distributed set-up, ...).
Under DDP every process runs the same command: only rank 0 speaks below ERROR, so no line appears
once per process (with `-v` the other ranks speak too, each line prefixed with its rank).

Libraries that print on their own are quietened where they speak, never with a blanket filter:
`quiet_transformers` around a model load (its weight-loading bar and key report), and the
Lightning-specific handling in `c2srt.training.trainer`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

_PACKAGE = "c2srt"
# where launchers put a process's global rank, in the order Lightning's `rank_zero_only` reads them
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")
_VERBOSE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_VERBOSE_DATE_FORMAT = "%H:%M:%S"


def process_rank() -> int:
    """This process's global rank in a distributed run; 0 outside one.

    Lightning's `rank_zero_only.rank` once Lightning is loaded (its strategies set it, also in
    spawned workers), else the launcher's environment variables.
    """
    rank_zero = sys.modules.get("lightning_utilities.core.rank_zero")
    rank = getattr(getattr(rank_zero, "rank_zero_only", None), "rank", None)
    if rank is not None:
        return int(rank)
    for name in _RANK_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


def _is_ours(record: logging.LogRecord) -> bool:
    return record.name == _PACKAGE or record.name.startswith(_PACKAGE + ".")


class _ConsoleFilter(logging.Filter):
    """Other libraries' INFO only with -v; ranks other than 0 only for errors (all with -v)."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        rank = process_rank()
        if rank != 0 and not self.verbose and record.levelno < logging.ERROR:
            return False
        if not _is_ours(record) and not self.verbose and record.levelno < logging.WARNING:
            return False
        record.c2srt_rank = rank
        return True


class _ConsoleFormatter(logging.Formatter):
    """`message` for our INFO lines, `warning: ...` / `error: ...` above, the library's name on
    theirs (`warning: lightning: ...`); with -v time, level and logger name on every line."""

    def __init__(self, verbose: bool) -> None:
        super().__init__(_VERBOSE_FORMAT if verbose else None, _VERBOSE_DATE_FORMAT)
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        rank = getattr(record, "c2srt_rank", 0)
        prefix = f"[rank {rank}] " if rank else ""
        if self.verbose:
            return prefix + text
        if not _is_ours(record):
            source = "warnings" if record.name == "py.warnings" else record.name.split(".")[0]
            text = f"{source}: {text.strip()}"
        if record.levelno >= logging.ERROR:
            text = f"error: {text}"
        elif record.levelno >= logging.WARNING:
            text = f"warning: {text}"
        return prefix + text


class _StderrHandler(logging.StreamHandler):
    """Logs to whatever `sys.stderr` is when a record is written, not when the handler was made.

    `main()` may run many times in one process (tests, notebooks); a plain StreamHandler would
    keep writing to the first run's stderr, which may be closed by then (pytest's capture).
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):  # noqa: D102
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it
        pass


def setup_console_logging(verbose: bool = False) -> None:
    """Log to stderr as the module docstring says; Python warnings go through the same handler.

    Calling it again (`main()` runs many times in one process in tests and notebooks) replaces the
    handler it installed before, so lines never double.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    handler = _StderrHandler()
    handler.addFilter(_ConsoleFilter(verbose))
    handler.setFormatter(_ConsoleFormatter(verbose))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger(_PACKAGE).setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.captureWarnings(True)


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Load a transformers model without its chatter, unless c2srt logs at DEBUG (`-v`).

    `from_pretrained` draws a weight-loading progress bar and, for a checkpoint holding weights
    the architecture does not use (MiniLM's pooler, which mean pooling never reads), logs a key
    report as a warning. Both are about transformers' internals, not the user's run. Only the
    load inside the block is quietened: the verbosity and bar setting are restored after it.
    """
    if logging.getLogger(_PACKAGE).isEnabledFor(logging.DEBUG):
        yield
        return
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
