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
