import pytest
import torch

from c2srt.backbone import create_clip
from c2srt.text import LabelEncoder


@pytest.fixture()
def clip():
    torch.manual_seed(0)
    return create_clip("test-tiny")


def test_template_ensemble_is_the_normalised_mean(clip):
    templates = ["a photo of a {}.", "There is a {} in the scene"]
    enc = LabelEncoder(clip.model, clip.tokenizer, templates=templates)
    names = ["dog", "cat", "red bus"]
    emb = enc.encode_labels(names)
    per = [clip.model.encode_text(clip.tokenizer([t.format(n) for n in names]), normalize=True) for t in templates]
    ref = torch.nn.functional.normalize((per[0] + per[1]) / 2, dim=-1)
    torch.testing.assert_close(emb, ref)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(3))
    assert enc.encode_labels(names) is emb  # cached per vocabulary


def test_text_tower_is_frozen_and_prompt_context_trains(clip):
    enc = LabelEncoder(clip.model, clip.tokenizer, prompt_tuning=True, n_ctx=3, prompt_init="random")
    emb = enc.encode_labels(["dog", "cat"])
    emb.sum().backward()
    assert enc.ctx.grad is not None and enc.ctx.grad.abs().sum() > 0
    assert all(p.grad is None for p in clip.model.parameters())
    before = emb.detach().clone()
    with torch.no_grad():
        enc.ctx.add_(1.0)
    assert not torch.allclose(enc.encode_labels(["dog", "cat"]), before)  # context changes the embedding


def test_bad_vocabularies(clip):
    enc = LabelEncoder(clip.model, clip.tokenizer)
    with pytest.raises(ValueError, match="empty"):
        enc.encode_labels([])
    with pytest.raises(ValueError, match="empty label"):
        enc.encode_labels(["dog", " "])
    with pytest.raises(ValueError, match="template"):
        LabelEncoder(clip.model, clip.tokenizer, templates=["no placeholder"])


def test_trimmed_text_tower_equals_the_full_one(clip):
    """Skipping the padding after the longest prompt changes nothing (causal tower, end-of-text pooling)."""
    from c2srt.text import _encode_text

    prompts = ["a dog", "There is a very long and winding red double decker bus in the scene", "x" * 200]
    tokens = clip.tokenizer(prompts)
    assert int(tokens.argmax(-1).max()) + 1 == tokens.shape[1]  # the 200-char prompt fills the context
    torch.testing.assert_close(_encode_text(clip.model, tokens), clip.model.encode_text(tokens, normalize=True))
    short = clip.tokenizer(["a dog", "a cat on a mat"])
    assert int(short.argmax(-1).max()) + 1 < short.shape[1]  # this batch really is trimmed
    torch.testing.assert_close(_encode_text(clip.model, short), clip.model.encode_text(short, normalize=True))


def test_prompt_tuning_trimmed_equals_full(clip):
    enc = LabelEncoder(clip.model, clip.tokenizer, prompt_tuning=True, n_ctx=2, prompt_init="random")
    with torch.no_grad():
        enc.ctx.normal_()
    names = ["dog", "red bus"]
    got = enc.encode_labels(names)
    ctx = enc.ctx

    def swap(_m, _i, out):
        return torch.cat([out[:, :1], ctx.unsqueeze(0).expand(out.shape[0], -1, -1), out[:, 3:]], dim=1)

    handle = clip.model.token_embedding.register_forward_hook(swap)
    try:
        ref = clip.model.encode_text(clip.tokenizer([f"X X There is a {n} in the scene" for n in names]), normalize=True)
    finally:
        handle.remove()
    torch.testing.assert_close(got, ref)


def test_template_context_starts_as_the_plain_prompt(clip):
    """MKT's stage 2 starts from the template's own word embeddings: before training, the tuned
    encoder embeds every label exactly as the frozen prompt does."""
    templates = ["There is a {} in the scene", "{} on a table", "a photo of a {}"]
    plain = LabelEncoder(clip.model, clip.tokenizer, templates=templates)
    tuned = LabelEncoder(clip.model, clip.tokenizer, templates=templates, prompt_tuning=True)
    names = ["dog", "red double decker bus", "a"]
    with torch.no_grad():
        torch.testing.assert_close(tuned.encode_labels(names), plain.encode_labels(names))
    shapes = [tuple(p.shape) for p in tuned.context_parameters()]
    width = clip.model.token_embedding.weight.shape[1]
    assert shapes == [(4, width), (1, width), (5, width), (4, width), (4, width), (1, width)]  # prefixes, suffixes


def test_template_context_is_mkts_token_rows(clip):
    """Changing the context = changing, in a copy of the token table, the rows of the template's
    tokens (what MKT trains), with the label's own tokens left as they were."""
    import copy

    enc = LabelEncoder(clip.model, clip.tokenizer, prompt_tuning=True)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in enc.context_parameters():
            p.add_(torch.randn(p.shape, generator=gen))
    names = ["dog", "red bus"]  # no template word inside the names
    ref_model = copy.deepcopy(clip.model)
    span = enc._spans[0]
    with torch.no_grad():
        ref_model.token_embedding.weight[span.prefix_ids] = enc.ctx_prefix[0]
        ref_model.token_embedding.weight[span.suffix_ids] = enc.ctx_suffix[0]
        ref = ref_model.encode_text(clip.tokenizer([f"There is a {n} in the scene" for n in names]), normalize=True)
        torch.testing.assert_close(enc.encode_labels(names), ref)


def test_template_context_trains_and_the_tower_does_not(clip):
    enc = LabelEncoder(clip.model, clip.tokenizer, prompt_tuning=True)
    enc.encode_labels(["dog", "cat"]).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.context_parameters())
    assert all(p.grad is None for p in clip.model.parameters())


@pytest.mark.parametrize("init", ["template", "random"])
def test_cached_embeddings_follow_the_prompt_context(clip, init):
    """The cache is keyed by names; it must not serve embeddings of an older context (an optimiser
    step between two validations, or a checkpoint load)."""
    enc = LabelEncoder(clip.model, clip.tokenizer, prompt_tuning=True, prompt_init=init)
    names = ["dog", "cat"]
    with torch.no_grad():
        before = enc.encode_labels(names)
        assert enc.encode_labels(names) is before  # cached while the context is unchanged
        for p in enc.context_parameters():
            p.mul_(1.5).add_(0.1)  # what an optimiser step does, in place
        after = enc.encode_labels(names)
    assert not torch.allclose(after, before)
    fresh = LabelEncoder(clip.model, clip.tokenizer, prompt_tuning=True, prompt_init=init)
    fresh.load_state_dict(enc.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh.encode_labels(names), after)


def test_a_label_too_long_for_the_template_context_is_named(clip):
    enc = LabelEncoder(clip.model, clip.tokenizer, prompt_tuning=True)
    with pytest.raises(ValueError, match="does not tokenise"):
        enc.encode_labels(["dog", "very " * 20 + "long"])
