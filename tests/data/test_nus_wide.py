"""c2srt.data.nus_wide on tiny files in the official layout and in MKT's layout."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from c2srt.config import DataCfg
from c2srt.data import DataError, build_dataset
from c2srt.data.nus_wide import build_nus_wide, image_key, vocabulary

TAGS = ["sky", "dog", "beach", "water", "tree", "car"]
CONCEPTS = ["dog", "car", "sunset"]
NAMES = ["sky", "beach", "water", "tree", "dog", "car", "sunset"]  # seen (tag order), then concepts
IMAGES = ["actor/0001_1.jpg", "actor/0002_2.jpg", "beach/0001_3.jpg", "beach/0002_4.jpg", "zebra/0001_5.jpg"]
ALL_TAGS = [  # rows of AllTags1k over TAGS
    [1, 0, 0, 0, 0, 0],
    [0, 1, 1, 0, 0, 0],
    [0, 0, 0, 1, 0, 0],
    [1, 0, 0, 0, 0, 1],
    [0, 1, 0, 0, 0, 0],  # only a concept tag: no seen positive, dropped from training
]
TRAIN = [0, 2, 4]
TEST = [1, 3]
CONCEPT_ALL = {"dog": [0, 1, 0, 0, 1], "car": [0, 0, 0, 1, 0], "sunset": [0, 0, 0, 0, 0]}


def _win(key: str, prefix: str = "") -> str:
    return prefix + key.replace("/", "\\")


def _write_common(root: Path, make_image) -> None:
    (root / "NUS_WID_Tags").mkdir(parents=True)
    (root / "NUS_WID_Tags" / "TagList1k.txt").write_text("\n".join(TAGS) + "\n")
    (root / "Concepts81.txt").write_text("\n".join(CONCEPTS) + "\n")
    for key in IMAGES:
        make_image(root / "Flickr" / key)


@pytest.fixture
def official(tmp_path: Path, make_image) -> Path:
    root = tmp_path / "nus"
    _write_common(root, make_image)
    (root / "ImageList").mkdir()
    lines = [_win(k, "C:\\ImageData\\Flickr\\" if i == 0 else "") for i, k in enumerate(IMAGES)]
    (root / "ImageList" / "Imagelist.txt").write_text("\r\n".join(lines) + "\r\n")
    (root / "ImageList" / "TrainImagelist.txt").write_text("\n".join(_win(IMAGES[i]) for i in TRAIN) + "\n")
    (root / "ImageList" / "TestImagelist.txt").write_text("\n".join(_win(IMAGES[i]) for i in TEST) + "\n")
    (root / "NUS_WID_Tags" / "AllTags1k.txt").write_text("\n".join("\t".join(map(str, r)) + "\t" for r in ALL_TAGS) + "\n")
    gt = root / "Groundtruth" / "TrainTestLabels"
    gt.mkdir(parents=True)
    for c, values in CONCEPT_ALL.items():
        (gt / f"Labels_{c}_Test.txt").write_text("\n".join(str(values[i]) for i in TEST) + "\n")
        (gt / f"Labels_{c}_Train.txt").write_text("\n".join(str(values[i]) for i in TRAIN) + "\n")
    return root


def _expected(rows: list[int], split: str) -> np.ndarray:
    out = []
    for i in rows:
        seen = [1 if ALL_TAGS[i][TAGS.index(n)] else -1 for n in NAMES[:4]]
        unseen = [1 if CONCEPT_ALL[c][i] else -1 for c in CONCEPTS] if split == "test" else [0, 0, 0]
        out.append(seen + unseen)
    return np.array(out, dtype=np.int8)


def test_image_key_and_vocabulary() -> None:
    assert image_key("C:\\ImageData\\Flickr\\actor\\0001_2124494179.jpg") == "actor/0001_2124494179.jpg"
    assert image_key("actor\\0001_2124494179.jpg") == "actor/0001_2124494179.jpg"
    seen, unseen = vocabulary(TAGS, CONCEPTS)
    assert seen + unseen == NAMES


def test_official_train_and_test(official: Path) -> None:
    train = build_dataset(DataCfg(name="nus_wide", root=str(official)), "train", None)
    assert train.label_names == NAMES and train.seen_mask.tolist() == [True] * 4 + [False] * 3
    assert train.paths == [str(official / "Flickr" / IMAGES[i]) for i in (0, 2)]
    assert train.dropped_without_positive == 1
    np.testing.assert_array_equal(train.dense_labels(), _expected([0, 2], "train"))
    test = build_nus_wide("test", root=str(official))
    assert test.paths == [str(official / "Flickr" / IMAGES[i]) for i in TEST]
    np.testing.assert_array_equal(test.dense_labels(), _expected(TEST, "test"))
    assert test[1]["target"].tolist() == _expected(TEST, "test")[1].tolist()


def test_official_all_labels_layout_gives_the_same_test_targets(official: Path) -> None:
    import shutil

    shutil.rmtree(official / "Groundtruth" / "TrainTestLabels")
    all_dir = official / "Groundtruth" / "AllLabels"
    all_dir.mkdir()
    for c, values in CONCEPT_ALL.items():
        (all_dir / f"Labels_{c}.txt").write_text("\n".join(map(str, values)) + "\n")
    test = build_nus_wide("test", root=str(official))
    np.testing.assert_array_equal(test.dense_labels(), _expected(TEST, "test"))


def test_official_malformed_rows_and_missing_image(official: Path) -> None:
    tags = official / "NUS_WID_Tags" / "AllTags1k.txt"
    lines = tags.read_text().splitlines()
    lines[1] = "0 1 1 0 0"  # actor/0002_2 (test row 1): five values for six tags
    tags.write_text("\n".join(lines) + "\n")
    # two more test-list lines: an image absent from Imagelist, and zebra whose file is deleted
    with (official / "ImageList" / "TestImagelist.txt").open("a") as fh:
        fh.write("nowhere\\0009_9.jpg\nzebra\\0001_5.jpg\n")
    gt = official / "Groundtruth" / "TrainTestLabels"
    for c in CONCEPTS:
        with (gt / f"Labels_{c}_Test.txt").open("a") as fh:
            fh.write("0\n0\n")
    car = gt / "Labels_car_Test.txt"
    car.write_text(car.read_text().replace("1\n", "yes\n"))  # beach/0002_4 (line 2)
    (official / "Flickr" / IMAGES[4]).unlink()
    with pytest.raises(DataError) as info:
        build_nus_wide("test", root=str(official))
    msg = str(info.value)
    assert f"{tags}:2: expected 6 values of 0/1" in msg
    assert f"{car}:2: expected 0 or 1, got 'yes'" in msg
    assert f"{official / 'ImageList' / 'TestImagelist.txt'}:3: image 'nowhere/0009_9.jpg' is not in Imagelist.txt" in msg
    assert "zebra/0001_5.jpg: image file not found" in msg
    assert len(info.value.problems) == 4


def test_concept_file_of_the_wrong_length_is_fatal(official: Path) -> None:
    (official / "Groundtruth" / "TrainTestLabels" / "Labels_sunset_Test.txt").write_text("0\n")
    with pytest.raises(ValueError, match=r"Labels_sunset_Test.txt: 1 values for 2 images"):
        build_nus_wide("test", root=str(official))


def test_official_skip_bad_drops_and_counts(official: Path) -> None:
    tags = official / "NUS_WID_Tags" / "AllTags1k.txt"
    lines = tags.read_text().splitlines()
    lines[0] = "1 0 0"  # actor/0001_1 (train): too few values
    tags.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"AllTags1k.txt:1: expected 6 values"):
        build_nus_wide("train", root=str(official))
    ds = build_nus_wide("train", root=str(official), skip_bad=True)
    assert ds.paths == [str(official / "Flickr" / IMAGES[2])] and len(ds.skipped) == 1 and ds.dropped_without_positive == 1


def test_missing_file_is_named(official: Path) -> None:
    (official / "Concepts81.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"Concepts81.txt.*data.options.concepts_file"):
        build_nus_wide("test", root=str(official))


# ------------------------------------------------------------------------------------- MKT
@pytest.fixture
def mkt(tmp_path: Path, make_image) -> Path:
    h5py = pytest.importorskip("h5py")
    root = tmp_path / "mkt"
    _write_common(root, make_image)
    mkt_name = lambda key: key.replace("/", "_")  # noqa: E731  actor/0001_1.jpg -> actor_0001_1.jpg
    with open(root / "img_names.pkl", "wb") as fh:
        pickle.dump({"img_names": [mkt_name(IMAGES[i]) for i in TRAIN]}, fh)
    with open(root / "test_img_names.pkl", "wb") as fh:
        pickle.dump({"img_names": np.array([mkt_name(IMAGES[i]) for i in TEST])}, fh)
    (root / "features").mkdir()
    train_rows = _expected(TRAIN, "train")
    with h5py.File(root / "features" / "nus_wide_train.h5", "w") as h5:
        for i, row in zip(TRAIN, train_rows):
            h5[f"{mkt_name(IMAGES[i])}-labels"] = row[:4].astype(np.int32)  # 925-style: seen only
    test_rows = _expected(TEST, "test")
    with h5py.File(root / "features" / "nus_wide_test.h5", "w") as h5:
        h5[f"{mkt_name(IMAGES[TEST[0]])}-labels"] = test_rows[0].astype(np.int32)  # 1006-style
        h5[f"{mkt_name(IMAGES[TEST[1]])}-labels"] = test_rows[1][:4].astype(np.int32)  # 925 + 81
        h5[f"{mkt_name(IMAGES[TEST[1]])}-labels_81"] = test_rows[1][4:].astype(np.int32)
    return root


def test_mkt_layout_matches_official_targets(mkt: Path) -> None:
    train = build_nus_wide("train", root=str(mkt))  # layout auto -> mkt
    assert train.paths == [str(mkt / "Flickr" / IMAGES[i]) for i in (0, 2)]
    np.testing.assert_array_equal(train.dense_labels(), _expected([0, 2], "train"))
    test = build_nus_wide("test", root=str(mkt), layout="mkt")
    np.testing.assert_array_equal(test.dense_labels(), _expected(TEST, "test"))


def test_mkt_missing_key_is_named(mkt: Path) -> None:
    with pytest.raises(DataError, match=r"nus_wide_test.h5: no dataset 'actor_0002_2.jpg-gt'.*label_key"):
        build_nus_wide("test", root=str(mkt), label_key="{name}-gt")


def test_mkt_refuses_a_malicious_pickle(mkt: Path) -> None:
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    with open(mkt / "img_names.pkl", "wb") as fh:
        pickle.dump({"img_names": Evil()}, fh)
    with pytest.raises(ValueError, match=r"img_names.pkl.*system"):
        build_nus_wide("train", root=str(mkt))


def test_mkt_folder_as_mkt_ships_it(mkt: Path) -> None:
    """MKT's README folder: Concepts925.txt + Concepts81.txt (no TagList1k), the two h5 files, the
    name pickles and Flickr/; a 0 in the h5 labels is "not annotated", as MKT's AP and loss read it."""
    import shutil

    import h5py

    shutil.rmtree(mkt / "NUS_WID_Tags")
    seen925 = ["water", "sky", "tree", "beach"]  # MKT's own order: the h5 columns follow this file
    (mkt / "Concepts925.txt").write_text("\n".join(seen925) + "\n")
    (mkt / "label_emb.pt").write_bytes(b"not read")
    with h5py.File(mkt / "features" / "nus_wide_test.h5", "a") as h5:
        key = f"{IMAGES[TEST[0]].replace('/', '_')}-labels"
        row = np.array(h5[key])
        row[1] = 0
        del h5[key]
        h5[key] = row
    test = build_dataset(DataCfg(name="nus_wide", root=str(mkt)), "test", None)
    assert test.label_names == seen925 + CONCEPTS and test.seen_mask.tolist() == [True] * 4 + [False] * 3
    want = _expected(TEST, "test")
    want[0, 1] = 0  # not annotated: left out of AP, as in MKT
    np.testing.assert_array_equal(test.dense_labels(), want)
    strict = build_nus_wide("test", root=str(mkt), zero_label="negative")
    assert strict.dense_labels()[0, 1] == -1
    with pytest.raises(ValueError, match="zero_label"):
        build_nus_wide("test", root=str(mkt), zero_label="maybe")
