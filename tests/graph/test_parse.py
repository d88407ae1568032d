"""Defensive parsing of model answers: garbage, near misses, duplicates, self-loops, bad strengths."""

from __future__ import annotations

import pytest

from c2srt.graph.parse import ParseReport, VocabularyMatcher, clean_pairs, normalize_name, parse_json_answer

VOCAB = ["dog", "cat", "traffic light", "stop sign", "hot dog", "fork", "knife", "spoon", "teddy bear"]


def test_normalize_and_match_near_misses() -> None:
    m = VocabularyMatcher(VOCAB)
    assert normalize_name("  1. **Traffic_Light**, ") == "traffic light"
    assert m.match("dog") == ("dog", "exact")
    assert m.match("Traffic-Light") == ("traffic light", "case")
    assert m.match("knives") == (None, "unknown")  # too far for the cutoff: dropped, not guessed
    assert m.match("spoons") == ("spoon", "fuzzy")  # plural
    assert m.match("teddy bears") == ("teddy bear", "fuzzy")
    assert m.match("trafic light") == ("traffic light", "fuzzy")  # typo
    assert m.match("stop-sign.") == ("stop sign", "case")
    assert m.match("giraffe") == (None, "unknown")
    assert m.match("   ") == (None, "unknown")
    # `prefer` (the prompt's candidates) wins a fuzzy tie-break.
    assert m.match("hot dogs", prefer=["hot dog"]) == ("hot dog", "fuzzy")


def test_parse_json_variants() -> None:
    r = ParseReport()
    text = 'Sure! Here you go:\n```json\n{"related": [{"name": "Knife", "strength": 0.9}, {"label": "spoon", "score": "80%"}, ["cat", 0.3], "fork"]}\n```'
    assert parse_json_answer(text, r) == [("Knife", 0.9), ("spoon", 0.8), ("cat", 0.3), ("fork", 1.0)]
    assert r.dropped["malformed"] == 0
    assert parse_json_answer('[{"name": "dog", "strength": 0.5}]', r) == [("dog", 0.5)]
    assert parse_json_answer('{"knife": 0.7, "spoon": 0.2}', r) == [("knife", 0.7), ("spoon", 0.2)]
    # Line fallback when there is no JSON at all.
    assert parse_json_answer("knife: 0.9\n- spoon (70%)\nnothing else", r) == [("knife", 0.9), ("spoon", 0.7)]
    assert r.dropped["malformed"] == 0


@pytest.mark.parametrize(
    "garbage",
    ["", "I cannot answer that.", '{"related": "knife"}', "{'related': [", '{"foo": {"bar": 1}}', "\x00\x01\x02", "null"],
)
def test_parse_json_garbage_is_counted_not_fatal(garbage: str) -> None:
    r = ParseReport()
    assert parse_json_answer(garbage, r) == []
    assert r.dropped["malformed"] == 1 and r.examples["malformed"]


def test_parse_json_bad_items() -> None:
    r = ParseReport()
    pairs = parse_json_answer('{"related": [{"name": "knife", "strength": "high"}, {"strength": 0.5}, 42, [1, 2, 3], {"name": "spoon", "strength": true}, {"name": "fork"}]}', r)
    assert pairs == [("fork", 1.0)]
    assert r.dropped["malformed"] == 5


def test_clean_pairs_drops_and_counts() -> None:
    m = VocabularyMatcher(VOCAB)
    r = ParseReport()
    pairs = [
        ("knife", 0.9),
        ("Knife", 0.5),  # duplicate after folding
        ("fork", 0.8),  # self-loop
        ("giraffe", 0.7),  # unknown
        ("spoons", 1.2),  # out of range (after a fuzzy match)
        ("cat", -0.1),  # out of range
        ("dog", float("nan")),  # out of range
        ("hot dog", 0.0),  # "unrelated"
        ("teddy bears", 0.4),  # fuzzy near miss, kept
        ("Stop Sign", 1.0),  # case, kept
    ]
    out = clean_pairs("fork", pairs, m, r, candidates=["knife", "spoon"])
    assert out == [("knife", 0.9), ("teddy bear", 0.4), ("stop sign", 1.0)]
    assert r.dropped == {"unknown_name": 1, "duplicate": 1, "self_loop": 1, "out_of_range": 3, "malformed": 0, "below_cut": 1}
    assert r.repaired["case"] >= 2 and r.repaired["fuzzy"] >= 2
    assert "giraffe" in r.examples["unknown_name"][0]
