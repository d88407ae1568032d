"""Training with Lightning: the only package that imports it, one module per idea.

- `sampling`: epoch-seeded order and augmentation (resumable, sharded over DDP ranks);
- `datamodule`: the datasets of `DataCfg`, with the transforms that come with the model;
- `module`: the LightningModule (the pure model, the training loss, validation through the one
  evaluation step, the optimiser);
- `callbacks`: the exported model, images skipped while loading, Ctrl-C's checkpoint;
- `trainer`: Lightning's plumbing (the Trainer, atomic checkpoints, the CSV log, quiet output, DDP);
- `run`: `fit`, a whole run and its files.
"""

from .callbacks import ExportModel, SkippedImages, checkpoint_on_interrupt
from .datamodule import C2SRTDataModule
from .module import C2SRTModule
from .run import fit, write_run_files
from .sampling import EpochSampler, EpochSeeded
from .trainer import build_trainer

__all__ = [
    "C2SRTDataModule",
    "C2SRTModule",
    "EpochSampler",
    "EpochSeeded",
    "ExportModel",
    "SkippedImages",
    "build_trainer",
    "checkpoint_on_interrupt",
    "fit",
    "write_run_files",
]
