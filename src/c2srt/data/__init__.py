"""Datasets: the contract, the registry and the readers (mini-world, NUS-WIDE, Open Images, your own files).

Readers register themselves in `DATASETS` when their module is imported; `build_dataset` imports
the module of the requested name on demand, so importing `c2srt.data` stays cheap and a reader
that is not installed never breaks the others.
"""

from .base import (
    DATASETS,
    SPLITS,
    DataError,
    DataProblem,
    MultiLabelDataset,
    build_dataset,
    check_images,
    list_datasets,
    register_dataset,
)
from .transforms import build_transform, normalization

__all__ = [
    "DATASETS",
    "SPLITS",
    "DataError",
    "DataProblem",
    "MultiLabelDataset",
    "build_dataset",
    "build_transform",
    "check_images",
    "list_datasets",
    "normalization",
    "register_dataset",
]
