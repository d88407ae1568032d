"""`AnswerCache`: a language model's answers kept in a JSONL file, so an interrupted build resumes.

One line per answer, `{"key": ..., <field>: ..., ...}`, keyed by a hash of everything the answer
depends on (model, prompt, the category and what it was asked about). Each answer is appended,
flushed and fsynced as soon as it exists, under a lock (several request threads may write), so a
crash loses at most the line being written; on opening, a line cut short is skipped with a
warning and closed with a newline, so later appends stay readable.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

_logger = logging.getLogger(__name__)


class AnswerCache:
    """Answers by key, read from and appended to a JSONL file (None: in memory only).

    Args:
        path: the JSONL file (created on the first answer; its folder too).
        field: the record field holding the answer; a line without it is skipped as unreadable.

    Example:
        >>> cache = AnswerCache(None)
        >>> cache.put("k1", "an answer", category="dog")
        >>> cache.get("k1")
        'an answer'
    """

    def __init__(self, path: str | os.PathLike[str] | None, *, field: str = "content") -> None:
        self.path = Path(path) if path is not None else None
        self.field = field
        self._answers: dict[str, Any] = {}
        self._lock = threading.Lock()
        if self.path is not None and self.path.is_file():
            self._read()
            with self.path.open("rb+") as fh:  # end a line cut short by a crash, so appends stay readable
                fh.seek(0, os.SEEK_END)
                if fh.tell():
                    fh.seek(-1, os.SEEK_END)
                    if fh.read(1) != b"\n":
                        fh.write(b"\n")

    def _read(self) -> None:
        assert self.path is not None
        with self.path.open(encoding="utf-8", errors="replace") as fh:
            for lineno, line in enumerate(fh, start=1):
                try:
                    rec = json.loads(line)
                    self._answers[str(rec["key"])] = rec[self.field]
                except (json.JSONDecodeError, KeyError, TypeError):
                    _logger.warning("%s:%d: unreadable cache line skipped (an interrupted write?)", self.path, lineno)

    def __len__(self) -> int:
        return len(self._answers)

    def __contains__(self, key: object) -> bool:
        return key in self._answers

    def get(self, key: str) -> Any | None:
        """The answer stored under `key`, or None."""
        return self._answers.get(key)

    def put(self, key: str, answer: Any, **extra: Any) -> None:
        """Store `answer` (JSON-ready) under `key`, with `extra` fields for a reader of the file."""
        with self._lock:
            self._answers[key] = answer
            if self.path is None:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            rec = {"key": key, **extra, self.field: answer}
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
