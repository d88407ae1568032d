"""c2srt.vocabulary: typed lists, label files and checked lists, with the errors people see."""

from __future__ import annotations

from pathlib import Path

import pytest

from c2srt.vocabulary import (
    check_labels,
    check_unique,
    parse_labels,
    read_label_file,
    read_vocabulary,
)


def test_parse_labels_splits_trims_collapses_and_keeps_repeats_once() -> None:
    assert parse_labels("dog, cat\n  grass ,,dog\r\ntennis   racket\n") == ["dog", "cat", "grass", "tennis racket"]
    assert parse_labels("single") == ["single"]
    assert parse_labels("hot dog, dog") == ["hot dog", "dog"]  # a label is never split on spaces


@pytest.mark.parametrize("text", ["", "   ", ",,\n , ", None])
def test_parse_labels_rejects_empty(text: str | None) -> None:
    with pytest.raises(ValueError, match="vocabulary is empty"):
        parse_labels(text)


def test_read_label_file(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_bytes("\ufeff# a comment\ndog\n\n  traffic light  \ncat\n".encode())
    assert read_label_file(path) == ["dog", "traffic light", "cat"]
    path.write_text("dog\ncat\n\ndog\n")
    with pytest.raises(ValueError, match=r"labels.txt:4: duplicate label 'dog' \(first on line 1\)"):
        read_label_file(path)
    path.write_text("# only a comment\n\n")
    with pytest.raises(ValueError, match="no labels in this class list"):
        read_label_file(path, "class list")
    path.write_bytes(b"dog\ncaf\xe9\n")  # Latin-1, not UTF-8
    with pytest.raises(ValueError, match=r"labels.txt:2: not UTF-8"):
        read_label_file(path)
    with pytest.raises(FileNotFoundError, match=r"seen label list not found: .*missing.txt"):
        read_label_file(tmp_path / "missing.txt", "seen label list")


def test_check_labels_names_the_bad_label() -> None:
    assert check_labels([" dog", "cat "]) == ["dog", "cat"]
    with pytest.raises(ValueError, match="empty"):
        check_labels([])
    with pytest.raises(ValueError, match="label 2 is empty"):
        check_labels(["dog", "  "])
    with pytest.raises(ValueError, match=r"the vocabulary: duplicate label 'dog' \(positions 1 and 3\)"):
        check_labels(["dog", "cat", "dog"])


def test_check_unique_is_the_one_duplicate_check() -> None:
    check_unique(["dog", "cat"])
    with pytest.raises(ValueError, match=r"^the vocabulary: duplicate label 'b' \(positions 2 and 4\)$"):
        check_unique(["a", "b", "c", "b", "a"])
    with pytest.raises(ValueError, match=r"^u.csv:7: duplicate unseen label '/m/1' \(first on line 3\)$"):
        check_unique(["/m/0", "/m/1", "/m/1"], what="u.csv", lines=[2, 3, 7], kind="unseen label")


def test_read_vocabulary_takes_exactly_one_source(tmp_path: Path) -> None:
    path = tmp_path / "v.txt"
    path.write_text("dog\ncat\n")
    assert read_vocabulary(labels_file=path) == read_vocabulary(labels="dog, cat") == ["dog", "cat"]
    with pytest.raises(ValueError, match="not both or neither"):
        read_vocabulary()
    with pytest.raises(ValueError, match="not both or neither"):
        read_vocabulary(labels="dog", labels_file=path)
