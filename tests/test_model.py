"""The composed model in every ablation mode on the tiny backbone: shapes, gradients, open vocabulary."""

from __future__ import annotations

import itertools

import pytest
import torch

from c2srt.config import HeadCfg, IstCfg, ModelCfg
from c2srt.graph import build_graph
from c2srt.losses import distillation_loss, ranking_loss
from c2srt.model import C2SRT, LabelSet, create_model

SEEN = ["dog", "cat", "car", "bus", "sky", "tree"]
UNSEEN = ["horse", "boat", "grass"]
MODES = list(itertools.product(["mkt", "isr"], ["off", "label", "image"], [True, False]))


def _model(head: str = "isr", ist: str = "off", distill: bool = True, **kw) -> C2SRT:
    torch.manual_seed(0)
    cfg = ModelCfg(
        backbone="test-tiny",
        pretrained=None,
        distill=distill,
        trainable_blocks=1,
        head=HeadCfg(name=head, topk=4, k_max=8, tau=0.1),
        ist=IstCfg(mode=ist, hidden=32, image_chunk=2),
        **kw,
    )
    return create_model(cfg)


def _graph(model: C2SRT):
    def encode(names):
        with torch.no_grad():
            return model.label_encoder.encode_labels(names).numpy()

    return build_graph(SEEN + UNSEEN, seen=SEEN, source="embedding", encoder=encode)


@pytest.mark.parametrize(("head", "ist", "distill"), MODES)
def test_forward_backward_in_every_ablation_mode(head: str, ist: str, distill: bool) -> None:
    model = _model(head, ist, distill).train()
    graph = _graph(model) if ist != "off" else None
    images = torch.randn(3, 3, 32, 32)
    target = torch.tensor([[1, -1, 0, -1, 1, -1], [-1, 1, -1, 0, -1, 1], [1, 1, -1, -1, -1, -1]])
    out = model(images, model.label_set(SEEN, graph), with_teacher=distill)
    assert out.logits.shape == (3, len(SEEN)) and torch.isfinite(out.logits).all()
    assert out.counts.shape == (3, len(SEEN))
    loss = ranking_loss(out.logits, target)
    if distill:
        assert out.g_teacher is not None and out.g_teacher.shape == out.g.shape
        loss = loss + distillation_loss(out.g, out.g_teacher)
    else:
        assert model.backbone.teacher is None and out.g_teacher is None
    loss.backward()
    frozen_with_grad = [n for n, p in model.named_parameters() if not p.requires_grad and p.grad is not None]
    assert frozen_with_grad == []
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.startswith(("label_encoder.clip.", "backbone.teacher.")) for n in trainable)
    assert not any("resblocks.0." in n for n in trainable)  # only the last block trains
    assert model.backbone.visual.proj.grad is not None
    if ist != "off":
        assert any(n.startswith("ist.") for n in trainable)
        assert model.ist.in_proj[0].weight.grad is not None or ist == "label"


@pytest.mark.parametrize(("head", "ist"), [("mkt", "off"), ("isr", "label"), ("isr", "image")])
def test_unseen_labels_are_scored_without_retraining(head: str, ist: str) -> None:
    """K at test time differs from training: seen + unseen labels (and the bigger graph) just work."""
    model = _model(head, ist).eval()
    graph = _graph(model) if ist != "off" else None
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        train_k = model(images, model.label_set(SEEN, graph)).logits
        test_k = model(images, model.label_set(SEEN + UNSEEN, graph)).logits
        again = model(images, model.label_set(SEEN + UNSEEN, graph)).logits
    assert train_k.shape == (2, 6) and test_k.shape == (2, 9) and torch.isfinite(test_k).all()
    torch.testing.assert_close(test_k, again, rtol=0, atol=0)  # deterministic in eval mode


def test_permuting_the_vocabulary_permutes_the_scores() -> None:
    model = _model("isr", "image").eval()
    graph = _graph(model)
    names = SEEN + UNSEEN
    perm = [4, 0, 8, 2, 6, 1, 7, 3, 5]
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a = model(images, model.label_set(names, graph)).logits
        b = model(images, model.label_set([names[i] for i in perm], graph)).logits
    torch.testing.assert_close(b, a[:, perm], rtol=1e-5, atol=1e-5)


def test_label_mode_cache_follows_training() -> None:
    model = _model("isr", "label").eval()
    graph = _graph(model)
    labels = model.label_set(SEEN, graph)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(images, labels).logits
    torch.nn.init.normal_(model.ist.out_proj.weight)  # "training" changed the GAT
    model.train()
    model.eval()  # switching modes drops the cached refined labels
    with torch.no_grad():
        after = model(images, labels).logits
    assert not torch.allclose(before, after)


def test_clear_errors_for_bad_vocabularies() -> None:
    model = _model("isr", "image")
    with pytest.raises(ValueError, match="category graph"):
        model.label_set(SEEN)
    with pytest.raises(ValueError, match="duplicate"):
        _model().label_set(["dog", "cat", "dog"])
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        _model()(torch.randn(3, 32, 32), SEEN)


def test_return_weights_gives_a_distribution_per_label() -> None:
    model = _model("isr").eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32), LabelSet(SEEN, model.label_encoder.encode_labels(SEEN)), return_weights=True)
    assert out.weights.shape == (2, 16, 6)
    torch.testing.assert_close(out.weights.sum(1), torch.ones(2, 6))
    assert torch.equal((out.weights > 0).sum(1), out.counts)


def test_zero_shot_is_clip_cosine() -> None:
    model = _model("mkt", distill=False).eval()
    images = torch.randn(2, 3, 32, 32)
    g, _ = model.backbone.encode_image(images)
    text = model.label_encoder.encode_labels(SEEN)
    expected = torch.nn.functional.normalize(g, dim=-1) @ text.T
    torch.testing.assert_close(model.zero_shot(images, SEEN), expected)


def test_unknown_head_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match="isr.*mkt|mkt.*isr"):
        create_model(ModelCfg(backbone="test-tiny", pretrained=None, head=HeadCfg(name="nope")))


@pytest.mark.parametrize(("head", "similarity"), [("mkt", "raw"), ("mkt", "cosine"), ("isr", "cosine")])
def test_each_block_scores_as_a_pass_over_its_labels_alone(head: str, similarity: str) -> None:
    torch.manual_seed(0)
    cfg = ModelCfg(backbone="test-tiny", pretrained=None, distill=False, head=HeadCfg(name=head, topk=4, similarity=similarity))
    model = create_model(cfg).eval()
    images = torch.randn(3, 3, 32, 32)
    names = SEEN + UNSEEN
    blocks = {"zsl": torch.arange(len(SEEN), len(names)), "gzsl": torch.arange(len(names)), "seen": torch.arange(len(SEEN))}
    with torch.no_grad():
        out = model.score_blocks(images, model.label_set(names), blocks)
        torch.testing.assert_close(out["zsl"], model(images, UNSEEN).logits)
        torch.testing.assert_close(out["seen"], model(images, SEEN).logits)
        torch.testing.assert_close(out["gzsl"], model(images, names).logits)
        assert not torch.allclose(out["zsl"], out["gzsl"][:, len(SEEN) :])  # the fusion spans the block only


@pytest.mark.parametrize("ist", ["label", "image"])
def test_ist_blocks_keep_the_messages_from_seen_labels(ist: str) -> None:
    model = _model("isr", ist, distill=False).eval()
    torch.nn.init.normal_(model.ist.out_proj.weight, std=0.5)  # a trained IST: the graph changes scores
    graph = _graph(model)
    names = SEEN + UNSEEN
    images = torch.randn(2, 3, 32, 32)
    unseen_idx = torch.arange(len(SEEN), len(names))
    with torch.no_grad():
        out = model.score_blocks(images, model.label_set(names, graph), {"zsl": unseen_idx})
        full = model(images, model.label_set(names, graph)).logits
        alone = model(images, model.label_set(UNSEEN, graph)).logits  # no seen node to hear from
    torch.testing.assert_close(out["zsl"], full[:, unseen_idx])
    assert any(n in SEEN for u in UNSEEN for n, _ in graph.neighbors(u))
    assert not torch.allclose(out["zsl"], alone)


def test_frozen_image_tower_and_stage_two_switches() -> None:
    model = _model("mkt", "off", distill=False, train_image=False, prompt_tuning=True)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".ctx_" in n for n in trainable)
    model.train()
    assert not model.backbone.visual.training  # a frozen tower stays in eval mode


@pytest.mark.parametrize("head", ["mkt", "isr"])
def test_cosine_scoring_scores_each_label_on_its_own(head: str) -> None:
    """`model.head.scoring: cosine`: e^s cos(f_img^c, t_c), whatever else is in the vocabulary."""
    model = _model(head, "off", distill=False)
    model.cfg.head.scoring = "cosine"  # the flag the config carries; the scorer is what scores
    from c2srt.heads.base import CosineScore

    model.scorer = CosineScore()
    model.eval()
    images = torch.randn(3, 3, 32, 32)
    names = SEEN + UNSEEN
    with torch.no_grad():
        full = model(images, names).logits
        alone = model(images, UNSEEN).logits
        text = model.label_encoder.encode_labels(names)
        g, patches = model.backbone.encode_image(images)
        f_img = model.head(g, patches, text, need_features=True).f_img  # [B, K, D]
        blocks = model.score_blocks(images, model.label_set(names), {"zsl": torch.arange(len(SEEN), len(names))})
    expected = 10.0 * torch.nn.functional.cosine_similarity(f_img, text.unsqueeze(0), dim=-1)  # the formula, scale 10
    torch.testing.assert_close(full, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(alone, full[:, len(SEEN) :], rtol=1e-5, atol=1e-6)  # no label depends on another
    torch.testing.assert_close(blocks["zsl"], full[:, len(SEEN) :])


def test_cosine_scoring_is_ist_with_its_transfer_at_zero() -> None:
    """The control row "scoring rule only" equals IST image mode whose output projection stays 0."""
    from c2srt.config import Cfg, merge_config

    cosine = create_model(merge_config(Cfg(), {"model": {"backbone": "test-tiny", "pretrained": None, "distill": False, "head": {"scoring": "cosine"}}}).model)
    ist = create_model(merge_config(Cfg(), {"model": {"backbone": "test-tiny", "pretrained": None, "distill": False, "ist": {"mode": "image", "hidden": 32}}}).model)
    shared = {k: v for k, v in cosine.state_dict().items() if not k.startswith("scorer.")}  # the same CLIP
    ist.load_state_dict({**ist.state_dict(), **shared})
    assert isinstance(cosine.scorer, torch.nn.Module) and cosine.ist is None and ist.scorer is None
    graph = _graph(ist)
    images = torch.randn(2, 3, 32, 32)
    names = SEEN + UNSEEN
    with torch.no_grad():
        a = cosine.eval()(images, names).logits
        b = ist.eval()(images, ist.label_set(names, graph)).logits
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_cosine_scoring_with_ist_is_refused() -> None:
    from c2srt.config import Cfg, ConfigError, merge_config

    with pytest.raises(ConfigError, match="model.head.scoring"):
        merge_config(Cfg(), {"model": {"head": {"scoring": "cosine"}, "ist": {"mode": "image"}}})


# ------------------------------------------------------------------------------ decision scores
DECIDERS = [("mkt", "cosine", "fused"), ("mkt", "raw", "fused"), ("isr", "cosine", "fused"), ("isr", "cosine", "cosine")]


def _decider(head: str, similarity: str, scoring: str) -> C2SRT:
    torch.manual_seed(0)
    cfg = ModelCfg(backbone="test-tiny", pretrained=None, distill=False, head=HeadCfg(name=head, topk=4, k_max=8, tau=0.1, similarity=similarity, scoring=scoring))
    model = create_model(cfg).eval()
    torch.nn.init.normal_(model.backbone.visual.proj)  # patch norms that differ, as in a trained tower
    return model


@pytest.mark.parametrize(("head", "similarity", "scoring"), DECIDERS)
def test_decision_scores_are_the_cosine_of_the_region_feature(head: str, similarity: str, scoring: str) -> None:
    """cos(f_img^c, t_c), f_img = (f_L + g)/2, computed by the head without the [B, K, D] feature."""
    from c2srt.heads.base import scaled_cosine
    from c2srt.model import DECISION_KEY

    model = _decider(head, similarity, scoring)
    images = torch.randn(3, 3, 32, 32)
    names = SEEN + UNSEEN
    labels = model.label_set(names)
    blocks = {"zsl": torch.arange(len(SEEN), len(names)), "gzsl": torch.arange(len(names))}
    with torch.no_grad():
        decision = model.decision_scores(images, labels)
        g, patches = model.backbone.encode_image(images)
        f_img = model.head(g, patches, labels.text, need_features=True).f_img  # [B, K, D]
        both = model.score_blocks(images, labels, blocks, decision=True)
        plain = model.score_blocks(images, labels, blocks)
        out = model(images, labels, decision=True)
        plain_logits = model(images, labels).logits
    torch.testing.assert_close(decision, scaled_cosine(f_img, labels.text, torch.tensor(0.0)), rtol=1e-5, atol=1e-6)
    assert decision.shape == (3, len(names)) and decision.abs().max() <= 1 + 1e-6
    torch.testing.assert_close(both[DECISION_KEY], decision)
    torch.testing.assert_close(out.decision, decision)
    assert set(both) == {*blocks, DECISION_KEY} and all(torch.equal(both[k], plain[k]) for k in blocks)  # rankings unchanged
    torch.testing.assert_close(out.logits, plain_logits, rtol=0, atol=0)


@pytest.mark.parametrize(("head", "similarity", "scoring"), [*DECIDERS, ("zero-shot", "cosine", "fused")])
def test_a_labels_decision_score_is_the_same_under_any_vocabulary(head: str, similarity: str, scoring: str) -> None:
    """Without IST nothing is normalised across labels: each label keeps its score in any vocabulary
    that contains it (up to floating-point rounding of differently shaped products)."""
    zero_shot = head == "zero-shot"
    model = _decider("isr" if zero_shot else head, similarity, scoring)
    images = torch.randn(4, 3, 32, 32)
    names = SEEN + UNSEEN
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        full = model.decision_scores(images, names, zero_shot=zero_shot)
        for size in (1, 2, 5, len(names)):
            for _ in range(3):
                idx = torch.randperm(len(names), generator=gen)[:size]
                sub = model.decision_scores(images, [names[i] for i in idx], zero_shot=zero_shot)
                torch.testing.assert_close(sub, full[:, idx], rtol=0, atol=1e-6)
        other = model.decision_scores(images, ["kite", "dog", "umbrella", "traffic light"], zero_shot=zero_shot)  # labels it never scored
    torch.testing.assert_close(other[:, 1], full[:, 0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("ist", ["label", "image"])
def test_ist_decision_score_depends_on_the_labels_two_hops_upstream_only(ist: str) -> None:
    """IST's 2 GATv2 layers: a label hears its in-neighbours and theirs, nothing farther."""
    from c2srt.graph import CategoryGraph

    model = _model("isr", ist, distill=False).eval()
    torch.nn.init.normal_(model.ist.out_proj.weight, std=0.5)  # a trained IST: the graph changes scores
    names = SEEN + UNSEEN
    # bus -> car -> dog -> cat -> tree (neighbour -> category)
    graph = CategoryGraph(names, {"cat": [("dog", 0.9)], "dog": [("car", 0.8)], "car": [("bus", 0.7)], "tree": [("cat", 0.6)]})
    images = torch.randn(2, 3, 32, 32)

    def cat_score(vocab: list[str]) -> torch.Tensor:
        with torch.no_grad():
            return model.decision_scores(images, model.label_set(vocab, graph))[:, vocab.index("cat")]

    full = cat_score(names)
    torch.testing.assert_close(cat_score(["cat", "dog", "car"]), full)  # bus (3 hops), tree (downstream) and the rest: nothing
    torch.testing.assert_close(cat_score(["horse", "car", "cat", "sky", "dog"]), full)
    assert not torch.allclose(cat_score(["cat", "dog"]), full)  # car, 2 hops up
    assert not torch.allclose(cat_score(["cat", "car", "bus"]), full)  # dog, its neighbour


PER_LABEL_MODES = [
    ("cosine scoring", {"head": "mkt", "ist": "off", "scoring": "cosine"}),
    ("IST label", {"head": "isr", "ist": "label"}),
    ("IST image", {"head": "isr", "ist": "image"}),
    ("IST image, top_m", {"head": "mkt", "ist": "image", "top_m": 2}),
    ("IST image, evidence", {"head": "isr", "ist": "image", "evidence": True}),
    ("IST image, evidence, no self-loops", {"head": "mkt", "ist": "image", "evidence": True, "self_loops": False}),
    ("IST image, evidence dropout", {"head": "isr", "ist": "image", "evidence": True, "evidence_dropout": 0.5}),
]


@pytest.mark.parametrize(("name", "mode"), PER_LABEL_MODES, ids=[n for n, _ in PER_LABEL_MODES])
def test_decision_score_of_a_per_label_rule_is_its_logit_over_its_scale(name: str, mode: dict) -> None:
    """Cosine scoring and IST: the decision score is the model's own logit divided by e^s, in every
    mode; with `evidence` the readout's logit shift is part of that logit (so of the score, over e^s)."""
    from c2srt.model import DECISION_KEY

    torch.manual_seed(0)
    head, ist = mode["head"], mode["ist"]
    ist_kw = {k: mode[k] for k in ("top_m", "evidence", "self_loops", "evidence_dropout") if k in mode}
    cfg = ModelCfg(
        backbone="test-tiny", pretrained=None, distill=False,
        head=HeadCfg(name=head, topk=4, k_max=8, tau=0.1, scoring=mode.get("scoring", "fused")),
        ist=IstCfg(mode=ist, hidden=32, image_chunk=2, **ist_kw),
    )  # fmt: skip
    model = create_model(cfg).eval()
    scorer = model.scorer if model.scorer is not None else model.ist
    with torch.no_grad():
        scorer.logit_scale.fill_(2.3)  # e^s = 10: not 1, so a missing division shows
        if model.ist is not None:
            torch.nn.init.normal_(model.ist.out_proj.weight, std=0.5)  # a trained IST: the graph changes scores
            if model.ist.readout is not None:
                torch.nn.init.normal_(model.ist.readout.weight, std=0.5)
                model.ist.readout.bias.fill_(-0.3)  # a shift that is not zero
    names = SEEN + UNSEEN
    labels = model.label_set(names, _graph(model) if ist != "off" else None)
    images = torch.randn(3, 3, 32, 32)
    blocks = {"zsl": torch.arange(len(SEEN), len(names)), "gzsl": torch.arange(len(names))}
    with torch.no_grad():
        logits = model(images, labels).logits
        decision = model.decision_scores(images, labels)
        both = model.score_blocks(images, labels, blocks, decision=True)
    scale = float(scorer.logit_scale.detach().exp())
    torch.testing.assert_close(decision, logits / scale, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(both[DECISION_KEY], decision, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(both["gzsl"], logits)  # the ranking is untouched
    if mode.get("evidence"):  # the shift is in the score: without it the score is a cosine again
        with torch.no_grad():
            model.ist.readout.bias.zero_()
            model.ist.readout.weight.zero_()
            unshifted = model.decision_scores(images, labels)
        assert not torch.allclose(unshifted, decision), "the readout's shift did not reach the decision score"
        assert unshifted.abs().max() <= 1 + 1e-5
