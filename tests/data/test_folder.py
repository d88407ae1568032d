"""c2srt.data.folder: JSONL / CSV listings and the COCO / YOLO reader (real COCO8 files)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from c2srt.config import DataCfg
from c2srt.constants import IGNORE_LABEL, NEGATIVE, POSITIVE
from c2srt.data import DataError, build_dataset
from c2srt.data.folder import build_coco, build_listing


# ----------------------------------------------------------------------------------- listings
@pytest.fixture
def listing_root(tmp_path: Path, make_image) -> Path:
    for name in ("a.jpg", "b.jpg", "sub/c.jpg"):
        make_image(tmp_path / "imgs" / name)
    (tmp_path / "seen.txt").write_text("dog\ncat\ngrass\n")
    (tmp_path / "unseen.txt").write_text("zebra\n")
    return tmp_path


def test_jsonl_reader_targets_and_paths(listing_root: Path) -> None:
    (listing_root / "test.jsonl").write_text(
        '{"image": "imgs/a.jpg", "labels": ["dog", "zebra"]}\n'
        "\n"
        '{"image": "imgs/sub/c.jpg", "labels": ["grass"], "negatives": ["cat"]}\n'
    )
    ds = build_listing("test", root=str(listing_root))
    assert ds.label_names == ["dog", "cat", "grass", "zebra"]
    assert ds.seen_mask.tolist() == [True, True, True, False]
    assert ds.paths == [str(listing_root / "imgs/a.jpg"), str(listing_root / "imgs/sub/c.jpg")]
    np.testing.assert_array_equal(ds.dense_labels(), [[1, -1, -1, 1], [-1, -1, 1, -1]])
    unknown = build_listing("test", root=str(listing_root), missing_as="unknown")
    np.testing.assert_array_equal(unknown.dense_labels(), [[1, 0, 0, 1], [0, -1, 1, 0]])


def test_jsonl_bad_rows_are_all_reported_with_lines(listing_root: Path) -> None:
    (listing_root / "test.jsonl").write_text(
        '{"image": "imgs/a.jpg", "labels": ["dog"]}\n'  # 1 fine
        '{"image": "imgs/b.jpg", "labels": ["dgo"]}\n'  # 2 unknown label
        "{not json\n"  # 3 malformed
        '{"image": "imgs/missing.jpg", "labels": ["cat"]}\n'  # 4 missing image
        '{"image": "imgs/b.jpg", "labels": "dog"}\n'  # 5 labels not a list
        '{"image": "imgs/b.jpg", "labels": ["cat"], "negatives": ["cat"]}\n'  # 6 conflict
    )
    path = listing_root / "test.jsonl"
    with pytest.raises(DataError) as info:
        build_listing("test", root=str(listing_root))
    msg = str(info.value)
    assert f"{path}:2: unknown label(s) 'dgo'" in msg
    assert f"{path}:3: not valid JSON" in msg
    assert f"{path}:5:" in msg and f"{path}:6:" in msg and "both positive and negative" in msg
    assert "missing.jpg: image file not found" in msg
    assert len(info.value.problems) == 5
    ds = build_listing("test", root=str(listing_root), skip_bad=True)
    assert ds.paths == [str(listing_root / "imgs/a.jpg")] and len(ds.skipped) == 5


def test_csv_reader_with_and_without_header(listing_root: Path) -> None:
    (listing_root / "train.csv").write_text(
        "image,labels,negatives\nimgs/a.jpg,dog|grass,\nimgs/b.jpg,zebra,cat\nimgs/sub/c.jpg,cat;grass,dog\n"
    )
    ds = build_listing("train", root=str(listing_root))
    # b.jpg has only an unseen positive: dropped from training; the unseen column is blanked
    assert [Path(p).name for p in ds.paths] == ["a.jpg", "c.jpg"] and ds.dropped_without_positive == 1
    np.testing.assert_array_equal(ds.dense_labels(), [[1, -1, 1, 0], [-1, 1, 1, 0]])
    (listing_root / "test.csv").write_text('imgs/a.jpg,"dog;cat"\nimgs/b.jpg,horse\nimgs/sub/c.jpg,a,b,c,d\n')
    with pytest.raises(DataError) as info:
        build_listing("test", root=str(listing_root))
    msg = str(info.value)
    assert "test.csv:2: unknown label(s) 'horse'" in msg and "test.csv:3: expected columns" in msg


def test_vocabulary_inferred_without_seen_file(tmp_path: Path, make_image) -> None:
    make_image(tmp_path / "a.jpg")
    (tmp_path / "train.jsonl").write_text('{"image": "a.jpg", "labels": ["b", "a"]}\n')
    (tmp_path / "test.jsonl").write_text('{"image": "a.jpg", "labels": ["c"]}\n')
    (tmp_path / "unseen.txt").write_text("c\n")
    ds = build_dataset(DataCfg(name="csv", root=str(tmp_path)), "test", None)  # "csv" reads .jsonl too
    assert ds.label_names == ["a", "b", "c"] and ds.unseen_mask.tolist() == [False, False, True]


def test_bad_missing_as(listing_root: Path) -> None:
    with pytest.raises(ValueError, match="missing_as"):
        build_listing("test", root=str(listing_root), missing_as="zero")


# --------------------------------------------------------------------------------------- COCO
def _yolo_classes(label_file: Path, names: list[str]) -> set[str]:
    return {names[int(line.split()[0])] for line in label_file.read_text().splitlines() if line.strip()}


def test_coco8_label_sets_match_the_yolo_files(coco8: Path) -> None:
    names = (coco8 / "classes.txt").read_text().splitlines()
    for split, sub in (("train", "train"), ("test", "val")):
        ds = build_coco(split, root=str(coco8))
        assert ds.label_names == names and bool(ds.seen_mask.all())
        assert len(ds) == 4
        for i in range(len(ds)):
            path = Path(ds.image_path(i))
            assert path.parent.name == sub
            expected = _yolo_classes(coco8 / "labels" / sub / f"{path.stem}.txt", names)
            row = ds.label_row(i)
            assert {names[j] for j in np.flatnonzero(row == POSITIVE)} == expected
            assert set(np.unique(row)) <= {POSITIVE, NEGATIVE}
    # two images checked against the table of ../shared/data/README.md
    test = build_coco("test", root=str(coco8))
    by_stem = {Path(test.image_path(i)).stem: i for i in range(len(test))}
    pos = lambda i: {test.label_names[j] for j in np.flatnonzero(test.label_row(i) == POSITIVE)}  # noqa: E731
    assert pos(by_stem["000000000049"]) == {"person", "horse", "potted plant"}
    assert pos(by_stem["000000000042"]) == {"dog"}
    assert test[by_stem["000000000042"]]["image"].shape[0] == 3


def test_coco8_seen_unseen_split_through_the_registry(coco8: Path) -> None:
    cfg = DataCfg(name="coco", root=str(coco8), options={"unseen": ["bus", "giraffe", "elephant"]})
    train = build_dataset(cfg, "train", None)
    names = train.label_names
    assert names[-3:] == ["bus", "elephant", "giraffe"] and int(train.unseen_mask.sum()) == 3
    assert len(train) == 3 and train.dropped_without_positive == 1  # 000000000025 only has a giraffe
    assert (train.dense_labels()[:, -3:] == IGNORE_LABEL).all()
    test = build_dataset(cfg, "test", None)
    row = test.label_row([Path(p).stem for p in test.paths].index("000000000061"))
    assert row[names.index("elephant")] == POSITIVE and row[names.index("person")] == POSITIVE
    with pytest.raises(ValueError, match="unknown class.*'unicorn'"):
        build_dataset(DataCfg(name="coco", root=str(coco8), options={"seen": ["unicorn"]}), "test", None)


def test_coco_malformed_lines_named_by_file_and_line(coco8: Path, tmp_path: Path) -> None:
    root = tmp_path / "coco"
    shutil.copytree(coco8, root)
    lf = root / "labels" / "val" / "000000000042.txt"
    lf.write_text(lf.read_text() + "99 0.5 0.5 0.1 0.1\n16 0.5 zero 0.1 0.1\n16 0.5\n")
    n_lines = len(lf.read_text().splitlines())
    (root / "labels" / "val" / "000000000061.txt").unlink()  # no label file: background, no problem
    (root / "labels" / "val" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DataError) as info:
        build_coco("test", root=str(root))
    msg = str(info.value)
    assert f"{lf}:{n_lines - 2}: class id 99 out of range" in msg
    assert f"{lf}:{n_lines - 1}: malformed coordinates" in msg
    assert f"{lf}:{n_lines}: expected 'class cx cy w h'" in msg
    assert "orphan.txt: label file without an image" in msg and len(info.value.problems) == 4
    ds = build_coco("test", root=str(root), skip_bad=True)
    stems = [Path(p).stem for p in ds.paths]
    assert "000000000042" not in stems and len(ds) == 3 and len(ds.skipped) == 4
    assert (ds.label_row(stems.index("000000000061")) == NEGATIVE).all()
