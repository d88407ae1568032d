"""The local web page: pure helpers without a browser, then the page itself in headless Chromium.

The browser test starts the server on a free loopback port with the tiny random checkpoint, tags a
real photo, opens a region heatmap, tries a non-image and an empty vocabulary, and fails if the page
requests anything from a host other than 127.0.0.1. It drives Debian's Chromium through Playwright
(`.ci/run` installs it; a test installs nothing) and is skipped, saying why, without it. A load test runs `c2srt serve` in its own process and drives it
with eight gradio_client sessions at once (with broken uploads and an oversized one), and checks the
named API endpoints. `test_screenshot_in_a_browser` takes the README's screenshot when
C2SRT_SCREENSHOT=path is set (see its docstring for the checkpoint, image and vocabulary).
"""

from __future__ import annotations

import html
import logging
import math
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from c2srt.constants import DEFAULT_THRESHOLD, DEFAULT_TOP
from c2srt.predict import Prediction
from c2srt.serve import (
    BATCH_SIZE,
    MAX_IMAGE_SIDE,
    MAX_IMAGES,
    MAX_VOCABULARY,
    TaggedImage,
    check_host,
    heatmap,
    is_loopback,
    open_upload,
    parse_vocabulary,
    results_html,
    tag_page,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]  # Playwright adds a fresh temporary --user-data-dir itself (and refuses one in args)
VOCAB = "person, bus, dog, cat, tennis racket, tie"  # all in the tiny checkpoint's graph
PAGE_TIMEOUT_MS = 30_000
SERVER_START_S = 180  # `c2srt serve` in a subprocess: imports torch and gradio, loads the model
LOAD_CLIENTS = 8  # concurrent gradio_client sessions
LOAD_REQUESTS = 2  # tag requests per client, one after the other
LOAD_TIMEOUT_S = 300  # for all of them, on a loaded 2-core CI machine
SERVER_RSS_BOUND_MB = 2500  # generous: measured 1.4 GB peak, 1.15 GB of it once started (torch, open_clip, gradio)
BIG_UPLOAD_MB = 60  # above MAX_UPLOAD_SIZE (50 MB)


# ------------------------------------------------------------------------ pure helpers
def test_parse_vocabulary_splits_trims_and_dedupes() -> None:
    assert parse_vocabulary("dog, cat\n  grass ,,dog\r\ntennis   racket\n") == ["dog", "cat", "grass", "tennis racket"]
    assert parse_vocabulary("single") == ["single"]


@pytest.mark.parametrize("text", ["", "   ", ",,\n , ", None])
def test_parse_vocabulary_rejects_empty(text: str | None) -> None:
    with pytest.raises(ValueError, match="vocabulary is empty"):
        parse_vocabulary(text)


def test_parse_vocabulary_rejects_huge() -> None:
    with pytest.raises(ValueError, match=str(MAX_VOCABULARY)):
        parse_vocabulary(",".join(f"label{i}" for i in range(MAX_VOCABULARY + 1)))


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "LOCALHOST", "::1", "[::1]"])
def test_loopback_hosts_are_allowed(host: str) -> None:
    assert is_loopback(host)
    check_host(host)  # no error, no flag needed


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.com", "10.0.0.1"])
def test_remote_hosts_need_the_flag(host: str, caplog: pytest.LogCaptureFixture) -> None:
    assert not is_loopback(host)
    with pytest.raises(ValueError, match="allow_remote"):
        check_host(host)
    with caplog.at_level(logging.WARNING, logger="c2srt.serve"):
        check_host(host, allow_remote=True)
    assert any(host in r.getMessage() for r in caplog.records)


def test_open_upload_shrinks_large_images(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (2000, 1500), (10, 20, 30)).save(path)
    img = open_upload(path)
    assert img.size == (MAX_IMAGE_SIDE, 768)  # longest side 1024, aspect 4:3 kept
    small = tmp_path / "small.png"
    Image.new("RGB", (40, 30)).save(small)
    assert open_upload(small).size == (40, 30)


def test_open_upload_names_the_uploaded_file(tmp_path: Path) -> None:
    path = tmp_path / "gradio-tmp-123" / "notes.jpg"
    path.parent.mkdir()
    path.write_text("not an image, just text\n")
    with pytest.raises(ValueError, match=r"^notes\.jpg: not a readable image") as err:
        open_upload(path, "notes.jpg")
    assert "gradio-tmp-123" not in str(err.value)


def test_unique_names_keep_repeated_uploads_apart() -> None:
    from c2srt.serve import unique_names

    assert unique_names(["/a/x.jpg", "/b/x.jpg", "/c/y.png", "/d/x.jpg"]) == ["x.jpg", "x.jpg (2)", "y.png", "x.jpg (3)"]


def _item(
    ranked: list[tuple[str, float]], weights: np.ndarray | None = None, size=(40, 20), probabilities: dict[str, float] | None = None
) -> TaggedImage:
    """An upload as the page holds it: every label ranked; `weights` [N, K] in ranked order;
    `probabilities` (a calibrated model's, decided at 0.5) or none."""
    names = [n for n, _ in ranked]
    side = min(size)
    left, top = (size[0] - side) / 2, (size[1] - side) / 2
    pred = Prediction(
        "x.jpg",
        ranked,
        counts={n: 1 for n in names},
        weights={n: weights[:, k] for k, n in enumerate(names)} if weights is not None else {},
        crop_box=(left, top, left + side, top + side),
        probabilities=dict(probabilities or {}),
        threshold=0.5 if probabilities is not None else None,
    )
    return TaggedImage("x.jpg", Image.new("RGB", size, (100, 100, 100)), pred)


def _listed(page: str, cls: str = "c2srt-label") -> list[str]:
    return [part.split("</td>")[0].rsplit(">", 1)[1] for part in page.split(f"class='{cls}'")[1:]]


def test_results_html_lists_top_then_probability_threshold() -> None:
    probs = {"a": 0.9, "b": 0.5, "c": 0.7, "d": 0.05}  # the ranking (by score) and the probabilities need not agree
    it = _item([("a", 2.9), ("b", 1.5), ("c", 0.1), ("d", -0.3)], probabilities=probs)

    def listed(threshold, top) -> list[str]:
        return _listed(results_html([it], threshold, top))

    assert listed(None, None) == ["a", "b", "c", "d"]
    assert listed(None, 2) == ["a", "b"]
    assert listed(0.5, None) == ["a", "b", "c"]  # at the threshold is kept
    assert listed(0.6, 2) == ["a"]  # the top 2, then those passing
    assert "3 of 4 labels pass P(present) ≥ 0.50" in results_html([it], 0.5, None)
    assert _listed(results_html([it], 0.5, None), "c2srt-probability") == ["0.90", "0.50", "0.70"]
    assert listed(1.0, None) == [] and "No label at or above the threshold" in results_html([it], 1.0, None)
    # without a calibrator: ranked only; a threshold has nothing to compare and is not used
    plain = _item([("a", 2.9), ("b", 1.5)])
    assert _listed(results_html([plain], 0.99, None)) == ["a", "b"] and "c2srt-probability" not in results_html([plain], 0.5, None)


def test_results_html_escapes_labels() -> None:
    it = _item([("<script>x</script>", 0.5), ("b&c", 0.1)], probabilities={"<script>x</script>": 0.5, "b&c": 0.1})
    page = results_html([it], None, None)
    assert "<script>" not in page and "&lt;script&gt;" in page and "b&amp;c" in page
    assert page.count("class='c2srt-row'") == 2
    assert results_html([it], 0.2, None).count("class='c2srt-row'") == 1


def test_heatmap_lights_the_selected_patch() -> None:
    # A 40x20 grey image: the model's centre crop is the square x in [10, 30), y in [0, 20),
    # seen as a 2x2 patch grid of 10 px cells. Only the bottom-right patch (index 3) is selected.
    import matplotlib

    from c2srt import viz

    weights = np.zeros((4, 2), dtype=np.float32)  # [N, K], ranked order ["a", "b"]
    weights[3, 0] = 0.7
    it = _item([("a", 0.9), ("b", 0.2)], weights)
    pic, caption = heatmap(it, "a", image_size=224)
    assert pic.shape == (20, 40, 3) and pic.dtype == np.uint8
    outside = pic[:, :10].reshape(-1, 3)
    unselected = pic[0:10, 10:30].reshape(-1, 3)
    inner = pic[11:19, 21:29].reshape(-1, 3)  # the selected patch inside its 1 px outline
    ring = np.concatenate([pic[10, 20:30], pic[19, 20:30], pic[10:20, 20], pic[10:20, 29]])
    assert (outside == round(100 * (1 - viz.OUTSIDE_DIM))).all()
    assert (unselected == round(100 * (1 - viz.UNSELECTED_DIM))).all()
    top_colour = np.array(matplotlib.colormaps[viz.HEAT_COLORMAP](viz.HEAT_RANGE[1])[:3]) * 255  # full weight
    expected = 100 * (1 - viz.SELECTED_ALPHA) + top_colour * viz.SELECTED_ALPHA
    assert (np.abs(inner.astype(int) - expected.round().astype(int)) <= 1).all()
    assert (ring == viz.OUTLINE_RGB).all()
    assert "1 of 4 patches" in caption and "0.900" in caption and "dark margin" in caption
    assert "dark margin" not in heatmap(_item([("a", 0.9), ("b", 0.2)], weights, size=(20, 20)), "a", 224)[1]
    with pytest.raises(ValueError, match="not in the vocabulary"):
        heatmap(it, "zebra", image_size=224)


def test_build_app_names_the_extra_when_gradio_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from c2srt.serve import build_app

    monkeypatch.setitem(sys.modules, "gradio", None)  # makes `import gradio` raise ImportError
    with pytest.raises(ImportError, match=r"pip install c2srt\[serve\]"):
        build_app(object())  # type: ignore[arg-type]


def test_serve_refuses_a_remote_host_and_a_missing_model(tmp_path: Path) -> None:
    from c2srt.serve import serve

    with pytest.raises(ValueError, match="allow_remote"):  # checked before the model is loaded
        serve(tmp_path / "never-read.safetensors", host="0.0.0.0")
    with pytest.raises(ValueError, match="exactly one"):
        serve()


def test_cli_serve_refuses_a_remote_host_without_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from c2srt.cli import main

    assert main(["serve", "--checkpoint", str(tmp_path / "never-read.safetensors"), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "c2srt serve: error:" in err and "--allow-remote" in err and "Traceback" not in err


def test_cli_serve_passes_its_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import c2srt.serve
    from c2srt.cli import main

    calls: list[tuple[tuple, dict]] = []
    monkeypatch.setattr(c2srt.serve, "serve", lambda *a, **k: calls.append((a, k)))
    ckpt = tmp_path / "m.safetensors"
    assert main(["serve", "--checkpoint", str(ckpt), "--port", "7001", "--vocab-dir", str(tmp_path)]) == 0
    (args, kwargs), = calls
    assert args == (ckpt,) and kwargs["clip"] is None and kwargs["port"] == 7001
    assert kwargs["host"] == "127.0.0.1" and kwargs["allow_remote"] is False and kwargs["vocab_dir"] == tmp_path
    main(["serve", "--clip", "ViT-B-16", "--host", "0.0.0.0", "--allow-remote"])
    assert calls[1][0] == (None,) and calls[1][1]["clip"] == "ViT-B-16" and calls[1][1]["allow_remote"] is True


# ------------------------------------------------- the page's tagging, without Gradio or a model
class _FakeRecognizer:
    """`predict` as the page calls it: every label ranked, scores from the image's width."""

    def __init__(self, fail: Exception | None = None, *, calibrated: bool = True) -> None:
        self.fail = fail
        self.calibrated = calibrated
        self.calls: list[tuple[int, list[str]]] = []

    def predict(self, images: list, labels: list[str], **kwargs: Any) -> list[Prediction]:
        threshold = kwargs.pop("threshold")
        assert kwargs == {"top": None, "batch_size": BATCH_SIZE, "return_weights": True}
        if self.fail is not None:
            raise self.fail
        self.calls.append((len(images), list(labels)))
        out = []
        for i, im in enumerate(images):  # scores in [0, 1): the fake's probabilities are its scores
            ranked = sorted(((n, (im.size[0] % 7 + k) / 10) for k, n in enumerate(labels)), key=lambda p: -p[1])
            pred = Prediction(f"image{i}", ranked)
            if self.calibrated:
                pred.probabilities, pred.threshold = dict(ranked), threshold
            out.append(pred)
        return out


def _uploads(folder: Path, *widths: int) -> list[str]:
    paths = []
    for i, w in enumerate(widths):
        path = folder / f"up{i}.png"
        Image.new("RGB", (w, 10), (i * 40, 80, 120)).save(path)
        paths.append(str(path))
    return paths


def test_tag_page_tags_every_readable_upload_in_order(tmp_path: Path) -> None:
    files = _uploads(tmp_path, 20, 31)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    files.insert(1, str(tmp_path / "broken.png"))
    rec = _FakeRecognizer()
    tags = tag_page(rec, files, "dog, cat\nsky")
    assert tags.done and rec.calls == [(2, ["dog", "cat", "sky"])]  # one batch of the readable ones
    assert [it.name for it in tags.items] == ["up0.png", "broken.png", "up1.png"]  # upload order
    assert tags.items[1].error is not None and "broken.png" in tags.items[1].error
    assert [it.name for it in tags.tagged] == ["up0.png", "up1.png"] and tags.first is tags.items[0]
    assert tags.status.startswith("Tagged 2 image(s) with 3 labels.") and "**problem:**" in tags.status
    assert tags.notes == [tags.items[1].error]
    assert [len(d["labels"]) for d in tags.predictions(2)] == [2, 0, 2] and "error" in tags.predictions(2)[1]


def test_tag_page_decides_at_a_probability_threshold(tmp_path: Path) -> None:
    """The slider's threshold is a probability: the page tags at it and says how many labels pass,
    counted here from the predictions' probabilities; a threshold outside [0, 1] is a message."""
    files = _uploads(tmp_path, 20, 31)  # the fake's probabilities: (width % 7 + k) / 10 for label k
    for threshold in (0.3, 0.6):
        tags = tag_page(_FakeRecognizer(), files, "dog, cat\nsky", threshold)
        assert tags.decided and all(it.prediction.threshold == threshold for it in tags.tagged)
        want = {it.name: sum(p >= threshold for p in it.prediction.probabilities.values()) for it in tags.tagged}
        assert want == {"up0.png": sum((20 % 7 + k) / 10 >= threshold for k in range(3)), "up1.png": sum((31 % 7 + k) / 10 >= threshold for k in range(3))}
        assert tags.passing(threshold) == want
        assert f"{sum(want.values())} label(s) in all pass P(present) ≥ {threshold:.2f}" in tags.status
        for it in tags.tagged:
            assert it.prediction.present_labels == [n for n, p in it.prediction.labels if p >= threshold]
    assert tags.passing(0.0) == {"up0.png": 3, "up1.png": 3}
    bad = tag_page(_FakeRecognizer(), files, "dog", 1.5)
    assert not bad.done and "must lie in [0, 1]" in bad.status
    plain = tag_page(_FakeRecognizer(calibrated=False), files, "dog, cat")
    assert plain.done and not plain.decided and plain.passing(0.5) == {} and "no calibrator" in plain.status


@pytest.mark.parametrize(
    ("files", "vocabulary", "fail", "said"),
    [
        (["x.png"], " ,, ", None, "the vocabulary is empty"),
        ([], "dog", None, "no image: drop one or more image files first"),
        (None, "dog", None, "no image"),
        (["x.png"], "dog", ValueError("label 'dog' is not in the graph"), "label 'dog' is not in the graph"),
        (["x.png"], "dog", RuntimeError("out of memory"), "the model failed"),
    ],
)
def test_tag_page_says_why_nothing_was_tagged(tmp_path: Path, files, vocabulary, fail, said) -> None:
    files = _uploads(tmp_path, 16) if files == ["x.png"] else files
    tags = tag_page(_FakeRecognizer(fail), files, vocabulary)
    assert not tags.done and tags.items == [] and not tags.decided and tags.first is None
    assert tags.status.startswith("**Nothing tagged:**") and said in html.unescape(tags.status) and said in tags.notes[0]


def test_tag_page_tags_at_most_max_images(tmp_path: Path) -> None:
    files = _uploads(tmp_path, *([12] * (MAX_IMAGES + 2)))
    tags = tag_page(_FakeRecognizer(), files, "dog")
    assert len(tags.items) == MAX_IMAGES and tags.notes == [f"only the first {MAX_IMAGES} of {MAX_IMAGES + 2} images were tagged"]


# ----------------------------------------------------------------- with the tiny model
@pytest.fixture(scope="module")
def recognizer(calibrated_checkpoint: Path):
    """The tiny checkpoint with a calibrator (probabilities and decisions on the page)."""
    from c2srt.predict import Recognizer

    return Recognizer.from_checkpoint(calibrated_checkpoint)


def test_tag_images_ranks_like_predict(recognizer, photos: Path) -> None:
    """The page's ranking is `Recognizer.predict`'s, and neighbours are the graph's, within the vocabulary."""
    from c2srt.serve import tag_images

    labels = parse_vocabulary(VOCAB)
    imgs = [(p.name, open_upload(p)) for p in sorted(photos.glob("*.jpg"))[:2]]
    items = tag_images(recognizer, imgs, labels)
    assert [it.name for it in items] == [it.prediction.source for it in items] == [n for n, _ in imgs]
    for (_, img), it in zip(imgs, items):
        ref = recognizer.predict([img], labels, top=None)[0]
        ranked = it.prediction.labels
        assert [n for n, _ in ranked] == [n for n, _ in ref.labels]
        np.testing.assert_allclose([s for _, s in ranked], [s for _, s in ref.labels], rtol=1e-5, atol=1e-6)
        assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
        assert set(it.prediction.weights) == set(it.prediction.counts) == set(labels)
        n_patches = {w.shape for w in it.prediction.weights.values()}
        assert len(n_patches) == 1 and len(next(iter(n_patches))) == 1  # [N] per label
        for name, w in it.prediction.weights.items():  # ISR keeps `counts` patches, the rest weigh 0
            assert int((w > 0).sum()) == it.prediction.counts[name]
        w, h = img.size
        side = min(w, h)
        assert it.prediction.crop_box == ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
    graph = recognizer.graph_for(labels)
    for name in labels:  # brute force over the graph's own lists
        expect = sorted(((n, w) for n, w in graph.neighbors(name) if n in labels), key=lambda p: (-p[1], p[0]))
        assert items[0].prediction.neighbors[name] == expect
        assert all(0 < w <= 1 for _, w in expect)


# --------------------------------------------------------------------------- browser
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def chromium() -> Path:
    """A working Chromium: Debian's at /usr/bin/chromium, or the one `$C2SRT_CHROMIUM` names.

    Playwright's own browser download (`playwright install`) needs hosts CI cannot reach, so the
    test drives the distribution's Chromium through `executable_path`. Tests install nothing:
    `.ci/run` installs Chromium before the suite; without it the browser tests are skipped, saying so.
    """
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install c2srt[test])")
    exe = Path(os.environ.get("C2SRT_CHROMIUM", CHROMIUM))
    if not exe.exists():
        pytest.skip(f"no Chromium at {exe}: install it (Debian: apt-get install chromium; .ci/run does) or set C2SRT_CHROMIUM")
    try:
        version = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"{exe} is installed but does not run: {e}")
    if "chromium" not in version.stdout.lower():  # e.g. Ubuntu's stub that asks for a snap
        pytest.skip(f"{exe} is not a usable Chromium: {version.stdout.strip()[:200]}")
    return exe


@pytest.fixture(scope="module")
def page_url(recognizer):
    """The page on a free loopback port, served from this process (`c2srt serve` minus the blocking)."""
    pytest.importorskip("gradio", reason="gradio is not installed (pip install c2srt[serve])")
    from c2srt.serve import build_app, launch_app

    app = build_app(recognizer)  # saved vocabularies: COCO and the checkpoint's graph labels
    url = launch_app(app, host="127.0.0.1", port=_free_port(), block=False)
    try:
        yield url
    finally:
        app.close()


def _settled_text(page, selector: str) -> str:
    """The element's text once Gradio's progress overlay ("processing | 0.3s", "queue") has gone."""
    page.wait_for_function(
        "s => { const t = document.querySelector(s).innerText; return !/processing|queue:/.test(t); }", arg=selector
    )
    return page.locator(selector).inner_text()


def _remote_host(url: str) -> str:
    """The host a request goes to when it leaves this machine; "" for loopback, data: and blob: URLs."""
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return ""
    host = parts.hostname or url
    return "" if is_loopback(host) else host


def _upload(page, *paths: Path) -> None:
    """Replace the page's files (the File component appends uploads, so clear it first)."""
    clear = page.locator("#c2srt-files button[aria-label='Clear']")
    if clear.count():
        clear.click()
    page.set_input_files("#c2srt-files input[type=file]", [str(p) for p in paths])
    page.wait_for_function(  # the list may split a name into stem and suffix: compare without white space
        "names => { const t = document.querySelector('#c2srt-files').innerText.replace(/\\s/g, '');"
        " return names.every(n => t.includes(n)); }",
        arg=[p.name for p in paths],
    )


def _answers(url: str) -> bool:
    """Whether the page answers 200 (loopback only)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status == 200
    except OSError:  # refused while starting, or gone
        return False


def test_a_taken_port_is_a_clear_error(recognizer) -> None:
    pytest.importorskip("gradio", reason="gradio is not installed (pip install c2srt[serve])")
    from c2srt.serve import build_app, launch_app

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        app = build_app(recognizer)
        try:
            with pytest.raises(ValueError, match=f"cannot listen on 127.0.0.1:{port}"):
                launch_app(app, port=port, block=False)
        finally:
            app.close()


@pytest.mark.slow
def test_page_in_a_browser(chromium: Path, page_url: str, recognizer, photos: Path, tmp_path: Path) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    t0 = time.monotonic()
    urls: list[str] = []  # every request the page makes
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is a text file with a .jpg name\n")
    step = "open the page"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        try:
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            page.on("request", lambda r: urls.append(r.url))
            page.goto(page_url)
            tag = page.locator("#c2srt-tag")

            # 1. a saved vocabulary can be picked (the checkpoint's graph labels)
            step = "pick a saved vocabulary"
            page.locator("#c2srt-saved input").click()
            page.locator("ul[role='listbox'] li", has_text="checkpoint (8 labels)").first.click()
            page.wait_for_function("() => document.querySelector('#c2srt-vocab textarea').value.includes('tennis racket')")

            # 2. a real photo and a typed vocabulary: ranked labels appear, best first
            step = "tag a photo"
            _upload(page, photos / "bus.jpg")
            page.fill("#c2srt-vocab textarea", VOCAB.replace(", ", "\n"))
            tag.click()
            page.wait_for_selector("#c2srt-results .c2srt-passing")
            labels = page.locator("#c2srt-results .c2srt-label").all_inner_texts()
            scores = [float(s) for s in page.locator("#c2srt-results .c2srt-score").all_inner_texts()]
            ranked = recognizer.predict([open_upload(photos / "bus.jpg")], parse_vocabulary(VOCAB), top=None)[0]
            best = [n for n, _ in ranked.labels][:DEFAULT_TOP]  # the one default top-k ...
            assert labels == [n for n in best if ranked.probability(n) >= DEFAULT_THRESHOLD]  # ... then the default threshold
            assert scores == sorted(scores, reverse=True)
            assert "Tagged 1 image(s) with 6 labels" in _settled_text(page, "#c2srt-status")
            labels = [n for n, _ in ranked.labels]  # the label menu offers every label, whatever is listed

            # 3. the heatmap of the best label is shown; open another label's
            step = "open a heatmap"
            page.wait_for_selector("#c2srt-heatmap img")
            assert _settled_text(page, "#c2srt-caption").startswith(labels[0])
            other = labels[2]
            page.locator("#c2srt-label input").click()
            page.locator("ul[role='listbox'] li", has_text=other).first.click()
            page.wait_for_function(
                "l => document.querySelector('#c2srt-caption').innerText.startsWith(l)", arg=other
            )
            assert "patches selected" in _settled_text(page, "#c2srt-caption")
            shown = open_upload(photos / "bus.jpg").size  # the heatmap is drawn over the (shrunk) photo
            page.wait_for_function(
                "wh => { const i = document.querySelector('#c2srt-heatmap img');"
                " return i && i.complete && i.naturalWidth === wh[0] && i.naturalHeight === wh[1]; }",
                arg=list(shown),
            )
            page.wait_for_selector("#c2srt-neighbors .c2srt-neighbor, #c2srt-neighbors p")

            # 4. the threshold slider (a probability) filters the list and says how many labels pass
            step = "move the threshold"
            page.locator("#c2srt-threshold input[type=number]").fill("0")
            page.locator("#c2srt-threshold input[type=number]").press("Enter")
            page.wait_for_function("() => document.querySelector('#c2srt-results').innerText.includes('pass P(present) ≥ 0.00')")
            n_before = page.locator("#c2srt-results .c2srt-row").count()
            probs = [float(p) for p in page.locator("#c2srt-results .c2srt-probability").all_inner_texts()]
            cut = math.floor(100 * sorted(probs, reverse=True)[1]) / 100  # the second most likely label passes it
            page.locator("#c2srt-threshold input[type=number]").fill(f"{cut:.2f}")
            page.locator("#c2srt-threshold input[type=number]").press("Enter")
            page.wait_for_function(
                "n => document.querySelectorAll('#c2srt-results .c2srt-row').length < n", arg=n_before
            )
            kept = [float(p) for p in page.locator("#c2srt-results .c2srt-probability").all_inner_texts()]
            passing = sum(p >= cut for p in ranked.probabilities.values())
            assert kept and all(p >= cut - 5e-3 for p in kept)
            assert f"{passing} of 6 labels pass P(present) ≥ {cut:.2f}" in page.locator("#c2srt-results").inner_text()

            # 5. a text file named .jpg: a clear message, no traceback
            step = "upload a non-image"
            _upload(page, bad, photos / "cat.jpg")
            tag.click()
            page.wait_for_function("() => document.querySelector('#c2srt-status').innerText.includes('notes.jpg')")
            text = _settled_text(page, "#c2srt-status")
            assert "notes.jpg: not a readable image" in text and "Traceback" not in text
            assert "Tagged 1 image(s)" in text  # the good one in the same upload still is
            assert page.locator("#c2srt-results .c2srt-error").count() == 1
            assert page.locator("#c2srt-results h4").all_inner_texts() == ["notes.jpg", "cat.jpg"]  # upload order

            # 6. an empty vocabulary: a clear message
            step = "empty vocabulary"
            page.fill("#c2srt-vocab textarea", " , \n")
            tag.click()
            page.wait_for_function("() => document.querySelector('#c2srt-status').innerText.includes('vocabulary is empty')")
            assert "Traceback" not in page.inner_text("body")

            # 7. the server still answers, and tags again
            step = "tag again"
            assert _answers(page_url)
            page.locator("#c2srt-threshold input[type=number]").fill("0")  # every label passes P >= 0
            page.locator("#c2srt-threshold input[type=number]").press("Enter")
            page.fill("#c2srt-vocab textarea", "cat, dog")
            tag.click()
            page.wait_for_function("() => document.querySelector('#c2srt-status').innerText.includes('with 2 labels')")
            assert page.locator("#c2srt-results .c2srt-row").count() == 2  # cat.jpg x {cat, dog}
        except PlaywrightTimeout as e:  # say which step hung and what the page showed
            shot = tmp_path / "failure.png"
            page.screenshot(path=str(shot), full_page=True)
            status = page.locator("#c2srt-status").inner_text(timeout=5_000)
            pytest.fail(
                f"step {step!r} timed out after {time.monotonic() - t0:.0f} s: {e.message.splitlines()[0]}\n"
                f"status on the page: {status!r}\nscreenshot: {shot}"
            )
        finally:
            browser.close()
    assert any(urlsplit(u).hostname == "127.0.0.1" for u in urls)  # requests were seen
    remote = sorted({_remote_host(u) for u in urls} - {""})
    assert not remote, f"the page fetched from non-loopback hosts: {remote}"


# ------------------------------------------------------------------- load and abuse
def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` pixels (a decompression bomb's calling card)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def _peak_rss_mb(pid: int) -> float:
    """The peak resident memory of a process (Linux /proc), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


@pytest.fixture(scope="module")
def served(calibrated_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    """`c2srt serve` in a process of its own on a free loopback port: (url, pid). Stopped with Ctrl-C."""
    pytest.importorskip("gradio_client", reason="gradio is not installed (pip install c2srt[serve])")
    if not Path("/proc/self/status").exists():
        pytest.skip("reading a process's memory needs Linux /proc")
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    code = (  # Ctrl-C as in a terminal, even when this test runs in the background (where SIGINT is ignored)
        "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from c2srt.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    argv = [sys.executable, "-c", code, "serve", "--checkpoint", str(calibrated_checkpoint), "--port", str(port)]
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while not _answers(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"c2srt serve did not come up (exit {proc.poll()}):\n{log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url, proc.pid
    finally:
        proc.send_signal(signal.SIGINT)  # as a person stops it
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail("c2srt serve did not stop on Ctrl-C within 60 s")


@pytest.mark.slow
def test_page_under_load_and_abuse(served: tuple[str, int], photos: Path, tmp_path: Path) -> None:
    """8 clients at once, 2 tag requests each with two photos, a truncated JPEG and a decompression bomb:
    every request answered, the bad files named, the same labels for the same photo in every answer;
    a 60 MB upload refused; the server's peak memory bounded. Through gradio_client, as a script would.
    """
    import httpx
    from gradio_client import Client, handle_file

    url, pid = served
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes((photos / "zidane.jpg").read_bytes()[:3000])
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_claiming(60_000, 60_000))  # 3.6 gigapixels claimed, 100 bytes on disk
    good = sorted(photos.glob("*.jpg"))
    started = _peak_rss_mb(pid)

    def one_client(i: int) -> list[tuple[str, list[dict]]]:
        client = Client(url, verbose=False)
        pair = [good[i % len(good)], good[(i + 1) % len(good)]]
        answers = []
        for _ in range(LOAD_REQUESTS):
            files = [handle_file(str(p)) for p in (*pair, truncated, bomb)]
            status, predictions, *_ = client.predict(images=files, vocabulary=VOCAB, top=3, api_name="/tag")
            answers.append((status, predictions))
        return answers

    t0 = time.monotonic()
    with ThreadPoolExecutor(LOAD_CLIENTS) as pool:
        futures = [pool.submit(one_client, i) for i in range(LOAD_CLIENTS)]
        answers = [a for f in futures for a in f.result(timeout=LOAD_TIMEOUT_S)]
    elapsed = time.monotonic() - t0
    assert len(answers) == LOAD_CLIENTS * LOAD_REQUESTS
    by_photo: dict[str, list] = {}
    for status, predictions in answers:
        assert "Tagged 2 image(s) with 6 labels" in status
        assert "truncated.jpg: not a readable image" in status and "bomb.png" in status and "Traceback" not in status
        names = [p["image"] for p in predictions]
        assert names[2:] == ["truncated.jpg", "bomb.png"]  # upload order kept
        for p in predictions[:2]:
            assert "error" not in p and len(p["labels"]) == 3
            by_photo.setdefault(p["image"], []).append([(d["label"], d["score"]) for d in p["labels"]])
        assert all(p["labels"] == [] and p["image"] in p["error"] for p in predictions[2:])
    assert sorted(by_photo) == sorted(p.name for p in good)
    for photo, seen in by_photo.items():  # sessions do not leak into each other
        assert all(s == seen[0] for s in seen), photo

    big = tmp_path / "big.jpg"
    with big.open("wb") as f:
        f.truncate(BIG_UPLOAD_MB * 1024 * 1024)
    with big.open("rb") as f:  # straight to the upload route, as a client that skips gradio_client's own check
        refused = httpx.post(f"{url}gradio_api/upload", files={"files": ("big.jpg", f)}, timeout=120)
    assert refused.status_code == 413 and "maximum allowed size" in refused.text
    assert _answers(url)  # and the server carries on

    peak = _peak_rss_mb(pid)
    print(
        f"\n{len(answers)} tag requests from {LOAD_CLIENTS} clients in {elapsed:.1f} s; "
        f"server peak RSS {peak:.0f} MB ({started:.0f} MB before the load)"
    )
    assert peak < SERVER_RSS_BOUND_MB


@pytest.mark.slow
def test_gradio_client_sees_named_endpoints(served: tuple[str, int], photos: Path) -> None:
    """The README's "Scripting the page" example: /tag, then /filter and /explain in the same session."""
    from gradio_client import Client, handle_file

    url, _ = served
    client = Client(url, verbose=False)
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {"/tag", "/filter", "/explain"} <= set(api)
    assert [p["parameter_name"] for p in api["/tag"]["parameters"]] == ["images", "vocabulary", "top", "threshold"]
    assert [p["parameter_name"] for p in api["/explain"]["parameters"]] == ["image", "label"]
    labels = [x["label"] for e in api.values() for x in (*e["parameters"], *e["returns"])]
    assert not [n for n in labels if n.startswith("value_")], labels  # every input and output has a name
    assert api["/tag"]["parameters"][2]["parameter_default"] == DEFAULT_TOP
    assert api["/tag"]["parameters"][3]["parameter_default"] == DEFAULT_THRESHOLD  # a probability

    status, predictions, *_ = client.predict(
        images=[handle_file(str(photos / "bus.jpg"))], vocabulary=VOCAB, api_name="/tag"
    )
    assert status.startswith("Tagged 1 image(s) with 6 labels")
    (bus,) = predictions
    assert bus["image"] == "bus.jpg" and len(bus["labels"]) == DEFAULT_TOP
    best, second = bus["labels"][0], bus["labels"][1]
    assert all(0 <= d["probability"] <= 1 and d["present"] == (d["probability"] >= DEFAULT_THRESHOLD) for d in bus["labels"])
    # IST scores each label on its own: the ranking and the probabilities agree, so the two best pass
    table = client.predict(threshold=second["probability"] - 1e-3, top=DEFAULT_TOP, api_name="/filter")
    assert table.count("class='c2srt-row'") == 2 and best["label"] in table
    picture, caption, neighbours = client.predict(image="bus.jpg", label=second["label"], api_name="/explain")
    assert Path(picture).is_file() and caption.startswith(f"**{second['label']}**")
    assert "c2srt-neighbor" in neighbours


# ------------------------------------------------------------------------ screenshot
@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("C2SRT_SCREENSHOT"), reason="set C2SRT_SCREENSHOT=path to take a screenshot")
def test_screenshot_in_a_browser(chromium: Path, tiny_checkpoint: Path, photos: Path) -> None:
    """The README's screenshot: a checkpoint tags one image with its own vocabulary; the best label's regions.

    C2SRT_SCREENSHOT: the PNG to write. C2SRT_SCREENSHOT_CHECKPOINT: the model (default: the tests'
    tiny random one). C2SRT_SCREENSHOT_IMAGE: the image (default: bus.jpg). C2SRT_SCREENSHOT_LABELS:
    the vocabulary, commas or new lines (default: the checkpoint's graph labels, as the page offers them).
    """
    from playwright.sync_api import sync_playwright

    from c2srt.predict import Recognizer
    from c2srt.serve import build_app, launch_app

    shot = Path(os.environ["C2SRT_SCREENSHOT"])
    checkpoint = Path(os.environ.get("C2SRT_SCREENSHOT_CHECKPOINT") or tiny_checkpoint)
    image = Path(os.environ.get("C2SRT_SCREENSHOT_IMAGE") or photos / "bus.jpg")
    labels = os.environ.get("C2SRT_SCREENSHOT_LABELS")
    app = build_app(Recognizer.from_checkpoint(checkpoint))
    url = launch_app(app, host="127.0.0.1", port=_free_port(), block=False)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            try:
                page.set_default_timeout(PAGE_TIMEOUT_MS)
                page.goto(url)
                if labels:
                    page.fill("#c2srt-vocab textarea", labels)
                else:
                    page.locator("#c2srt-saved input").click()
                    page.locator("ul[role='listbox'] li", has_text="checkpoint (").first.click()
                    page.wait_for_function("() => document.querySelector('#c2srt-vocab textarea').value.length > 0")
                _upload(page, image)
                page.locator("#c2srt-tag").click()
                page.wait_for_selector("#c2srt-results .c2srt-row")
                best = page.locator("#c2srt-results .c2srt-label").first.inner_text()
                page.wait_for_function("l => document.querySelector('#c2srt-caption').innerText.startsWith(l)", arg=best)
                page.wait_for_function(
                    "() => { const i = document.querySelector('#c2srt-heatmap img'); return i && i.complete; }"
                )
                page.wait_for_selector("#c2srt-neighbors .c2srt-neighbor, #c2srt-neighbors p")
                page.wait_for_timeout(500)  # let the image finish fading in
                shot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(shot), full_page=True)
            finally:
                browser.close()
    finally:
        app.close()
    with Image.open(shot) as im:
        assert im.format == "PNG" and im.width >= 1000
