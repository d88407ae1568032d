"""c2srt.io: atomic writes leave no temporary file and keep the old file on failure."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from c2srt.io import atomic_path, atomic_write_bytes, atomic_write_text, read_json, write_json


def test_atomic_write_text_and_bytes_leave_only_the_file(tmp_path: Path) -> None:
    p = atomic_write_text(tmp_path / "sub" / "a.txt", "héllo\n")
    assert p.read_text(encoding="utf-8") == "héllo\n"
    atomic_write_bytes(tmp_path / "sub" / "a.txt", b"\x00\x01")
    assert (tmp_path / "sub" / "a.txt").read_bytes() == b"\x00\x01"
    assert sorted(os.listdir(tmp_path / "sub")) == ["a.txt"]


def test_new_file_gets_umask_mode_not_mkstemp_0600(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "m.txt", "x")
    finally:
        os.umask(mask)
    from c2srt.io import _umask

    assert p.stat().st_mode & 0o777 == 0o666 & ~_umask()


def test_atomic_path_keeps_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "model.safetensors"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".safetensors"
            tmp.write_text("half-written")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors"]


def test_atomic_path_replaces_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_text("old")
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_write_json_failure_keeps_old_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    write_json(target, {"a": 1})
    with pytest.raises(TypeError):
        write_json(target, {"a": object()})
    assert read_json(target) == {"a": 1}
    assert os.listdir(tmp_path) == ["r.json"]


def test_write_json_converts_numpy_and_paths(tmp_path: Path) -> None:
    target = write_json(tmp_path / "r.json", {"x": np.float32(0.5), "v": np.arange(3), "p": Path("a/b")})
    assert json.loads(target.read_text()) == {"x": 0.5, "v": [0, 1, 2], "p": "a/b"}
    assert target.read_text().endswith("\n")


def test_read_json_names_file_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "a": 1,\n  "b": \n}\n')
    with pytest.raises(ValueError, match=r"bad\.json:4:1: not valid JSON"):
        read_json(bad)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_json(tmp_path / "missing.json")
