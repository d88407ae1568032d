"""The mini-world v2: one vocabulary, two domains (web photos and benchmark scenes), one split.

Why two domains: open-vocabulary recognition starts from a CLIP that learned concepts from web
photos and their captions, then is fine-tuned and tested on a benchmark whose photos look
different. The mini-world reproduces that relation so that "zero-shot" means something:

* **web** (pretraining only): one or two salient things, large and near the centre, on a plain
  backdrop or in a simple setting, clean light; a free-text caption that names only some of what
  is shown, with synonyms, and sometimes wrongly (`captions.py`). No labels.
* **target** (fine-tuning and test): cluttered scenes of 4-10 labels with objects of very
  different sizes (a region covers half the image, a fish one or two patches), textured ground,
  uneven light, colour casts and sensor noise, and co-occurrence structure (boats on water,
  mountains behind snow, buses and traffic lights on roads, shapes anywhere).

Vocabulary (35 labels): 6 regions, 22 scene things that live in one region, 7 coloured shapes that
appear anywhere. 12 labels are unseen (never a fine-tuning label, always named in web captions),
chosen as a 2 x 2 design: small or large, correlated with a seen label or not (see
`UNSEEN_GROUPS` and docs/MINIWORLD.md).

Example:
    >>> world = MiniWorld(seed=0)
    >>> scenes = world.sample_target(4, "train")
    >>> scenes.images.shape, scenes.labels.shape
    ((4, 64, 64, 3), (4, 35))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..constants import NEGATIVE, POSITIVE
from . import captions as cap
from .draw import TARGET_LOOK, THING_SPECS, WEB_LOOK, ThingSpec, apply_look, paint_region, paint_studio

# ---------------------------------------------------------------------------------------------
# Vocabulary and split
# ---------------------------------------------------------------------------------------------
REGIONS = ("sky", "grass", "water", "snow", "sand", "road")
GROUNDS = REGIONS[1:]
SHAPES = ("ball", "box", "triangle", "star", "ring", "cross", "heart")
THINGS = tuple(n for n in THING_SPECS if n not in SHAPES)
CONCEPTS = THINGS + SHAPES  # everything drawn as an object

# The unseen labels, by design: (small | large) x (correlated with a seen label | not).
UNSEEN_GROUPS: dict[str, tuple[str, ...]] = {
    "small, correlated": ("fish", "flower", "traffic light", "crab"),
    "large, correlated": ("sand", "mountain", "bus", "igloo"),
    "small, uncorrelated": ("star", "heart"),
    "large, uncorrelated": ("box", "ring"),
}
UNSEEN = tuple(n for group in UNSEEN_GROUPS.values() for n in group)

# ---------------------------------------------------------------------------------------------
# Target scenes (fractions of the image side unless stated)
# ---------------------------------------------------------------------------------------------
DEFAULT_IMAGE_SIZE = 64  # px
MIN_LABELS, MAX_LABELS = 4, 10  # labels per target scene
P_SKY = 0.65  # landscapes (sky above ground); the rest are top-down views of ground only
HORIZON = (0.3, 0.5)  # sky height
P_TWO_GROUNDS = 0.45
MIN_BAND = 0.22  # smallest ground band
# likely pairs of grounds (a beach: sand and water; a street beside a lawn; ...), relative weights
GROUND_PAIRS = {("sand", "water"): 3.0, ("grass", "road"): 3.0, ("grass", "water"): 2.0, ("snow", "road"): 1.0}
OTHER_PAIR_WEIGHT = 0.4
P_THING = {
    "sun": 0.35, "cloud": 0.5, "bird": 0.45, "airplane": 0.25, "kite": 0.3, "rainbow": 0.15,
    "boat": 0.55, "fish": 0.55, "duck": 0.45,
    "tree": 0.55, "flower": 0.55, "house": 0.4, "fence": 0.3,
    "car": 0.6, "bus": 0.4, "traffic light": 0.5,
    "snowman": 0.55, "igloo": 0.45,
    "umbrella": 0.65, "crab": 0.5, "palm tree": 0.4,
}  # fmt: skip
P_MOUNTAIN = {"snow": 0.75, "other": 0.06}  # mountains stand behind snow fields (a co-occurrence to transfer)
P_EXTRA = 0.35  # small things often come in twos (birds, fish, flowers, ducks)
SHAPE_COUNT_P = (0.25, 0.35, 0.25, 0.15)  # 0, 1, 2, 3 free shapes
PLACE_TRIES = 25  # rejection-sampling attempts per object
MIN_VISIBLE = 0.002  # of the image area: a label counts as present only when this much of it shows

# ---------------------------------------------------------------------------------------------
# Web photos
# ---------------------------------------------------------------------------------------------
WEB_KINDS = {"studio": 0.35, "context": 0.45, "landscape": 0.2}
P_WEB_TWO = 0.4  # a second salient thing
P_SECOND_SAME_REGION = 0.5  # ... that belongs with the first (web photos have co-occurrence too)
WEB_ONE_SIZE = (0.5, 0.85)  # larger side of a lone thing
WEB_TWO_SIZE = (0.34, 0.48)
P_NAME_MAIN, P_NAME_SECOND, P_NAME_BACKGROUND = 0.9, 0.65, 0.45
P_WRONG = 0.07  # a mention replaced by another concept that is not in the photo

# Split codes that turn a world seed into disjoint sample streams. "val": benchmark scenes that
# only diagnose the stand-in (its localisation), so the test scenes are never used to choose it.
SPLITS = {"train": 1, "test": 2, "web": 3, "val": 4}
TARGET_SPLITS = ("train", "test", "val")
DEFAULT_SIZES = {"train": 2000, "test": 1000, "web": 20000}  # images


# ---------------------------------------------------------------------------------------------
# Scenes
# ---------------------------------------------------------------------------------------------
@dataclass
class Placed:
    """A thing placed in a scene: its label, box and style."""

    name: str
    box: tuple[float, float, float, float]  # x, y, w, h in px
    style: dict[str, Any]

    @property
    def spec(self) -> ThingSpec:
        return THING_SPECS[self.name]

    def draw(self, d: ImageDraw.ImageDraw, paint) -> None:
        x, y, w, h = self.box
        self.spec.draw(d, paint, x, y, w, h, self.style)


@dataclass
class Plan:
    """One image before rendering: backdrop bands (or a studio), things, and (web) its caption."""

    size: int
    bands: list[tuple[str, int, int]] = field(default_factory=list)  # (region, y0, y1), rows [y0, y1)
    things: list[Placed] = field(default_factory=list)
    studio: bool = False
    caption: str = ""

    def band(self, region: str) -> tuple[int, int] | None:
        for name, y0, y1 in self.bands:
            if name == region:
                return y0, y1
        return None


@dataclass
class Scenes:
    """A batch of rendered images with what is known about them.

    Attributes:
        images: uint8 [n, S, S, 3].
        labels: int8 [n, K] in {+1, -1} (target scenes; None for web photos).
        areas: float32 [n, K], the fraction of the image each label covers (0 when absent).
        cover: float32 [n, K, G, G], the fraction of each patch a label covers (when a grid was asked).
        captions: web captions (empty for target scenes).
    """

    images: np.ndarray
    labels: np.ndarray | None
    areas: np.ndarray
    cover: np.ndarray | None = None
    captions: list[str] = field(default_factory=list)


def _overlaps(box: tuple[float, float, float, float], boxes: list[tuple[float, float, float, float]]) -> bool:
    x0, y0, w, h = box
    return any(x0 < a + c and a < x0 + w and y0 < b + e and b < y0 + h for a, b, c, e in boxes)


def _thing_box(rng: np.random.Generator, spec: ThingSpec, S: int, size: tuple[float, float] | None = None) -> tuple[float, float]:
    """Width and height of a thing's box: its larger side drawn from `size` (default: the target range)."""
    side = S * rng.uniform(*(size or spec.size))
    return (side, side / spec.aspect) if spec.aspect >= 1 else (side * spec.aspect, side)


class MiniWorld:
    """A seeded generator of the two domains, with a fixed vocabulary and seen/unseen split.

    Args:
        seed: world seed; every sample stream is derived from it.
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
        everything = REGIONS + CONCEPTS
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
        return f"MiniWorld(seed={self.seed}, image_size={self.image_size}, labels={self.num_labels}, unseen={len(self.unseen_names)})"

    def rng(self, stream: int | Sequence[int]) -> np.random.Generator:
        parts = [stream] if isinstance(stream, (int, np.integer)) else list(stream)
        return np.random.default_rng(np.random.SeedSequence([self.seed, *[int(p) for p in parts]]))

    # -------------------------------------------------------------------------- target scenes
    def _target_layout(self, rng: np.random.Generator, plan: Plan) -> None:
        S = plan.size
        y = 0
        if rng.random() < P_SKY:
            y = round(S * rng.uniform(*HORIZON))
            plan.bands.append(("sky", 0, y))
        if rng.random() < P_TWO_GROUNDS:
            pairs = [(a, b) for i, a in enumerate(GROUNDS) for b in GROUNDS[i + 1 :]]
            w = np.array([GROUND_PAIRS.get((a, b), GROUND_PAIRS.get((b, a), OTHER_PAIR_WEIGHT)) for a, b in pairs])
            a, b = pairs[int(rng.choice(len(pairs), p=w / w.sum()))]
            if rng.random() < 0.5:
                a, b = b, a
            lo, hi = y + round(MIN_BAND * S), S - round(MIN_BAND * S)
            split = int(rng.integers(lo, hi + 1))
            plan.bands += [(a, y, split), (b, split, S)]
        else:
            plan.bands.append((GROUNDS[int(rng.integers(len(GROUNDS)))], y, S))

    def _place_target(self, rng: np.random.Generator, plan: Plan, name: str, occupied: list) -> None:
        """Place `name` in the first of PLACE_TRIES boxes that fits its region; none fits: nothing placed."""
        spec, S = THING_SPECS[name], plan.size
        for _ in range(PLACE_TRIES):
            w, h = _thing_box(rng, spec, S)
            if spec.region is None:
                if w > S or h > S:
                    continue
                x, y = rng.uniform(0, S - w), rng.uniform(0, S - h)
            elif spec.region == "sky":
                sky = plan.band("sky")
                if sky is None:
                    return
                top, horizon = sky
                if name == "mountain":  # stands on the horizon
                    h = min(h, 0.9 * horizon)
                    w = h * spec.aspect
                    x, y = rng.uniform(-0.15 * w, S - 0.85 * w), horizon - h
                elif h > horizon - top - 1:
                    continue
                else:
                    bottom = horizon - h if name == "rainbow" else rng.uniform(top, horizon - h)
                    x, y = rng.uniform(0, S - w), bottom
            else:
                band = plan.band(spec.region)
                if band is None:
                    return
                y0, y1 = band
                lo = y0 + min(0.6 * h, 0.6 * (y1 - y0))  # the base lies inside the band; the top may stick out
                if lo >= y1 - 1 or h > S:
                    continue
                base = rng.uniform(lo, y1 - 1)
                x, y = rng.uniform(-0.1 * w, S - 0.9 * w) if spec.backdrop else rng.uniform(0, S - w), base - h
            box = (float(x), float(y), float(w), float(h))
            if y < -0.5 or (not spec.backdrop and (x < 0 or x + w > S or _overlaps(box, occupied))):
                continue
            plan.things.append(Placed(name, box, spec.style(rng)))
            if not spec.backdrop:
                occupied.append(box)
            return

    def plan_target(self, rng: np.random.Generator) -> Plan:
        """A cluttered benchmark scene: layout, things by region, free shapes (no pixels yet)."""
        plan = Plan(self.image_size)
        self._target_layout(rng, plan)
        regions = [b[0] for b in plan.bands]
        wanted: list[str] = []
        if "sky" in regions:
            wanted += [t for t in THINGS if THING_SPECS[t].region == "sky" and t != "mountain" and rng.random() < P_THING[t]]
            if rng.random() < P_MOUNTAIN["snow" if "snow" in regions else "other"]:
                wanted.append("mountain")
        for region in regions[1:] if "sky" in regions else regions:
            wanted += [t for t in THINGS if THING_SPECS[t].region == region and rng.random() < P_THING[t]]
        wanted += [t for t in wanted if THING_SPECS[t].size[1] < 0.2 and rng.random() < P_EXTRA]
        n_shapes = int(rng.choice(len(SHAPE_COUNT_P), p=SHAPE_COUNT_P))
        wanted += [SHAPES[int(rng.integers(len(SHAPES)))] for _ in range(n_shapes)]
        # at most MAX_LABELS distinct labels: drop wanted things at random until they fit
        while len(set(regions) | set(wanted)) > MAX_LABELS:
            wanted.pop(int(rng.integers(len(wanted))))
        order = sorted(range(len(wanted)), key=lambda i: (not THING_SPECS[wanted[i]].backdrop, i))  # backdrops first
        occupied: list = []
        for i in order:
            self._place_target(rng, plan, wanted[i], occupied)
        tries = 0
        while len(set(regions) | {t.name for t in plan.things}) < MIN_LABELS and tries < PLACE_TRIES:
            tries += 1
            self._place_target(rng, plan, SHAPES[int(rng.integers(len(SHAPES)))], occupied)
        return plan

    # -------------------------------------------------------------------------- web photos
    def _web_thing(self, rng: np.random.Generator, plan: Plan, name: str, centre: tuple[float, float], size: tuple[float, float], base: float | None) -> None:
        spec, S = THING_SPECS[name], plan.size
        w, h = _thing_box(rng, spec, S, size)
        cx, cy = centre
        x = float(np.clip(cx - w / 2, 0, S - w))
        y = float(np.clip((base - h) if base is not None else cy - h / 2, 0, S - h))
        plan.things.append(Placed(name, (x, y, w, h), spec.style(rng)))

    def plan_web(self, rng: np.random.Generator) -> Plan:
        """A web photo: one or two salient things (or a landscape) and its caption."""
        S = self.image_size
        plan = Plan(S)
        kind = list(WEB_KINDS)[int(rng.choice(len(WEB_KINDS), p=list(WEB_KINDS.values())))]
        mentions: list[tuple[str, str, float]] = []  # (label, colour, probability of naming it)
        if kind == "landscape":
            self._target_layout(rng, plan)
            mentions += [(b[0], "", 1.0) for b in plan.bands]
            if rng.random() < 0.5:  # sometimes a small thing that belongs there
                region = plan.bands[-1][0]
                options = [t for t in THINGS if THING_SPECS[t].region == region and not THING_SPECS[t].backdrop]
                name = options[int(rng.integers(len(options)))]
                self._web_thing(rng, plan, name, (rng.uniform(0.3, 0.7) * S, 0), THING_SPECS[name].size, rng.uniform(0.8, 0.95) * S)
                mentions.append((name, "", P_NAME_SECOND))
        else:
            main = CONCEPTS[int(rng.integers(len(CONCEPTS)))]
            names = [main]
            if rng.random() < P_WEB_TWO:
                region = THING_SPECS[main].region
                same = [t for t in CONCEPTS if t != main and THING_SPECS[t].region == region and region is not None]
                pool = same if same and rng.random() < P_SECOND_SAME_REGION else [t for t in CONCEPTS if t != main]
                names.append(pool[int(rng.integers(len(pool)))])
            region = next((THING_SPECS[n].region for n in names if THING_SPECS[n].region), None)
            base = None
            if kind == "studio":
                plan.studio = True
            elif region in (None, "sky"):
                ground = GROUNDS[int(rng.integers(len(GROUNDS)))]
                if region == "sky" or rng.random() < 0.5:
                    horizon = round(S * rng.uniform(0.65, 0.85))
                    plan.bands += [("sky", 0, horizon), (ground, horizon, S)]
                else:
                    plan.bands.append((ground, 0, S))
            else:
                if rng.random() < 0.7:
                    horizon = round(S * rng.uniform(0.25, 0.45))
                    plan.bands += [("sky", 0, horizon), (region, horizon, S)]
                else:
                    plan.bands.append((region, 0, S))
                base = rng.uniform(0.82, 0.97) * S
            size = WEB_ONE_SIZE if len(names) == 1 else WEB_TWO_SIZE
            xs = [S / 2 + rng.uniform(-0.08, 0.08) * S] if len(names) == 1 else [rng.uniform(0.26, 0.32) * S, rng.uniform(0.68, 0.74) * S]
            for name, cx in zip(names, xs):
                spec = THING_SPECS[name]
                b = base if spec.region not in (None, "sky") else None
                cy = S * (rng.uniform(0.3, 0.45) if spec.region == "sky" and plan.bands else rng.uniform(0.45, 0.55))
                self._web_thing(rng, plan, name, (cx, cy), size, b)
            for i, t in enumerate(plan.things):
                mentions.append((t.name, t.style.get("colour_name", ""), P_NAME_MAIN if i == 0 else P_NAME_SECOND))
            mentions += [(b[0], "", P_NAME_BACKGROUND) for b in plan.bands]
        plan.caption = self._caption(rng, mentions)
        return plan

    def _caption(self, rng: np.random.Generator, mentions: list[tuple[str, str, float]]) -> str:
        named = [(label, colour) for label, colour, p in mentions if rng.random() < p] or [mentions[0][:2]]
        present = {m[0] for m in mentions}
        phrases = []
        for label, colour in named:
            if rng.random() < P_WRONG:  # the caption names something that is not there
                others = [c for c in REGIONS + CONCEPTS if c not in present]
                label, colour = others[int(rng.integers(len(others)))], ""
            phrases.append(cap.noun_phrase(rng, label, colour))
        return cap.compose(rng, phrases)

    # -------------------------------------------------------------------------- rendering
    def render(self, plan: Plan, rng: np.random.Generator, *, web: bool) -> tuple[np.ndarray, np.ndarray]:
        """Pixels and an id map: 1..B for the bands, B+1.. for the things in drawing order.

        Returns:
            image uint8 [S, S, 3], ids uint8 [S, S].
        """
        S = plan.size
        canvas = np.zeros((S, S, 3), dtype=np.int16)
        if plan.studio:
            paint_studio(canvas, rng)
        for region, y0, y1 in plan.bands:
            paint_region(canvas, rng, region, y0, y1, textured=not web)
        img = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
        d = ImageDraw.Draw(img)
        ids = Image.new("L", (S, S), 0)
        di = ImageDraw.Draw(ids)
        nb = len(plan.bands)
        for i, (_, y0, y1) in enumerate(plan.bands):
            di.rectangle((0, y0, S - 1, y1 - 1), fill=i + 1)
        for j, t in enumerate(plan.things):
            t.draw(d, lambda c: c)
            t.draw(di, lambda c, j=j: nb + 1 + j)
        out = apply_look(np.asarray(img).astype(np.int16), rng, WEB_LOOK if web else TARGET_LOOK)
        return out, np.asarray(ids)

    def _label_masks(self, plan: Plan, ids: np.ndarray) -> dict[str, np.ndarray]:
        owners: dict[str, list[int]] = {}
        for b, (region, _, _) in enumerate(plan.bands):
            owners.setdefault(region, []).append(b + 1)
        for j, t in enumerate(plan.things):
            owners.setdefault(t.name, []).append(len(plan.bands) + 1 + j)
        return {name: np.isin(ids, owner) for name, owner in owners.items()}

    def _sample(self, n: int, stream: Sequence[int], *, web: bool, grid: int | None) -> Scenes:
        if n < 0:
            raise ValueError(f"MiniWorld: n must be >= 0, got {n}")
        S, K = self.image_size, self.num_labels
        if grid is not None and (grid < 1 or S % grid):
            raise ValueError(f"MiniWorld: a patch grid of {grid} does not divide {S} px images")
        rng = self.rng(stream)
        images = np.empty((n, S, S, 3), dtype=np.uint8)
        labels = np.full((n, K), NEGATIVE, dtype=np.int8)
        areas = np.zeros((n, K), dtype=np.float32)
        cover = np.zeros((n, K, grid, grid), dtype=np.float32) if grid else None
        captions: list[str] = []
        min_px = MIN_VISIBLE * S * S
        for i in range(n):
            plan = self.plan_web(rng) if web else self.plan_target(rng)
            images[i], ids = self.render(plan, rng, web=web)
            for name, mask in self._label_masks(plan, ids).items():
                if mask.sum() < min_px:
                    continue  # hidden behind other things: not visible, not a label
                k = self._index[name]
                labels[i, k] = POSITIVE
                areas[i, k] = mask.mean()
                if cover is not None:
                    cell = S // grid
                    cover[i, k] = mask.reshape(grid, cell, grid, cell).mean((1, 3))  # [S, S] -> [G, G]
            if web:
                captions.append(plan.caption)
        return Scenes(images, None if web else labels, areas, cover, captions)

    def sample_target(self, n: int, split: str = "train", *, grid: int | None = None) -> Scenes:
        """`n` benchmark scenes of a split ("train", "test" or "val"), with labels, areas and patch cover.

        Scenes come one after another from one random stream, so `sample_target(10, s)` is the
        first ten scenes of `sample_target(100, s)`.
        """
        if split not in TARGET_SPLITS:
            raise ValueError(f"MiniWorld: target split must be one of {', '.join(TARGET_SPLITS)}, got {split!r}")
        return self._sample(n, (SPLITS[split],), web=False, grid=grid)

    def sample_web(self, n: int, *, return_truth: bool = False) -> tuple[np.ndarray, list[str]] | tuple[np.ndarray, list[str], np.ndarray]:
        """`n` web photos and their captions (what pretraining sees; nothing else).

        Args:
            n: photos.
            return_truth: also return what each photo shows, float32 [n, K] areas, for tests and
                the world report only.

        Returns:
            images uint8 [n, S, S, 3], captions (and the areas when asked).
        """
        scenes = self._sample(n, (SPLITS["web"],), web=True, grid=None)
        if return_truth:
            return scenes.images, scenes.captions, scenes.areas
        return scenes.images, scenes.captions
