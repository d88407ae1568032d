"""training/callbacks.py: Ctrl-C's checkpoint hands back the SIGINT handler the process had before the run."""

from __future__ import annotations

import signal
from pathlib import Path
from types import SimpleNamespace

import pytest

from c2srt.training.callbacks import checkpoint_on_interrupt


def _interrupted_trainer() -> SimpleNamespace:
    from lightning.pytorch.trainer.states import TrainerStatus

    return SimpleNamespace(callbacks=[], state=SimpleNamespace(status=TrainerStatus.INTERRUPTED))


def _custom(signum: int, frame: object) -> None:  # a handler of the application's own
    pass


@pytest.mark.parametrize("before", [signal.default_int_handler, signal.SIG_IGN, _custom])
def test_ctrl_c_restores_the_handler_from_before_the_run(before: object, tmp_path: Path) -> None:
    """Python's default handler in a terminal; SIG_IGN in a process started in the background
    (`&`, nohup, some CI runners), which must stay ignored; or the application's own."""
    saved = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, before)  # type: ignore[arg-type]
    try:
        trainer = _interrupted_trainer()
        with pytest.raises(KeyboardInterrupt):
            with checkpoint_on_interrupt(trainer, tmp_path / "checkpoints" / "last.ckpt"):  # type: ignore[arg-type]
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # what Lightning does on Ctrl-C ...
                raise SystemExit(1)  # ... before it exits
        assert signal.getsignal(signal.SIGINT) is before
    finally:
        signal.signal(signal.SIGINT, saved)
