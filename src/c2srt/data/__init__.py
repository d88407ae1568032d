"""Datasets: the contract, the registry and the readers (NUS-WIDE, Open Images, your own files).

Each reader module registers its names in `DATASETS` when imported; this package imports them all
(about 50 ms), so every registered name is available once `c2srt.data` is imported. Datasets of
applications built on the library are lazy entries: the name is known here, and the module that
registers it is imported only when the name is used (the mini-world's scenes, `data.name: miniworld`).
"""

from . import folder, nus_wide, open_images  # noqa: F401  (each registers its readers)
from .base import (
    DATASETS,
    SPLITS,
    DataError,
    DataProblem,
    DatasetPart,
    MultiLabelDataset,
    build_dataset,
    check_dataset,
    check_images,
    collate_samples,
    list_datasets,
    register_dataset,
    with_transform,
)
from .transforms import build_transform, normalization

DATASETS.add_lazy("miniworld", "c2srt.miniworld.dataset")  # the mini-world application's benchmark scenes

__all__ = [
    "DATASETS",
    "SPLITS",
    "DataError",
    "DataProblem",
    "DatasetPart",
    "MultiLabelDataset",
    "build_dataset",
    "build_transform",
    "check_dataset",
    "check_images",
    "collate_samples",
    "list_datasets",
    "normalization",
    "register_dataset",
    "with_transform",
]
