import numpy as np
import pytest
import torch

from c2srt.constants import NEGATIVE, POSITIVE
from c2srt.miniworld import captions as cap
from c2srt.miniworld import world as mw
from c2srt.miniworld.draw import THING_SPECS
from c2srt.miniworld.world import MiniWorld


@pytest.fixture(scope="module")
def world() -> MiniWorld:
    return MiniWorld(seed=0)


@pytest.fixture(scope="module")
def scenes(world):
    return world.sample_target(300, "train", grid=8)


def col(world: MiniWorld, name: str) -> int:
    return world.label_names.index(name)


# --- determinism -------------------------------------------------------------------------------
def test_same_seed_same_images_and_prefix_property():
    a, b = MiniWorld(3).sample_target(12, "train"), MiniWorld(3).sample_target(12, "train")
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    longer = MiniWorld(3).sample_target(20, "train")
    assert np.array_equal(longer.images[:12], a.images) and np.array_equal(longer.labels[:12], a.labels)
    w1, c1 = MiniWorld(3).sample_web(10)
    w2, c2 = MiniWorld(3).sample_web(10)
    assert np.array_equal(w1, w2) and c1 == c2


def test_streams_and_worlds_differ():
    base = MiniWorld(3).sample_target(8, "train").images
    assert not np.array_equal(base, MiniWorld(3).sample_target(8, "test").images)
    assert not np.array_equal(base, MiniWorld(4).sample_target(8, "train").images)
    assert not np.array_equal(base, MiniWorld(3).sample_web(8)[0])


def test_shapes_dtypes_and_values(world):
    s = world.sample_target(5, "test", grid=8)
    assert s.images.shape == (5, 64, 64, 3) and s.images.dtype == np.uint8
    assert s.labels.shape == (5, world.num_labels) and s.labels.dtype == np.int8
    assert set(np.unique(s.labels)) <= {POSITIVE, NEGATIVE}
    assert s.cover.shape == (5, world.num_labels, 8, 8) and s.captions == []
    images, captions = world.sample_web(4)
    assert images.shape == (4, 64, 64, 3) and len(captions) == 4 and all(isinstance(c, str) and c for c in captions)
    assert MiniWorld(0, image_size=96).sample_target(2, "train").images.shape == (2, 96, 96, 3)


def test_bad_arguments(world):
    with pytest.raises(ValueError, match="image_size"):
        MiniWorld(0, image_size=8)
    with pytest.raises(ValueError, match="n must be"):
        world.sample_target(-1)
    with pytest.raises(ValueError, match="target split must be one of"):
        world.sample_target(2, "web")
    with pytest.raises(ValueError, match="grid"):
        world.sample_target(2, grid=7)


# --- vocabulary and split ----------------------------------------------------------------------
def test_vocabulary_and_split(world):
    assert len(set(world.label_names)) == len(world.label_names) == 35
    assert world.label_names == world.seen_names + world.unseen_names
    assert set(world.unseen_names) == set(mw.UNSEEN) and len(mw.UNSEEN) == 12
    assert torch.equal(world.seen_mask, ~world.unseen_mask) and int(world.seen_mask.sum()) == 23
    assert set(cap.SYNONYMS) == set(world.label_names)  # every label can be named in a caption


def test_every_label_appears_and_scenes_are_cluttered(world, scenes):
    pos = scenes.labels == POSITIVE
    n = pos.sum(1)
    assert n.min() >= mw.MIN_LABELS and n.max() <= mw.MAX_LABELS and n.mean() > 6
    assert pos.sum(0).min() >= 10  # every label, seen and unseen, is present in the benchmark


def test_cooccurrence_rules(world, scenes):
    pos = scenes.labels == POSITIVE
    for name, spec in THING_SPECS.items():
        if spec.region is not None:
            has = pos[:, col(world, name)]
            assert pos[has, col(world, spec.region)].all(), f"{name} without {spec.region}"
    mountain, snow = pos[:, col(world, "mountain")], pos[:, col(world, "snow")]
    assert snow[mountain].mean() > 0.6 > snow.mean()  # mountains stand behind snow fields


def test_areas_and_patch_cover_are_measured_from_pixels(world, scenes):
    pos = scenes.labels == POSITIVE
    total = scenes.areas.sum(1)  # every pixel belongs to one band or thing; hidden slivers are dropped
    assert (total <= 1 + 1e-6).all() and (total > 0.97).all()
    assert (scenes.areas[~pos] == 0).all() and (scenes.areas[pos] >= mw.MIN_VISIBLE).all()
    np.testing.assert_allclose(scenes.cover.mean((2, 3)), scenes.areas, atol=1e-6)  # the grid averages to the area


def test_sizes_differ_strongly(world, scenes):
    pos = scenes.labels == POSITIVE

    def area(name):
        k = col(world, name)
        return scenes.areas[pos[:, k], k].mean()

    assert area("sky") > 0.25 and area("sand") > 0.25
    for small in ("fish", "flower", "traffic light", "crab", "star", "heart"):
        assert area(small) < 0.04, small
        assert area("sand") > 10 * area(small)
    for large in ("mountain", "bus", "igloo", "box", "ring"):
        assert area(large) > 0.06, large


# --- the web domain ----------------------------------------------------------------------------
def test_web_photos_show_few_large_things(world, scenes):
    _, _, areas = world.sample_web(400, return_truth=True)
    things = np.array([n in mw.CONCEPTS for n in world.label_names])
    shown = (areas[:, things] > 0).sum(1)
    assert shown.max() <= 3 and np.median(shown) <= 2  # one or two salient things (a landscape may add one)
    pos = scenes.labels == POSITIVE
    for name in ("fish", "star", "crab"):
        k = col(world, name)
        web, target = areas[areas[:, k] > 0, k], scenes.areas[pos[:, k], k]
        assert web.mean() > 3 * target.mean(), name  # large in web photos, small in benchmark scenes


def test_web_captions_name_some_things_with_synonyms(world):
    _, captions, areas = world.sample_web(600, return_truth=True)
    lowered = [c.lower() for c in captions]
    for name in mw.UNSEEN:
        named = [any(w in c for w in cap.SYNONYMS[name]) for c in lowered]
        assert np.mean(named) > 0.02, name  # every unseen label is named in web captions
    k = col(world, "boat")
    shown = areas[:, k] > 0
    canonical = np.array(["boat" in c and "sailboat" not in c for c in lowered])
    assert 0.1 < canonical[shown].mean() < 0.9  # often named, often by another word, sometimes not at all


def test_styles_differ_between_domains(world, scenes):
    web, _ = world.sample_web(200)

    def roughness(images):  # mean absolute difference of horizontally adjacent pixels
        return np.abs(np.diff(images.astype(np.int16), axis=2)).mean()

    assert roughness(scenes.images) > 2 * roughness(web)


# --- captions ----------------------------------------------------------------------------------
def test_caption_phrases_recover_the_noun_phrases():
    rng = np.random.default_rng(0)
    labels = list(cap.SYNONYMS)
    for _ in range(300):
        n = int(rng.integers(1, 4))
        phrases = [cap.noun_phrase(rng, labels[int(rng.integers(len(labels)))], "red" if rng.random() < 0.3 else "") for _ in range(n)]
        assert cap.caption_phrases(cap.compose(rng, phrases)) == phrases


# --- the world report --------------------------------------------------------------------------
def test_measured_groups_are_the_designed_ones(world):
    from c2srt.miniworld.report import REPORT_SCENES, world_report

    report = world_report(world, n=REPORT_SCENES, n_web=200)  # what the demo measures the groups on
    assert {g: sorted(v) for g, v in report["groups"].items()} == {g: sorted(v) for g, v in mw.UNSEEN_GROUPS.items()}
    rows = {r["label"]: r for r in report["labels"]}
    assert rows["fish"]["cooccurring"][0]["label"] == "water" and rows["fish"]["cooccurring"][0]["p_given"] == 1.0
    assert all(c["lift"] < 1.5 for shape in ("box", "star", "ring", "heart") for c in rows[shape]["cooccurring"])
