"""Drawing the mini-world: every thing inside a box, region textures, and the two domains' styles.

Why boxes: the same concept is drawn in two domains that place it very differently (large and
centred in a web photo, small in a corner of a cluttered benchmark scene), so every painter draws
its thing into any box `(x, y, w, h)` with a style sampled beforehand. Every painter takes
`paint(colour) -> fill`, so the same calls draw the RGB image and a map of object ids (from which
labels, areas and per-patch coverage are measured, never assumed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from PIL import ImageDraw

Paint = Callable[[tuple[int, int, int]], Any]
Style = dict[str, Any]
Painter = Callable[[ImageDraw.ImageDraw, Paint, float, float, float, float, Style], None]

OUTLINE = (25, 25, 30)
COLOUR_JITTER = 25  # +- per channel on object colours, so colour names cover a range
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "blue": (35, 70, 215),
    "green": (40, 175, 50),
    "yellow": (240, 215, 30),
    "purple": (140, 45, 185),
    "orange": (250, 135, 25),
}


def jitter(rng: np.random.Generator, colour: tuple[int, int, int], amount: int = COLOUR_JITTER) -> tuple[int, int, int]:
    c = np.clip(np.asarray(colour) + rng.integers(-amount, amount + 1, 3), 0, 255)
    return (int(c[0]), int(c[1]), int(c[2]))


def _width(size: float, frac: float) -> int:
    """A line width that scales with the object (at least one pixel)."""
    return max(1, round(size * frac))


def _rotate(points: np.ndarray, angle: float, cx: float, cy: float, sx: float, sy: float) -> list[tuple[float, float]]:
    ca, sa = math.cos(angle), math.sin(angle)
    x = (points[:, 0] * ca - points[:, 1] * sa) * sx + cx
    y = (points[:, 0] * sa + points[:, 1] * ca) * sy + cy
    return list(zip(x.tolist(), y.tolist()))


# ---------------------------------------------------------------------------------------------
# Shapes (free objects with a colour)
# ---------------------------------------------------------------------------------------------
_STAR = np.array(
    [
        (math.cos(-math.pi / 2 + k * math.pi / 5) * (1.0 if k % 2 == 0 else 0.45),
         math.sin(-math.pi / 2 + k * math.pi / 5) * (1.0 if k % 2 == 0 else 0.45) + 0.1)
        for k in range(10)
    ]
)  # fmt: skip
_TRIANGLE = np.array([(0.0, -1.0), (1.0, 0.85), (-1.0, 0.85)])
_SQUARE = np.array([(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)])
_ARM = 0.34
_CROSS = np.array(
    [(-_ARM, -1), (_ARM, -1), (_ARM, -_ARM), (1, -_ARM), (1, _ARM), (_ARM, _ARM),
     (_ARM, 1), (-_ARM, 1), (-_ARM, _ARM), (-1, _ARM), (-1, -_ARM), (-_ARM, -_ARM)]
)  # fmt: skip
_t = np.linspace(0, 2 * math.pi, 24, endpoint=False)
_HEART = np.stack([16 * np.sin(_t) ** 3, -(13 * np.cos(_t) - 5 * np.cos(2 * _t) - 2 * np.cos(3 * _t) - np.cos(4 * _t))], 1)
_HEART = (_HEART - (_HEART.max(0) + _HEART.min(0)) / 2) / 16.5
_POLYGONS = {"box": _SQUARE, "triangle": _TRIANGLE, "star": _STAR, "cross": _CROSS, "heart": _HEART}
_MAX_TILT = {"box": 0.3, "triangle": 0.2, "star": 0.5, "cross": 0.35, "heart": 0.25}  # rad


def shape_style(rng: np.random.Generator) -> Style:
    name = list(COLOURS)[int(rng.integers(len(COLOURS)))]
    return {"colour_name": name, "colour": jitter(rng, COLOURS[name]), "tilt": float(rng.uniform(-1, 1))}


def _shape_painter(shape: str) -> Painter:
    def draw(d: ImageDraw.ImageDraw, p: Paint, x: float, y: float, w: float, h: float, st: Style) -> None:
        cx, cy, rx, ry = x + w / 2, y + h / 2, w / 2, h / 2
        out = p(OUTLINE)
        if shape == "ball":
            d.ellipse((x, y, x + w, y + h), fill=p(st["colour"]), outline=out)
            hl = 0.3 * rx  # a highlight: a ball, not a disc
            d.ellipse((cx - 0.45 * rx - hl / 2, cy - 0.45 * ry - hl / 2, cx - 0.45 * rx + hl / 2, cy - 0.45 * ry + hl / 2), fill=p((250, 250, 250)))
        elif shape == "ring":
            band = max(2, round(rx * 0.38))
            d.ellipse((x, y, x + w, y + h), outline=out, width=1)
            d.ellipse((x + 1, y + 1, x + w - 1, y + h - 1), outline=p(st["colour"]), width=band)
            ri = rx - 1 - band
            d.ellipse((cx - ri, cy - ri, cx + ri, cy + ri), outline=out, width=1)  # the hole shows what is behind
        else:
            d.polygon(_rotate(_POLYGONS[shape], st["tilt"] * _MAX_TILT[shape], cx, cy, rx, ry), fill=p(st["colour"]), outline=out)

    return draw


# ---------------------------------------------------------------------------------------------
# Scene things
# ---------------------------------------------------------------------------------------------
def _sun(d, p, x, y, w, h, st):
    cx, cy, ray = x + w / 2, y + h / 2, w / 2
    r = ray / 1.7
    lw = _width(w, 0.06)
    for k in range(8):
        a = k * math.pi / 4 + st["spin"]
        ca, sa = math.cos(a), math.sin(a)
        d.line((cx + 1.25 * r * ca, cy + 1.25 * r * sa, cx + ray * ca, cy + ray * sa), fill=p(st["colour"]), width=lw)
    d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=p(st["colour"]))


def _cloud(d, p, x, y, w, h, st):
    puffs = [(0.0, 0.35, 0.45, 1.0), (0.2, 0.0, 0.7, 0.85), (0.5, 0.2, 1.0, 1.0), (0.3, 0.4, 0.8, 1.0)]
    for a, b, c, e in puffs:
        d.ellipse((x + a * w, y + b * h, x + c * w, y + e * h), fill=p(st["colour"]), outline=p((200, 205, 215)))
    for a, b, c, e in puffs:  # fill again without outlines: one cloud, not four circles
        d.ellipse((x + a * w + 1, y + b * h + 1, x + c * w - 1, y + e * h - 1), fill=p(st["colour"]))


def _bird(d, p, x, y, w, h, st):
    lw = _width(w, 0.12)
    d.line((x, y, x + w / 2, y + h - lw, x + w, y), fill=p(st["colour"]), width=lw)


def _airplane(d, p, x, y, w, h, st):
    cx, cy, L = x + w / 2, y + h / 2, w
    fx = (lambda u: cx + u * L) if st["flip"] else (lambda u: cx - u * L)
    col, out = p(st["colour"]), p(OUTLINE)
    d.polygon([(fx(0.05), cy), (fx(-0.15), cy - 0.5 * h), (fx(-0.05), cy - 0.5 * h), (fx(0.2), cy)], fill=col, outline=out)
    d.polygon([(fx(0.05), cy), (fx(-0.15), cy + 0.5 * h), (fx(-0.05), cy + 0.5 * h), (fx(0.2), cy)], fill=col, outline=out)
    d.polygon([(fx(-0.5), cy), (fx(-0.5), cy - 0.35 * h), (fx(-0.38), cy)], fill=col, outline=out)
    d.ellipse((cx - L / 2, cy - 0.1 * L, cx + L / 2, cy + 0.1 * L), fill=col, outline=out)


def _kite(d, p, x, y, w, h, st):
    top, mid, bottom = y, y + 0.3 * h, y + 0.62 * h
    cx = x + w / 2
    d.polygon([(cx, top), (x + w, mid), (cx, bottom), (x, mid)], fill=p(st["colour"]), outline=p(OUTLINE))
    d.line((cx, top, cx, bottom), fill=p(OUTLINE), width=1)
    d.line((x, mid, x + w, mid), fill=p(OUTLINE), width=1)
    tail = [(cx, bottom), (cx - 0.25 * w, y + 0.75 * h), (cx + 0.15 * w, y + 0.87 * h), (cx - 0.1 * w, y + h)]
    d.line(tail, fill=p(st["tail"]), width=1)


def _rainbow(d, p, x, y, w, h, st):
    bands = ((230, 40, 40), (245, 140, 30), (245, 225, 40), (60, 180, 60), (50, 90, 220), (130, 60, 190))
    band = max(1.0, w * 0.045)
    for i, col in enumerate(bands):
        inset = i * band
        d.arc((x + inset, y + inset, x + w - inset, y + 2 * h - inset), 180, 360, fill=p(col), width=math.ceil(band))


def _mountain(d, p, x, y, w, h, st):
    base, peak = y + h, x + w * st["peak"]
    d.polygon([(x, base), (peak, y), (x + w, base)], fill=p(st["colour"]), outline=p(OUTLINE))
    cap = 0.32
    d.polygon([(peak - (peak - x) * cap, y + h * cap), (peak, y), (peak + (x + w - peak) * cap, y + h * cap)], fill=p((245, 245, 250)))


def _boat(d, p, x, y, w, h, st):
    hull = 0.28 * h
    base = y + h
    out = p(OUTLINE)
    d.polygon([(x, base - hull), (x + w, base - hull), (x + 0.8 * w, base), (x + 0.2 * w, base)], fill=p(st["colour"]), outline=out)
    mast = x + 0.5 * w
    d.line((mast, base - hull, mast, y), fill=out, width=_width(w, 0.03))
    d.polygon([(mast + 1, y + 1), (mast + 1, base - hull - 1), (x + 0.92 * w, base - hull - 1)], fill=p(st["sail"]), outline=out)


def _fish(d, p, x, y, w, h, st):
    flip = st["flip"]
    body = (x + 0.25 * w, y, x + w, y + h) if not flip else (x, y, x + 0.75 * w, y + h)
    tail_x, tip = (x, x + 0.32 * w) if not flip else (x + w, x + 0.68 * w)
    d.polygon([(tail_x, y), (tip, y + h / 2), (tail_x, y + h)], fill=p(st["colour"]), outline=p(OUTLINE))
    d.ellipse(body, fill=p(st["colour"]), outline=p(OUTLINE))
    ex = x + 0.82 * w if not flip else x + 0.18 * w
    d.point((ex, y + 0.4 * h), fill=p(OUTLINE))


def _duck(d, p, x, y, w, h, st):
    flip = st["flip"]
    fx = (lambda u: x + u * w) if not flip else (lambda u: x + (1 - u) * w)
    body = sorted((fx(0.0), fx(0.78)))
    d.ellipse((body[0], y + 0.45 * h, body[1], y + h), fill=p(st["colour"]), outline=p(OUTLINE))
    head = sorted((fx(0.5), fx(0.9)))
    d.ellipse((head[0], y, head[1], y + 0.5 * h), fill=p(st["colour"]), outline=p(OUTLINE))
    beak = [(fx(0.88), y + 0.18 * h), (fx(1.0), y + 0.26 * h), (fx(0.88), y + 0.32 * h)]
    d.polygon(beak, fill=p((240, 130, 20)))
    d.point((fx(0.75), y + 0.18 * h), fill=p(OUTLINE))


def _tree(d, p, x, y, w, h, st):
    r = w / 3.2
    trunk_w = max(2.0, w * 0.14)
    cx, base = x + w / 2, y + h
    trunk_top = y + 1.9 * r
    d.rectangle((cx - trunk_w / 2, trunk_top, cx + trunk_w / 2, base), fill=p((100, 60, 25)))
    for dx, dy in ((-0.55, 1.3), (0.55, 1.3), (0.0, 0.95)):
        ox, oy = cx + dx * r, y + dy * r
        d.ellipse((ox - r, oy - r, ox + r, oy + r), fill=p(st["colour"]), outline=p((20, 70, 25)))


def _palm(d, p, x, y, w, h, st):
    base_x, base_y = x + w * (0.35 if st["flip"] else 0.65), y + h
    top_x, top_y = x + w / 2, y + 0.3 * h
    tw = max(2.0, w * 0.1)
    d.polygon([(base_x - tw / 2, base_y), (base_x + tw / 2, base_y), (top_x + tw / 3, top_y), (top_x - tw / 3, top_y)], fill=p((140, 95, 50)), outline=p(OUTLINE))
    for a in (-160, -125, -90, -55, -20):
        rad = math.radians(a)
        ex, ey = top_x + 0.5 * w * math.cos(rad), top_y + 0.3 * h * math.sin(rad) + 0.12 * h
        d.line((top_x, top_y, (top_x + ex) / 2, min(top_y, ey) - 0.06 * h, ex, ey), fill=p(st["colour"]), width=_width(w, 0.09))


def _flower(d, p, x, y, w, h, st):
    r = w / 4.6
    cx, cy, base = x + w / 2, y + 2.3 * r, y + h
    d.line((cx, cy, cx, base), fill=p((30, 120, 30)), width=1)
    for k in range(5):
        a = k * 2 * math.pi / 5
        px, py = cx + 1.2 * r * math.cos(a), cy + 1.2 * r * math.sin(a)
        d.ellipse((px - r, py - r, px + r, py + r), fill=p(st["colour"]))
    d.ellipse((cx - 0.8 * r, cy - 0.8 * r, cx + 0.8 * r, cy + 0.8 * r), fill=p((250, 210, 30)))


def _house(d, p, x, y, w, h, st):
    wall_w = w / 1.16
    wx, base = x + 0.08 * wall_w, y + h
    wall_top = y + 0.45 * h
    out = p(OUTLINE)
    d.rectangle((wx, wall_top, wx + wall_w, base), fill=p(st["wall"]), outline=out)
    d.polygon([(x, wall_top), (x + w / 2, y), (x + w, wall_top)], fill=p(st["roof"]), outline=out)
    d.rectangle((wx + 0.4 * wall_w, base - 0.45 * (base - wall_top), wx + 0.6 * wall_w, base), fill=p((90, 55, 30)))
    d.rectangle((wx + 0.12 * wall_w, wall_top + 0.2 * (base - wall_top), wx + 0.3 * wall_w, wall_top + 0.45 * (base - wall_top)), fill=p((150, 200, 240)))


def _fence(d, p, x, y, w, h, st):
    n = max(3, round(w / max(3.0, h * 0.5)))
    pw = w / n
    col = p(st["colour"])
    for i in range(n):
        px = x + i * pw + 0.15 * pw
        d.polygon([(px, y + 0.2 * h), (px + 0.35 * pw, y), (px + 0.7 * pw, y + 0.2 * h), (px + 0.7 * pw, y + h), (px, y + h)], fill=col, outline=p(OUTLINE))
    for fy in (0.35, 0.7):
        d.rectangle((x, y + fy * h, x + w, y + fy * h + max(1.0, 0.12 * h)), fill=col)


def _car(d, p, x, y, w, h, st):
    base = y + h
    body_h = 0.5 * h
    wr = 0.12 * w
    out, col = p(OUTLINE), p(st["colour"])
    d.polygon([(x + 0.2 * w, y), (x + 0.75 * w, y), (x + 0.9 * w, base - body_h), (x + 0.08 * w, base - body_h)], fill=col, outline=out)
    d.rectangle((x + 0.27 * w, y + 0.15 * h, x + 0.72 * w, base - body_h - 0.05 * h), fill=p((160, 210, 240)))
    d.rectangle((x, base - body_h, x + w, base - wr), fill=col, outline=out)
    for u in (0.22, 0.78):
        d.ellipse((x + u * w - wr, base - 2 * wr, x + u * w + wr, base), fill=p((15, 15, 15)))


def _bus(d, p, x, y, w, h, st):
    base, wr = y + h, 0.07 * w
    out = p(OUTLINE)
    d.rounded_rectangle((x, y, x + w, base - wr), radius=max(1.0, 0.08 * h), fill=p(st["colour"]), outline=out)
    n = 5
    for i in range(n):
        wx = x + 0.06 * w + i * 0.18 * w
        d.rectangle((wx, y + 0.15 * h, wx + 0.13 * w, y + 0.45 * h), fill=p((160, 210, 240)))
    d.rectangle((x + 0.02 * w, y + 0.6 * h, x + w - 0.02 * w, y + 0.66 * h), fill=p((245, 245, 245)))
    for u in (0.18, 0.82):
        d.ellipse((x + u * w - wr, base - 2 * wr, x + u * w + wr, base), fill=p((15, 15, 15)))


def _traffic_light(d, p, x, y, w, h, st):
    cx = x + w / 2
    box_h = 0.55 * h
    d.rectangle((cx - max(0.5, 0.08 * w), y + box_h, cx + max(0.5, 0.08 * w), y + h), fill=p((70, 70, 75)))
    d.rectangle((x, y, x + w, y + box_h), fill=p((35, 35, 40)), outline=p(OUTLINE))
    r = min(w * 0.32, box_h / 7)
    for i, col in enumerate(((230, 40, 30), (240, 200, 30), (40, 200, 70))):
        cy = y + box_h * (i + 0.5) / 3
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=p(col))


def _snowman(d, p, x, y, w, h, st):
    r1 = h / 3.3
    r2 = 0.65 * r1
    cx, base = x + w - 1.0 * r1 - (0.15 * w if st["flip"] else 0), y + h
    cx = min(max(cx, x + r1), x + w - r1)
    edge, white = (150, 155, 170), (252, 252, 252)
    d.ellipse((cx - r1, base - 2 * r1, cx + r1, base), fill=p(white), outline=p(edge))
    c2 = base - 2 * r1 - r2 + 1
    d.ellipse((cx - r2, c2 - r2, cx + r2, c2 + r2), fill=p(white), outline=p(edge))
    d.point([(cx - 0.35 * r2, c2 - 0.2 * r2), (cx + 0.35 * r2, c2 - 0.2 * r2)], fill=p(OUTLINE))
    d.line((cx, c2 + 0.1 * r2, cx + 0.6 * r2, c2 + 0.2 * r2), fill=p((250, 130, 20)), width=1)
    d.line((cx - r1 * 0.8, base - 1.6 * r1, x, base - 2.0 * r1), fill=p((90, 55, 25)), width=1)


def _igloo(d, p, x, y, w, h, st):
    base = y + h
    d.chord((x, y, x + w, y + 2 * h), 180, 360, fill=p((235, 242, 250)), outline=p((140, 150, 170)))
    for fy in (0.35, 0.65):
        yy = y + fy * h
        half = (w / 2) * math.sqrt(max(0.0, 1 - (1 - fy) ** 2))
        d.line((x + w / 2 - half, yy, x + w / 2 + half, yy), fill=p((160, 170, 190)), width=1)
    d.chord((x + 0.38 * w, base - 0.45 * h, x + 0.62 * w, base + 0.45 * h), 180, 360, fill=p((40, 45, 60)))


def _umbrella(d, p, x, y, w, h, st):
    r = w / 2
    cx, base = x + r, y + h
    d.line((cx, y + r, cx, base), fill=p((80, 60, 40)), width=_width(w, 0.04))
    n = 6
    for k in range(n):
        fill = p(st["colour"] if k % 2 == 0 else (250, 250, 250))
        d.pieslice((x, y, x + w, y + w), 180 + k * 180 / n, 180 + (k + 1) * 180 / n, fill=fill)
    d.arc((x, y, x + w, y + w), 180, 360, fill=p(OUTLINE))


def _crab(d, p, x, y, w, h, st):
    col, out = p(st["colour"]), p(OUTLINE)
    lw = _width(w, 0.07)
    for s in (-1, 1):
        for k in range(3):
            lx = x + w / 2 + s * (0.18 + 0.1 * k) * w
            d.line((lx, y + 0.6 * h, lx + s * 0.15 * w, y + h), fill=col, width=lw)
        d.ellipse((x + w / 2 + s * 0.38 * w - 0.13 * w, y, x + w / 2 + s * 0.38 * w + 0.13 * w, y + 0.35 * h), fill=col, outline=out)
    d.ellipse((x + 0.2 * w, y + 0.3 * h, x + 0.8 * w, y + 0.85 * h), fill=col, outline=out)
    d.point([(x + 0.42 * w, y + 0.42 * h), (x + 0.58 * w, y + 0.42 * h)], fill=out)


@dataclass(frozen=True)
class ThingSpec:
    """How one concept looks: its painter, style, shape of its box and where the target world puts it.

    Attributes:
        name: the label.
        aspect: box width / height.
        size: target-world box size (the larger side), as a fraction of the image side (lo, hi).
        region: the region it lives in ("sky", a ground, or None: anywhere).
        backdrop: drawn first and may be partly hidden by others (mountain, rainbow, fence).
        style: samples colours and flips.
        draw: the painter.
    """

    name: str
    aspect: float
    size: tuple[float, float]
    region: str | None
    style: Callable[[np.random.Generator], Style]
    draw: Painter
    backdrop: bool = False


def _style(**fixed: Any) -> Callable[[np.random.Generator], Style]:
    """A style sampler: colours jittered around `fixed` values, a random flip and spin."""

    def sample(rng: np.random.Generator) -> Style:
        st: Style = {"flip": bool(rng.random() < 0.5), "spin": float(rng.uniform(0, math.pi / 4)), "peak": float(rng.uniform(0.4, 0.6))}
        for key, value in fixed.items():
            if isinstance(value, list):  # one of several base colours
                value = value[int(rng.integers(len(value)))]
            st[key] = jitter(rng, value, 12)
        return st

    return sample


SHAPE_SIZES = {
    "ball": (0.15, 0.2), "cross": (0.16, 0.21), "star": (0.17, 0.22), "heart": (0.16, 0.21),
    "triangle": (0.34, 0.44), "box": (0.32, 0.42), "ring": (0.34, 0.44),
}  # fmt: skip  # small shapes cover 1-3 patches of an 8 x 8 grid, large ones 6-12

THING_SPECS: dict[str, ThingSpec] = {
    s.name: s
    for s in [
        ThingSpec("sun", 1.0, (0.2, 0.26), "sky", _style(colour=(255, 200, 40)), _sun),
        ThingSpec("cloud", 2.0, (0.26, 0.36), "sky", _style(colour=(245, 246, 250)), _cloud),
        ThingSpec("bird", 2.2, (0.14, 0.18), "sky", _style(colour=(30, 30, 35)), _bird),
        ThingSpec("airplane", 1.6, (0.26, 0.34), "sky", _style(colour=(200, 203, 212)), _airplane),
        ThingSpec("kite", 0.6, (0.16, 0.2), "sky", _style(colour=[(220, 40, 60), (40, 90, 220), (250, 180, 20)], tail=(60, 60, 60)), _kite),
        ThingSpec("rainbow", 2.0, (0.55, 0.85), "sky", _style(), _rainbow, backdrop=True),
        ThingSpec("mountain", 1.5, (0.5, 0.75), "sky", _style(colour=(110, 105, 120)), _mountain, backdrop=True),
        ThingSpec("boat", 0.95, (0.24, 0.32), "water", _style(colour=(125, 70, 30), sail=(250, 250, 245)), _boat),
        ThingSpec("fish", 2.0, (0.17, 0.22), "water", _style(colour=[(245, 115, 85), (250, 170, 40)]), _fish),
        ThingSpec("duck", 1.25, (0.15, 0.2), "water", _style(colour=(245, 215, 60)), _duck),
        ThingSpec("tree", 0.75, (0.24, 0.32), "grass", _style(colour=(30, 105, 40)), _tree),
        ThingSpec("flower", 0.75, (0.14, 0.18), "grass", _style(colour=[(240, 120, 190), (250, 250, 250), (200, 60, 200)]), _flower),
        ThingSpec("house", 1.0, (0.32, 0.42), "grass", _style(wall=(230, 210, 170), roof=(150, 55, 45)), _house),
        ThingSpec("fence", 3.5, (0.6, 1.0), "grass", _style(colour=[(235, 235, 230), (150, 100, 60)]), _fence, backdrop=True),
        ThingSpec("car", 1.8, (0.26, 0.34), "road", _style(colour=[(60, 62, 70), (190, 192, 198), (25, 95, 95), (110, 25, 35)]), _car),
        ThingSpec("bus", 2.3, (0.45, 0.6), "road", _style(colour=[(240, 190, 30), (200, 40, 40)]), _bus),
        ThingSpec("traffic light", 0.35, (0.2, 0.26), "road", _style(), _traffic_light),
        ThingSpec("snowman", 0.75, (0.2, 0.26), "snow", _style(), _snowman),
        ThingSpec("igloo", 1.8, (0.36, 0.46), "snow", _style(), _igloo),
        ThingSpec("umbrella", 1.0, (0.22, 0.28), "sand", _style(colour=[(220, 40, 50), (40, 120, 220)]), _umbrella),
        ThingSpec("crab", 1.5, (0.15, 0.2), "sand", _style(colour=(225, 70, 40)), _crab),
        ThingSpec("palm tree", 0.75, (0.34, 0.44), "sand", _style(colour=(40, 140, 50)), _palm),
    ]
    + [ThingSpec(shape, 1.0, size, None, shape_style, _shape_painter(shape)) for shape, size in SHAPE_SIZES.items()]
}


# ---------------------------------------------------------------------------------------------
# Regions (numpy, in place) and the two styles
# ---------------------------------------------------------------------------------------------
REGION_COLOURS = {
    "sky": (85, 145, 228), "grass": (65, 150, 55), "water": (40, 95, 190),
    "snow": (236, 240, 250), "sand": (222, 196, 138), "road": (88, 88, 93),
}  # fmt: skip
TEXTURE = {"grass": 22, "snow": 7, "sand": 16, "road": 6, "water": 0, "sky": 0}  # +- per-pixel texture (target style)


def paint_region(img: np.ndarray, rng: np.random.Generator, region: str, y0: int, y1: int, *, textured: bool) -> None:
    """Fill rows [y0, y1) of `img` (int16 [S, S, 3]) with a region; `textured` adds its texture."""
    S = img.shape[1]
    h = y1 - y0
    if h <= 0:
        return
    view = img[y0:y1]  # [h, S, 3]
    if region == "sky":
        top, bottom = np.asarray(jitter(rng, (85, 145, 228), 15)), np.asarray(jitter(rng, (178, 212, 245), 10))
        t = np.linspace(0, 1, h)[:, None]  # [h, 1]
        grad = top[None, :] * (1 - t) + bottom[None, :] * t  # [h, 3]
        view[:] = grad[:, None, :].astype(np.int16)  # [h, 3] -> [h, 1, 3] broadcast over columns
        return
    view[:] = np.asarray(jitter(rng, REGION_COLOURS[region], 10), dtype=np.int16)
    if not textured:
        return
    amount = TEXTURE[region]
    if amount:
        view += rng.integers(-amount, amount + 1, (h, S, 1), dtype=np.int16)
    if region == "water":
        yy, xx = np.mgrid[0:h, 0:S]
        waves = (np.sin(yy * 1.3 + np.sin(xx * 0.35 + rng.uniform(0, 6.28)) * 1.5) > 0.85) * 40
        view += waves[:, :, None].astype(np.int16)
    elif region == "road":
        mid, dash, thick = h // 2, max(2, S // 10), max(1, S // 40)
        cols = (np.arange(S) // dash) % 2 == 0
        view[mid : mid + thick, cols] = 235


STUDIO_COLOURS = ((235, 235, 235), (215, 225, 240), (240, 228, 210), (60, 60, 70), (200, 235, 215))


def paint_studio(img: np.ndarray, rng: np.random.Generator) -> None:
    """A web photo's plain backdrop: a light vertical gradient of one colour."""
    h = img.shape[0]
    base = np.asarray(jitter(rng, STUDIO_COLOURS[int(rng.integers(len(STUDIO_COLOURS)))], 12), dtype=float)
    t = np.linspace(-1, 1, h)[:, None, None]  # [h, 1, 1]
    img[:] = (base[None, None, :] * (1 + 0.08 * t)).astype(np.int16)  # [3] -> [h, 1, 3] broadcast over columns


@dataclass(frozen=True)
class Look:
    """A domain's photographic style, applied to the finished image."""

    gain: tuple[float, float]  # overall brightness factor range
    cast: float  # +- per-channel colour cast, relative
    ramp: float  # +- brightness ramp across the image (uneven lighting), relative
    noise: int  # +- per-pixel noise, in grey levels


TARGET_LOOK = Look(gain=(0.75, 1.15), cast=0.1, ramp=0.2, noise=12)
WEB_LOOK = Look(gain=(0.95, 1.05), cast=0.03, ramp=0.0, noise=2)


def apply_look(img: np.ndarray, rng: np.random.Generator, look: Look) -> np.ndarray:
    """Lighting, colour cast and sensor noise: int16 [S, S, 3] -> uint8 [S, S, 3]."""
    S = img.shape[0]
    gain = rng.uniform(*look.gain) * (1 + rng.uniform(-look.cast, look.cast, 3))  # [3]
    out = img.astype(np.float32) * gain[None, None, :].astype(np.float32)  # [3] -> [1, 1, 3]
    if look.ramp:
        angle = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:S, 0:S] / max(S - 1, 1) - 0.5
        ramp = 1 + look.ramp * (math.cos(angle) * xx + math.sin(angle) * yy) * 2  # [S, S]
        out *= ramp[:, :, None].astype(np.float32)  # [S, S] -> [S, S, 1]
    if look.noise:
        out += rng.integers(-look.noise, look.noise + 1, out.shape).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)
