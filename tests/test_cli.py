"""Every failure a user can cause ends in one line and a documented exit code, through `main([...])`.

Covered: bad weights tags and offline downloads, a failing or unreachable language-model endpoint,
permission errors, a full disk (nothing half-written left), Ctrl-C (a resumable checkpoint during
training), out of memory, a missing optional package, a closed output pipe, an error re-raised by a
DataLoader worker; and the bad-image corpus through `c2srt data check` and `c2srt train`.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# imported at collection, lightning's stderr handler binds to pytest's session stream, not to a test's
import lightning  # noqa: F401
import pytest
import torch

from c2srt import cli
from c2srt.cli import EXIT_CODES, main

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "coco8" / "tiny.yaml"


def run(capsys: pytest.CaptureFixture[str], *argv: Any) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_error_line(err: str, verb: str) -> str:
    """The single error line (other lines on stderr are log records, never a traceback)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith(f"c2srt {verb}: ")]
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------------------- documentation
def test_exit_codes_are_documented_in_help_and_readme(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = capsys.readouterr().out
    for code, meaning in EXIT_CODES:
        assert re.search(rf"^\s+{code}\s+{re.escape(meaning)}$", help_text, re.MULTILINE), code
    readme = (REPO / "README.md").read_text()
    table = {int(m[1]): m[2].replace("\\|", "|") for m in re.finditer(r"^\| (\d+) \| (.*) \|$", readme, re.MULTILINE)}
    assert table == dict(EXIT_CODES)


# ------------------------------------------------------------------------------ weights
def test_an_unknown_weights_tag_is_one_line(photos: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "predict", photos, "--clip", "ViT-B-16", "--pretrained", "none", "--labels", "dog,cat")
    assert rc == 2 and out == ""
    line = one_error_line(err, "predict")
    assert "'none'" in line and "ViT-B-16" in line and "openai" in line  # what was wrong and the valid tags


def test_offline_weights_download_is_one_line(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))  # not a warm user cache
    rc, out, err = run(capsys, "predict", photos, "--clip", "ViT-B-16", "--pretrained", "openai", "--labels", "dog,cat")
    assert rc == 4 and out == ""
    line = one_error_line(err, "predict")
    assert "could not fetch weights 'openai' for ViT-B-16 (offline?)" in line


# ------------------------------------------------------------------------ language model
class _Refusing(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        body = b'{"error": "invalid api key"}'
        self.send_response(401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def refusing_endpoint() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()
    srv.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("endpoint", ["failing", "unreachable"])
def test_a_failing_or_unreachable_language_model_is_one_line(
    endpoint: str, refusing_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from c2srt.graph.llm import make_scorer

    defaults = make_scorer.__kwdefaults__ or {}
    if "max_retries" in defaults:
        monkeypatch.setitem(defaults, "max_retries", 1)  # one retry, not the client's back-off over five
    url = refusing_endpoint if endpoint == "failing" else f"http://127.0.0.1:{_closed_port()}/v1"
    labels = tmp_path / "labels.txt"
    labels.write_text("dog\ncat\nball\n")
    out = tmp_path / "graph.json"
    rc, _, err = run(
        capsys, "graph", "build", "--labels", labels, "--source", "llm", "--llm-backend", "openai",
        "--base-url", url, "--llm-model", "m", "--cache", tmp_path / "cache", "--out", out,
    )  # fmt: skip
    assert rc == 4
    line = one_error_line(err, "graph")
    assert "language model request failed" in line and url in line
    assert ("HTTP 401" in line) if endpoint == "failing" else ("cannot connect" in line)
    assert not out.exists()


# ------------------------------------------------------------------ permission, full disk
def _train_args(coco8: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--config", str(TINY), f"data.root={coco8}", "--output-dir", str(out), *extra]


def test_permission_denied_names_the_file(coco8: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    out = tmp_path / "locked"
    out.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: refuse as the file system would
        import tempfile

        def refuse(prefix: str, suffix: str, dir: str) -> tuple[int, str]:
            raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, f"{prefix}x{suffix}"))

        monkeypatch.setattr(tempfile, "mkstemp", refuse)
    else:
        out.chmod(0o500)
    try:
        rc, _, err = run(capsys, *_train_args(coco8, out))
    finally:
        out.chmod(0o700)
    assert rc == 5
    assert one_error_line(err, "train") == f"c2srt train: error: permission denied: {out / 'config.yaml'}"
    assert os.listdir(out) == []


def test_a_full_disk_while_checkpointing_leaves_nothing_half_written(
    coco8: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import c2srt.io as io_mod

    real = io_mod._fsync_file

    def fill_up(path: Path) -> None:  # the disk fills while the checkpoint is flushed
        if path.suffix == ".ckpt":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path)

    monkeypatch.setattr(io_mod, "_fsync_file", fill_up)
    out = tmp_path / "run"
    rc, _, err = run(capsys, *_train_args(coco8, out, "train.epochs=1"))
    assert rc == 6
    line = one_error_line(err, "train")
    assert line.startswith("c2srt train: error: disk full (No space left on device): ")
    assert str(out / "checkpoints") in line
    left = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in left if ".tmp" in p.name], left  # no temporary file
    assert not (out / "checkpoints" / "last.ckpt").exists() and not (out / "model.safetensors").exists()


# ------------------------------------------------------------------------------- Ctrl-C
def test_ctrl_c_during_training_saves_a_checkpoint_that_resumes(
    coco8: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from c2srt.training import module as train

    steps: list[int] = []
    real_end = train.C2SRTModule.on_train_batch_end

    def press_ctrl_c(self: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        steps.append(self.global_step)
        if self.global_step == 4:  # in the middle of the second epoch (3 steps per epoch)
            raise KeyboardInterrupt

    monkeypatch.setattr(train.C2SRTModule, "on_train_batch_end", press_ctrl_c)
    # the handler before the run: Python's default, or SIG_IGN in a process started in the
    # background (`&`, nohup, some CI runners), which must stay ignored
    before = signal.getsignal(signal.SIGINT)
    out = tmp_path / "run"
    opts = ["data.batch_size=1", "train.epochs=2"]
    rc, _, err = run(capsys, *_train_args(coco8, out, *opts))
    assert rc == 130
    line = one_error_line(err, "train")
    last = out / "checkpoints" / "last.ckpt"
    assert f"checkpoint saved to {last}" in line and f"--config {out / 'config.yaml'} --resume" in line
    assert signal.getsignal(signal.SIGINT) is before  # Lightning's SIG_IGN undone: the handler from before the run
    state = torch.load(last, weights_only=True, map_location="cpu")
    assert state["global_step"] == 4 and not (out / "model.safetensors").exists()

    monkeypatch.setattr(train.C2SRTModule, "on_train_batch_end", real_end)
    rc, _, _ = run(capsys, *_train_args(coco8, out, *opts, "--resume"))
    assert rc == 0 and (out / "model.safetensors").is_file()
    assert torch.load(last, weights_only=True, map_location="cpu")["global_step"] == 6  # finished, no step lost


def test_ctrl_c_while_predicting_keeps_the_json_valid(
    tiny_checkpoint: Path, photos: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from c2srt import predict

    real = predict.Recognizer._run_batch
    calls = []

    def interrupted(self: Any, *args: Any, **kw: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kw)

    monkeypatch.setattr(predict.Recognizer, "_run_batch", interrupted)
    argv = ["predict", photos, "--checkpoint", tiny_checkpoint, "--labels", "dog,cat", "--batch-size", "2", "--format", "json"]
    rc, out, err = run(capsys, *argv, "--no-progress")
    assert rc == 130 and one_error_line(err, "predict") == "c2srt predict: interrupted"
    assert len(json.loads(out)) == 2  # the first batch, in a closed JSON array


# ------------------------------------------------------------------------ other classes
def test_out_of_memory_missing_package_and_a_closed_pipe(
    tiny_checkpoint: Path, photos: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from c2srt import predict

    argv = ["predict", photos, "--checkpoint", tiny_checkpoint, "--labels", "dog,cat", "--no-progress"]

    def oom(*args: Any, **kw: Any) -> Any:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(predict.Recognizer, "iter_predict", oom)
    rc, _, err = run(capsys, *argv)
    assert rc == 7 and "out of memory: lower the batch size (CUDA out of memory." in one_error_line(err, "predict")
    monkeypatch.undo()

    from c2srt import serve

    def no_gradio() -> Any:
        raise ImportError(serve.SERVE_EXTRA_HINT)

    monkeypatch.setattr(serve, "_import_gradio", no_gradio)
    rc, _, err = run(capsys, "serve", "--checkpoint", tiny_checkpoint)
    assert rc == 3 and one_error_line(err, "serve") == f"c2srt serve: error: {serve.SERVE_EXTRA_HINT}"
    monkeypatch.undo()

    class ClosedPipe:
        def write(self, text: str) -> int:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

        def flush(self) -> None:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

        def fileno(self) -> int:
            raise ValueError("not a real file")

    monkeypatch.setattr("sys.stdout", ClosedPipe())
    assert main([str(a) for a in argv]) == 141


def test_an_error_from_a_loader_worker_is_its_own_message() -> None:
    from torch._utils import ExceptionWrapper

    from c2srt.data import DataError, DataProblem

    try:
        try:
            raise DataError([DataProblem("/data/a.jpg", None, "not a readable image (empty file)")], "listing (train)", hint="Fix them.")
        except DataError:
            ExceptionWrapper(where="in DataLoader worker process 0").reraise()
    except DataError as wrapped:
        assert "Original Traceback" in str(wrapped)
        assert cli._classify(wrapped) == (
            2, "listing (train): 1 data problem:\n  /data/a.jpg: not a readable image (empty file)\nFix them."
        )  # fmt: skip


def test_a_bug_is_not_hidden() -> None:
    assert cli._classify(RuntimeError("shape mismatch")) is None
    assert cli._classify(KeyError("x")) is None


# ------------------------------------------------------------------ the bad-image corpus
def bad_listing(root: Path, coco8: Path, bad_images: Any) -> dict[int, str]:
    """A JSONL dataset over COCO8 with 4 undecodable images and 3 listing faults; line -> fault."""
    images = sorted((coco8 / "images" / "train").glob("*.jpg")) + sorted((coco8 / "images" / "val").glob("*.jpg"))
    root.mkdir()
    for img in images:
        shutil.copy(img, root / img.name)
    verdicts = bad_images(root)
    (root / "seen.txt").write_text("person\ndog\ncar\n")
    (root / "unseen.txt").write_text("cat\n")
    rows = [
        json.dumps({"image": images[0].name, "labels": ["person"]}),
        json.dumps({"image": images[1].name, "labels": ["dog", "person"]}),
        *(json.dumps({"image": name, "labels": ["car"]}) for name in verdicts),  # lines 3-6
        json.dumps({"image": images[2].name, "labels": ["zebra"]}),  # 7: unknown label
        '{"image": "x.jpg", "labels": ["car"',  # 8: not JSON
        json.dumps({"image": images[3].name, "labels": ["car"], "negatives": ["car"]}),  # 9: both
        json.dumps({"image": images[2].name, "labels": ["car"]}),
        json.dumps({"image": images[3].name, "labels": ["person", "car"]}),
    ]
    (root / "train.jsonl").write_text("\n".join(rows) + "\n")
    test = [{"image": img.name, "labels": ["cat"] if i % 2 else ["person"]} for i, img in enumerate(images[4:])]
    (root / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
    faults = {3 + i: word for i, word in enumerate(verdicts.values())}
    faults.update({7: "unknown label", 8: "not valid JSON", 9: "both positive and negative"})
    return faults


def _data_args(root: Path) -> list[str]:
    return ["data.name=jsonl", f"data.root={root}", "data.options={}"]


def test_data_check_lists_every_problem_at_once_then_uses_its_cache(
    coco8: Path, tmp_path: Path, bad_images: Any, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import c2srt.data.check as check_mod

    root = tmp_path / "data"
    faults = bad_listing(root, coco8, bad_images)
    monkeypatch.setenv("C2SRT_CACHE", str(tmp_path / "cache"))
    rc, out, err = run(capsys, "data", "check", TINY, *_data_args(root))
    assert rc == 2
    listing = root / "train.jsonl"
    lines = out.splitlines()
    assert len(lines) == len(faults) == 7
    for lineno, word in faults.items():
        assert any(line.startswith(f"{listing}:{lineno}: ") and word in line for line in lines), (lineno, word, out)
    assert "jsonl test: 4 images, no problem" in err and "7 problem(s)" in err

    decoded: list[str] = []
    monkeypatch.setattr(check_mod, "image_problem", lambda p: decoded.append(p))
    rc, again, _ = run(capsys, "data", "check", "--config", TINY, *_data_args(root), "--split", "train")
    assert rc == 2 and again == out and decoded == []  # every verdict from the cache

    rc, _, err = run(capsys, "data", "check", TINY, *_data_args(root), "data.skip_bad=true", "--split", "test")
    assert rc == 0 and "no problem" in err


def test_train_stops_before_training_on_the_corpus_or_skips_and_counts_it(
    coco8: Path, tmp_path: Path, bad_images: Any, capsys
) -> None:
    root = tmp_path / "data"
    faults = bad_listing(root, coco8, bad_images)
    out = tmp_path / "run"
    base = [*_train_args(coco8, out, "train.epochs=1", "train.val_every=1"), *_data_args(root)]
    rc, _, err = run(capsys, *base)
    assert rc == 2 and "7 data problems" in err
    for lineno in faults:
        assert f"train.jsonl:{lineno}: " in err
    assert not (out / "checkpoints").exists()

    rc, _, _ = run(capsys, *base, "data.skip_bad=true")
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data/skipped_rows"] == 7 and metrics["data/skipped_images"] == 0


def test_skip_bad_skips_and_counts_images_that_fail_while_loading(
    coco8: Path, tmp_path: Path, bad_images: Any, capsys, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "data"
    bad_listing(root, coco8, bad_images)
    out = tmp_path / "run"
    argv = [*_train_args(coco8, out, "train.epochs=2"), *_data_args(root), "data.skip_bad=true", "data.check_images=false"]
    rc, _, _ = run(capsys, *argv)
    assert rc == 0  # never fatal
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data/skipped_rows"] == 3  # the listing faults, before training
    assert metrics["data/skipped_images"] == 4  # each broken image counted once over both epochs
    warned = [r.getMessage() for r in caplog.records if "skipped while loading" in r.getMessage()]
    assert len(warned) == 1 and all(name in warned[0] for name in ("empty.jpg", "truncated.jpg", "page.jpg", "bomb.png"))
