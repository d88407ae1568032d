"""Checkpoints: safetensors round trip with config, vocabulary and graph inside; clear errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from c2srt.checkpoint import load_checkpoint, load_init_weights, read_checkpoint_info, save_checkpoint
from c2srt.config import Cfg, HeadCfg, IstCfg, ModelCfg, config_to_dict
from c2srt.graph import build_graph
from c2srt.model import create_model

NAMES = ["dog", "cat", "car", "sky", "horse"]


@pytest.mark.parametrize("ist", ["off", "image"])
def test_round_trip_gives_identical_scores(tmp_path, ist: str) -> None:
    torch.manual_seed(0)
    mcfg = ModelCfg(backbone="test-tiny", pretrained=None, head=HeadCfg(name="isr", k_max=8), ist=IstCfg(mode=ist, hidden=32))
    model = create_model(mcfg).eval()
    torch.nn.init.normal_(model.backbone.visual.proj)  # not the init values: weights must really load
    graph = None
    if ist != "off":
        torch.nn.init.normal_(model.ist.out_proj.weight)
        enc = lambda n: model.label_encoder.encode_labels(n).detach().numpy()  # noqa: E731
        graph = build_graph(NAMES, seen=NAMES[:3], source="embedding", encoder=enc)
    path = save_checkpoint(tmp_path / "m.safetensors", model, Cfg(model=mcfg), seen=NAMES[:3], unseen=NAMES[3:], graph=graph)
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically: no temporary file left behind
    again, info = load_checkpoint(path)
    assert info.seen == NAMES[:3] and info.unseen == NAMES[3:] and info.cfg.model == mcfg
    assert (info.graph is not None) == (ist != "off")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a = model(x, model.label_set(NAMES, graph)).logits
        b = again(x, again.label_set(NAMES, graph)).logits
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert again.backbone.teacher is None  # inference needs no teacher
    assert not any(k.startswith("backbone.teacher.") for k in model.state_dict_to_save())


def test_not_a_checkpoint_is_named(tmp_path) -> None:
    bad = tmp_path / "notes.safetensors"
    bad.write_bytes(b"hello, not a checkpoint")
    with pytest.raises(ValueError, match="notes.safetensors"):
        read_checkpoint_info(bad)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        read_checkpoint_info(tmp_path / "missing.safetensors")


def test_plain_safetensors_without_our_metadata_is_refused(tmp_path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "clip.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="not a c2srt checkpoint"):
        read_checkpoint_info(path)


def test_a_frozen_package_text_tower_is_not_stored(tmp_path) -> None:
    """The mini-world preset's MiniLM comes from its package: checkpoints stay a few MB, and reload exactly."""
    torch.manual_seed(0)
    mcfg = ModelCfg(backbone="miniworld-vit", pretrained=None, distill=False, head=HeadCfg(name="isr", k_max=8))
    model = create_model(mcfg).eval()
    path = save_checkpoint(tmp_path / "m.safetensors", model, Cfg(model=mcfg))
    assert path.stat().st_size < 20 * 2**20  # the MiniLM tower alone is about 90 MB
    again, _ = load_checkpoint(path)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(again(x, NAMES).logits, model(x, NAMES).logits, rtol=0, atol=0)


# ------------------------------------------------------------------------ MKT's released weights
MKT_CFG = ModelCfg(backbone="test-tiny", pretrained=None, distill=False, head=HeadCfg(name="mkt", topk=4, similarity="raw"))


def _mkt_clipvit_state(visual: torch.nn.Module) -> dict[str, torch.Tensor]:
    """An image tower's weights in the layout of MKT's CLIPVIT state dict (models/clip_vit.py):
    the CLIP tower's own names, `proj` as `projection_dist`, plus the unused MLP `projection`."""
    sd = {k: v.clone() for k, v in visual.state_dict().items()}
    out = {("projection_dist" if k == "proj" else k): v for k, v in sd.items()}
    width, dim = sd["proj"].shape
    out["projection.fc1.weight"] = torch.randn(dim, width)
    out["projection.fc1.bias"] = torch.randn(dim)
    out["projection.fc2.weight"] = torch.randn(dim, dim)
    out["projection.fc2.bias"] = torch.randn(dim)
    return out


def test_mkt_stage1_weights_load_and_score_as_mkt(tmp_path) -> None:
    from c2srt.backbone import create_clip

    torch.manual_seed(1)
    source = create_clip("test-tiny").model.visual.eval()  # "MKT's trained tower"
    state = _mkt_clipvit_state(source)
    assert {"conv1.weight", "class_embedding", "positional_embedding", "ln_pre.weight", "ln_post.bias", "projection_dist"} <= set(state)
    assert any(k.startswith("transformer.resblocks.1.") for k in state)
    path = tmp_path / "first_stage.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)  # as saved from a DDP wrapper
    torch.manual_seed(0)
    model = create_model(MKT_CFG).eval()
    load_init_weights(model, path)  # what `c2srt train` does with model.init_from
    for k, v in source.state_dict().items():
        assert torch.equal(model.backbone.visual.state_dict()[k], v), k
    # MKT's forward, written out: ln_post on every token, x[:, 0] @ proj and x[:, 1:] @ proj
    images = torch.randn(2, 3, 32, 32)
    names = ["dog", "cat", "sky", "horse", "bus"]
    with torch.no_grad():
        source.output_tokens = True
        pooled, tokens = source(images)  # open_clip: pooled = ln_post(x[:, 0]) @ proj; tokens = ln_post(x[:, 1:])
        dist, pred = pooled, tokens @ state["projection_dist"]
        text = model.label_encoder.encode_labels(names)
        s1 = torch.topk(pred @ text.T, k=4, dim=1)[0].mean(dim=1)
        s2 = dist @ text.T
        ref = (s1 / s1.norm(dim=-1, keepdim=True) + s2 / s2.norm(dim=-1, keepdim=True)) / 2
        torch.testing.assert_close(model(images, names).logits, ref, rtol=1e-5, atol=1e-6)


def test_mkt_stage2_prompt_and_the_convert_verb(tmp_path) -> None:
    """MKT's stage 2 trains the token-table rows of its template's tokens: those rows become our
    template context; `c2srt convert` writes both stages as one checkpoint that loads."""
    import copy

    from c2srt.backbone import create_clip
    from c2srt.cli import main

    torch.manual_seed(1)
    image_path = tmp_path / "first_stage.pth"
    clip_model = create_clip("test-tiny").model
    torch.save(_mkt_clipvit_state(clip_model.visual), image_path)
    clip_path = tmp_path / "clip.pt"  # "OpenAI's CLIP": MKT's stage 2 keeps its text tower frozen
    torch.save(clip_model.state_dict(), clip_path)
    cfg2 = dataclasses.replace(MKT_CFG, pretrained=str(clip_path), prompt_tuning=True, train_image=False)
    model = create_model(cfg2).eval()
    clip = model.label_encoder.clip
    tuned_table = clip.token_embedding.weight.detach() + 0.3 * torch.randn_like(clip.token_embedding.weight)
    text_state = {k: v.clone() for k, v in clip.state_dict().items() if not k.startswith("visual")}
    text_state["token_embedding.weight"] = tuned_table
    text_path = tmp_path / "second_stage.pth"
    torch.save({f"module.{k}": v for k, v in text_state.items()}, text_path)

    import yaml

    cfg_file = tmp_path / "mkt.yaml"
    cfg_file.write_text(yaml.safe_dump({"model": config_to_dict(Cfg(model=cfg2))["model"]}))
    out = tmp_path / "mkt.safetensors"
    assert main(["convert", "--config", str(cfg_file), "--mkt-image", str(image_path), "--mkt-text", str(text_path), "--out", str(out)]) == 0
    loaded, info = load_checkpoint(out)
    assert info.cfg.model.init_from is None and info.extra["converted_from"]["text"] == str(text_path)
    ref_clip = copy.deepcopy(clip)  # MKT's text side: the template rows tuned, the label's own tokens not
    span = loaded.label_encoder._spans[0]
    ids = torch.cat([span.prefix_ids, span.suffix_ids])
    with torch.no_grad():
        ref_clip.token_embedding.weight[ids] = tuned_table[ids]
        names = ["dog", "red bus"]
        ref = ref_clip.encode_text(loaded.label_encoder.tokenizer([f"There is a {n} in the scene" for n in names]), normalize=True)
        torch.testing.assert_close(loaded.label_encoder.encode_labels(names), ref)
    first = torch.load(image_path, weights_only=True)
    assert torch.equal(loaded.backbone.visual.proj, first["projection_dist"])


def test_foreign_weights_are_refused_with_their_keys(tmp_path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(ValueError, match="neither MKT's CLIPVIT nor its PromptLearner"):
        load_init_weights(create_model(MKT_CFG), path)
    bad = _mkt_clipvit_state(create_model(MKT_CFG).backbone.visual)
    bad["head.weight"] = torch.zeros(1)
    torch.save(bad, path)
    with pytest.raises(ValueError, match="head.weight"):
        load_init_weights(create_model(MKT_CFG), path)
    with pytest.raises(FileNotFoundError, match="init_from"):
        load_init_weights(create_model(MKT_CFG), tmp_path / "none.pth")


def test_the_model_factory_never_reads_init_from(tmp_path) -> None:
    """`model.init_from` is the run's business (`c2srt train` loads it): building a model reads no file."""
    model = create_model(dataclasses.replace(MKT_CFG, init_from=str(tmp_path / "none.pth")))
    assert model.cfg.init_from == str(tmp_path / "none.pth")
