"""A corpus of language-model answers to the graph prompt, with the edges a careful reader keeps.

Each case is one answer of the kind models give when asked for
`{"related": [{"name": ..., "strength": 0-1}]}` about a COCO category: clean and broken JSON, plain
lists, strength words, sections, full-width and NUL characters, repeats, apologies, prose around a
list, plurals, spelling variants, and names that must not be confused ("hot dog" vs "dog").
`expected` maps each label a careful person would read as an edge to its strength, using the
documented rules of `c2srt.graph.parse` (no strength: 1.0; `WORD_STRENGTHS`; a 0-10 / 0-100 scale
rescaled; above 1 clamped; "unrelated" / 0 / negative: no edge).
"""

from __future__ import annotations

from dataclasses import dataclass, field

COCO_LABELS = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
]  # fmt: skip
# COCO plus names with a hyphen, an underscore and a conjunction, as other datasets spell them.
VOCAB = COCO_LABELS + ["t-shirt", "ice_cream", "salt and pepper shakers"]


@dataclass(frozen=True)
class Case:
    id: str
    category: str
    text: str
    expected: dict[str, float]
    candidates: tuple[str, ...] = ()  # the prompt's candidates (default: the expected labels)
    vocabulary: tuple[str, ...] | None = None  # default VOCAB
    note: str = field(default="", compare=False)

    def prompt_candidates(self) -> list[str]:
        return list(self.candidates) or list(self.expected)

    def labels(self) -> list[str]:
        return list(self.vocabulary) if self.vocabulary is not None else list(VOCAB)


def _without(*names: str) -> tuple[str, ...]:
    return tuple(n for n in VOCAB if n not in names)


CASES: list[Case] = [
    # ---- JSON, clean and broken
    Case("json_clean", "dog",
         '{"related": [{"name": "person", "strength": 0.9}, {"name": "frisbee", "strength": 0.7}, {"name": "sports ball", "strength": 0.6}]}',
         {"person": 0.9, "frisbee": 0.7, "sports ball": 0.6}),
    Case("fenced_json_chatty", "fork",
         'Sure! Here is the JSON you asked for:\n\n```json\n{\n  "related": [\n    {"name": "knife", "strength": 0.9},\n'
         '    {"name": "spoon", "strength": 0.85},\n    {"name": "dining table", "strength": 0.6}\n  ]\n}\n```\n\n'
         "Let me know if you need anything else! (A car is not related.)",
         {"knife": 0.9, "spoon": 0.85, "dining table": 0.6}),
    Case("fenced_json_stray_items", "knife",
         '```json\n{"related": [{"name": "fork", "strength": 0.9}, "spoon", ["dining table", 0.5], {"sandwich": 0.4}, "cake (0.3)"]}\n```',
         {"fork": 0.9, "spoon": 1.0, "dining table": 0.5, "sandwich": 0.4, "cake": 0.3}),
    Case("json_trailing_commas", "cup",
         '{"related": [{"name": "bowl", "strength": 0.7,}, {"name": "spoon", "strength": 0.6,},],}',
         {"bowl": 0.7, "spoon": 0.6}),
    Case("json_single_quotes", "bed",
         "{'related': [{'name': 'couch', 'strength': 0.5}, {'name': 'teddy bear', 'strength': 0.4}, {'name': 'clock', 'strength': None}]}",
         {"couch": 0.5, "teddy bear": 0.4, "clock": 1.0}),
    Case("json_unquoted_keys", "laptop",
         '{related: [{name: "keyboard", strength: 0.9}, {name: "mouse", strength: 0.8}, {name: "cell phone", strength: 0.4}]}',
         {"keyboard": 0.9, "mouse": 0.8, "cell phone": 0.4}),
    Case("json_smart_quotes", "toaster",
         "{“related”: [{“name”: “oven”, “strength”: 0.6}, {“name”: “microwave”, “strength”: 0.7}]}",
         {"oven": 0.6, "microwave": 0.7}),
    Case("json_truncated", "sink",
         '{"related": [{"name": "toilet", "strength": 0.8}, {"name": "toothbrush", "strength": 0.6}, {"name": "hair dr',
         {"toilet": 0.8, "toothbrush": 0.6}, candidates=("toilet", "toothbrush", "hair drier")),
    Case("json_truncated_strings", "train",
         'Here you go: ["traffic light", "bus", "truck", "ca',
         {"traffic light": 1.0, "bus": 1.0, "truck": 1.0}),
    Case("json_string_strengths", "train",
         '{"related": [{"name": "Traffic Light", "strength": "0.6"}, {"name": "bus", "strength": "70%"}, '
         '{"name": "truck", "strength": "high"}, {"name": "car", "strength": "moderate"}, {"name": "person", "strength": "0,4"}]}',
         {"traffic light": 0.6, "bus": 0.7, "truck": 0.8, "car": 0.5, "person": 0.4}),
    Case("json_scale_10", "horse",
         '{"related": [{"name": "person", "strength": 8}, {"name": "cow", "strength": 5}, {"name": "sheep", "strength": 4}]}',
         {"person": 0.8, "cow": 0.5, "sheep": 0.4}),
    Case("json_scale_100", "kite",
         '[{"name": "person", "score": 85}, {"name": "frisbee", "score": 30}, {"name": "bird", "score": 20}]',
         {"person": 0.85, "frisbee": 0.3, "bird": 0.2}),
    Case("json_name_to_strength", "pizza",
         '{"dining table": 0.7, "knife": 0.5, "cup": 0.4, "pizza": 1.0}',
         {"dining table": 0.7, "knife": 0.5, "cup": 0.4}),
    Case("json_groups", "car",
         '{"strongly_related": ["truck", "traffic light"], "weakly_related": ["bicycle"], "unrelated": ["giraffe", "toothbrush"]}',
         {"truck": 0.8, "traffic light": 0.8, "bicycle": 0.3}, candidates=("truck", "traffic light", "bicycle", "giraffe", "toothbrush")),
    Case("json_category_key", "cat",
         '{"cat": [{"name": "dog", "strength": 0.6}, {"name": "couch", "strength": 0.5}]}',
         {"dog": 0.6, "couch": 0.5}),
    Case("json_nested", "vase",
         '{"answer": {"category": "vase", "neighbours": [{"label": "potted plant", "confidence": 0.8}, {"label": "dining table", "confidence": 0.5}]}}',
         {"potted plant": 0.8, "dining table": 0.5}),
    Case("json_out_of_range", "bench",
         '{"related": [{"name": "person", "strength": 1.3}, {"name": "bird", "strength": 0.4}, '
         '{"name": "potted plant", "strength": -0.2}, {"name": "umbrella", "strength": 0}]}',
         {"person": 1.0, "bird": 0.4}, candidates=("person", "bird", "potted plant", "umbrella")),
    Case("json_booleans", "boat",
         '{"related": [{"name": "person", "related": true}, {"name": "bird", "related": true}, {"name": "giraffe", "related": false}]}',
         {"person": 1.0, "bird": 1.0}, candidates=("person", "bird", "giraffe")),
    Case("json_strings_with_strengths", "bowl",
         '["spoon (0.6)", "cup: 0.7", "dining table - strong", "banana"]',
         {"spoon": 0.6, "cup": 0.7, "dining table": 0.8, "banana": 1.0}),
    Case("json_lines", "handbag",
         '{"name": "person", "strength": 0.8}\n{"name": "suitcase", "strength": 0.4}\n{"name": "backpack", "strength": 0.5}',
         {"person": 0.8, "suitcase": 0.4, "backpack": 0.5}),
    Case("json_echo_then_answer", "clock",
         'Format: {"related": [{"name": "<candidate>", "strength": 0.8}]}\n'
         'Answer: {"related": [{"name": "vase", "strength": 0.4}, {"name": "book", "strength": 0.3}]}',
         {"vase": 0.4, "book": 0.3}),
    Case("json_empty", "giraffe", '{"related": []}', {}, candidates=("zebra", "elephant")),
    Case("think_block", "cat",
         "<think>The user wants related categories. Maybe car? No, a car is unrelated. Dog and couch, yes.</think>\n"
         '{"related": [{"name": "dog", "strength": 0.6}, {"name": "couch", "strength": 0.5}]}',
         {"dog": 0.6, "couch": 0.5}, candidates=("dog", "couch", "car")),
    # ---- plain lists
    Case("comma_list", "fork", "knife, spoon, dining table, bowl",
         {"knife": 1.0, "spoon": 1.0, "dining table": 1.0, "bowl": 1.0}),
    Case("semicolon_list", "umbrella", "person; handbag; bench.", {"person": 1.0, "handbag": 1.0, "bench": 1.0}),
    Case("sentence_list", "dog",
         "The categories most related to dog are person, frisbee, sports ball and teddy bear.",
         {"person": 1.0, "frisbee": 1.0, "sports ball": 1.0, "teddy bear": 1.0}),
    Case("colon_sentence_list", "fork",
         "Sure, here are the related categories: knife, spoon, and dining table.",
         {"knife": 1.0, "spoon": 1.0, "dining table": 1.0}),
    Case("one_per_line", "keyboard", "mouse\nlaptop\ntv\n", {"mouse": 1.0, "laptop": 1.0, "tv": 1.0}),
    Case("bullet_list", "toothbrush", "- sink\n- toilet\n- hair drier\n* cup",
         {"sink": 1.0, "toilet": 1.0, "hair drier": 1.0, "cup": 1.0}),
    Case("numbered_with_scores", "car",
         "1. truck (0.8): trucks and cars share the road\n2. bus (0.7)\n3) traffic light (0.6)\n4. parking meter - 0.4\n5. stop sign: 0.5 (often nearby)",
         {"truck": 0.8, "bus": 0.7, "traffic light": 0.6, "parking meter": 0.4, "stop sign": 0.5}),
    Case("markdown_scores", "skis", "**snowboard**: 0.9\n**person**: 0.8\n`backpack`: 0.3",
         {"snowboard": 0.9, "person": 0.8, "backpack": 0.3}),
    Case("strength_words", "cow", "sheep: strong\nhorse: moderate\ndog: weak\nelephant: none",
         {"sheep": 0.8, "horse": 0.5, "dog": 0.3}, candidates=("sheep", "horse", "dog", "elephant")),
    Case("strength_phrases", "baseball bat",
         "- baseball glove (very strong relation)\n- sports ball — strong\n- person: moderately related\n- bench (weak correlation)\n- car: not related",
         {"baseball glove": 0.9, "sports ball": 0.8, "person": 0.5, "bench": 0.3}, candidates=("baseball glove", "sports ball", "person", "bench", "car")),
    Case("sections", "dining table",
         "Strongly related:\n- chair\n- cup\n\nWeakly related:\n- vase\n\nNot related:\n- car\n- giraffe",
         {"chair": 0.8, "cup": 0.8, "vase": 0.3}, candidates=("chair", "cup", "vase", "car", "giraffe")),
    Case("markdown_table", "laptop",
         "| Category | Strength |\n|---|---|\n| keyboard | 0.9 |\n| mouse | 0.85 |\n| cell phone | 0.5 |",
         {"keyboard": 0.9, "mouse": 0.85, "cell phone": 0.5}),
    Case("csv_lines", "bicycle", "name,strength\nperson,0.9\ncar,0.5\nbackpack,0.3",
         {"person": 0.9, "car": 0.5, "backpack": 0.3}),
    Case("yaml", "spoon", "related:\n  - name: fork\n    strength: 0.9\n  - name: bowl\n    strength: 0.7\n  - name: cup",
         {"fork": 0.9, "bowl": 0.7, "cup": 1.0}),
    Case("percent_and_fractions", "motorcycle", "person - 90%\nbicycle - 6/10\ncar - 0.5\nhelmet - 0.8",
         {"person": 0.9, "bicycle": 0.6, "car": 0.5}, candidates=("person", "bicycle", "car", "truck")),
    Case("decimal_commas", "train", "bus: 0,7; truck: 0,5; traffic light: 0,4",
         {"bus": 0.7, "truck": 0.5, "traffic light": 0.4}),
    Case("scale_10_lines", "surfboard", "person: 9\nboat: 4\nbird: 2",
         {"person": 0.9, "boat": 0.4, "bird": 0.2}),
    # ---- characters
    Case("fullwidth", "cup", "ｂｏｗｌ：０．７，ｓｐｏｏｎ：０．６", {"bowl": 0.7, "spoon": 0.6}),
    Case("fullwidth_json", "wine glass", '｛"related"：［｛"name"："bottle"，"strength"：0.9｝，｛"name"："ｃｕｐ"，"strength"：0.4｝］｝',
         {"bottle": 0.9, "cup": 0.4}),
    Case("ideographic_commas", "wine glass", "bottle、cup、dining table", {"bottle": 1.0, "cup": 1.0, "dining table": 1.0}),
    Case("nul_and_zero_width", "oven",
         '{"related": [{"name": "micro\x00wave", "strength": 0.8}, {"name": "toaster\u200b", "strength": 0.6}, {"name": "\ufeffsink", "strength": 0.3}]}\x00\x00\x00',
         {"microwave": 0.8, "toaster": 0.6, "sink": 0.3}),
    Case("nbsp_and_tabs", "sink", "toilet:\u00a00.7\n\ttoothbrush\t0.5\n", {"toilet": 0.7, "toothbrush": 0.5}),
    # ---- repeats, refusals, prose
    Case("repeated_names", "bowl",
         '{"related": [{"name": "spoon", "strength": 0.8}, {"name": "cup", "strength": 0.6}, {"name": "Spoon", "strength": 0.5}, {"name": "spoons", "strength": 0.4}]}',
         {"spoon": 0.8, "cup": 0.6}),
    Case("self_loop_plural", "dog", "dogs (0.9), person (0.8), frisbee (0.5)", {"person": 0.8, "frisbee": 0.5}),
    Case("apology", "giraffe", "I'm sorry, but I can't determine relationships between image categories.", {},
         candidates=("zebra", "elephant")),
    Case("refusal_json", "giraffe", "As an AI language model, I cannot browse images. Here is my best guess: none.", {},
         candidates=("zebra", "elephant")),
    Case("hedged_list", "giraffe", "I'm not entirely sure, but these could be related: zebra, elephant.",
         {"zebra": 1.0, "elephant": 1.0}),
    Case("prose_around_list", "tennis racket",
         "Here are the categories related to tennis racket:\n\n- sports ball (0.9)\n- person (0.8)\n\n"
         "These are commonly seen together in tennis photos. A bench might also appear, but rarely.",
         {"sports ball": 0.9, "person": 0.8}, candidates=("sports ball", "person", "bench")),
    Case("explanations_after_names", "frisbee",
         "- dog: 0.7 (dogs often catch frisbees)\n- person – 0.9, the thrower\n- kite: weak, both fly in parks with a bench",
         {"dog": 0.7, "person": 0.9, "kite": 0.3}, candidates=("dog", "person", "kite", "bench")),
    Case("note_section", "remote",
         "tv: 0.9\ncouch: 0.6\n\nNote: keyboard, laptop were left out as unrelated.",
         {"tv": 0.9, "couch": 0.6}, candidates=("tv", "couch", "keyboard", "laptop")),
    # ---- names
    Case("case_and_plurals", "person",
         "Bicycles, CARS, Umbrellas, handbags, Ski, buses, benches, knives, Mice, Teddy Bears",
         {"bicycle": 1.0, "car": 1.0, "umbrella": 1.0, "handbag": 1.0, "skis": 1.0, "bus": 1.0, "bench": 1.0,
          "knife": 1.0, "mouse": 1.0, "teddy bear": 1.0}),
    Case("people_plural", "bicycle", "- People: 0.9\n- cars: 0.5", {"person": 0.9, "car": 0.5}),
    Case("hyphens_underscores", "person",
         "T-Shirt: 0.7\nice cream: 0.5\ncell_phone: 0.6\nteddy-bear: 0.3\nStop-Sign: 0.2\nSalt & pepper shakers: 0.1",
         {"t-shirt": 0.7, "ice_cream": 0.5, "cell phone": 0.6, "teddy bear": 0.3, "stop sign": 0.2, "salt and pepper shakers": 0.1}),
    Case("compact_names", "bed", "teddybear, cellphone, pottedplant, tshirt, diningtable",
         {"teddy bear": 1.0, "cell phone": 1.0, "potted plant": 1.0, "t-shirt": 1.0, "dining table": 1.0}),
    Case("articles_and_notes", "keyboard",
         "- a mouse (computer mouse)\n- the laptop\n- TV (monitor)\n- a monitor",
         {"mouse": 1.0, "laptop": 1.0, "tv": 1.0}, candidates=("mouse", "laptop", "tv", "cell phone")),
    Case("conjunctions", "dining table", "chair and cup (0.7); knife & fork (0.6); salt and pepper shakers (0.3)",
         {"chair": 0.7, "cup": 0.7, "knife": 0.6, "fork": 0.6, "salt and pepper shakers": 0.3}),
    Case("typos", "oven", "refridgerator (0.7), microwve (0.8), toastr (0.5), sinkk (0.3)",
         {"refrigerator": 0.7, "microwave": 0.8, "toaster": 0.5},
         candidates=("refrigerator", "microwave", "toaster", "sink"), note="'sinkk' is too short to correct safely"),
    # ---- names that must not be confused
    Case("hot_dog_not_dog", "sandwich", "hot dog (0.8), pizza (0.7), dog (0.1)",
         {"hot dog": 0.8, "pizza": 0.7, "dog": 0.1}, candidates=("hot dog", "pizza", "dog")),
    Case("hot_dog_missing", "sandwich", "hot dog: 0.8\nhotdog: 0.8\npizza: 0.7",
         {"pizza": 0.7}, candidates=("pizza", "dog", "cake"), vocabulary=_without("hot dog"),
         note="the vocabulary has no 'hot dog': it must not become 'dog'"),
    Case("dog_missing", "frisbee", "dog: 0.7, dogs: 0.6, person: 0.9",
         {"person": 0.9}, candidates=("person", "hot dog", "kite"), vocabulary=_without("dog"),
         note="the vocabulary has no 'dog': it must not become 'hot dog'"),
    Case("near_names", "person",
         "bush, tire, cupcake, mousepad, cart, teddy, glasses, catamaran, orange juice, hot dog stand, wine, bears, keyboards, microwave oven",
         {"bear": 1.0, "keyboard": 1.0},
         candidates=("bus", "tie", "cup", "mouse", "car", "teddy bear", "wine glass", "cat", "orange", "hot dog", "bear", "keyboard", "microwave", "oven")),
    Case("near_names_json", "person",
         '{"related": [{"name": "bush", "strength": 0.5}, {"name": "tile", "strength": 0.5}, {"name": "cart", "strength": 0.5}, '
         '{"name": "moose", "strength": 0.5}, {"name": "kit", "strength": 0.5}, {"name": "bed sheet", "strength": 0.5}, {"name": "hot dogs", "strength": 0.5}]}',
         {"hot dog": 0.5}, candidates=("bus", "tie", "car", "mouse", "kite", "bed", "sheep", "hot dog", "dog")),
]


def score(module: object) -> dict[str, float]:
    """Edges kept and wrong edges of a parse module (its parse function, `clean_pairs`, `VocabularyMatcher`) on the corpus."""
    import math

    parse = getattr(module, "parse_answer", None) or module.parse_json_answer  # type: ignore[attr-defined]
    expected = kept = wrong = right_strength = 0
    for case in CASES:
        report = module.ParseReport()  # type: ignore[attr-defined]
        matcher = module.VocabularyMatcher(case.labels())  # type: ignore[attr-defined]
        edges = dict(module.clean_pairs(case.category, parse(case.text, report), matcher, report, candidates=case.prompt_candidates()))  # type: ignore[attr-defined]
        hit = edges.keys() & case.expected.keys()
        expected, kept, wrong = expected + len(case.expected), kept + len(hit), wrong + len(edges.keys() - case.expected.keys())
        right_strength += sum(math.isclose(edges[n], case.expected[n], abs_tol=1e-9) for n in hit)
    return {"cases": len(CASES), "expected": expected, "kept": kept, "kept_fraction": kept / expected, "wrong": wrong, "right_strength": right_strength}


if __name__ == "__main__":  # python tests/graph/answer_corpus.py [a parse.py of another version]
    import importlib
    import importlib.util
    import sys

    if len(sys.argv) > 1:  # e.g. git show <commit>:src/c2srt/graph/parse.py > /tmp/old_parse.py
        spec = importlib.util.spec_from_file_location("c2srt.graph._parse_under_test", sys.argv[1])
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[spec.name] = module  # type: ignore[union-attr]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    else:
        module = importlib.import_module("c2srt.graph.parse")
    print(score(module))
