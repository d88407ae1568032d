"""c2srt.data.open_images on tiny CSVs in the official v4 / BiAM format."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from c2srt.config import DataCfg
from c2srt.data import DataError, build_dataset
from c2srt.data.open_images import build_open_images

HEADER = "ImageID,Source,LabelName,Confidence\n"
DESCRIPTIONS = '/m/a,Apple\n/m/b,"Ball, red"\n/m/c,Cat\n/m/u1,Unicorn\n/m/u2,Cat\n/m/u3,Zebra\n/m/x,Other\n'
NAMES = ["Apple", "Ball, red", "Cat", "Unicorn", "Cat (/m/u2)"]  # a repeated display name gets its MID
TEST_ROWS = [
    "img1,verification,/m/a,1",
    "img1,verification,/m/u1,0",
    "img1,crowdsource-verification,/m/a,1",  # an agreeing repeat
    "img2,verification,/m/b,0",
    "img2,verification,/m/u2,1",
    "img2,verification,/m/x,1",  # outside the vocabulary: ignored
    "img3,verification,/m/x,1",  # an image with no label of the vocabulary: not a row
    "img4,verification,/m/c,1",
    "img4,verification,/m/c,0",  # conflicting repeat: unknown
    "img4,verification,/m/u1,1",
]
TEST_EXPECTED = {"img1": [1, 0, 0, -1, 0], "img2": [0, -1, 0, 0, 1], "img4": [0, 0, 0, 1, 0]}
TRAIN_ROWS = ["t1,verification,/m/a,1", "t1,verification,/m/u1,1", "t2,verification,/m/u1,1", "t3,verification,/m/b,0"]


@pytest.fixture
def oi(tmp_path: Path, make_image) -> Path:
    root = tmp_path / "oi"
    root.mkdir()
    (root / "classes-trainable.txt").write_text("/m/a\n/m/b\n/m/c\n")
    (root / "class-descriptions.csv").write_text(DESCRIPTIONS)
    with open(root / "unseen_labels.pkl", "wb") as fh:
        pickle.dump(["/m/u3", "/m/u1", "/m/u2"], fh)
    (root / "top_400_unseen.csv").write_text("1\n2\n")  # BiAM: indices into unseen_labels.pkl
    (root / "test").mkdir()
    (root / "test" / "test-annotations-human-imagelabels.csv").write_text(HEADER + "\n".join(TEST_ROWS) + "\n")
    (root / "train-annotations-human-imagelabels.csv").write_text(HEADER + "\n".join(TRAIN_ROWS) + "\n")
    for split, ids in (("test", ["img1", "img2", "img3", "img4"]), ("train", ["t1", "t2", "t3"])):
        for i in ids:
            make_image(root / split / f"{i}.jpg")
    return root


def test_test_split_targets_sparse_and_names(oi: Path) -> None:
    ds = build_dataset(DataCfg(name="open_images", root=str(oi)), "test", None)
    assert ds.label_names == NAMES and ds.label_ids == ["/m/a", "/m/b", "/m/c", "/m/u1", "/m/u2"]
    assert ds.seen_mask.tolist() == [True, True, True, False, False]
    assert ds.is_sparse and ds.labels.nnz == sum(int(np.count_nonzero(v)) for v in TEST_EXPECTED.values())
    assert [Path(p).stem for p in ds.paths] == list(TEST_EXPECTED)
    assert ds.paths[0] == str(oi / "test" / "img1.jpg")
    np.testing.assert_array_equal(ds.dense_labels(), np.array(list(TEST_EXPECTED.values())))
    assert ds[1]["target"].tolist() == TEST_EXPECTED["img2"]


def test_train_split_keeps_images_with_a_seen_positive(oi: Path) -> None:
    ds = build_open_images("train", root=str(oi))
    assert [Path(p).stem for p in ds.paths] == ["t1"] and ds.dropped_without_positive == 2
    np.testing.assert_array_equal(ds.dense_labels(), [[1, 0, 0, 0, 0]])  # unseen blanked


def test_unseen_file_of_mids_and_image_pattern(oi: Path, make_image) -> None:
    (oi / "top_400_unseen.csv").write_text("/m/u2\n/m/u1\n")
    (oi / "unseen_labels.pkl").unlink()
    for i in ("img1", "img2", "img4"):
        make_image(oi / "shards" / i[0] / f"{i}.jpg")
    ds = build_open_images("test", root=str(oi), image_pattern="shards/{image_id[0]}/{image_id}.jpg")
    assert ds.label_names[3:] == ["Cat (/m/u2)", "Unicorn"]
    assert ds.paths[0] == str(oi / "shards" / "i" / "img1.jpg")
    np.testing.assert_array_equal(ds.dense_labels()[:, 3:], [[0, -1], [1, 0], [0, 1]])


def test_malformed_rows_missing_images_and_undescribed_labels(oi: Path) -> None:
    (oi / "classes-trainable.txt").write_text("/m/a\n/m/b\n/m/c\n/m/d\n")  # /m/d has no description
    csv_path = oi / "test" / "test-annotations-human-imagelabels.csv"
    rows = TEST_ROWS + ["img2,verification,/m/a", "img4,verification,/m/b,maybe", "img5,verification,/m/a,1"]
    csv_path.write_text(HEADER + "\n".join(rows) + "\n")
    with pytest.raises(DataError) as info:
        build_open_images("test", root=str(oi))
    msg = str(info.value)
    n = len(TEST_ROWS) + 1  # line of the last good row (the header is line 1)
    assert "classes-trainable.txt:4: label '/m/d' has no name in class-descriptions.csv" in msg
    assert f"{csv_path}:{n + 1}: expected 4 fields" in msg
    assert f"{csv_path}:{n + 2}: confidence 'maybe' is not 0 or 1" in msg
    assert "img5.jpg: image file not found" in msg
    assert len(info.value.problems) == 4
    ds = build_open_images("test", root=str(oi), skip_bad=True)
    assert [Path(p).stem for p in ds.paths] == ["img1", "img2"]  # img4 (bad row) and img5 (no file) dropped
    assert "/m/d" not in ds.label_ids and len(ds.skipped) == 4


def test_bad_header_and_bad_index_are_named(oi: Path) -> None:
    (oi / "top_400_unseen.csv").write_text("1\n7\n")
    with pytest.raises(ValueError, match=r"top_400_unseen.csv:2: '7' is neither a MID nor an index"):
        build_open_images("test", root=str(oi))
    (oi / "top_400_unseen.csv").write_text("1\n")
    (oi / "test" / "test-annotations-human-imagelabels.csv").write_text("ImageID,LabelName\nimg1,/m/a\n")
    with pytest.raises(ValueError, match=r"test-annotations-human-imagelabels.csv:1: expected the header"):
        build_open_images("test", root=str(oi))


def test_bad_image_pattern_names_the_option(oi: Path) -> None:
    with pytest.raises(ValueError, match=r"data\.options\.image_pattern: '\{split\}/\{id\}\.jpg'"):
        build_open_images("test", root=str(oi), image_pattern="{split}/{id}.jpg")
