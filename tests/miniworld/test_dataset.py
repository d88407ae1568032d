import numpy as np
import pytest
import torch

from c2srt.config import DataCfg
from c2srt.data.base import build_dataset, list_datasets
from c2srt.miniworld.dataset import MiniWorldDataset
from c2srt.miniworld.world import MiniWorld


def test_dataset_contract():
    ds = MiniWorldDataset("train", n=6, seed=0)
    s = ds[2]
    assert set(s) == {"image", "target", "index"}
    assert s["image"].shape == (3, 64, 64) and s["image"].dtype == torch.float32
    assert 0.0 <= float(s["image"].min()) and float(s["image"].max()) <= 1.0
    assert s["target"].dtype == torch.long and s["target"].shape == (len(ds.label_names),)
    assert s["index"] == 2 and len(ds) == 6 and ds.image_path(2) == "miniworld:train:2"
    assert np.array_equal(np.asarray(ds.pil_image(2)), ds.images[2]) and torch.equal(s["target"], ds.targets[2])
    assert torch.equal(ds.seen_mask, ~ds.unseen_mask) and ds.label_names == MiniWorld(0).label_names
    with pytest.raises(IndexError):
        ds[6]
    with pytest.raises(ValueError, match="unknown split"):
        MiniWorldDataset("web")
    with pytest.raises(ValueError, match="at least one scene"):
        MiniWorldDataset("test", n=0)


def test_splits_are_the_worlds_streams_and_seeds_give_other_scenes():
    test = MiniWorldDataset("test", n=10, seed=0)
    scenes = MiniWorld(0).sample_target(10, "test")
    assert np.array_equal(scenes.images, test.images) and np.array_equal(scenes.labels, test.labels)
    assert not np.array_equal(MiniWorldDataset("train", n=10, seed=0).images, test.images)
    assert not np.array_equal(MiniWorldDataset("test", n=10, seed=1).images, test.images)


def test_transform_is_applied_to_the_pil_image():
    calls = []

    def tf(img):
        calls.append(img.size)
        return torch.zeros(3, 32, 32)

    assert MiniWorldDataset("test", n=3, seed=0, transform=tf)[0]["image"].shape == (3, 32, 32) and calls == [(64, 64)]


def test_dataset_is_cached_in_memory_and_read_only():
    a, b = MiniWorldDataset("test", n=30, seed=1), MiniWorldDataset("test", n=30, seed=1)
    assert a.images is b.images and not a.images.flags.writeable


def test_configs_with_data_name_miniworld_build_it():
    assert "miniworld" in list_datasets()
    ds = build_dataset(DataCfg(name="miniworld", options={"n_test": 4, "seed": 2}), "test", None)
    assert isinstance(ds, MiniWorldDataset) and len(ds) == 4 and ds.seed == 2


def test_test_split_can_read_the_val_scenes_for_choosing_settings():
    val = MiniWorldDataset("test", n=10, seed=0, test_split="val")
    assert np.array_equal(val.images, MiniWorld(0).sample_target(10, "val").images)
    assert not np.array_equal(val.images, MiniWorldDataset("test", n=10, seed=0).images)
    assert np.array_equal(MiniWorldDataset("train", n=10, seed=0, test_split="val").images, MiniWorldDataset("train", n=10, seed=0).images)
    assert val.image_path(3) == "miniworld:val:3"
    ds = build_dataset(DataCfg(name="miniworld", options={"n_test": 4, "test_split": "val"}), "test", None)
    assert np.array_equal(ds.images, val.images[:4])
    with pytest.raises(ValueError, match="test_split"):
        MiniWorldDataset("test", test_split="train")
