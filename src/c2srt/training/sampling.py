"""Seeded randomness: the data order and every augmentation are functions of (seed, epoch, index),
and the draws inside a training step (dropout) functions of (seed, rank, step).

So a run resumed from an epoch-end checkpoint continues exactly as the uninterrupted one would
have (the global generators' states are not in the checkpoint), and under DDP each rank takes its
own share of one permutation.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator

import torch
from torch.utils.data import Dataset, Sampler

SEED_STRIDE = 1_000_003  # spreads (seed, epoch, index) into distinct augmentation seeds


class EpochSeeded(Dataset):
    """Applies the wrapped dataset's random transform under a seed fixed by (seed, epoch, index)."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        with torch.random.fork_rng(devices=[]):
            # the CPU generator only (what fork_rng restores): torch.manual_seed also queues a CUDA
            # seed with a formatted stack trace, ~5 ms a sample inside Lightning's deep call stack
            torch.default_generator.manual_seed((self.seed * SEED_STRIDE + self.epoch) * SEED_STRIDE + int(index))
            return self.dataset[index]


class EpochSampler(Sampler[int]):
    """Shuffles with a permutation that depends on (seed, epoch) only, sharded over DDP ranks."""

    def __init__(self, data: EpochSeeded, *, seed: int, shuffle: bool, rank: int = 0, world_size: int = 1) -> None:
        self.data = data
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.data.epoch = epoch  # workers are created after this call, so they see the epoch

    def __iter__(self) -> Iterator[int]:
        n = len(self.data)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * SEED_STRIDE + self.epoch)
            order = torch.randperm(n, generator=g).tolist()
        else:
            order = list(range(n))
        per_rank = math.ceil(n / self.world_size)
        order = (order * 2)[: per_rank * self.world_size]  # pad so every rank gets the same count
        return iter(order[self.rank :: self.world_size])

    def __len__(self) -> int:
        return math.ceil(len(self.data) / self.world_size)


@contextlib.contextmanager
def step_seeded(seed: int, rank: int, step: int, device: torch.device) -> Iterator[None]:
    """Runs a training step's forward with the generators of `device` seeded by (seed, rank, step)."""
    cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if cuda else []):
        value = ((seed * SEED_STRIDE + rank) * SEED_STRIDE + step) % 2**63
        torch.default_generator.manual_seed(value)
        if cuda:
            torch.cuda.manual_seed(value)  # the current device's generator, the one fork_rng restores
        yield
