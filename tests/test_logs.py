"""The console output: which records reach it, how they read, on which rank; quiet library loads."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from c2srt.logs import _StderrHandler, process_rank, setup_console_logging


@pytest.fixture
def console() -> Iterator[Any]:
    """`setup_console_logging(verbose)` for one test; the logging state is put back after it."""
    root, ours = logging.getLogger(), logging.getLogger("c2srt")
    saved = root.level, ours.level

    yield setup_console_logging

    for handler in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(handler)
    logging.captureWarnings(False)
    root.setLevel(saved[0])
    ours.setLevel(saved[1])


def _emit() -> None:
    logging.getLogger("c2srt.training").info("epoch 1/2 validation")
    logging.getLogger("c2srt.training").debug("the full table")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").info("GPU available: False, used: False")
    logging.getLogger("lightning.pytorch.trainer").warning("something Lightning wants said")
    logging.getLogger("c2srt.evaluate").warning("block zsl has 3 columns")
    logging.getLogger("c2srt.data").error("image unreadable")


def test_default_output_is_ours_plus_every_warning(console: Any, capsys: pytest.CaptureFixture[str]) -> None:
    console(False)
    console(False)  # a second set-up replaces the first: no line twice
    _emit()
    assert capsys.readouterr().err.splitlines() == [
        "epoch 1/2 validation",
        "warning: lightning: something Lightning wants said",
        "warning: block zsl has 3 columns",
        "error: image unreadable",
    ]


def test_verbose_adds_our_debug_and_library_info(console: Any, capsys: pytest.CaptureFixture[str]) -> None:
    console(True)
    _emit()
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 6
    assert err[1].endswith("DEBUG c2srt.training: the full table")
    assert err[2].endswith("INFO lightning.pytorch.utilities.rank_zero: GPU available: False, used: False")


def test_python_warnings_go_through_the_same_handler(console: Any, capsys: pytest.CaptureFixture[str]) -> None:
    console(False)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("a library's deprecation", FutureWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert err.startswith("warning: warnings: ") and "FutureWarning: a library's deprecation" in err


@pytest.fixture
def rank(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Pretend this process is a given DDP rank, as Lightning records it."""
    from lightning_utilities.core.rank_zero import rank_zero_only

    def set_rank(r: int) -> None:
        monkeypatch.setattr(rank_zero_only, "rank", r, raising=False)

    return set_rank


def test_other_ranks_print_only_errors_unless_verbose(console: Any, rank: Any, capsys: pytest.CaptureFixture[str]) -> None:
    rank(1)
    console(False)
    _emit()
    assert capsys.readouterr().err.splitlines() == ["[rank 1] error: image unreadable"]
    console(True)
    _emit()
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 6 and all(line.startswith("[rank 1] ") for line in err)


def test_process_rank_reads_lightning_then_the_launcher(rank: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning_utilities.core.rank_zero import rank_zero_only

    rank(3)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert process_rank() == 3  # Lightning's value once a strategy set it
    monkeypatch.delattr(rank_zero_only, "rank")
    assert process_rank() == 1  # before: the launcher's environment
    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert process_rank() == 0


_LOAD_TWICE = """
import logging, sys
from c2srt.backbone import create_clip
logging.getLogger("c2srt").setLevel(logging.DEBUG)  # as with -v
create_clip("miniworld-vit")
print("=== quiet", file=sys.stderr, flush=True)
logging.getLogger("c2srt").setLevel(logging.INFO)
create_clip("miniworld-vit")
"""


def test_transformers_load_report_and_bar_only_with_verbose() -> None:
    """The mini-world CLIP's MiniLM text tower loads without its pooler: transformers reports the
    unused keys and draws a bar, which c2srt shows only at DEBUG (in a fresh process, as a user sees it)."""
    import c2srt

    src = str(Path(c2srt.__file__).resolve().parents[1])
    env = {"PYTHONPATH": src, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": ""}
    run = subprocess.run([sys.executable, "-c", _LOAD_TWICE], check=False, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    verbose, quiet = run.stderr.split("=== quiet")
    assert "LOAD REPORT" in verbose and "Loading weights" in verbose  # the load does speak ...
    assert quiet.strip() == ""  # ... and is silent by default
