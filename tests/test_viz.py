"""viz.plot_curves: the curves it draws are the numbers in the metrics file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from c2srt import viz

CSV = """epoch,step,train/loss_step,val/mAP,val/seen/mAP
0,9,0.90,,
0,19,0.70,,
0,19,,0.25,0.30
1,29,0.50,,
1,39,0.40,,
1,39,,0.50,0.55
"""


def test_plot_curves_draws_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = tmp_path / "metrics.csv"
    metrics.write_text(CSV)
    figures: list[Any] = []
    save = viz.save_picture
    monkeypatch.setattr(viz, "save_picture", lambda fig, out: (figures.append(fig), save(fig, out))[1])
    out = viz.plot_curves(metrics, tmp_path / "curves" / "c.png", title="run 1")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    loss_ax, map_ax = figures[0].axes[:2]
    [loss] = loss_ax.get_lines()
    assert list(loss.get_xdata()) == [9, 19, 29, 39] and list(loss.get_ydata()) == pytest.approx([0.9, 0.7, 0.5, 0.4])
    curves = {line.get_label(): list(line.get_ydata()) for line in map_ax.get_lines()}
    assert curves == {"mAP": pytest.approx([25.0, 50.0]), "seen/mAP": pytest.approx([30.0, 55.0])}  # fractions shown in percent
    assert figures[0]._suptitle.get_text() == "run 1"


def test_plot_curves_bad_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no metrics file"):
        viz.plot_curves(tmp_path / "missing.csv", tmp_path / "c.png")
    empty = tmp_path / "metrics.csv"
    empty.write_text("epoch,step,lr\n0,1,0.1\n")
    with pytest.raises(ValueError, match="no loss or mAP columns"):
        viz.plot_curves(empty, tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


def test_pictures_leave_matplotlib_as_they_found_it(tmp_path: Path) -> None:
    """No pyplot and no backend switch: a notebook's plotting is its own after c2srt draws."""
    import subprocess
    import sys

    metrics = tmp_path / "metrics.csv"
    metrics.write_text(CSV)
    code = (
        "import sys, matplotlib\n"
        "matplotlib.use('svg')\n"
        "from c2srt import viz\n"
        "import numpy as np\n"
        f"viz.plot_curves({str(metrics)!r}, {str(tmp_path / 'c.png')!r})\n"
        f"viz.region_heatmaps(np.zeros((16, 16, 3), np.uint8), np.ones((4, 1)) / 4, ['a'], [0.5], [4], {str(tmp_path / 'r.png')!r})\n"
        "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.split() == ["svg", "False"], out.stdout + out.stderr
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "r.png").is_file()


def test_reliability_figure_draws_the_bins_of_each_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from c2srt.metrics import reliability_bins

    rng = np.random.default_rng(0)
    p = rng.random((60, 4))
    y = np.where(rng.random((60, 4)) < p, 1, -1)
    groups = {"seen labels": np.array([True, True, True, False]), "unseen labels": np.array([False, False, False, True])}
    figures: list[Any] = []
    save = viz.save_picture
    monkeypatch.setattr(viz, "save_picture", lambda fig, out: (figures.append(fig), save(fig, out))[1])
    out = viz.plot_reliability(p, y, groups, tmp_path / "r" / "reliability.png", title="toy")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    top, bottom = figures[0].axes[:2]
    lines = {line.get_label(): line for line in top.get_lines()}
    assert "perfectly calibrated" in lines
    for name, mask in groups.items():
        bins = reliability_bins(p[:, mask], y[:, mask])
        filled = bins["count"] > 0
        (line,) = [v for k, v in lines.items() if k.startswith(name)]
        assert list(line.get_xdata()) == pytest.approx(bins["mean_probability"][filled].tolist())
        assert list(line.get_ydata()) == pytest.approx(bins["frequency"][filled].tolist())
        assert f"({int(mask.sum()) * 60:,} entries)" in line.get_label()
    heights = sorted(int(b.get_height()) for b in bottom.patches)
    assert sum(heights) == 60 * 4  # every entry counted in one bin of one group
    with pytest.raises(ValueError, match="mask"):
        viz.plot_reliability(p, y, {"bad": np.array([True])}, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="no group"):
        viz.reliability_figure({})
