"""Reading model answers as a careful person would: the answer corpus, strengths, drops, never a crash."""

from __future__ import annotations

import math
import random

import pytest

from answer_corpus import CASES, VOCAB, Case
from c2srt.graph.parse import DEFAULT_STRENGTH, WORD_STRENGTHS, ParseReport, VocabularyMatcher, clean_pairs, parse_answer


def read(case: Case) -> tuple[dict[str, float], ParseReport]:
    report = ParseReport()
    pairs = parse_answer(case.text, report)
    edges = clean_pairs(case.category, pairs, VocabularyMatcher(case.labels()), report, candidates=case.prompt_candidates())
    return dict(edges), report


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_answer_corpus(case: Case) -> None:
    """Every edge a careful reader keeps, with its strength, and nothing else."""
    edges, _ = read(case)
    assert edges.keys() == case.expected.keys()
    for label, strength in case.expected.items():
        assert edges[label] == pytest.approx(strength), label


def test_corpus_is_broad() -> None:
    """The corpus covers what the issue lists, with enough edges to measure a fraction on."""
    assert len(CASES) >= 60 and sum(len(c.expected) for c in CASES) >= 180
    ids = {c.id for c in CASES}
    for needed in ("comma_list", "semicolon_list", "bullet_list", "numbered_with_scores", "strength_words", "fenced_json_stray_items",
                   "json_trailing_commas", "json_single_quotes", "fullwidth", "nul_and_zero_width", "repeated_names", "apology",
                   "prose_around_list", "case_and_plurals", "hyphens_underscores", "hot_dog_not_dog"):  # fmt: skip
        assert needed in ids


def test_report_counts_what_was_dropped() -> None:
    by_id = {c.id: c for c in CASES}
    _, r = read(by_id["sections"])
    assert r.dropped["below_cut"] == 2  # car, giraffe under "Not related:"
    _, r = read(by_id["json_out_of_range"])
    assert r.dropped["out_of_range"] == 1 and r.dropped["below_cut"] == 1 and r.repaired["clamped"] == 1
    _, r = read(by_id["repeated_names"])
    assert r.dropped["duplicate"] == 2
    _, r = read(by_id["self_loop_plural"])
    assert r.dropped["self_loop"] == 1
    _, r = read(by_id["near_names_json"])
    assert r.dropped["unknown_name"] == 6 and "'bush'" in r.examples["unknown_name"][0]
    _, r = read(by_id["apology"])
    assert r.dropped["malformed"] == 1 and sum(r.dropped.values()) == 1
    _, r = read(by_id["json_empty"])
    assert sum(r.dropped.values()) == 0  # "nothing is related" is an answer, not a malformed one
    _, r = read(by_id["json_scale_10"])
    assert r.repaired["rescaled"] == 3
    _, r = read(by_id["case_and_plurals"])
    assert r.repaired["plural"] == 10 and r.repaired["case"] == 0


@pytest.mark.parametrize("word", sorted(WORD_STRENGTHS))
def test_strength_words_table(word: str) -> None:
    for text in (f"fork: {word}", f"- fork ({word})", f'{{"related": [{{"name": "fork", "strength": "{word}"}}]}}'):
        r = ParseReport()
        assert parse_answer(text, r) == [("fork", WORD_STRENGTHS[word])], text


@pytest.mark.parametrize(
    ("text", "strengths"),
    [
        ("a: 0.9\nb: 0.5", [0.9, 0.5]),
        ("a: 9\nb: 5", [0.9, 0.5]),  # a 0-10 scale
        ("a: 90\nb: 45", [0.9, 0.45]),  # a 0-100 scale
        ("a: 1\nb: 1", [1.0, 1.0]),
        ("a: 1.3\nb: 0.5", [1.3, 0.5]),  # a stray value above 1: clamped later, scale kept
        ("a: 250\nb: 50", [250.0, 50.0]),  # no scale fits: clamped later
        ("a: 80%\nb: 3/10\nc: strong", [0.8, 0.3, 0.8]),
        ("a\nb", [DEFAULT_STRENGTH, DEFAULT_STRENGTH]),
    ],
)
def test_strength_scales(text: str, strengths: list[float]) -> None:
    got = [s for _, s in parse_answer(text, ParseReport())]
    assert got == pytest.approx(strengths)


def test_clean_pairs_drops_and_counts() -> None:
    m = VocabularyMatcher(VOCAB)
    r = ParseReport()
    pairs = [
        ("knife", 0.9),
        ("Knife", 0.5),  # duplicate after folding
        ("fork", 0.8),  # self-loop
        ("giraffes in a zoo", 0.7),  # unknown
        ("spoons", 1.2),  # clamped to 1 (after a plural match)
        ("cat", -0.1),  # out of range
        ("dog", float("nan")),  # out of range
        ("hot dog", 0.0),  # "unrelated"
        ("Stop Sign", 1.0),  # case, kept
        ("cup and bowl", 0.4),  # two labels
        ("cup and plate", 0.4),  # not all parts are labels: unknown
    ]
    out = clean_pairs("fork", pairs, m, r, candidates=["knife", "spoon"])
    assert out == [("knife", 0.9), ("spoon", 1.0), ("stop sign", 1.0), ("cup", 0.4), ("bowl", 0.4)]
    assert r.dropped == {"unknown_name": 2, "duplicate": 1, "self_loop": 1, "out_of_range": 2, "malformed": 0, "below_cut": 1}
    assert r.repaired["clamped"] == 1 and r.repaired["plural"] == 1 and r.repaired["case"] >= 2
    assert "giraffes in a zoo" in r.examples["unknown_name"][0]


@pytest.mark.parametrize(
    "garbage",
    ["", "I cannot answer that.", '{"foo": [{"bar": [1]}], "baz": [2]}', "\x00\x01\x02", "null", "Sure!", "```json\n```", "{'related': [", "]]]}}}"],
)
def test_nothing_readable_is_counted_once(garbage: str) -> None:
    r = ParseReport()
    assert parse_answer(garbage, r) == []
    assert r.dropped["malformed"] == 1


def test_bad_items_inside_json() -> None:
    r = ParseReport()
    text = '{"related": [{"name": "knife", "strength": "often"}, {"strength": 0.5}, 42, [1, 2, 3], {"name": "spoon", "strength": true}, {"name": "fork"}]}'
    assert parse_answer(text, r) == [("spoon", 1.0), ("fork", 1.0)]
    assert r.dropped["malformed"] == 4


def test_random_text_never_raises() -> None:
    """Seeded fuzz: random mixes of JSON punctuation, list markup, numbers and names."""
    rng = random.Random(0)
    pool = list('{}[]()"\':,;-*|#\n\t .%/0123456789') + ["fork", "knife", " and ", "strong", "not related", "```json", "<think>", "ｆ", "\x00", "\\"]
    m = VocabularyMatcher(VOCAB)
    for _ in range(400):
        text = "".join(rng.choice(pool) for _ in range(rng.randint(0, 80)))
        r = ParseReport()
        for label, strength in clean_pairs("cup", parse_answer(text, r), m, r):
            assert label in VOCAB and 0.0 < strength <= 1.0 and math.isfinite(strength)


def test_deep_nesting_and_huge_answers_are_bounded() -> None:
    r = ParseReport()
    assert parse_answer("[" * 50_000 + "]" * 50_000, r) == [] and r.dropped["malformed"] == 1
    long = "fork, " * 30_000
    assert parse_answer(long, ParseReport())[0] == ("fork", 1.0)
