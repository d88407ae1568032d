"""The DataModule: the datasets of `DataCfg` through the registry, in epoch-seeded order, and the
held-out part of the training listing that the calibrator is fitted on (`calibration.*`)."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from ..calibration import holdout_count, split_dataset
from ..config import Cfg
from ..data.base import DatasetPart, build_dataset, collate_samples, with_transform
from ..model import Transform
from .sampling import EpochSampler, EpochSeeded


class C2SRTDataModule(L.LightningDataModule):
    """Datasets from `DataCfg` through the registry; deterministic order and augmentation.

    The transforms come with the model (`create_model_and_transforms`): its image size, crop and
    pixel statistics decide them, and the data module never sees the model.

    With `calibration.holdout` > 0 the training listing is split once, by `calibration.seed`
    (`c2srt.calibration.split_dataset`): training sees `train_set`, the rest; `holdout_set` (the
    held-out rows, read with the evaluation transform) is what the calibrator is fitted on when
    the model is exported. The split is a function of the listing and the seed, so a resumed run
    trains on the same images.
    """

    def __init__(self, cfg: Cfg, *, train_transform: Transform | None = None, eval_transform: Transform) -> None:
        super().__init__()
        self.cfg = cfg
        self.train_transform = train_transform
        self.eval_transform = eval_transform
        self.train_set: Dataset | None = None
        self.holdout_set: DatasetPart | None = None  # held out of the training listing, for the calibrator
        self.test_set: Dataset | None = None

    def setup(self, stage: str | None = None) -> None:
        d = self.cfg.data
        if stage in (None, "fit") and self.train_set is None:
            if self.train_transform is None:
                raise ValueError("training needs the training transform (create_model_and_transforms)")
            whole = build_dataset(d, "train", self.train_transform)
            c = self.cfg.calibration
            if holdout_count(len(whole), c.holdout, c.max_holdout):
                self.train_set, held = split_dataset(whole, c)
                self.holdout_set = with_transform(held, self.eval_transform)  # scored as at test time
            else:
                self.train_set = whole
        if self.test_set is None:
            self.test_set = build_dataset(d, "test", self.eval_transform)

    def _loader(self, dataset: Dataset, *, train: bool, batch_size: int) -> DataLoader:
        wrapped = EpochSeeded(dataset, self.cfg.seed)
        rank, world = 0, 1
        if self.trainer is not None:
            rank, world = self.trainer.global_rank, self.trainer.world_size
        sampler = EpochSampler(wrapped, seed=self.cfg.seed, shuffle=train, rank=rank, world_size=world)
        workers = self.cfg.data.num_workers
        return DataLoader(
            wrapped,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=workers,
            drop_last=train and len(dataset) > batch_size,  # type: ignore[arg-type]
            pin_memory=torch.cuda.is_available(),
            persistent_workers=False,  # workers must be re-created each epoch to see it
            collate_fn=collate_samples,  # counts images skipped while loading (data.skip_bad)
        )

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None
        return self._loader(self.train_set, train=True, batch_size=self.cfg.data.batch_size)

    @property
    def val_set(self) -> Dataset | None:
        """What validation scores: the test set, or its first `train.val_images` images."""
        n = self.cfg.train.val_images
        if self.test_set is None or not n or n >= len(self.test_set):  # type: ignore[arg-type]
            return self.test_set
        return DatasetPart(self.test_set, range(n))

    def val_dataloader(self) -> DataLoader:
        data = self.val_set
        assert data is not None
        return self._loader(data, train=False, batch_size=self.cfg.eval.batch_size)

    def test_dataloader(self) -> DataLoader:
        assert self.test_set is not None  # every test image, whatever validation scores
        return self._loader(self.test_set, train=False, batch_size=self.cfg.eval.batch_size)
