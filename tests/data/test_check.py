"""The image check: every file decoded once (workers give the same verdicts), verdicts cached by
(path, size, mtime) so a second run decodes nothing, a changed file is checked again, and the cache
is written atomically and ignored when it comes from another decoder version."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import c2srt.data.check as check_mod
from c2srt.data.check import VerdictCache, check_image_files


@pytest.fixture
def corpus(tmp_path: Path, bad_images, make_image) -> tuple[list[Path], dict[str, str]]:
    folder = tmp_path / "images"
    expected = bad_images(folder)
    good = [make_image(folder / f"good{i}.jpg") for i in range(3)]
    return sorted(folder.iterdir()) + [folder / "gone.jpg"], {**expected, "gone.jpg": "no such file", **{p.name: "" for p in good}}


def _verdicts(paths: list[Path], **kw) -> dict[str, str | None]:
    return {p.name: r for p, r in zip(paths, check_image_files(paths, progress=False, **kw))}


def _spy(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = check_mod.image_problem

    def spy(path: str) -> str | None:
        calls.append(os.path.basename(path))
        return real(path)

    monkeypatch.setattr(check_mod, "image_problem", spy)
    return calls


def test_verdicts_for_the_bad_image_corpus(corpus, tmp_path: Path) -> None:
    paths, expected = corpus
    got = _verdicts(paths, cache_dir=tmp_path / "cache")
    for name, word in expected.items():
        if word:
            assert got[name] is not None and word in got[name], (name, got[name])
        else:
            assert got[name] is None, (name, got[name])


def test_second_run_decodes_nothing_and_a_changed_file_is_checked_again(corpus, tmp_path: Path, monkeypatch, make_image) -> None:
    paths, _ = corpus
    cache = tmp_path / "cache"
    calls = _spy(monkeypatch)
    first = _verdicts(paths, cache_dir=cache)
    assert sorted(calls) == sorted(p.name for p in paths if p.exists())  # each existing file decoded once
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".json"  # one cache file per image folder, no temporary left
    data = json.loads(files[0].read_text())
    assert data["format"] == "c2srt-image-check" and len(data["files"]) == len(calls)

    calls.clear()
    assert _verdicts(paths, cache_dir=cache) == first
    assert calls == []  # everything came from the cache

    fixed = paths[0].parent / "truncated.jpg"
    make_image(fixed)  # repaired: new size and mtime
    again = _verdicts(paths, cache_dir=cache)
    assert calls == ["truncated.jpg"] and again["truncated.jpg"] is None


def test_cache_of_another_pillow_or_a_damaged_cache_is_ignored(corpus, tmp_path: Path, monkeypatch) -> None:
    paths, _ = corpus
    cache = tmp_path / "cache"
    _verdicts(paths, cache_dir=cache)
    (file,) = cache.iterdir()
    data = json.loads(file.read_text())
    data["pillow"] = "0.0"
    file.write_text(json.dumps(data))
    calls = _spy(monkeypatch)
    _verdicts(paths, cache_dir=cache)
    assert len(calls) == len([p for p in paths if p.exists()])
    file.write_text("{not json")
    calls.clear()
    _verdicts(paths, cache_dir=cache)
    assert len(calls) == len([p for p in paths if p.exists()])  # rebuilt, not fatal
    assert VerdictCache(paths[0].parent, cache).entries  # and rewritten whole


def test_no_cache(corpus, tmp_path: Path, monkeypatch) -> None:
    paths, _ = corpus
    calls = _spy(monkeypatch)
    _verdicts(paths, cache=False)
    _verdicts(paths, cache=False)
    assert len(calls) == 2 * len([p for p in paths if p.exists()])


def test_worker_processes_give_the_same_verdicts(tmp_path: Path, bad_images, make_image, monkeypatch) -> None:
    folder = tmp_path / "many"
    bad_images(folder)
    for i in range(40):
        make_image(folder / f"ok{i:02d}.png")
    paths = sorted(folder.iterdir())
    inline = _verdicts(paths, workers=1, cache=False)
    monkeypatch.setattr(check_mod, "MIN_FILES_FOR_WORKERS", 1)
    monkeypatch.setattr(check_mod, "CHUNK_SIZE", 4)
    assert _verdicts(paths, workers=2, cache=False) == inline
    assert sum(r is not None for r in inline.values()) == 4
