"""c2srt.io: atomic writes leave no temporary file, keep the old file on failure and name the file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from c2srt.io import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    read_json,
    write_json,
)


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
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
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


def test_atomic_open_writes_through_a_file_object(tmp_path: Path) -> None:
    import torch

    from c2srt.io import atomic_open

    target = tmp_path / "ckpt" / "last.ckpt"
    with atomic_open(target) as fh:
        torch.save({"w": torch.arange(3)}, fh)
    assert torch.load(target, weights_only=True)["w"].tolist() == [0, 1, 2]
    with atomic_open(tmp_path / "t.csv", "w") as fh:
        fh.write("a,b\n")
    assert (tmp_path / "t.csv").read_text() == "a,b\n"
    with pytest.raises(ValueError, match="mode"), atomic_open(tmp_path / "x", "ab"):
        pass


def test_a_full_disk_names_the_destination_and_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    import errno

    import c2srt.io as io_mod

    target = tmp_path / "report.json"
    target.write_text("old")

    def full(path: Path) -> None:  # as a disk that fills up while the data is flushed
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io_mod, "_fsync_file", full)
    with pytest.raises(OSError) as err:
        write_json(target, {"a": 1})
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(target)
    assert target.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["report.json"]


def test_errors_on_our_temporary_file_name_the_destination(tmp_path: Path, monkeypatch) -> None:
    import errno
    import tempfile

    def refused(prefix: str, suffix: str, dir: Path) -> tuple[int, str]:
        raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, f"{prefix}abc{suffix}"))

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(PermissionError) as err:
        atomic_write_text(tmp_path / "config.yaml", "x")
    assert err.value.filename == str(tmp_path / "config.yaml")


@pytest.mark.parametrize("code, raised", [("EINVAL", False), ("EIO", True)])
def test_fsync_unsupported_is_fine_but_a_failed_flush_is_not(tmp_path: Path, monkeypatch, code: str, raised: bool) -> None:
    import errno

    def fsync(fd: int) -> None:
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))

    monkeypatch.setattr(os, "fsync", fsync)
    target = tmp_path / "a.txt"
    if raised:
        with pytest.raises(OSError, match="a.txt"):
            atomic_write_text(target, "x")
        assert not target.exists() and os.listdir(tmp_path) == []
    else:
        atomic_write_text(target, "x")
        assert target.read_text() == "x"


def test_cache_root(monkeypatch, tmp_path: Path) -> None:
    from c2srt.io import CACHE_ENV, cache_root

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    assert cache_root(tmp_path / "given") == tmp_path / "given"
    monkeypatch.delenv(CACHE_ENV)
    assert cache_root() == Path.home() / ".cache" / "c2srt"
