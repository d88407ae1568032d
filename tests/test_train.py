"""End-to-end training and evaluation through the CLI, in process, on the real COCO8 images.

Tiny sizes (the `test-tiny` random backbone, 3 training images, a few steps, no loader workers),
so the whole file runs in well under a minute on CPU.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from c2srt.cli import main
from c2srt.config import load_config

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "coco8" / "tiny.yaml"


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    """Toy tensors gain nothing from threads, and on a busy machine two spinning OpenMP threads
    make each tiny op 10-40x slower: run this file single-threaded."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _strict_json(path: Path) -> Any:
    """JSON as a strict parser reads it: NaN / Infinity are not JSON and must not be written."""

    def _refuse(token: str) -> Any:
        raise AssertionError(f"{path}: {token} is not valid JSON")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _train_args(coco8: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--config", str(TINY), f"data.root={coco8}", "--output-dir", str(out), "train.log_every=1", *extra]


# ------------------------------------------------------------------------- train, then eval
def test_train_then_eval_on_coco8(coco8: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(_train_args(coco8, out, "train.epochs=1")) == 0
    model = out / "model.safetensors"
    assert model.is_file()
    assert f"model written to {model}" in capsys.readouterr().out
    for name in ("config.yaml", "env.json", "graph.json", "metrics.json", "checkpoints/last.ckpt"):
        assert (out / name).is_file(), name
    env = _strict_json(out / "env.json")
    assert env["seed"] == 0 and env["torch"] == torch.__version__
    # the run's own config.yaml reproduces the run's config
    same = [f"data.root={coco8}", f"output_dir={out}", "train.log_every=1", "train.epochs=1"]
    assert load_config(out / "config.yaml") == load_config(TINY, same)
    # training changed trainable weights only (fit seeds with cfg.seed before building the model)
    from c2srt.model import create_model

    torch.manual_seed(0)
    fresh = create_model(load_config(out / "config.yaml").model)
    trainable = {k for k, p in fresh.named_parameters() if p.requires_grad}
    init = fresh.state_dict()
    trained = _weights(model)
    changed = {k for k in trained if not torch.equal(trained[k], init[k])}
    assert any(k.startswith("backbone.visual.") for k in changed), "no backbone weight was trained"
    assert changed <= trainable, f"frozen weights changed: {sorted(changed - trainable)[:5]}"

    ev = tmp_path / "eval"
    assert main(["eval", "--checkpoint", str(model), "--output-dir", str(ev)]) == 0
    printed = capsys.readouterr().out
    assert "zsl" in printed and "gzsl" in printed
    results = _strict_json(ev / "eval.json")
    for block, n_classes in (("zsl", 3), ("gzsl", 80)):  # 3 unseen classes (tiny.yaml); 77 seen + 3 unseen
        assert results[f"{block}/n_classes"] == n_classes
        assert results[f"{block}/n_images"] == 4  # COCO8 val
        for metric in ("mAP", "P@3", "R@3", "F1@3"):
            value = results[f"{block}/{metric}"]
            assert isinstance(value, float) and math.isfinite(value) and 0.0 <= value <= 1.0, (block, metric, value)
    # top-5 over 3 unseen columns is undefined: written as JSON null, not NaN
    assert results["zsl/P@5"] is None
    assert math.isfinite(results["gzsl/P@5"])
    # the checkpoint evaluates exactly as the end of training did (same weights, same forward path)
    assert results["gzsl/mAP"] == pytest.approx(_strict_json(out / "metrics.json")["gzsl/mAP"], abs=1e-9)

    # overrides without --config apply to the checkpoint's own config (data stays COCO8)
    ev1 = tmp_path / "eval_top1"
    assert main(["eval", "--checkpoint", str(model), "eval.topk=[1]", "--output-dir", str(ev1)]) == 0
    top1 = _strict_json(ev1 / "eval.json")
    assert top1["gzsl/n_classes"] == 80 and "gzsl/P@1" in top1 and "gzsl/P@3" not in top1
    assert top1["gzsl/mAP"] == results["gzsl/mAP"]


# ------------------------------------------------------------------------- the calibrator
def test_training_with_a_holdout_stores_a_calibrator_fitted_on_the_held_out_images(
    coco8: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`calibration.holdout`: those training images are not trained on; the exported model carries a
    calibrator fitted on them, and `c2srt calibrate` without --config refits it on the same images."""
    import logging

    from c2srt.calibration import load_calibrator
    from c2srt.checkpoint import read_checkpoint_info

    out = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="c2srt"):
        assert main(_train_args(coco8, out, "train.epochs=1", "calibration.holdout=1", "eval.batch_size=2")) == 0
    assert "training on 2 images (1 more held out for the calibrator)" in caplog.text
    model = out / "model.safetensors"
    info = read_checkpoint_info(model)
    assert info.calibration is not None
    prov = info.calibration["provenance"]
    assert prov["images"] == 1 and prov["split"] == "train" and prov["heldout"] == {"holdout": 1.0, "max_holdout": 1000, "seed": 0}
    assert prov["labels"] == info.seen  # fitted on the seen labels
    cal = load_calibrator(model)
    assert cal is not None and cal.method == "platt"
    probs = cal(torch.linspace(-1, 1, 11))
    assert bool((probs[1:] >= probs[:-1]).all()) and 0 < float(probs.min()) <= float(probs.max()) < 1

    # the same held-out image, scored as at export: `c2srt calibrate` refits the same map
    again = tmp_path / "again.safetensors"
    assert main(["calibrate", "--checkpoint", str(model), "--out", str(again)]) == 0
    refit = load_calibrator(again)
    assert refit is not None and refit.provenance["images"] == 1
    for k, v in cal.state_dict().items():
        torch.testing.assert_close(refit.state_dict()[k], v, rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------------- kill and resume
class _Killed(RuntimeError):
    """Stands for the process dying (SIGKILL, pre-emption) between two epochs."""


def _with_callbacks(monkeypatch: pytest.MonkeyPatch, *callbacks: Any) -> None:
    import c2srt.training.run as train

    real = getattr(train.build_trainer, "__wrapped__", train.build_trainer)  # replace, never stack
    extra = list(callbacks)

    def build(cfg: Any, out: Path, *, callbacks: list | None = None, **kw: Any) -> Any:
        return real(cfg, out, callbacks=[*(callbacks or []), *extra], **kw)

    build.__wrapped__ = real  # type: ignore[attr-defined]
    monkeypatch.setattr(train, "build_trainer", build)


def _step_recorder(log: list[tuple[int, int]]) -> Any:
    import lightning as L

    class Record(L.Callback):
        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            log.append((trainer.current_epoch, trainer.global_step))

    return Record()


def _killer(at_epoch: int) -> Any:
    import lightning as L

    class Kill(L.Callback):
        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            if trainer.current_epoch == at_epoch:
                raise _Killed(f"killed at the start of epoch {at_epoch}")

    return Kill()


def test_resume_after_a_kill_is_bit_identical(coco8: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 3 training images, batch 1: 3 steps per epoch; RandAugment on, so augmentation must resume too
    opts = ["train.epochs=2", "data.batch_size=1", "data.rand_augment=true", "train.warmup_epochs=1"]
    full_log: list[tuple[int, int]] = []
    _with_callbacks(monkeypatch, _step_recorder(full_log))
    assert main(_train_args(coco8, tmp_path / "full", *opts)) == 0
    assert [e for e, _ in full_log] == [0, 0, 0, 1, 1, 1]

    killed = tmp_path / "killed"
    _with_callbacks(monkeypatch, _killer(at_epoch=1))
    with pytest.raises(_Killed):
        main(_train_args(coco8, killed, *opts))
    assert (killed / "checkpoints" / "last.ckpt").is_file()
    assert not (killed / "model.safetensors").exists()

    resumed_log: list[tuple[int, int]] = []
    _with_callbacks(monkeypatch, _step_recorder(resumed_log))
    assert main(_train_args(coco8, killed, *opts, "--resume")) == 0
    assert resumed_log == full_log[3:], "the resumed run did not continue from the end of epoch 1"

    full, resumed = _weights(tmp_path / "full" / "model.safetensors"), _weights(killed / "model.safetensors")
    assert full.keys() == resumed.keys()
    differing = [k for k in full if not torch.equal(full[k], resumed[k])]
    assert not differing, f"weights differ after resuming: {differing[:5]}"
    # the learning-curve log covers the whole run, not only the part after the resume
    import csv

    with open(killed / "logs" / "metrics.csv", newline="") as fh:
        logged = [(int(r["epoch"]), int(r["step"])) for r in csv.DictReader(fh) if r["train/loss"]]
    assert logged == [(e, s - 1) for e, s in full_log]


def _csv_rows(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_metrics_csv_continues_from_the_checkpoint_step(tmp_path: Path) -> None:
    from c2srt.training.trainer import _CsvLogger

    log = tmp_path / "logs" / "metrics.csv"
    killed = _CsvLogger(tmp_path, resume_step=None)
    for step in range(5):  # killed after step 4; its last checkpoint was taken after step 2
        killed.log_metrics({"train/loss": float(step)}, step=step)
    assert [r["step"] for r in _csv_rows(log)] == ["0", "1", "2", "3", "4"], "rows must reach the disk as logged"

    resumed = _CsvLogger(tmp_path, resume_step=3)  # steps 3 and 4 are run, and logged, again
    resumed.log_metrics({"train/loss": 30.0}, step=3)
    resumed.log_metrics({"val/gzsl/mAP": 0.5}, step=3)  # a column the file did not have
    resumed.finalize("failed")  # killed again; a second resume from the same checkpoint
    again = _CsvLogger(tmp_path, resume_step=3)
    again.log_metrics({"train/loss": 300.0}, step=3)
    again.finalize("success")
    rows = _csv_rows(log)
    assert [(r["step"], r["train/loss"]) for r in rows] == [("0", "0.0"), ("1", "1.0"), ("2", "2.0"), ("3", "300.0")]
    assert "val/gzsl/mAP" in rows[0]


def test_resume_without_a_checkpoint_fails_clearly(
    tmp_path: Path, coco8: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "nothing"
    assert main(_train_args(coco8, out, "--resume")) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and str(out / "checkpoints" / "last.ckpt") in err


# ------------------------------------------------------------------------------- configs
def test_print_config_reloads_to_the_same_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "never"
    argv = ["train", "--config", str(TINY), "train.lr=3e-4", "model.head.alpha=0.7"]
    argv += ["--seed", "5", "--output-dir", str(out)]  # flags after the overrides, and overrides between flags below
    assert main([*argv, "--print-config"]) == 0
    text = capsys.readouterr().out
    # the same run with the overrides and flags interleaved prints the same config
    mixed = ["train", "--config", str(TINY), "--seed", "5", "train.lr=3e-4", "--print-config", "model.head.alpha=0.7"]
    assert main([*mixed, "--output-dir", str(out)]) == 0
    assert capsys.readouterr().out == text
    printed = tmp_path / "printed.yaml"
    printed.write_text(text)
    cfg = load_config(printed)
    assert cfg == load_config(TINY, ["train.lr=3e-4", "model.head.alpha=0.7", "seed=5", f"output_dir={out}"])
    assert (cfg.train.lr, cfg.model.head.alpha, cfg.seed, cfg.model.backbone) == (3e-4, 0.7, 5, "test-tiny")
    assert not out.exists(), "--print-config must not start a run"


@pytest.mark.parametrize("where", ["override", "yaml"])
def test_config_typo_exits_2_naming_the_key(where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if where == "override":
        argv = ["train", "--config", str(TINY), "train.lrr=1e-4", "--output-dir", str(tmp_path / "run")]
        key = "train.lrr"
    else:
        bad = tmp_path / "typo.yaml"
        bad.write_text(TINY.read_text().replace("  batch_size: 4\n", "  batch_sise: 4\n"))
        argv = ["train", "--config", str(bad), "--output-dir", str(tmp_path / "run")]
        key = "data.batch_sise"
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert key in err and "c2srt train: error" in err
    if where == "yaml":
        assert str(tmp_path / "typo.yaml") in err
    assert not (tmp_path / "run").exists()


def test_eval_config_typo_exits_2(tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--checkpoint", str(tiny_checkpoint), "eval.topkk=[3]", "--output-dir", str(tmp_path)]) == 2
    assert "eval.topkk" in capsys.readouterr().err
    assert not (tmp_path / "eval.json").exists()


def test_stray_arguments_are_still_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--config", str(TINY), "--no-such-flag"])
    assert exc.value.code == 2
    assert "--no-such-flag" in capsys.readouterr().err


# ------------------------------------------------------------------------------ bad data
def _listing(root: Path, coco8: Path) -> Path:
    """A small JSONL dataset over COCO8 images; train.jsonl line 3 names an image that does not exist."""
    root.mkdir()
    images = sorted((coco8 / "images" / "train").glob("*.jpg")) + sorted((coco8 / "images" / "val").glob("*.jpg"))
    for img in images:
        shutil.copy(img, root / img.name)
    (root / "seen.txt").write_text("person\ndog\ncar\n")
    (root / "unseen.txt").write_text("cat\n")
    rows = [
        {"image": images[0].name, "labels": ["person"]},
        {"image": images[1].name, "labels": ["dog", "person"]},
        {"image": "missing_photo.jpg", "labels": ["car"]},
        {"image": images[2].name, "labels": ["car"]},
    ]
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    test = [{"image": img.name, "labels": ["cat"] if i % 2 else ["person"]} for i, img in enumerate(images[4:])]
    (root / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
    return root


def test_missing_image_stops_before_training(coco8: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _listing(tmp_path / "data", coco8)
    out = tmp_path / "run"
    argv = [
        "train", "--config", str(TINY), "--output-dir", str(out),
        "data.name=jsonl", f"data.root={root}", "data.options={}", "train.epochs=1", "train.val_every=0",
        "graph.encoder=clip",
    ]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{root / 'missing_photo.jpg'}: image file not found" in err
    assert "data.skip_bad=true" in err
    assert not (out / "checkpoints").exists() and not (out / "model.safetensors").exists()

    assert main([*argv, "data.skip_bad=true"]) == 0
    assert (out / "model.safetensors").is_file()
    from c2srt.checkpoint import load_checkpoint

    _, info = load_checkpoint(out / "model.safetensors")
    assert list(info.seen) == ["person", "dog", "car"] and list(info.unseen) == ["cat"]
    # graph.encoder=clip: the graph was built with the model's own text tower, not MiniLM
    assert _strict_json(out / "graph.json")["provenance"]["encoder"] == "clip_text_tower"


# ------------------------------------------------------------------- deterministic data order
def test_epoch_sampler_is_a_function_of_seed_and_epoch_and_shards_all_images() -> None:
    from c2srt.training.sampling import EpochSampler, EpochSeeded

    data = EpochSeeded(list(range(7)), seed=3)  # type: ignore[arg-type]

    def order(epoch: int, rank: int = 0, world: int = 1, seed: int = 3) -> list[int]:
        s = EpochSampler(data, seed=seed, shuffle=True, rank=rank, world_size=world)
        s.set_epoch(epoch)
        return list(s)

    assert order(1) == order(1) and sorted(order(1)) == list(range(7))
    assert order(1) != order(2) and order(1, seed=4) != order(1)
    shards = [order(5, rank=r, world=2) for r in range(2)]
    assert [len(s) for s in shards] == [4, 4]  # padded so both ranks step together
    assert set(shards[0]) | set(shards[1]) == set(range(7))
    assert len(EpochSampler(data, seed=3, shuffle=True, rank=1, world_size=2)) == 4


def test_augmentation_is_a_function_of_seed_epoch_and_index(coco8: Path) -> None:
    from c2srt.config import DataCfg
    from c2srt.data import build_dataset, build_transform
    from c2srt.training.sampling import EpochSeeded

    tf = build_transform(32, train=True, rand_augment=True)
    data = EpochSeeded(build_dataset(DataCfg(name="coco", root=str(coco8)), "train", tf), seed=0)
    data.epoch = 1
    a = data[0]["image"]
    torch.manual_seed(123)  # the global RNG state does not matter ...
    assert torch.equal(data[0]["image"], a)
    data.epoch = 2  # ... the epoch does
    assert not torch.equal(data[0]["image"], a)


# ------------------------------------------------------------------ the output a person reads
def _cli(argv: list[str], *, env: dict[str, str] | None = None, script: Path | None = None, timeout: float = 600) -> tuple[int, str]:
    """Run `c2srt ARGV` (or `script ARGV`) in fresh processes, as a user would; (exit code, stdout + stderr).

    On a timeout the whole process group (Lightning's DDP ranks included) is killed.
    """
    import os
    import signal
    import subprocess
    import sys

    import c2srt

    src = str(Path(c2srt.__file__).resolve().parents[1])  # the c2srt under test, also in the child processes
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    full_env.update({"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "NO_COLOR": "1"})
    if sys.platform.startswith("linux"):
        full_env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # DDP on CPU over loopback: no network needed
    full_env.update(env or {})
    cmd = [sys.executable, str(script)] if script else [sys.executable, "-m", "c2srt.cli"]
    proc = subprocess.Popen(
        [*cmd, *argv], env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        raise AssertionError(f"c2srt {' '.join(argv)} ran over {timeout} s:\n{output}") from None
    return proc.returncode, output


def _assert_readable(output: str) -> None:
    """Each line once; no advertisement, no library load report or bar, no raw warning."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    repeated = sorted({line for line in lines if lines.count(line) > 1})
    assert not repeated, f"lines printed more than once: {repeated}\n{output}"
    for noise in ("Tip:", "litlogger", "LOAD REPORT", "Loading weights", "Warning:", ".py:"):
        assert noise not in output, f"{noise!r} in the output:\n{output}"


def test_train_output_has_each_line_once(coco8: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    code, output = _cli(["train", "--config", str(TINY), f"data.root={coco8}", "--output-dir", str(out)])
    assert code == 0, output
    _assert_readable(output)
    # the lines that matter are there: what runs where, each validation, where the model went
    assert f"training on 3 images (77 seen labels) for 2 epochs on cpu; validation on 4 images (80 labels); writing to {out}" in output
    assert "epoch 1/2 validation: 4 images · zsl mAP" in output and "epoch 2/2 validation" in output
    assert f"model written to {out / 'model.safetensors'}" in output


# ------------------------------------------------------------------ two processes (DDP)
SPY_SCRIPT = Path(__file__).with_name("_cli_spy.py")


def _coco8_with_odd_val(coco8: Path, root: Path) -> Path:
    """COCO8 with 3 validation images: over 2 ranks the sampler pads one, which must count once;
    and 4 usable training images (one twice, under another name), so that with one held out for
    the calibrator 3 train: over 2 ranks the sampler pads one there too."""
    shutil.copytree(coco8, root)
    shutil.copy(root / "images" / "train" / "000000000009.jpg", root / "images" / "train" / "000000000010.jpg")
    shutil.copy(root / "labels" / "train" / "000000000009.txt", root / "labels" / "train" / "000000000010.txt")
    dropped = sorted((root / "images" / "val").glob("*.jpg"))[-1]
    dropped.unlink()
    (root / "labels" / "val" / f"{dropped.stem}.txt").unlink(missing_ok=True)
    return root


def _writes(spy: Path, rank: int) -> set[str]:
    path = spy / f"writes.rank{rank}.txt"
    return set(path.read_text().split()) if path.is_file() else set()


def _losses(spy: Path, rank: int) -> dict[int, float]:
    rows = [json.loads(line) for line in (spy / f"losses.rank{rank}.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows}


def _logged_losses(run: Path) -> dict[int, float]:
    import csv

    with open(run / "logs" / "metrics.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["train/loss"]]
    steps = [int(r["step"]) for r in rows]
    assert len(steps) == len(set(steps)), f"steps logged twice: {steps}"
    return {int(r["step"]): float(r["train/loss"]) for r in rows}


@pytest.mark.slow
def test_two_processes_write_once_sync_metrics_count_each_image_once_and_resume(coco8: Path, tmp_path: Path) -> None:
    data = _coco8_with_odd_val(coco8, tmp_path / "coco7")
    ddp = ["--devices", "2", "train.accelerator=cpu", "train.strategy=ddp", "train.epochs=2", "data.batch_size=1"]
    ddp += ["eval.batch_size=1", "graph.encoder=clip"]  # 2 steps per epoch per rank; the model's text tower ranks graph candidates
    ddp += ["calibration.holdout=1"]  # one training image held out: rank 0 alone fits the calibrator at export
    run, spy, killed = tmp_path / "run", tmp_path / "spy", tmp_path / "killed"
    spy.mkdir()
    code, output = _cli(
        _train_args(data, run, *ddp), script=SPY_SCRIPT, env={"C2SRT_SPY": str(spy), "C2SRT_SPY_SNAPSHOT": str(killed)}
    )
    assert code == 0, output
    _assert_readable(output)
    assert "on cpu, 2 processes (DDP)" in output

    # one writer for every file: rank 0 wrote them all, rank 1 nothing
    written = _writes(spy, 0)
    for name in ("model.safetensors", "metrics.json", "config.yaml", "env.json", "curves.png", "graph.json", "logs/metrics.csv"):
        assert name in written, f"rank 0 did not write {name}: {sorted(written)}"
    assert any(w.startswith("checkpoints/") and w.endswith(".ckpt") for w in written)
    assert _writes(spy, 1) == set(), "rank 1 wrote files of the run"
    from c2srt.checkpoint import read_checkpoint_info

    calibration = read_checkpoint_info(run / "model.safetensors").calibration
    assert calibration is not None and calibration["provenance"]["images"] == 1, calibration

    # the logged training loss is the mean over both ranks at every step (sync_dist)
    rank0, rank1 = _losses(spy, 0), _losses(spy, 1)
    logged = _logged_losses(run)
    assert sorted(logged) == sorted(rank0) == sorted(rank1) == [0, 1, 2, 3]
    assert any(rank0[s] != rank1[s] for s in logged), "both ranks saw the same images"
    for step, value in logged.items():
        assert value == pytest.approx((rank0[step] + rank1[step]) / 2, rel=1e-6), step

    # evaluation counts each of the 3 images once: the same figures as one process on the same model
    metrics = _strict_json(run / "metrics.json")
    assert metrics["gzsl/n_images"] == 3
    assert main(["eval", "--checkpoint", str(run / "model.safetensors"), "--output-dir", str(tmp_path / "eval")]) == 0
    assert _strict_json(tmp_path / "eval" / "eval.json") == metrics

    # the run folder as a kill when epoch 1 started left it, resumed under DDP: the same model
    full = _weights(run / "model.safetensors")
    shutil.rmtree(run)
    killed.rename(run)  # the same folder: checkpoints remember where they were written
    resumed_spy = tmp_path / "spy_resumed"
    resumed_spy.mkdir()
    code, output = _cli(_train_args(data, run, *ddp, "--resume"), script=SPY_SCRIPT, env={"C2SRT_SPY": str(resumed_spy)})
    assert code == 0, output
    _assert_readable(output)
    assert _writes(resumed_spy, 1) == set(), "rank 1 wrote files of the resumed run"
    assert sorted(_losses(resumed_spy, 0)) == [2, 3], "the resumed run did not start at epoch 1"
    resumed = _weights(run / "model.safetensors")
    assert full.keys() == resumed.keys() and any(k.startswith("calibrator.") for k in full)
    assert not [k for k in full if not torch.equal(full[k], resumed[k])], "weights (or calibrator) differ after resuming under DDP"
    assert _logged_losses(run) == logged  # the log covers the whole run, each step once


def test_validation_on_the_first_test_images_only(coco8: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`train.val_images=N`: each epoch's validation scores the first N test images (the curves,
    for less time); `c2srt eval` and the test loader still read every test image."""
    from c2srt.config import Cfg, load_config, merge_config
    from c2srt.model import create_model_and_transforms
    from c2srt.training import C2SRTDataModule

    out = tmp_path / "run"
    with caplog.at_level("INFO", logger="c2srt"):
        assert main(_train_args(coco8, out, "train.epochs=1", "train.val_images=2")) == 0
    printed = caplog.text
    assert "validation on 2 images" in printed and "validation: 2 images" in printed

    cfg = load_config(TINY, [f"data.root={coco8}", "train.val_images=2"])
    _, train_tf, eval_tf = create_model_and_transforms(cfg.model, cfg.data)
    dm = C2SRTDataModule(cfg, train_transform=train_tf, eval_transform=eval_tf)
    dm.setup("fit")
    assert len(dm.val_set) == 2 and len(dm.test_set) == 4
    for i in range(2):
        assert torch.equal(dm.val_set[i]["target"], dm.test_set[i]["target"])
        assert torch.equal(dm.val_set[i]["image"], dm.test_set[i]["image"])
    assert sum(len(b["target"]) for b in dm.test_dataloader()) == 4
    assert merge_config(Cfg(), {"train": {"val_images": 10}}).train.val_images == 10
