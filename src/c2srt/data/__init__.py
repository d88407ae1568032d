"""Datasets: the contract, the registry and the readers (mini-world, NUS-WIDE, Open Images, your own files).

Each reader module registers its names in `DATASETS` when imported; this package imports them all
(about 50 ms), so every registered name is available once `c2srt.data` is imported.
"""

from . import folder, nus_wide, open_images  # noqa: F401  (each registers its readers)
from .base import (
    DATASETS,
    SPLITS,
    DataError,
    DataProblem,
    MultiLabelDataset,
    build_dataset,
    check_images,
    collate_samples,
    list_datasets,
    register_dataset,
)
from .transforms import build_transform, normalization

# The mini-world is an application of the library (its own package); its benchmark scenes register
# as "miniworld" here, so configs with `data.name: miniworld` work wherever c2srt.data is imported.
from ..miniworld import dataset as _miniworld  # noqa: E402, F401  (after .base: it registers into DATASETS)

__all__ = [
    "DATASETS",
    "SPLITS",
    "DataError",
    "DataProblem",
    "MultiLabelDataset",
    "build_dataset",
    "build_transform",
    "check_images",
    "collate_samples",
    "list_datasets",
    "normalization",
    "register_dataset",
]
