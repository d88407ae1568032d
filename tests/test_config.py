import glob
from pathlib import Path

import pytest

from c2srt.config import Cfg, ConfigError, config_from_dict, config_to_dict, dump_config, load_config

REPO = Path(__file__).resolve().parents[1]


def test_defaults_follow_the_mkt_schedule():
    cfg = load_config()
    assert cfg.train.lr == 1e-3 and cfg.train.weight_decay == 0.05 and cfg.train.epochs == 20
    assert cfg.model.head.topk == 16 and cfg.model.head.alpha == 0.5 and cfg.model.head.k_max == 32
    assert cfg.model.templates == ["There is a {} in the scene"]


def test_yaml_then_overrides(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("model:\n  head: {name: mkt}\ntrain:\n  lr: 2e-4\n")
    cfg = load_config(p, ["train.lr=5e-4", "model.ist.mode=label", "eval.topk=[10,20]"])
    assert cfg.model.head.name == "mkt"
    assert cfg.train.lr == pytest.approx(5e-4)  # the override beats the YAML
    assert cfg.model.ist.mode == "label" and cfg.eval.topk == [10, 20]


@pytest.mark.parametrize(
    "overrides, field",
    [
        (["model.head.nmae=isr"], "model.head.nmae"),
        (["model.head.name=vit"], "model.head.name"),
        (["model.head.alpha=1.5"], "model.head.alpha"),
        (["train.epochs=many"], "train.epochs"),
        (["model.templates=[a photo]"], "model.templates"),
    ],
)
def test_bad_values_name_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config(None, overrides)


def test_unquoted_yaml_off_gets_a_hint(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("model:\n  ist: {mode: off}\n")
    with pytest.raises(ConfigError, match="quote"):
        load_config(p)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "nope.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(p)


def test_dump_round_trip(tmp_path):
    cfg = load_config(None, ["model.head.name=mkt", "seed=7"])
    p = tmp_path / "resolved.yaml"
    p.write_text(dump_config(cfg))
    assert load_config(p) == cfg
    assert config_from_dict(config_to_dict(cfg)) == cfg


@pytest.mark.parametrize("path", sorted(glob.glob(str(REPO / "configs" / "**" / "*.yaml"), recursive=True)))
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert isinstance(cfg, Cfg)
