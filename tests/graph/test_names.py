"""Whole-name matching of what a model writes to vocabulary labels: every level, and never a wrong label."""

from __future__ import annotations

import pytest

from answer_corpus import COCO_LABELS, VOCAB
from c2srt.graph.names import VocabularyMatcher, clean_text, inflections, name_key

MINIWORLD_LIKE = [
    "sky", "grass", "water", "snow", "road", "sand", "sun", "cloud", "bird", "fish", "tree", "house", "car", "boat",
    "airplane", "mountain", "flower", "snowman", "umbrella", "ball", "box", "triangle", "star", "ring", "cross", "heart",
] + [f"{c} {s}" for c in ("red", "blue", "green", "yellow", "purple", "orange") for s in ("ball", "box", "triangle", "star", "ring", "cross", "heart")]  # fmt: skip


@pytest.mark.parametrize(
    ("written", "label", "how"),
    [
        ("dog", "dog", "exact"),
        ("Traffic-Light", "traffic light", "case"),
        ("  STOP_sign ", "stop sign", "case"),
        ("ｃｕｐ", "cup", "case"),  # full-width
        ("a mouse (computer mouse)", "mouse", "case"),
        ("the laptop", "laptop", "case"),
        ("knives", "knife", "plural"),
        ("Mice", "mouse", "plural"),
        ("people", "person", "plural"),
        ("buses", "bus", "plural"),
        ("benches", "bench", "plural"),
        ("teddy bears", "teddy bear", "plural"),
        ("ski", "skis", "plural"),
        ("hot dogs", "hot dog", "plural"),
        ("teddybear", "teddy bear", "compact"),
        ("tshirt", "t-shirt", "compact"),
        ("icecream", "ice_cream", "compact"),
        ("refridgerator", "refrigerator", "fuzzy"),
        ("micrwave", "microwave", "fuzzy"),
    ],
)
def test_match_levels(written: str, label: str, how: str) -> None:
    assert VocabularyMatcher(VOCAB).match(written, candidates=VOCAB) == (label, how)


@pytest.mark.parametrize(
    "written",
    ["giraffes in a zoo", "hotdog stand", "bush", "tire", "cart", "kit", "moose", "teddy", "glasses", "wine", "cupcake", "bed sheet", "   ", "sinkk", "orange juice"],
)
def test_unknown_names_stay_unknown(written: str) -> None:
    assert VocabularyMatcher(VOCAB).match(written, candidates=VOCAB)[0] is None


def test_dog_and_hot_dog_never_confused() -> None:
    no_hot_dog = VocabularyMatcher([n for n in VOCAB if n != "hot dog"])
    no_dog = VocabularyMatcher([n for n in VOCAB if n != "dog"])
    for written in ("hot dog", "Hot Dogs", "hotdog", "hot-dog"):
        assert no_hot_dog.match(written, candidates=VOCAB)[0] is None
    for written in ("dog", "Dogs", "a dog"):
        assert no_dog.match(written, candidates=VOCAB)[0] is None


def test_typos_only_for_prompt_candidates_and_long_names() -> None:
    m = VocabularyMatcher(VOCAB)
    assert m.match("refridgerator") == (None, "unknown")  # not a candidate of this prompt
    assert m.match("refridgerator", candidates=["refrigerator"]) == ("refrigerator", "fuzzy")
    assert m.match("cupp", candidates=["cup"]) == (None, "unknown")  # too short to correct safely
    assert m.match("nicrowave", candidates=["microwave"]) == (None, "unknown")  # first letter differs
    # Two candidates within two edits: no guess.
    twins = VocabularyMatcher(["lanterns", "lanterna"])
    assert twins.match("lanternx", candidates=["lanterns", "lanterna"]) == (None, "unknown")


def test_ambiguous_names_are_not_guessed() -> None:
    m = VocabularyMatcher(["hot dog", "Hot-Dog", "glass", "glasses"])
    assert m.match("HOT DOG") == (None, "ambiguous")
    assert m.match("glasses") == ("glasses", "exact") and m.match("Glass") == ("glass", "case")


@pytest.mark.parametrize("vocabulary", [COCO_LABELS, MINIWORLD_LIKE], ids=["coco", "miniworld"])
def test_no_label_ever_becomes_another(vocabulary: list[str]) -> None:
    """A real name (or its plural) of a thing outside the vocabulary never matches a different label.

    Each label is removed in turn; its name, its inflections and common spellings must then match
    nothing, even with every other label offered as a prompt candidate (typo correction on).
    """
    for label in vocabulary:
        rest = [n for n in vocabulary if n != label]
        m = VocabularyMatcher(rest)
        key = name_key(label)
        for form in {label, label.upper(), key.replace(" ", ""), key.replace(" ", "-"), *inflections(key)}:
            assert m.match(form, candidates=rest) == (None, "unknown"), (form, m.match(form, candidates=rest))


def test_clean_text() -> None:
    assert clean_text("ｆｏｒｋ：０．９，ｓｐｏｏｎ") == "fork:0.9,spoon"
    assert clean_text("mi\x00cro\u200bwave\ufeff") == "microwave"
    assert clean_text("<think>car? no</think>\n“fork”、knife") == '\n\n"fork",knife'
