"""c2srt.data.base: the dataset contract, the bad-data policy and the registry."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from c2srt.config import DataCfg
from c2srt.constants import IGNORE_LABEL, NEGATIVE, POSITIVE
from c2srt.data import DATASETS, DataError, DataProblem, MultiLabelDataset, build_dataset, check_images, list_datasets
from c2srt.data.base import MAX_PROBLEMS_SHOWN, finalize_dataset, positive_counts

NAMES = ["a", "b", "c", "u"]  # 3 seen, 1 unseen
SEEN = np.array([True, True, True, False])
LABELS = np.array(
    [
        [1, -1, 0, 1],  # seen positive
        [-1, -1, -1, 1],  # only an unseen positive: dropped from training
        [0, 1, 1, -1],
    ],
    dtype=np.int8,
)


def _images(tmp_path: Path, make_image, n: int = 3) -> list[str]:
    return [str(make_image(tmp_path / f"img{i}.jpg", (10 * i, 0, 0))) for i in range(n)]


def test_data_problem_and_error_message_lists_file_line_and_count() -> None:
    problems = [DataProblem("labels.txt", i + 1, f"bad row {i}") for i in range(MAX_PROBLEMS_SHOWN + 7)]
    problems.append(DataProblem("x.jpg", None, "image file not found"))
    err = DataError(problems, what="toy")
    msg = str(err)
    assert isinstance(err, ValueError) and err.problems == problems
    assert msg.startswith(f"toy: {len(problems)} data problems")
    assert "labels.txt:1: bad row 0" in msg and f"labels.txt:{MAX_PROBLEMS_SHOWN}: bad row {MAX_PROBLEMS_SHOWN - 1}" in msg
    assert f"bad row {MAX_PROBLEMS_SHOWN}\n" not in msg  # the 51st is only counted
    assert "... and 8 more" in msg
    assert str(DataProblem("x.jpg", None, "gone")) == "x.jpg: gone"


@pytest.mark.parametrize("sparse", [False, True])
def test_getitem_contract_dense_and_sparse(tmp_path: Path, make_image, sparse: bool) -> None:
    paths = _images(tmp_path, make_image)
    labels = sp.csr_matrix(LABELS) if sparse else LABELS
    ds = finalize_dataset(name="toy", split="test", paths=paths, labels=labels, label_names=NAMES, seen_mask=SEEN)
    assert len(ds) == 3 and ds.is_sparse == sparse
    sample = ds[2]
    assert set(sample) == {"image", "target", "index"} and sample["index"] == 2
    assert sample["image"].shape == (3, 8, 8) and sample["image"].dtype == torch.float32
    assert float(sample["image"].max()) <= 1.0 and abs(float(sample["image"][0, 0, 0]) - 20 / 255) < 1e-6
    assert sample["target"].dtype == torch.long and sample["target"].tolist() == LABELS[2].tolist()
    assert ds.label_names == NAMES and ds.image_path(-1) == paths[2]
    assert ds.seen_mask.tolist() == SEEN.tolist() and ds.unseen_mask.tolist() == (~SEEN).tolist()
    assert ds.seen_mask.dtype == torch.bool
    np.testing.assert_array_equal(ds.dense_labels(), LABELS)
    with pytest.raises(IndexError):
        ds[3]


@pytest.mark.parametrize("sparse", [False, True])
def test_train_split_blanks_unseen_and_drops_rows_without_seen_positive(tmp_path: Path, make_image, sparse: bool) -> None:
    paths = _images(tmp_path, make_image)
    labels = sp.csr_matrix(LABELS) if sparse else LABELS
    ds = finalize_dataset(name="toy", split="train", paths=paths, labels=labels, label_names=NAMES, seen_mask=SEEN)
    assert ds.paths == [paths[0], paths[2]] and ds.dropped_without_positive == 1
    expected = LABELS[[0, 2]].copy()
    expected[:, 3] = IGNORE_LABEL
    np.testing.assert_array_equal(ds.dense_labels(), expected)


def test_positive_counts_matches_loop() -> None:
    rng = np.random.default_rng(0)
    m = rng.integers(-1, 2, size=(20, 7)).astype(np.int8)
    cols = np.array([True, False, True, True, False, False, True])
    brute = [sum(1 for j in range(7) if cols[j] and m[i, j] == POSITIVE) for i in range(20)]
    assert positive_counts(m, cols).tolist() == brute
    assert positive_counts(sp.csr_matrix(m), cols).tolist() == brute


def test_missing_image_raises_then_skip_bad_drops_and_counts(tmp_path: Path, make_image, caplog) -> None:
    paths = _images(tmp_path, make_image)
    paths[1] = str(tmp_path / "gone.jpg")
    extra = [(0, DataProblem("list.txt", 7, "unknown label 'zz'"))]
    kw = dict(name="toy", split="test", paths=paths, labels=LABELS, label_names=NAMES, seen_mask=SEEN, problems=extra)
    with pytest.raises(DataError) as info:
        finalize_dataset(**kw)
    msg = str(info.value)
    assert "list.txt:7: unknown label 'zz'" in msg and "gone.jpg: image file not found" in msg and "skip_bad" in msg
    with caplog.at_level(logging.WARNING):
        ds = finalize_dataset(**kw, skip_bad=True)
    assert ds.paths == [paths[2]] and len(ds.skipped) == 2
    np.testing.assert_array_equal(ds.dense_labels(), LABELS[[2]])
    assert "skip_bad" in caplog.text


def test_contract_checks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="duplicate label 'a'"):
        MultiLabelDataset(["x"], np.ones((1, 2), np.int8), ["a", "a"], [True, True])
    with pytest.raises(ValueError, match="shape"):
        MultiLabelDataset(["x"], np.ones((1, 3), np.int8), ["a", "b"], [True, True])
    with pytest.raises(ValueError, match="label values"):
        MultiLabelDataset(["x"], np.full((1, 2), 2, np.int8), ["a", "b"], [True, True])


def test_load_error_names_the_file_and_check_images_finds_broken_ones(tmp_path: Path, make_image) -> None:
    paths = _images(tmp_path, make_image, 2)
    truncated = Path(paths[1])
    truncated.write_bytes(truncated.read_bytes()[:60])
    ds = MultiLabelDataset(paths, LABELS[:2], NAMES, SEEN)
    with pytest.raises(DataError, match=r"img1.jpg: not a readable image .*\n.*skip_bad"):
        ds[1]
    problems = check_images(ds)
    assert [p.file for p in problems] == [paths[1]] and "not a readable image" in problems[0].message
    assert check_images(MultiLabelDataset(paths[:1], LABELS[:1], NAMES, SEEN)) == []


def test_images_are_checked_before_use_with_the_listing_line(tmp_path: Path, make_image, bad_images) -> None:
    expected = bad_images(tmp_path)
    paths = [str(make_image(tmp_path / "ok.jpg"))] + [str(tmp_path / n) for n in expected]
    labels = np.ones((len(paths), len(NAMES)), np.int8)
    sources = [("list.jsonl", i + 1) for i in range(len(paths))]
    kw = dict(name="toy", split="test", paths=paths, labels=labels, label_names=NAMES, seen_mask=SEEN, sources=sources)
    assert len(finalize_dataset(**kw)) == len(paths)  # not checked unless asked
    with pytest.raises(DataError) as info:
        finalize_dataset(**kw, check_images=True)
    problems = info.value.problems
    assert [(p.file, p.line) for p in problems] == sources[1:]  # every image at its listing line
    for p, (name, word) in zip(problems, expected.items()):
        assert p.message.startswith(f"{tmp_path / name}: ") and word in p.message
    ds = finalize_dataset(**kw, check_images=True, skip_bad=True)
    assert ds.paths == paths[:1] and len(ds.skipped) == 4


def test_skip_bad_skips_an_image_that_fails_while_loading(tmp_path: Path, make_image) -> None:
    """Broken after the check: the next readable row takes its place and the batch names it."""
    from c2srt.data import collate_samples

    paths = _images(tmp_path, make_image, 3)
    ds = finalize_dataset(name="toy", split="test", paths=paths, labels=LABELS, label_names=NAMES, seen_mask=SEEN, skip_bad=True)
    Path(paths[1]).write_bytes(b"")
    assert ds[0]["skipped"] == [] and ds[0]["index"] == 0
    sample = ds[1]
    assert sample["index"] == 2 and sample["skipped"] == [1]
    assert sample["target"].tolist() == LABELS[2].tolist()  # the row's own target, not the skipped one's
    batch = collate_samples([ds[0], ds[1], ds[2]])
    assert batch["index"].tolist() == [0, 2, 2] and batch["skipped"] == [1]
    assert batch["image"].shape == (3, 3, 8, 8)
    assert set(collate_samples([{"index": 0}, {"index": 1}])) == {"index"}  # other datasets: torch's collate
    for p in paths:
        Path(p).write_bytes(b"")
    with pytest.raises(DataError, match="no readable image"):
        ds[0]


def test_transform_is_applied(tmp_path: Path, make_image) -> None:
    paths = _images(tmp_path, make_image, 1)
    ds = MultiLabelDataset(paths, LABELS[:1], NAMES, SEEN, transform=lambda img: torch.zeros(3, 2, 2))
    assert ds[0]["image"].shape == (3, 2, 2)


# ---------------------------------------------------------------------------- build_dataset
def _listing(tmp_path: Path, make_image) -> Path:
    make_image(tmp_path / "x.jpg")
    (tmp_path / "test.jsonl").write_text('{"image": "x.jpg", "labels": ["a"]}\n')
    (tmp_path / "seen.txt").write_text("a\nb\n")
    return tmp_path


def test_build_dataset_passes_root_options_and_skip_bad(tmp_path: Path, make_image) -> None:
    root = _listing(tmp_path, make_image)
    ds = build_dataset(DataCfg(name="jsonl", root=str(root), options={"missing_as": "unknown"}), "test", None)
    assert ds.dense_labels().tolist() == [[POSITIVE, IGNORE_LABEL]]
    ds = build_dataset(DataCfg(name="jsonl", root=str(root)), "test", None)
    assert ds.dense_labels().tolist() == [[POSITIVE, NEGATIVE]]


def test_build_dataset_rejects_unknown_names_options_and_splits(tmp_path: Path, make_image) -> None:
    root = _listing(tmp_path, make_image)
    with pytest.raises(ValueError, match=r"unknown option data\.options\.colour; valid options: .*missing_as"):
        build_dataset(DataCfg(name="jsonl", root=str(root), options={"colour": 1}), "test", None)
    with pytest.raises(ValueError, match=r"set data\.root instead"):
        build_dataset(DataCfg(name="jsonl", root=str(root), options={"root": "x"}), "test", None)
    with pytest.raises(ValueError, match=r"unknown dataset 'nope'; valid names: .*coco.*nus_wide.*open_images"):
        build_dataset(DataCfg(name="nope"), "test", None)
    with pytest.raises(ValueError, match="unknown split 'val'"):
        build_dataset(DataCfg(name="jsonl", root=str(root)), "val", None)
    with pytest.raises(ValueError, match=r"data\.root"):
        build_dataset(DataCfg(name="jsonl", root=None), "test", None)


def test_every_reader_module_registers_its_names() -> None:
    for name in list_datasets():
        cfg = DataCfg(name=name, root="/nonexistent", options={"__probe__": 1})
        with pytest.raises(ValueError, match="__probe__"):  # imported and found; the option is refused
            build_dataset(cfg, "test", None)
        assert name in DATASETS


def test_registering_a_name_twice_fails() -> None:
    import c2srt.data.folder  # noqa: F401 - registers "coco"
    from c2srt.data import register_dataset

    with pytest.raises(ValueError, match="already registered"):
        register_dataset("coco")(lambda split, **kw: None)


def test_dataset_part_and_another_transform(tmp_path: Path, make_image) -> None:
    """A part keeps the contract with positions as indices; `with_transform` re-reads nothing and
    changes only the transform; skipped rows stay rows of the whole dataset, named there."""
    from c2srt.data import DatasetPart, collate_samples, with_transform
    from c2srt.data.base import log_skipped

    paths = _images(tmp_path, make_image, 3)
    ds = finalize_dataset(name="toy", split="test", paths=paths, labels=LABELS, label_names=NAMES, seen_mask=SEEN, skip_bad=True)
    part = DatasetPart(ds, [2, 0])
    assert len(part) == 2 and part.label_names == NAMES and part.seen_mask.tolist() == SEEN.tolist()
    assert part.image_path(0) == paths[2] and part[0]["index"] == 0 and part[0]["target"].tolist() == LABELS[2].tolist()
    other = with_transform(part, lambda img: torch.zeros(3, 2, 2))
    assert other[1]["image"].shape == (3, 2, 2) and part[1]["image"].shape != (3, 2, 2)  # the original keeps its transform
    assert other.dataset.labels is ds.labels  # shared, not read again
    with pytest.raises(TypeError, match="transform"):
        with_transform(object(), None)
    with pytest.raises(ValueError, match="out of range"):
        DatasetPart(ds, [3])
    Path(paths[2]).write_bytes(b"")  # broken after the check: the whole dataset's next readable row
    batch = collate_samples([part[0]])
    assert batch["skipped"] == [2]
    import logging

    with pytest.MonkeyPatch.context() as m:
        seen: list[str] = []
        m.setattr(logging.getLogger("c2srt.data.base"), "warning", lambda msg, *a: seen.append(msg % a))
        log_skipped(part, batch["skipped"], "train")
    assert paths[2] in seen[0]
