"""The mini-world: procedurally generated multi-label scenes that run anywhere, offline, in seconds.

Why it exists: the open-vocabulary multi-label problem needs labels whose evidence covers very
different areas of an image (the sky covers half of it, a small ball a few patches), labels that
co-occur for a reason (boats only on water, a snowman only on snow) and unseen labels that are new
concepts or new combinations of seen parts ("purple star" while purple things and other stars are
seen). Real benchmarks have all three but need days of GPU time; this world has them by
construction and generates thousands of 64 px scenes per second with numpy and PIL.

Vocabulary (68 labels): 6 regions (sky, grass, water, snow, sand, road), 13 scene things that live
in one region (sun, cloud, bird, airplane and mountain in the sky; boat and fish in water; tree,
flower and house on grass; car on a road; snowman on snow; umbrella on sand), 7 shapes (ball,
box, triangle, star, ring, cross, heart) and the 42 colour x shape combinations ("red ball") over
6 colours. 15 labels (22 %) are unseen: 7 held-out concepts and 8 held-out combinations.

Example:
    >>> world = MiniWorld(seed=0)
    >>> images, labels, captions = world.sample(4, seed=1)
    >>> images.shape, labels.shape
    ((4, 64, 64, 3), (4, 68))
"""

from __future__ import annotations

import logging
import math
from time import perf_counter as time_now
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..constants import NEGATIVE, POSITIVE
from .base import register_dataset

_logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Vocabulary and split
# ---------------------------------------------------------------------------------------------
REGIONS = ("sky", "grass", "water", "snow", "sand", "road")
GROUNDS = ("grass", "water", "snow", "sand", "road")
SKY_THINGS = ("sun", "cloud", "bird", "airplane", "mountain")
# scene things that only exist inside one ground region (the co-occurrence rules)
GROUND_THINGS: dict[str, tuple[str, ...]] = {
    "water": ("boat", "fish"),
    "grass": ("tree", "flower", "house"),
    "road": ("car",),
    "snow": ("snowman",),
    "sand": ("umbrella",),
}
THINGS = SKY_THINGS + tuple(t for ts in GROUND_THINGS.values() for t in ts)
THING_REGION: dict[str, str] = {"sun": "sky", "cloud": "sky", "bird": "sky", "airplane": "sky", "mountain": "sky"} | {
    t: region for region, ts in GROUND_THINGS.items() for t in ts
}
SHAPES = ("ball", "box", "triangle", "star", "ring", "cross", "heart")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "blue": (35, 70, 215),
    "green": (40, 175, 50),
    "yellow": (240, 215, 30),
    "purple": (140, 45, 185),
    "orange": (250, 135, 25),
}
COMBOS = tuple(f"{c} {s}" for c in COLOURS for s in SHAPES)

# Unseen labels: held-out concepts (their region or parts are seen) and held-out combinations
# (their colour and their shape are seen in other combinations).
UNSEEN_CONCEPTS = ("sand", "cloud", "airplane", "mountain", "boat", "flower", "snowman")
UNSEEN_COMBOS = (
    "blue ball",
    "yellow box",
    "green triangle",
    "purple star",
    "orange ring",
    "red cross",
    "blue heart",
    "green star",
)
UNSEEN = UNSEEN_CONCEPTS + UNSEEN_COMBOS

# ---------------------------------------------------------------------------------------------
# Scene statistics (fractions of the image side unless stated)
# ---------------------------------------------------------------------------------------------
DEFAULT_IMAGE_SIZE = 64  # px
MIN_LABELS, MAX_LABELS = 3, 8  # labels per scene
P_SKY = 0.7  # share of landscapes (sky above ground); the rest are top-down views of ground only
P_TWO_GROUNDS = 0.35  # scenes with two ground bands (e.g. sand and water)
HORIZON = (0.3, 0.55)  # sky height
MIN_BAND = 0.2  # smallest ground band height
P_THING = {
    "sun": 0.35, "cloud": 0.45, "bird": 0.3, "airplane": 0.2, "mountain": 0.25,
    "boat": 0.5, "fish": 0.45, "tree": 0.45, "flower": 0.4, "house": 0.3,
    "car": 0.6, "snowman": 0.6, "umbrella": 0.5,
}  # fmt: skip
SHAPE_COUNT_P = (0.15, 0.35, 0.3, 0.2)  # probability of 0, 1, 2, 3 shapes
SMALL_SHAPE = (0.08, 0.11)  # radius of small shapes
LARGE_SHAPE = (0.14, 0.2)  # radius of large shapes
P_LARGE = 0.5
COLOUR_JITTER = 25  # +- per channel on object colours, so colour names cover a range
PIXEL_NOISE = 5  # +- per pixel on the final image
PLACE_TRIES = 20  # rejection-sampling attempts per object
OUTLINE = (25, 25, 30)
MAX_PLURAL = 3

# Split codes that turn a world seed into disjoint sample streams.
SPLITS = {"train": 1, "test": 2, "pretrain": 3}
DEFAULT_SIZES = {"train": 2000, "test": 600, "pretrain": 8000}  # images


# ---------------------------------------------------------------------------------------------
# Drawing helpers: every painter takes `paint(part) -> fill` so the same calls draw the RGB image
# and, for describe(), a map of object ids.
# ---------------------------------------------------------------------------------------------
Fill = Any
Paint = Callable[[tuple[int, int, int]], Fill]


def _jitter(rng: np.random.Generator, colour: tuple[int, int, int], amount: int = COLOUR_JITTER) -> tuple[int, int, int]:
    c = np.clip(np.asarray(colour) + rng.integers(-amount, amount + 1, 3), 0, 255)
    return (int(c[0]), int(c[1]), int(c[2]))


def _rotate(points: np.ndarray, angle: float, cx: float, cy: float) -> list[tuple[float, float]]:
    ca, sa = math.cos(angle), math.sin(angle)
    x = points[:, 0] * ca - points[:, 1] * sa + cx
    y = points[:, 0] * sa + points[:, 1] * ca + cy
    return list(zip(x.tolist(), y.tolist()))


_STAR = np.array(
    [
        (math.cos(-math.pi / 2 + k * math.pi / 5) * (1.0 if k % 2 == 0 else 0.45),
         math.sin(-math.pi / 2 + k * math.pi / 5) * (1.0 if k % 2 == 0 else 0.45))
        for k in range(10)
    ]
)  # fmt: skip
_TRIANGLE = np.array([(math.cos(-math.pi / 2 + k * 2 * math.pi / 3), math.sin(-math.pi / 2 + k * 2 * math.pi / 3)) for k in range(3)])
_SQUARE = np.array([(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)])
_ARM = 0.34
_CROSS = np.array(
    [(-_ARM, -1), (_ARM, -1), (_ARM, -_ARM), (1, -_ARM), (1, _ARM), (_ARM, _ARM),
     (_ARM, 1), (-_ARM, 1), (-_ARM, _ARM), (-1, _ARM), (-1, -_ARM), (-_ARM, -_ARM)]
)  # fmt: skip
_t = np.linspace(0, 2 * math.pi, 24, endpoint=False)
_HEART = np.stack([16 * np.sin(_t) ** 3, -(13 * np.cos(_t) - 5 * np.cos(2 * _t) - 2 * np.cos(3 * _t) - np.cos(4 * _t))], 1)
_HEART = (_HEART - _HEART.mean(0)) / 17.0
_POLYGONS = {"box": _SQUARE, "triangle": _TRIANGLE, "star": _STAR, "cross": _CROSS, "heart": _HEART}
_MAX_TILT = {"box": 0.35, "triangle": 0.3, "star": 0.6, "cross": 0.4, "heart": 0.3}  # rad


def _draw_shape(d: ImageDraw.ImageDraw, paint: Paint, shape: str, colour, cx: float, cy: float, r: float, tilt: float) -> None:
    out = paint(OUTLINE)
    if shape == "ball":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=paint(colour), outline=out)
    elif shape == "ring":
        w = max(2, round(r * 0.4))
        d.ellipse((cx - r, cy - r, cx + r, cy + r), outline=out, width=1)
        d.ellipse((cx - r + 1, cy - r + 1, cx + r - 1, cy + r - 1), outline=paint(colour), width=w)
        ri = r - 1 - w
        d.ellipse((cx - ri, cy - ri, cx + ri, cy + ri), outline=out, width=1)  # the hole shows the scene behind
    else:
        poly = _POLYGONS[shape] * r
        d.polygon(_rotate(poly, tilt * _MAX_TILT[shape], cx, cy), fill=paint(colour), outline=out)


# ---------------------------------------------------------------------------------------------
# Scene objects
# ---------------------------------------------------------------------------------------------
@dataclass
class _Obj:
    """A placed scene element: its labels, its box and how to draw it."""

    labels: tuple[str, ...]
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in px
    draw: Callable[[ImageDraw.ImageDraw, Paint], None] = field(repr=False)
    word: str = ""  # caption noun ("ball", "boat")
    colour: str = ""  # caption adjective for shapes


def _overlaps(box, boxes: list[tuple[float, float, float, float]], margin: float = 1.0) -> bool:
    x0, y0, x1, y1 = box
    for a0, b0, a1, b1 in boxes:
        if x0 < a1 + margin and a0 < x1 + margin and y0 < b1 + margin and b0 < y1 + margin:
            return True
    return False


class _Scene:
    """One scene under construction: bands, occupied boxes and the objects to draw."""

    def __init__(self, rng: np.random.Generator, size: int) -> None:
        self.rng, self.S = rng, size
        self.bands: list[tuple[str, int, int]] = []  # (region, y0, y1) rows [y0, y1)
        self.objs: list[_Obj] = []
        self.boxes: list[tuple[float, float, float, float]] = []

    # -- layout ---------------------------------------------------------------------------------
    def layout(self) -> None:
        rng, S = self.rng, self.S
        y = 0
        if rng.random() < P_SKY:
            y = round(S * rng.uniform(*HORIZON))
            self.bands.append(("sky", 0, y))
        n_ground = 2 if rng.random() < P_TWO_GROUNDS else 1
        grounds = rng.choice(len(GROUNDS), size=n_ground, replace=False)
        if n_ground == 2:
            lo = y + round(MIN_BAND * S)
            hi = S - round(MIN_BAND * S)
            split = int(rng.integers(lo, hi + 1))
            cuts = [y, split, S]
        else:
            cuts = [y, S]
        for i, g in enumerate(grounds):
            self.bands.append((GROUNDS[int(g)], cuts[i], cuts[i + 1]))

    def band(self, region: str) -> tuple[int, int] | None:
        for name, y0, y1 in self.bands:
            if name == region:
                return y0, y1
        return None

    # -- placement ------------------------------------------------------------------------------
    def try_place(self, make: Callable[[], _Obj | None]) -> bool:
        for _ in range(PLACE_TRIES):
            obj = make()
            if obj is None:
                continue
            x0, y0, x1, y1 = obj.box
            if x0 < 0 or y0 < 0 or x1 > self.S - 1 or y1 > self.S - 1 or _overlaps(obj.box, self.boxes):
                continue
            self.objs.append(obj)
            self.boxes.append(obj.box)
            return True
        return False

    def add_thing(self, name: str) -> bool:
        return self.try_place(lambda: _THING_MAKERS[name](self))

    def add_shape(self, shape: str, colour: str) -> bool:
        rng, S = self.rng, self.S
        rng_r = LARGE_SHAPE if rng.random() < P_LARGE else SMALL_SHAPE
        col = _jitter(rng, COLOURS[colour])

        def make() -> _Obj:
            r = S * rng.uniform(*rng_r)
            cx, cy = rng.uniform(r, S - r), rng.uniform(r, S - r)
            tilt = rng.uniform(-1, 1)
            return _Obj(
                (shape, f"{colour} {shape}"),
                (cx - r, cy - r, cx + r, cy + r),
                lambda d, p: _draw_shape(d, p, shape, col, cx, cy, r, tilt),
                word=shape,
                colour=colour,
            )

        return self.try_place(make)


def _ground_base(sc: _Scene, region: str, height: float) -> float | None:
    """A y for an object's bottom inside its region, leaving room for `height` inside the band."""
    b = sc.band(region)
    if b is None:
        return None
    y0, y1 = b
    lo = y0 + min(height, (y1 - y0) * 0.6)
    if lo >= y1 - 1:
        return None
    return float(sc.rng.uniform(lo, y1 - 1))


def _make_sun(sc: _Scene) -> _Obj | None:
    rng, S = sc.rng, sc.S
    y0, y1 = sc.band("sky")  # type: ignore[misc]
    r = S * rng.uniform(0.05, 0.08)
    ray = 1.7 * r
    if y1 - y0 < 2 * ray + 2:
        return None
    cx, cy = rng.uniform(ray, S - ray), rng.uniform(y0 + ray, y1 - ray)
    col = _jitter(rng, (255, 200, 40), 10)
    w = max(1, round(S / 64))

    def draw(d: ImageDraw.ImageDraw, p: Paint) -> None:
        for k in range(8):
            a = k * math.pi / 4
            ca, sa = math.cos(a), math.sin(a)
            d.line((cx + 1.25 * r * ca, cy + 1.25 * r * sa, cx + ray * ca, cy + ray * sa), fill=p(col), width=w)
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=p(col))

    return _Obj(("sun",), (cx - ray, cy - ray, cx + ray, cy + ray), draw, word="sun")


def _make_cloud(sc: _Scene) -> _Obj | None:
    rng, S = sc.rng, sc.S
    y0, y1 = sc.band("sky")  # type: ignore[misc]
    w = S * rng.uniform(0.18, 0.32)
    h = w * 0.5
    if y1 - y0 < h + 2:
        return None
    x, y = rng.uniform(0, S - w), rng.uniform(y0, y1 - h)
    col = _jitter(rng, (245, 246, 250), 6)
    edge = (205, 210, 220)
    puffs = [(0.0, 0.35, 0.45, 1.0), (0.2, 0.0, 0.7, 0.85), (0.5, 0.2, 1.0, 1.0), (0.3, 0.4, 0.8, 1.0)]

    def draw(d: ImageDraw.ImageDraw, p: Paint) -> None:
        for a, b, c, e in puffs:
            d.ellipse((x + a * w, y + b * h, x + c * w, y + e * h), fill=p(col), outline=p(edge))
        for a, b, c, e in puffs:  # fill again without outlines: one cloud, not four circles
            d.ellipse((x + a * w + 1, y + b * h + 1, x + c * w - 1, y + e * h - 1), fill=p(col))

    return _Obj(("cloud",), (x, y, x + w, y + h), draw, word="cloud")


def _make_bird(sc: _Scene) -> _Obj | None:
    rng, S = sc.rng, sc.S
    y0, y1 = sc.band("sky")  # type: ignore[misc]
    s = S * rng.uniform(0.05, 0.08)
    if y1 - y0 < s + 2:
        return None
    cx, cy = rng.uniform(s, S - s), rng.uniform(y0 + s * 0.6, y1 - s * 0.5)
    w = max(1, round(S / 40))
    col = _jitter(rng, (30, 30, 35), 10)

    def draw(d: ImageDraw.ImageDraw, p: Paint) -> None:
        d.line((cx - s, cy - 0.6 * s, cx, cy, cx + s, cy - 0.6 * s), fill=p(col), width=w)

    return _Obj(("bird",), (cx - s, cy - 0.6 * s - w, cx + s, cy + w), draw, word="bird")


def _make_airplane(sc: _Scene) -> _Obj | None:
    rng, S = sc.rng, sc.S
    y0, y1 = sc.band("sky")  # type: ignore[misc]
    L = S * rng.uniform(0.22, 0.32)
    h = L * 0.6
    if y1 - y0 < h + 2:
        return None
    cx, cy = rng.uniform(L / 2, S - L / 2), rng.uniform(y0 + h / 2, y1 - h / 2)
    flip = 1 if rng.random() < 0.5 else -1
    col = _jitter(rng, (200, 203, 212), 10)

    def draw(d: ImageDraw.ImageDraw, p: Paint) -> None:
        fx = lambda u: cx + flip * u * L  # noqa: E731 - local shorthand for mirrored x
        d.polygon([(fx(0.05), cy), (fx(-0.15), cy - 0.5 * h), (fx(-0.05), cy - 0.5 * h), (fx(0.2), cy)], fill=p(col), outline=p(OUTLINE))
        d.polygon([(fx(0.05), cy), (fx(-0.15), cy + 0.5 * h), (fx(-0.05), cy + 0.5 * h), (fx(0.2), cy)], fill=p(col), outline=p(OUTLINE))
        d.polygon([(fx(-0.5), cy), (fx(-0.5), cy - 0.3 * h), (fx(-0.38), cy)], fill=p(col), outline=p(OUTLINE))
        d.ellipse((cx - L / 2, cy - 0.09 * L, cx + L / 2, cy + 0.09 * L), fill=p(col), outline=p(OUTLINE))

    return _Obj(("airplane",), (cx - L / 2, cy - h / 2, cx + L / 2, cy + h / 2), draw, word="airplane")


def _make_mountain(sc: _Scene) -> _Obj | None:
    rng, S = sc.rng, sc.S
    y0, y1 = sc.band("sky")  # type: ignore[misc]
    w = S * rng.uniform(0.4, 0.65)
    h = (y1 - y0) * rng.uniform(0.5, 0.85)
    x = rng.uniform(-0.1 * w, S - 0.9 * w)
    peak = x + w * rng.uniform(0.4, 0.6)
    col = _jitter(rng, (110, 105, 120), 12)
    cap = 0.3

    def draw(d: ImageDraw.ImageDraw, p: Paint) -> None:
        d.polygon([(x, y1), (peak, y1 - h), (x + w, y1)], fill=p(col), outline=p(OUTLINE))
        d.polygon(
            [(peak - (peak - x) * cap, y1 - h * (1 - cap)), (peak, y1 - h), (peak + (x + w - peak) * cap, y1 - h * (1 - cap))],
            fill=p((245, 245, 250)),
        )

    box = (max(x, 0.0), y1 - h, min(x + w, S - 1.0), y1 - 1.0)
    return _Obj(("mountain",), box, draw, word="mountain")


def _make_boat(sc: _Scene) -> _Obj | None:
    rng, S = sc.rng, sc.S
    w = S * rng.uniform(0.2, 0.32)
    hull = 0.28 * w
    base = _ground_base(sc, "water", hull)
    if base is None:
        return None
    x = rng.uniform(0, S - w)
    sail = 0.75 * w
    col = _jitter(rng, (125, 70, 30), 15)

    def draw(d: ImageDraw.ImageDraw, p: Paint) -> None:
        d.polygon([(x, base - hull), (x + w, base - hull), (x + 0.8 * w, base), (x + 0.2 * w, base)], fill=p(col), outline=p(OUTLINE))
        d.line((x + 0.5 * w, base - hull, x + 0.5 * w, base - hull - sail), fill=p(OUTLINE), width=1)
        mast, deck = x + 0.5 * w + 1, base - hull - 1
        d.polygon([(mast, deck - sail + 1), (mast, deck), (x + 0.9 * w, deck)], fill=p((250, 250, 245)), outline=p(OUTLINE))

    return _Obj(("boat",), (x, base - hull - sail, x + w, base), draw, word="boat")


def _make_fish(sc: _Scene) -> _Obj | None:
    rng, S = sc.rng, sc.S
    b = sc.band("water")
    w = S * rng.uniform(0.12, 0.18)
    h = 0.5 * w
    if b is None or b[1] - b[0] < h + 3:
        return None
    x, y = rng.uniform(0, S - w), rng.uniform(b[0] + 1, b[1] - h - 1)
    flip = rng.random() < 0.5
    col = _jitter(rng, (245, 115, 85), 12)

    def draw(d: ImageDraw.ImageDraw, p: Paint) -> None:
        body = (x + 0.25 * w, y, x + w, y + h) if not flip else (x, y, x + 0.75 * w, y + h)
        tail_x, tip = (x, x + 0.3 * w) if not flip else (x + w, x + 0.7 * w)
        d.polygon([(tail_x, y), (tip, y + h / 2), (tail_x, y + h)], fill=p(col), outline=p(OUTLINE))
        d.ellipse(body, fill=p(col), outline=p(OUTLINE))
        ex = x + 0.85 * w if not flip else x + 0.15 * w
        d.point((ex, y + 0.4 * h), fill=p(OUTLINE))

    return _Obj(("fish",), (x, y, x + w, y + h), draw, word="fish")


def _make_tree(sc: _Scene) -> _Obj | None:
    rng, S = sc.rng, sc.S
    r = S * rng.uniform(0.07, 0.1)
    trunk = S * rng.uniform(0.08, 0.13)
    base = _ground_base(sc, "grass", trunk * 0.5)
    if base is None:
        return None
    cx = rng.uniform(1.4 * r, S - 1.4 * r)
    tw = max(2.0, S * 0.035)
    leaves = _jitter(rng, (30, 105, 40), 12)
    top = base - trunk - 1.8 * r

    def draw(d: ImageDraw.ImageDraw, p: Paint) -> None:
        d.rectangle((cx - tw / 2, base - trunk, cx + tw / 2, base), fill=p((100, 60, 25)))
        for dx, dy in ((-0.55, 0.0), (0.55, 0.0), (0.0, -0.7)):
            ox, oy = cx + dx * r, base - trunk + (dy - 0.3) * r  # centre of one leaf blob
            d.ellipse((ox - r, oy - r, ox + r, oy + r), fill=p(leaves), outline=p((20, 70, 25)))

    return _Obj(("tree",), (cx - 1.6 * r, top - 0.3 * r, cx + 1.6 * r, base), draw, word="tree")


def _make_flower(sc: _Scene) -> _Obj | None:
    rng, S = sc.rng, sc.S
    r = S * rng.uniform(0.025, 0.035)
    stem = S * 0.06
    base = _ground_base(sc, "grass", 0.0)
    if base is None:
        return None
    cx = rng.uniform(3 * r, S - 3 * r)
    cy = base - stem
    petal = _jitter(rng, (240, 120, 190) if rng.random() < 0.6 else (250, 250, 250), 12)

    def draw(d: ImageDraw.ImageDraw, p: Paint) -> None:
        d.line((cx, cy, cx, base), fill=p((30, 120, 30)), width=1)
        for k in range(5):
            a = k * 2 * math.pi / 5
            px, py = cx + 1.2 * r * math.cos(a), cy + 1.2 * r * math.sin(a)
            d.ellipse((px - r, py - r, px + r, py + r), fill=p(petal))
        d.ellipse((cx - 0.8 * r, cy - 0.8 * r, cx + 0.8 * r, cy + 0.8 * r), fill=p((250, 210, 30)))

    return _Obj(("flower",), (cx - 2.3 * r, cy - 2.3 * r, cx + 2.3 * r, base), draw, word="flower")


def _make_house(sc: _Scene) -> _Obj | None:
    rng, S = sc.rng, sc.S
    w = S * rng.uniform(0.18, 0.28)
    base = _ground_base(sc, "grass", w * 0.3)
    if base is None:
        return None
    x = rng.uniform(0, S - w * 1.1)
    roof = 0.55 * w
    wall = _jitter(rng, (230, 210, 170), 15)
    tiles = _jitter(rng, (150, 55, 45), 15)

    def draw(d: ImageDraw.ImageDraw, p: Paint) -> None:
        d.rectangle((x, base - w, x + w, base), fill=p(wall), outline=p(OUTLINE))
        d.polygon([(x - 0.08 * w, base - w), (x + w / 2, base - w - roof), (x + 1.08 * w, base - w)], fill=p(tiles), outline=p(OUTLINE))
        d.rectangle((x + 0.4 * w, base - 0.45 * w, x + 0.6 * w, base), fill=p((90, 55, 30)))
        d.rectangle((x + 0.12 * w, base - 0.8 * w, x + 0.3 * w, base - 0.62 * w), fill=p((150, 200, 240)))

    return _Obj(("house",), (x - 0.08 * w, base - w - roof, x + 1.08 * w, base), draw, word="house")


_CAR_COLOURS = ((60, 62, 70), (190, 192, 198), (25, 95, 95), (110, 25, 35))


def _make_car(sc: _Scene) -> _Obj | None:
    rng, S = sc.rng, sc.S
    w = S * rng.uniform(0.22, 0.3)
    h = 0.32 * w
    base = _ground_base(sc, "road", h)
    if base is None:
        return None
    x = rng.uniform(0, S - w)
    col = _jitter(rng, _CAR_COLOURS[int(rng.integers(len(_CAR_COLOURS)))], 10)
    wr = 0.12 * w

    def draw(d: ImageDraw.ImageDraw, p: Paint) -> None:
        roof, body = base - h - 0.3 * w, base - h
        d.polygon([(x + 0.2 * w, roof), (x + 0.75 * w, roof), (x + 0.9 * w, body), (x + 0.08 * w, body)], fill=p(col), outline=p(OUTLINE))
        d.rectangle((x + 0.27 * w, base - h - 0.24 * w, x + 0.72 * w, base - h - 0.04 * w), fill=p((160, 210, 240)))
        d.rectangle((x, base - h - wr * 0.3, x + w, base - wr), fill=p(col), outline=p(OUTLINE))
        for u in (0.22, 0.78):
            d.ellipse((x + u * w - wr, base - 2 * wr, x + u * w + wr, base), fill=p((15, 15, 15)))

    return _Obj(("car",), (x, base - h - 0.3 * w, x + w, base), draw, word="car")


def _make_snowman(sc: _Scene) -> _Obj | None:
    rng, S = sc.rng, sc.S
    r1 = S * rng.uniform(0.06, 0.085)
    r2 = 0.65 * r1
    base = _ground_base(sc, "snow", r1)
    if base is None:
        return None
    cx = rng.uniform(r1 + 1, S - r1 - 1)
    edge = (150, 155, 170)
    white = (252, 252, 252)

    def draw(d: ImageDraw.ImageDraw, p: Paint) -> None:
        d.ellipse((cx - r1, base - 2 * r1, cx + r1, base), fill=p(white), outline=p(edge))
        c2 = base - 2 * r1 - r2 + 1
        d.ellipse((cx - r2, c2 - r2, cx + r2, c2 + r2), fill=p(white), outline=p(edge))
        d.point([(cx - 0.35 * r2, c2 - 0.2 * r2), (cx + 0.35 * r2, c2 - 0.2 * r2)], fill=p(OUTLINE))
        d.line((cx, c2 + 0.1 * r2, cx + 0.6 * r2, c2 + 0.2 * r2), fill=p((250, 130, 20)), width=1)
        d.line((cx - r1 * 0.8, base - 1.6 * r1, cx - r1 * 1.3, base - 2.0 * r1), fill=p((90, 55, 25)), width=1)

    return _Obj(("snowman",), (cx - 1.3 * r1, base - 2 * r1 - 2 * r2, cx + r1, base), draw, word="snowman")


def _make_umbrella(sc: _Scene) -> _Obj | None:
    rng, S = sc.rng, sc.S
    r = S * rng.uniform(0.1, 0.14)
    pole = 1.1 * r
    base = _ground_base(sc, "sand", pole * 0.6)
    if base is None:
        return None
    cx = rng.uniform(r, S - r)
    top = base - pole - r
    stripe = _jitter(rng, (220, 40, 50) if rng.random() < 0.5 else (40, 120, 220), 15)
    n = 6

    def draw(d: ImageDraw.ImageDraw, p: Paint) -> None:
        d.line((cx, base - pole, cx, base), fill=p((80, 60, 40)), width=max(1, round(S / 64)))
        for k in range(n):
            fill = p(stripe if k % 2 == 0 else (250, 250, 250))
            d.pieslice((cx - r, top, cx + r, top + 2 * r), 180 + k * 180 / n, 180 + (k + 1) * 180 / n, fill=fill)
        d.arc((cx - r, top, cx + r, top + 2 * r), 180, 360, fill=p(OUTLINE))

    return _Obj(("umbrella",), (cx - r, top, cx + r, base), draw, word="umbrella")


_THING_MAKERS: dict[str, Callable[[_Scene], _Obj | None]] = {
    "sun": _make_sun,
    "cloud": _make_cloud,
    "bird": _make_bird,
    "airplane": _make_airplane,
    "mountain": _make_mountain,
    "boat": _make_boat,
    "fish": _make_fish,
    "tree": _make_tree,
    "flower": _make_flower,
    "house": _make_house,
    "car": _make_car,
    "snowman": _make_snowman,
    "umbrella": _make_umbrella,
}


# ---------------------------------------------------------------------------------------------
# Region textures (numpy, in place)
# ---------------------------------------------------------------------------------------------
def _paint_region(img: np.ndarray, rng: np.random.Generator, region: str, y0: int, y1: int) -> None:
    S = img.shape[1]
    h = y1 - y0
    if h <= 0:
        return
    view = img[y0:y1]  # [h, S, 3] int16
    if region == "sky":
        top, bottom = np.asarray(_jitter(rng, (85, 145, 228), 15)), np.asarray(_jitter(rng, (178, 212, 245), 10))
        t = np.linspace(0, 1, h)[:, None]  # [h, 1]
        grad = top[None, :] * (1 - t) + bottom[None, :] * t  # [h, 3]
        view[:] = grad[:, None, :].astype(np.int16)  # [h, 3] -> [h, 1, 3] broadcast over columns
    elif region == "grass":
        view[:] = np.asarray(_jitter(rng, (65, 150, 55), 12), dtype=np.int16)
        view += rng.integers(-22, 23, (h, S, 1), dtype=np.int16)  # light/dark blades
    elif region == "water":
        view[:] = np.asarray(_jitter(rng, (40, 95, 190), 12), dtype=np.int16)
        yy, xx = np.mgrid[0:h, 0:S]
        waves = (np.sin(yy * 1.3 + np.sin(xx * 0.35 + rng.uniform(0, 6.28)) * 1.5) > 0.85) * 40
        view += waves[:, :, None].astype(np.int16)
    elif region == "snow":
        view[:] = np.asarray(_jitter(rng, (236, 240, 250), 5), dtype=np.int16)
        view += rng.integers(-7, 8, (h, S, 1), dtype=np.int16)
    elif region == "sand":
        view[:] = np.asarray(_jitter(rng, (222, 196, 138), 10), dtype=np.int16)
        view += rng.integers(-16, 17, (h, S, 1), dtype=np.int16)
    elif region == "road":
        view[:] = np.asarray(_jitter(rng, (88, 88, 93), 8), dtype=np.int16)
        view += rng.integers(-6, 7, (h, S, 1), dtype=np.int16)
        mid = h // 2
        dash = max(2, S // 10)
        cols = (np.arange(S) // dash) % 2 == 0
        thick = max(1, S // 40)
        view[mid : mid + thick, cols] = 235
    else:  # pragma: no cover - internal invariant
        raise AssertionError(region)


# ---------------------------------------------------------------------------------------------
# Captions
# ---------------------------------------------------------------------------------------------
_NUMBERS = {2: "two", 3: "three"}
_PLURAL = {"box": "boxes", "cross": "crosses", "fish": "fish"}
_MASS = {"sky": ("the sky", "a blue sky"), "grass": ("grass", "green grass"), "water": ("water", "blue water"),
         "snow": ("snow", "white snow"), "sand": ("sand", "yellow sand"), "road": ("a road", "the road")}  # fmt: skip
_THE = {"sun"}  # "the sun"
_TEMPLATES = ("a photo of {}.", "a picture of {}.", "an image showing {}.", "{}.", "a scene with {}.")
_SKY_TEMPLATES = ("a photo of {} on {} under {}.", "{} on {} under {}.")
P_DROP_COLOUR = 0.15  # captions sometimes say "a ball" instead of "a red ball"


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _phrase(word: str, n: int, adjective: str = "") -> str:
    noun = f"{adjective} {word}".strip()
    if n == 1:
        return f"the {noun}" if word in _THE else f"{_article(noun)} {noun}"
    plural = _PLURAL.get(word, word + "s")
    return f"{_NUMBERS.get(min(n, MAX_PLURAL), 'many')} {adjective + ' ' if adjective else ''}{plural}"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _caption(rng: np.random.Generator, sc: _Scene) -> str:
    counts: dict[tuple[str, str], int] = {}
    for o in sc.objs:
        key = (o.word, o.colour)
        counts[key] = counts.get(key, 0) + 1
    things = []
    for (word, colour), n in counts.items():
        adj = "" if colour and rng.random() < P_DROP_COLOUR else colour
        things.append(_phrase(word, n, adj))
    regions = [_MASS[name][int(rng.integers(2))] for name, _, _ in sc.bands]
    order = rng.permutation(len(things))
    things = [things[i] for i in order]
    has_sky = sc.bands[0][0] == "sky"
    if has_sky and things and rng.random() < 0.5:
        tpl = _SKY_TEMPLATES[int(rng.integers(len(_SKY_TEMPLATES)))]
        return tpl.format(_join(things), _join(regions[1:]), regions[0])
    items = things + regions
    items = [items[i] for i in rng.permutation(len(items))]
    return _TEMPLATES[int(rng.integers(len(_TEMPLATES)))].format(_join(items))


# ---------------------------------------------------------------------------------------------
# The world
# ---------------------------------------------------------------------------------------------
SeedLike = int | Sequence[int]


class MiniWorld:
    """A seeded generator of mini-world scenes with a fixed vocabulary and seen/unseen split.

    Args:
        seed: world seed; every sample stream is derived from it, so two worlds with the same seed
            produce the same images.
        image_size: side of the square images in px (all geometry scales with it).

    Attributes:
        label_names: all labels, seen first, then unseen.
        seen_names, unseen_names: the two parts of the vocabulary.
        seen_mask, unseen_mask: BoolTensor [K].
    """

    def __init__(self, seed: int = 0, image_size: int = DEFAULT_IMAGE_SIZE) -> None:
        if image_size < 32:
            raise ValueError(f"MiniWorld image_size must be at least 32 px, got {image_size}")
        self.seed = int(seed)
        self.image_size = int(image_size)
        everything = REGIONS + THINGS + SHAPES + COMBOS
        self.seen_names = [n for n in everything if n not in UNSEEN]
        self.unseen_names = [n for n in everything if n in UNSEEN]
        self.label_names = self.seen_names + self.unseen_names
        self._index = {n: i for i, n in enumerate(self.label_names)}
        k = len(self.label_names)
        self.seen_mask = torch.zeros(k, dtype=torch.bool)
        self.seen_mask[: len(self.seen_names)] = True
        self.unseen_mask = ~self.seen_mask

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def __repr__(self) -> str:
        return (
            f"MiniWorld(seed={self.seed}, image_size={self.image_size}, labels={self.num_labels}, "
            f"unseen={len(self.unseen_names)})"
        )

    def _rng(self, seed: SeedLike) -> np.random.Generator:
        parts = [seed] if isinstance(seed, (int, np.integer)) else list(seed)
        return np.random.default_rng(np.random.SeedSequence([self.seed, *[int(p) for p in parts]]))

    def _scene(self, rng: np.random.Generator) -> _Scene:
        """Plan and place one scene (no pixels yet)."""
        sc = _Scene(rng, self.image_size)
        sc.layout()
        regions = [b[0] for b in sc.bands]
        planned: list[str] = []
        if "sky" in regions:
            planned += [t for t in SKY_THINGS if rng.random() < P_THING[t]]
        for region in regions:
            planned += [t for t in GROUND_THINGS.get(region, ()) if rng.random() < P_THING[t]]
        n_shapes = int(rng.choice(len(SHAPE_COUNT_P), p=SHAPE_COUNT_P))
        shapes = [(SHAPES[int(rng.integers(len(SHAPES)))], list(COLOURS)[int(rng.integers(len(COLOURS)))]) for _ in range(n_shapes)]
        # keep at most MAX_LABELS labels: drop planned items at random until they fit
        while len(regions) + len(planned) + len(_shape_labels(shapes)) > MAX_LABELS:
            n_items = len(planned) + len(shapes)
            drop = int(rng.integers(n_items))
            if drop < len(planned):
                planned.pop(drop)
            else:
                shapes.pop(drop - len(planned))
        order = sorted(planned, key=lambda t: t != "mountain")  # the mountain first, behind the rest
        for t in order:
            sc.add_thing(t)
        for shape, colour in shapes:
            sc.add_shape(shape, colour)
        # at least MIN_LABELS labels: add shapes whose labels are new
        tries = 0
        while len(self._present(sc)) < MIN_LABELS and tries < PLACE_TRIES:
            tries += 1
            have = self._present(sc)
            shape = SHAPES[int(rng.integers(len(SHAPES)))]
            colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
            if f"{colour} {shape}" not in have and len(have | {shape, f'{colour} {shape}'}) <= MAX_LABELS:
                sc.add_shape(shape, colour)
        return sc

    @staticmethod
    def _present(sc: _Scene) -> set[str]:
        out = {b[0] for b in sc.bands}
        for o in sc.objs:
            out.update(o.labels)
        return out

    def _render(self, sc: _Scene, rng: np.random.Generator, ids: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        S = self.image_size
        canvas = np.zeros((S, S, 3), dtype=np.int16)
        for region, y0, y1 in sc.bands:
            _paint_region(canvas, rng, region, y0, y1)
        img = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
        d = ImageDraw.Draw(img)
        for o in sc.objs:
            o.draw(d, lambda c: c)
        arr = np.asarray(img).astype(np.int16)
        arr += rng.integers(-PIXEL_NOISE, PIXEL_NOISE + 1, arr.shape, dtype=np.int16)
        out = np.clip(arr, 0, 255).astype(np.uint8)
        idmap = None
        if ids:
            # which element owns each pixel: 1..B for the bands, B+1.. for the objects in drawing order
            m = Image.new("L", (S, S), 0)
            md = ImageDraw.Draw(m)
            nb = len(sc.bands)
            for i, (_, y0, y1) in enumerate(sc.bands):
                md.rectangle((0, y0, S - 1, y1 - 1), fill=i + 1)
            for j, o in enumerate(sc.objs):
                o.draw(md, lambda c, j=j: nb + 1 + j)
            idmap = np.asarray(m)
        return out, idmap

    def sample(self, n: int, seed: SeedLike = 0, *, return_areas: bool = False):
        """Generate `n` scenes from the stream `seed` of this world.

        Scenes are generated one after another from one random stream, so `sample(10, s)` is the
        first ten scenes of `sample(100, s)`.

        Args:
            n: number of scenes.
            seed: stream seed (an int or a tuple of ints), combined with the world seed.
            return_areas: also return the fraction of the image each present label covers
                (float32 [n, K], 0 where absent); slower, used by `describe()`.

        Returns:
            images uint8 [n, H, W, 3], labels int8 [n, K] in {+1, -1}, captions list[str] (and the
            areas when asked).
        """
        if n < 0:
            raise ValueError(f"MiniWorld.sample: n must be >= 0, got {n}")
        S, K = self.image_size, self.num_labels
        rng = self._rng(seed)
        images = np.empty((n, S, S, 3), dtype=np.uint8)
        labels = np.full((n, K), NEGATIVE, dtype=np.int8)
        areas = np.zeros((n, K), dtype=np.float32) if return_areas else None
        captions: list[str] = []
        for i in range(n):
            sc = self._scene(rng)
            images[i], idmap = self._render(sc, rng, ids=return_areas)
            for name in self._present(sc):
                labels[i, self._index[name]] = POSITIVE
            captions.append(_caption(rng, sc))
            if areas is not None and idmap is not None:
                nb = len(sc.bands)
                owners: dict[str, list[int]] = {}
                for b, (region, _, _) in enumerate(sc.bands):
                    owners.setdefault(region, []).append(b + 1)
                for j, o in enumerate(sc.objs):
                    for name in o.labels:
                        owners.setdefault(name, []).append(nb + 1 + j)
                for name, ids in owners.items():
                    areas[i, self._index[name]] = np.isin(idmap, ids).mean()
        if return_areas:
            return images, labels, captions, areas
        return images, labels, captions

    def describe(self, n: int = 500, seed: SeedLike = 0) -> list[dict[str, Any]]:
        """A small table of the vocabulary: label, split, kind, frequency and mean area.

        Args:
            n: scenes to measure on.
            seed: stream seed.

        Returns:
            One dict per label with keys `label`, `split` ("seen"/"unseen"), `kind`
            ("region"/"thing"/"shape"/"combination"), `frequency` (share of scenes with the label)
            and `area` (mean fraction of the image the label covers when present).
        """
        _, labels, _, areas = self.sample(n, seed, return_areas=True)
        pos = labels == POSITIVE
        rows = []
        for k, name in enumerate(self.label_names):
            kind = "region" if name in REGIONS else "thing" if name in THINGS else "shape" if name in SHAPES else "combination"
            count = int(pos[:, k].sum())
            rows.append(
                {
                    "label": name,
                    "split": "seen" if bool(self.seen_mask[k]) else "unseen",
                    "kind": kind,
                    "frequency": count / max(n, 1),
                    "area": float(areas[pos[:, k], k].mean()) if count else 0.0,
                }
            )
        return rows


def _shape_labels(shapes: list[tuple[str, str]]) -> set[str]:
    out: set[str] = set()
    for shape, colour in shapes:
        out.update((shape, f"{colour} {shape}"))
    return out


def format_description(rows: list[dict[str, Any]]) -> str:
    """`MiniWorld.describe()` as a markdown table."""
    lines = ["| label | split | kind | frequency | mean area |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['split']} | {r['kind']} | {r['frequency']:.3f} | {r['area']:.3f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------------
CACHE_ENTRIES = 8  # generated splits kept in memory (a 2000-scene 64 px split is 25 MB)


@lru_cache(maxsize=CACHE_ENTRIES)
def _cached_split(world_seed: int, image_size: int, split: str, n: int) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Generated arrays of one split, kept in memory (read-only) so rebuilding a dataset is free."""
    images, labels, captions = MiniWorld(world_seed, image_size).sample(n, (SPLITS[split],))
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels, tuple(captions)


class MiniWorldDataset(torch.utils.data.Dataset):
    """A split of the mini-world as a multi-label dataset (the c2srt dataset contract).

    Splits come from disjoint random streams of one world: "train" and "test" for fine-tuning and
    evaluation, "pretrain" for the CLIP stand-in (its samples also carry a "caption").

    Args:
        split: "train", "test" or "pretrain".
        n: number of scenes (default: `n_train` / `n_test` / `n_pretrain` by split).
        seed: world seed.
        transform: called on a PIL image, returns a float tensor [3, H, W]; None gives the image as a
            float tensor in [0, 1].
        image_size: generated image side in px.
        n_train, n_test, n_pretrain: default sizes of the splits.

    Shapes:
        sample["image"]: [3, H, W] float; sample["target"]: [K] long in {+1, -1}; K = 68 labels,
        seen first, then unseen.
    """

    def __init__(
        self,
        split: str = "train",
        *,
        n: int | None = None,
        seed: int = 0,
        transform: Callable[[Image.Image], torch.Tensor] | None = None,
        image_size: int = DEFAULT_IMAGE_SIZE,
        n_train: int = DEFAULT_SIZES["train"],
        n_test: int = DEFAULT_SIZES["test"],
        n_pretrain: int = DEFAULT_SIZES["pretrain"],
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"miniworld: unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
        size = {"train": n_train, "test": n_test, "pretrain": n_pretrain}[split] if n is None else n
        if size < 1:
            raise ValueError(f"miniworld: the {split} split needs at least one scene, got n={size}")
        self.split = split
        self.seed = int(seed)
        self.transform = transform
        self.world = MiniWorld(self.seed, image_size)
        t0 = time_now()
        self.images, self.labels, self.captions = _cached_split(self.seed, int(image_size), split, int(size))
        _logger.debug("miniworld %s: %d scenes ready in %.2f s", split, size, time_now() - t0)

    @property
    def label_names(self) -> list[str]:
        return list(self.world.label_names)

    @property
    def seen_mask(self) -> torch.Tensor:
        return self.world.seen_mask.clone()

    @property
    def unseen_mask(self) -> torch.Tensor:
        return self.world.unseen_mask.clone()

    @property
    def targets(self) -> torch.Tensor:
        """The whole label matrix, LongTensor [N, K] in {+1, -1}."""
        return torch.tensor(self.labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.images)

    def _check(self, i: int) -> int:
        if not -len(self) <= i < len(self):
            raise IndexError(f"miniworld {self.split}: index {i} out of range for {len(self)} scenes")
        return i % len(self)

    def pil_image(self, i: int) -> Image.Image:
        """Scene `i` as a PIL image (for pictures and for transforms)."""
        return Image.fromarray(self.images[self._check(i)])

    def image_path(self, i: int) -> str:
        """A synthetic id: the scenes live in memory, not on disk."""
        return f"miniworld:{self.split}:{self._check(i)}"

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = self._check(int(i))
        if self.transform is not None:
            image = self.transform(self.pil_image(i))
        else:
            image = torch.from_numpy(np.array(self.images[i])).permute(2, 0, 1).float().div_(255.0)  # [H, W, 3] -> [3, H, W]
        sample: dict[str, Any] = {
            "image": image,
            "target": torch.tensor(self.labels[i], dtype=torch.long),
            "index": i,
        }
        if self.split == "pretrain":
            sample["caption"] = self.captions[i]
        return sample

    def __repr__(self) -> str:
        return f"MiniWorldDataset(split={self.split!r}, n={len(self)}, seed={self.seed}, labels={len(self.label_names)})"


register_dataset("miniworld")(MiniWorldDataset)
