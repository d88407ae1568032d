"""c2srt.safe_pickle: plain data loads, anything that could run code is refused."""

from __future__ import annotations

import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest

from c2srt.safe_pickle import UnsafePickleError, safe_load_pickle


def _dump(path: Path, obj: object, protocol: int = pickle.HIGHEST_PROTOCOL) -> Path:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=protocol)
    return path


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch SHOULD_NOT_EXIST",))


class _EvilPopen:
    def __reduce__(self):
        return (subprocess.Popen, (["true"],))


@pytest.mark.parametrize("evil", [_Evil(), _EvilPopen(), {"img_names": [_Evil()]}])
def test_refuses_code_execution_and_names_file_and_global(tmp_path: Path, evil: object) -> None:
    path = _dump(tmp_path / "img_names.pkl", evil)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(UnsafePickleError) as info:
            safe_load_pickle(path)
    finally:
        os.chdir(cwd)
    msg = str(info.value)
    assert "img_names.pkl" in msg and ("system" in msg or "Popen" in msg)
    assert not (tmp_path / "SHOULD_NOT_EXIST").exists()
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_accepts_str_lists_and_numpy_string_arrays(tmp_path: Path, protocol: int) -> None:
    names = ["actor_0001_2124494179.jpg", "zebra_0002_1.jpg"]
    obj = {
        "img_names": names,
        "as_bytes": [n.encode() for n in names],
        "unicode_array": np.array(names),
        "object_array": np.array(names, dtype=object),
        "numbers": np.arange(6, dtype=np.int16).reshape(2, 3),
        "misc": (1, 2.5, True, None, {3}, frozenset({4}), 1 + 2j, np.int64(7)),
    }
    out = safe_load_pickle(_dump(tmp_path / "x.pkl", obj, protocol))
    assert out["img_names"] == names
    assert out["as_bytes"] == [n.encode() for n in names]
    assert out["unicode_array"].tolist() == names and out["unicode_array"].dtype.kind == "U"
    assert out["object_array"].tolist() == names
    np.testing.assert_array_equal(out["numbers"], np.arange(6, dtype=np.int16).reshape(2, 3))
    assert out["misc"][:4] == (1, 2.5, True, None) and out["misc"][-1] == 7


def test_refuses_array_subclasses_and_structured_dtypes(tmp_path: Path) -> None:
    with pytest.raises(UnsafePickleError, match="m.pkl"):
        safe_load_pickle(_dump(tmp_path / "m.pkl", np.ma.array([1, 2], mask=[0, 1])))
    with pytest.raises(UnsafePickleError, match="dtype"):
        safe_load_pickle(_dump(tmp_path / "s.pkl", np.zeros(2, dtype=[("a", "i4")])))


def test_corrupt_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "cut.pkl"
    bad.write_bytes(pickle.dumps(["a", "b", "c"])[:-4])
    with pytest.raises(ValueError, match="cut.pkl"):
        safe_load_pickle(bad)
    with pytest.raises(FileNotFoundError, match="nope.pkl"):
        safe_load_pickle(tmp_path / "nope.pkl")
