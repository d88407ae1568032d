"""Web captions: what a person typed under a photo, not what a labeller would list.

A caption names only some of what the photo shows (the background often goes unmentioned), uses
synonyms and paraphrases ("a sailboat on the sea" for boat + water), sometimes names something
that is not there, and wraps it all in free text ("my new red ball!"). The canonical label name is
one word choice among several, so a label is never spelled out by construction.

`caption_phrases` splits a caption back into its noun phrases, from the text alone: what a
phrase-grounding pretraining objective (FILIP, GLIP) would get from a parser.
"""

from __future__ import annotations

import re

import numpy as np

# Words a caption may use for each label (the canonical name is one of them).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "sky": ("sky", "blue sky", "clear sky"),
    "grass": ("grass", "lawn", "meadow", "green field"),
    "water": ("water", "sea", "lake", "ocean"),
    "snow": ("snow", "snowy field", "fresh snow"),
    "sand": ("sand", "beach", "sandy beach"),
    "road": ("road", "street", "asphalt road"),
    "sun": ("sun", "sunshine", "bright sun"),
    "cloud": ("cloud", "fluffy cloud"),
    "bird": ("bird", "seagull", "flying bird"),
    "airplane": ("airplane", "plane", "jet"),
    "kite": ("kite", "flying kite"),
    "rainbow": ("rainbow",),
    "mountain": ("mountain", "peak", "snowy mountain"),
    "boat": ("boat", "sailboat", "sailing boat"),
    "fish": ("fish", "goldfish", "little fish"),
    "duck": ("duck", "duckling", "yellow duck"),
    "tree": ("tree", "oak tree", "leafy tree"),
    "flower": ("flower", "blossom", "daisy"),
    "house": ("house", "cottage", "home"),
    "fence": ("fence", "picket fence", "garden fence"),
    "car": ("car", "automobile", "sedan"),
    "bus": ("bus", "school bus", "city bus"),
    "traffic light": ("traffic light", "stoplight", "traffic signal"),
    "snowman": ("snowman", "snow man"),
    "igloo": ("igloo", "ice house", "snow hut"),
    "umbrella": ("umbrella", "parasol", "beach umbrella"),
    "crab": ("crab", "red crab", "beach crab"),
    "palm tree": ("palm tree", "palm", "coconut palm"),
    "ball": ("ball", "toy ball", "bouncy ball"),
    "box": ("box", "crate", "cube"),
    "triangle": ("triangle", "triangular sign"),
    "star": ("star", "star shape"),
    "ring": ("ring", "hoop", "donut shape"),
    "cross": ("cross", "plus sign"),
    "heart": ("heart", "heart shape", "love heart"),
}
MASS_NOUNS = frozenset({"grass", "water", "snow", "sand", "sky", "sunshine", "fresh snow", "lawn"})
P_CANONICAL = 0.4  # otherwise a synonym
P_COLOUR = 0.7  # a shape named with its colour ("a red ball")

TEMPLATES_ONE = (
    "a photo of {}.", "{}.", "look: {}!", "a picture of {}", "{} on a sunny day",
    "close-up of {}", "here is {}", "{}, taken yesterday", "I saw {} today",
)  # fmt: skip
TEMPLATES_TWO = ("{} and {}", "a photo of {} with {}", "{} next to {}", "{}, {}", "{} on {}", "{} in front of {}")
TEMPLATES_MANY = ("a photo of {}.", "{}.", "holiday picture: {}", "a scene with {}")
CONNECTORS = (" and ", ", ", " with ", " next to ", " on ", " in front of ")


def _article(phrase: str) -> str:
    return "an" if phrase[0] in "aeiou" else "a"


def noun_phrase(rng: np.random.Generator, label: str, colour: str = "") -> str:
    """How a caption mentions `label`: a synonym with an article, maybe with its colour."""
    words = SYNONYMS[label]
    word = words[0] if rng.random() < P_CANONICAL else words[int(rng.integers(len(words)))]
    if colour and rng.random() < P_COLOUR:
        word = f"{colour} {word}"
    if word in MASS_NOUNS:
        return word if rng.random() < 0.5 else f"the {word}"
    if word in ("sun", "sky", "sea", "ocean", "lake", "beach", "road", "street", "bright sun"):
        return f"the {word}"
    return f"{_article(word)} {word}"


def compose(rng: np.random.Generator, phrases: list[str]) -> str:
    """Wrap noun phrases in a caption template."""
    if len(phrases) == 1:
        return TEMPLATES_ONE[int(rng.integers(len(TEMPLATES_ONE)))].format(phrases[0])
    if len(phrases) == 2:
        return TEMPLATES_TWO[int(rng.integers(len(TEMPLATES_TWO)))].format(*phrases)
    listed = ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return TEMPLATES_MANY[int(rng.integers(len(TEMPLATES_MANY)))].format(listed)


_SPLIT = re.compile("|".join(re.escape(c) for c in CONNECTORS))
_FRAME_WORDS = re.compile(r"^(a photo of|a picture of|close-up of|look:|here is|I saw|holiday picture:|a scene with)\s+")
_TAIL = re.compile(r"(, taken yesterday| on a sunny day| today)$")


def caption_phrases(caption: str) -> list[str]:
    """The noun phrases of a caption, from its text alone (framing words and punctuation dropped).

    Example:
        >>> caption_phrases("a photo of a sailboat on the sea.")
        ['a sailboat', 'the sea']
    """
    text = caption.strip().rstrip(".!").strip()
    text = _TAIL.sub("", text)
    text = _FRAME_WORDS.sub("", text)
    parts = [p.strip(" ,.!:") for p in _SPLIT.split(text)]
    return [p for p in parts if p]
