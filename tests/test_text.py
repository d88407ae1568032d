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
    enc = LabelEncoder(clip.model, clip.tokenizer, prompt_tuning=True, n_ctx=3)
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
    enc = LabelEncoder(clip.model, clip.tokenizer, prompt_tuning=True, n_ctx=2)
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
