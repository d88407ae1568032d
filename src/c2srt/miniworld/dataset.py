"""The mini-world's target domain as a c2srt dataset, registered as "miniworld".

Configs with `data.name: miniworld` get the benchmark scenes (fine-tuning and test splits); the web
photos are not a dataset split: only pretraining reads them, through `MiniWorld.sample_web`.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from time import perf_counter
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from ..data.base import register_dataset
from .world import DEFAULT_IMAGE_SIZE, DEFAULT_SIZES, MiniWorld

_logger = logging.getLogger(__name__)

CACHE_ENTRIES = 8  # generated splits kept in memory (a 2000-scene 64 px split is 25 MB)
DATASET_SPLITS = ("train", "test")  # the library's splits; the web photos are no dataset split
TEST_SCENES = ("test", "val")  # what the "test" split reads: the benchmark's test scenes, or the val scenes settings are chosen on


@lru_cache(maxsize=CACHE_ENTRIES)
def _cached_split(world_seed: int, image_size: int, split: str, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generated arrays of one split, kept in memory (read-only) so rebuilding a dataset is free."""
    scenes = MiniWorld(world_seed, image_size).sample_target(n, split)
    for a in (scenes.images, scenes.labels, scenes.areas):
        a.flags.writeable = False
    assert scenes.labels is not None  # target scenes always carry labels
    return scenes.images, scenes.labels, scenes.areas


class MiniWorldDataset(torch.utils.data.Dataset):
    """A split of the mini-world's benchmark scenes as a multi-label dataset (the c2srt contract).

    Args:
        split: "train" (fine-tuning) or "test".
        n: number of scenes (default: `n_train` / `n_test` by split).
        seed: world seed (another seed: other scenes of the same world).
        transform: PIL image -> float tensor [3, H, W]; None gives the image as floats in [0, 1].
        image_size: generated image side in px.
        n_train, n_test: default sizes of the splits.
        test_split: the scenes the "test" split reads: "test" (the benchmark's) or "val" (scenes
            drawn for choosing settings, so that a choice never sees a test scene; docs/MINIWORLD.md).

    Shapes:
        sample["image"]: [3, H, W] float; sample["target"]: [K] long in {+1, -1}; K labels, seen
        first, then unseen.
    """

    def __init__(
        self,
        split: str = "train",
        *,
        n: int | None = None,
        seed: int = 0,
        transform: Callable[[Image.Image], torch.Tensor] | None = None,
        image_size: int = DEFAULT_IMAGE_SIZE,
        n_train: int = DEFAULT_SIZES["train"],
        n_test: int = DEFAULT_SIZES["test"],
        test_split: str = "test",
    ) -> None:
        if split not in DATASET_SPLITS:
            raise ValueError(f"miniworld: unknown split {split!r}; valid splits: {', '.join(DATASET_SPLITS)}")
        if test_split not in TEST_SCENES:
            raise ValueError(f"miniworld: data.options.test_split must be one of {', '.join(TEST_SCENES)}, got {test_split!r}")
        size = {"train": n_train, "test": n_test}[split] if n is None else n
        if size < 1:
            raise ValueError(f"miniworld: the {split} split needs at least one scene, got n={size}")
        self.split = split
        self.scenes = test_split if split == "test" else split  # the world's stream the scenes come from
        self.seed = int(seed)
        self.transform = transform
        self.world = MiniWorld(self.seed, image_size)
        t0 = perf_counter()
        self.images, self.labels, self.areas = _cached_split(self.seed, int(image_size), self.scenes, int(size))
        _logger.debug("miniworld %s: %d scenes ready in %.2f s", split, size, perf_counter() - t0)

    @property
    def label_names(self) -> list[str]:
        return list(self.world.label_names)

    @property
    def seen_mask(self) -> torch.Tensor:
        return self.world.seen_mask.clone()

    @property
    def unseen_mask(self) -> torch.Tensor:
        return self.world.unseen_mask.clone()

    @property
    def targets(self) -> torch.Tensor:
        """The whole label matrix, LongTensor [N, K] in {+1, -1}."""
        return torch.tensor(self.labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.images)

    def _check(self, i: int) -> int:
        if not -len(self) <= i < len(self):
            raise IndexError(f"miniworld {self.split}: index {i} out of range for {len(self)} scenes")
        return i % len(self)

    def pil_image(self, i: int) -> Image.Image:
        """Scene `i` as a PIL image (for pictures and for transforms)."""
        return Image.fromarray(self.images[self._check(i)])

    def image_path(self, i: int) -> str:
        """A synthetic id: the scenes live in memory, not on disk."""
        return f"miniworld:{self.scenes}:{self._check(i)}"

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = self._check(int(i))
        if self.transform is not None:
            image = self.transform(self.pil_image(i))
        else:
            image = torch.from_numpy(np.array(self.images[i])).permute(2, 0, 1).float().div_(255.0)  # [H, W, 3] -> [3, H, W]
        return {"image": image, "target": torch.tensor(self.labels[i], dtype=torch.long), "index": i}

    def __repr__(self) -> str:
        return f"MiniWorldDataset(split={self.split!r}, scenes={self.scenes!r}, n={len(self)}, seed={self.seed}, labels={len(self.label_names)})"


register_dataset("miniworld")(MiniWorldDataset)
