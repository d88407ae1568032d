import numpy as np
import pytest
import torch

from c2srt.constants import NEGATIVE, POSITIVE
from c2srt.data import miniworld as mw
from c2srt.data.miniworld import MiniWorld, MiniWorldDataset


@pytest.fixture(scope="module")
def world() -> MiniWorld:
    return MiniWorld(seed=0)


@pytest.fixture(scope="module")
def scenes(world):
    return world.sample(400, seed=7, return_areas=True)


def col(world: MiniWorld, name: str) -> int:
    return world.label_names.index(name)


# --- determinism -------------------------------------------------------------------------------
def test_same_seed_same_scenes_and_prefix_property():
    a = MiniWorld(3).sample(12, seed=1)
    b = MiniWorld(3).sample(12, seed=1)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    longer = MiniWorld(3).sample(20, seed=1)
    assert np.array_equal(longer[0][:12], a[0]) and longer[2][:12] == a[2]


def test_different_seeds_differ():
    base = MiniWorld(3).sample(8, seed=1)[0]
    assert not np.array_equal(base, MiniWorld(3).sample(8, seed=2)[0])  # another stream
    assert not np.array_equal(base, MiniWorld(4).sample(8, seed=1)[0])  # another world


def test_shapes_dtypes_and_values(world):
    images, labels, captions = world.sample(5, seed=0)
    assert images.shape == (5, 64, 64, 3) and images.dtype == np.uint8
    assert labels.shape == (5, len(world.label_names)) and labels.dtype == np.int8
    assert set(np.unique(labels)) <= {POSITIVE, NEGATIVE}
    assert len(captions) == 5 and all(isinstance(c, str) and c for c in captions)
    big = MiniWorld(0, image_size=96).sample(2, seed=0)[0]
    assert big.shape == (2, 96, 96, 3)


def test_bad_arguments():
    with pytest.raises(ValueError, match="image_size"):
        MiniWorld(0, image_size=8)
    with pytest.raises(ValueError, match="n must be"):
        MiniWorld(0).sample(-1)


# --- labels ------------------------------------------------------------------------------------
def test_vocabulary_size_and_unique_names(world):
    assert 50 <= len(world.label_names) <= 100
    assert len(set(world.label_names)) == len(world.label_names)
    assert all(n.replace(" ", "").isalpha() for n in world.label_names)  # plain English words


def test_labels_per_scene_between_3_and_8(scenes):
    n_pos = (scenes[1] == POSITIVE).sum(1)
    assert n_pos.min() >= mw.MIN_LABELS and n_pos.max() <= mw.MAX_LABELS
    assert n_pos.mean() > 4  # most scenes are rich, not the minimum


def test_cooccurrence_rules(world, scenes):
    labels = scenes[1] == POSITIVE
    for thing, region in mw.THING_REGION.items():
        has = labels[:, col(world, thing)]
        assert has.any(), thing
        assert labels[has, col(world, region)].all(), f"{thing} without {region}"
    for combo in mw.COMBOS:
        shape = combo.split()[1]
        assert labels[labels[:, col(world, combo)], col(world, shape)].all(), combo
    # and a shape word is present only with one of its colours
    for shape in mw.SHAPES:
        any_colour = np.stack([labels[:, col(world, f"{c} {shape}")] for c in mw.COLOURS], 1).any(1)
        assert np.array_equal(labels[:, col(world, shape)], any_colour), shape


def test_areas_partition_each_image(world, scenes):
    """Every pixel belongs to exactly one region, thing or shape (combinations repeat their shape)."""
    _, labels, _, areas = scenes
    not_combo = np.array([n not in mw.COMBOS for n in world.label_names])
    np.testing.assert_allclose(areas[:, not_combo].sum(1), 1.0, atol=1e-6)
    assert (areas[labels == NEGATIVE] == 0).all()
    assert (areas[labels == POSITIVE] > 0).all()  # every present label is visible


def test_area_differs_strongly_between_labels(world):
    rows = {r["label"]: r for r in world.describe(n=300, seed=5)}
    assert set(rows) == set(world.label_names)
    assert rows["sky"]["area"] > 0.25 and rows["water"]["area"] > 0.25
    assert rows["sky"]["area"] > 20 * rows["bird"]["area"]
    assert rows["sky"]["area"] > 4 * rows["red ball"]["area"]
    assert rows["boat"]["split"] == "unseen" and rows["water"]["split"] == "seen"
    assert "| sky | seen | region |" in mw.format_description(list(rows.values()))


def test_captions_name_the_scene(world, scenes):
    _, labels, captions, _ = scenes
    for i in range(len(captions)):
        for name in mw.THINGS + mw.REGIONS:
            if labels[i, col(world, name)] == POSITIVE:
                assert name in captions[i], (name, captions[i])
        for shape in mw.SHAPES:
            word_in = shape in captions[i]
            assert word_in == (labels[i, col(world, shape)] == POSITIVE), (shape, captions[i])


# --- split -------------------------------------------------------------------------------------
def test_split_is_disjoint_ordered_and_about_a_fifth(world):
    seen, unseen = set(world.seen_names), set(world.unseen_names)
    assert not seen & unseen and seen | unseen == set(world.label_names)
    assert world.label_names == world.seen_names + world.unseen_names
    assert 0.2 <= len(unseen) / len(world.label_names) <= 0.25
    assert torch.equal(world.seen_mask, ~world.unseen_mask)
    assert world.seen_mask.dtype == torch.bool and int(world.seen_mask.sum()) == len(seen)


def test_unseen_labels_are_held_out_concepts_or_combinations(world):
    seen = set(world.seen_names)
    for combo in mw.UNSEEN_COMBOS:
        colour, shape = combo.split()
        assert shape in seen
        assert any(f"{colour} {s}" in seen for s in mw.SHAPES)  # the colour is seen on other shapes
        assert any(f"{c} {shape}" in seen for c in mw.COLOURS)  # the shape is seen in other colours
    for concept in mw.UNSEEN_CONCEPTS:
        region = mw.THING_REGION.get(concept)
        assert region is None or region in seen


def test_every_unseen_label_appears_in_the_test_split():
    ds = MiniWorldDataset("test", n=600, seed=0)
    pos = ds.targets == POSITIVE
    assert pos[:, ds.unseen_mask].sum(0).min() >= 5
    assert pos[:, ds.seen_mask].sum(0).min() >= 5


# --- dataset -----------------------------------------------------------------------------------
def test_dataset_contract():
    ds = MiniWorldDataset("train", n=6, seed=0)
    s = ds[2]
    assert set(s) == {"image", "target", "index"}
    assert s["image"].shape == (3, 64, 64) and s["image"].dtype == torch.float32
    assert 0.0 <= float(s["image"].min()) and float(s["image"].max()) <= 1.0
    assert s["target"].dtype == torch.long and s["target"].shape == (len(ds.label_names),)
    assert s["index"] == 2 and len(ds) == 6
    assert ds.image_path(2) == "miniworld:train:2"
    assert np.array_equal(np.asarray(ds.pil_image(2)), ds.images[2])
    assert torch.equal(s["target"], ds.targets[2])
    with pytest.raises(IndexError):
        ds[6]
    with pytest.raises(ValueError, match="unknown split"):
        MiniWorldDataset("val")


def test_dataset_transform_and_captions():
    calls = []

    def tf(img):
        calls.append(img.size)
        return torch.zeros(3, 32, 32)

    ds = MiniWorldDataset("pretrain", n=3, seed=0, transform=tf)
    s = ds[0]
    assert calls == [(64, 64)] and s["image"].shape == (3, 32, 32)
    assert isinstance(s["caption"], str) and s["caption"] == ds.captions[0]


def test_splits_use_disjoint_streams_and_match_the_world():
    train = MiniWorldDataset("train", n=20, seed=0)
    test = MiniWorldDataset("test", n=20, seed=0)
    pre = MiniWorldDataset("pretrain", n=20, seed=0)
    flat = [d.images.reshape(20, -1) for d in (train, test, pre)]
    for a, b in ((0, 1), (0, 2), (1, 2)):
        same = (flat[a][:, None, :] == flat[b][None, :, :]).all(-1)  # [20, 20] identical pairs
        assert not same.any()
    images, labels, _ = MiniWorld(0).sample(20, (mw.SPLITS["test"],))
    assert np.array_equal(images, test.images) and np.array_equal(labels, test.labels)


def test_dataset_is_cached_in_memory():
    a = MiniWorldDataset("test", n=30, seed=1)
    b = MiniWorldDataset("test", n=30, seed=1)
    assert a.images is b.images and not a.images.flags.writeable


def test_dataset_is_registered():
    from c2srt.data import DATASETS

    assert DATASETS.get("miniworld") is MiniWorldDataset
