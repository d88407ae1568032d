"""`iter_predict` over files with reading in DataLoader workers: the same predictions, in input order."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from c2srt.predict import Recognizer, _worth_workers

LABELS = ["person", "bus", "dog", "cat", "sky"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, photos: Path, coco8: Path) -> Path:
    """Nine images in two folders, an unreadable file among them (sorted into the middle)."""
    root = tmp_path_factory.mktemp("imgs")
    (root / "a").mkdir()
    (root / "b").mkdir()
    for p in sorted(photos.glob("*.jpg")):
        shutil.copy(p, root / "a" / p.name)
    for p in sorted((coco8 / "images" / "val").glob("*.jpg")):
        shutil.copy(p, root / "b" / p.name)
    (root / "a" / "broken.jpg").write_bytes(b"not a jpeg")
    return root


def test_worker_reading_gives_the_in_process_results_in_order(tiny_checkpoint: Path, folder: Path) -> None:
    rec = Recognizer.from_checkpoint(tiny_checkpoint)
    ref = rec.predict([folder], LABELS, top=3, workers=0)
    for workers, batch_size in [(2, 2), (2, 4)]:  # five and three batches, taken in turn by the workers
        got = rec.predict([folder], LABELS, top=3, batch_size=batch_size, workers=workers)
        assert [p.source for p in got] == [p.source for p in ref] and len(got) == 9
        assert [p.error is None for p in got] == [p.error is None for p in ref]
        assert "broken.jpg" in next(p for p in got if p.error).source
        for a, b in zip(got, ref):
            assert [n for n, _ in a.labels] == [n for n, _ in b.labels]
            assert [s for _, s in a.labels] == pytest.approx([s for _, s in b.labels], abs=1e-5)
            assert a.counts == b.counts


def test_worker_reading_writes_explanations(tiny_checkpoint: Path, folder: Path, tmp_path: Path) -> None:
    rec = Recognizer.from_checkpoint(tiny_checkpoint)
    preds = rec.predict([folder / "a"], LABELS, top=2, batch_size=2, workers=2, explain_dir=tmp_path)
    assert sorted(Path(p.explanation).name for p in preds if p.error is None) == sorted(
        p.stem + ".png" for p in (folder / "a").glob("*.jpg") if p.name != "broken.jpg"
    )


def test_workers_only_for_files_and_more_than_a_batch(folder: Path) -> None:
    files = sorted(str(p) for p in (folder / "b").glob("*.jpg"))  # 4 files
    assert _worth_workers([folder], 32)  # a folder may hold many
    assert not _worth_workers(files, 32) and _worth_workers(files, 2)
    assert not _worth_workers([object()], 1)  # in-memory images stay in this process


def test_negative_workers_are_refused(tiny_checkpoint: Path, folder: Path) -> None:
    with pytest.raises(ValueError, match="workers"):
        Recognizer.from_checkpoint(tiny_checkpoint).predict([folder], LABELS, workers=-1)


def test_worker_reading_keeps_crop_boxes_and_patch_weights(tiny_checkpoint: Path, folder: Path) -> None:
    """The worker path passes each image's size through `_FileBatches` ("sizes"): the crop box
    a front end draws, and the per-label patch weights, are those of the in-process path."""
    rec = Recognizer.from_checkpoint(tiny_checkpoint)
    ref = rec.predict([folder], LABELS, top=3, workers=0, return_weights=True)
    got = rec.predict([folder], LABELS, top=3, batch_size=2, workers=2, return_weights=True)
    read = [p for p in ref if p.error is None]
    assert len({p.crop_box for p in read}) > 1  # photos and COCO images of several sizes: boxes differ
    for a, b in zip(got, ref):
        assert a.source == b.source
        if b.error is not None:
            assert a.crop_box is None and a.weights == {}
            continue
        assert a.crop_box is not None and a.crop_box == pytest.approx(b.crop_box)
        assert list(a.weights) == [n for n, _ in b.labels] == list(b.weights)  # one [N] row per returned label
        for name, w in b.weights.items():
            assert a.weights[name].shape == w.shape and a.weights[name] == pytest.approx(w, abs=1e-5)
