import pytest
import torch

from c2srt.backbone import ClipBackbone, create_clip, list_presets


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_clip("test-tiny")


def test_presets_listed():
    assert {"test-tiny", "miniworld-vit"} <= set(list_presets())


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(ValueError, match="test-tiny"):
        create_clip("ViT-Nope-99")


def test_missing_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        create_clip("test-tiny", str(tmp_path / "w.safetensors"))


def test_tokens_are_projected_like_the_pooled_embedding(tiny):
    """The class token through ln_post + proj is CLIP's own image embedding; patches get the same map."""
    visual = tiny.model.visual
    bb = ClipBackbone(visual, trainable_blocks=1, teacher=False)
    x = torch.randn(2, 3, 32, 32)
    g, patches = bb.encode_image(x)
    assert g.shape == (2, 32) and patches.shape == (2, 16, 32)
    torch.testing.assert_close(g, tiny.model.encode_image(x))
    # independent computation of the patch embeddings: run the blocks by hand
    t = visual.conv1(x).flatten(2).transpose(1, 2)  # [B, W, h, w] -> [B, N, W]
    cls = visual.class_embedding.expand(2, 1, -1)
    t = torch.cat([cls, t], 1) + visual.positional_embedding
    t = visual.transformer(visual.ln_pre(t))
    ref = visual.ln_post(t[:, 1:]) @ visual.proj
    torch.testing.assert_close(patches, ref, rtol=1e-4, atol=1e-5)


def test_only_last_blocks_train_and_teacher_is_frozen(tiny):
    import copy

    bb = ClipBackbone(copy.deepcopy(tiny.model.visual), trainable_blocks=1, teacher=True)
    bb.train()
    assert not bb.teacher.training
    x = torch.randn(2, 3, 32, 32)
    g, patches = bb(x)
    (g.sum() + patches.sum() + bb.encode_teacher(x).sum()).backward()
    trainable = {n for n, p in bb.named_parameters() if p.requires_grad}
    assert any("resblocks.1." in n for n in trainable) and not any("resblocks.0." in n for n in trainable)
    assert "visual.proj" in trainable and not any(n.startswith("teacher.") for n in trainable)
    for n, p in bb.named_parameters():
        if not p.requires_grad:
            assert p.grad is None, n
        elif n.startswith("visual."):
            assert p.grad is not None, n


def test_layer_ids_for_lr_decay(tiny):
    bb = ClipBackbone(tiny.model.visual, teacher=False)
    assert bb.layer_id("transformer.resblocks.0.attn.in_proj_weight") == 1
    assert bb.layer_id("transformer.resblocks.1.mlp.c_fc.weight") == 2
    assert bb.layer_id("proj") == bb.layer_id("ln_post.weight") == 3
    assert bb.layer_id("conv1.weight") == 0


def test_checkpoint_file_loads_back(tmp_path, tiny):
    from safetensors.torch import save_file

    path = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in tiny.model.state_dict().items()}, str(path))
    again = create_clip("test-tiny", str(path))
    for (k, a), (_, b) in zip(tiny.model.state_dict().items(), again.model.state_dict().items()):
        assert torch.equal(a, b), k

