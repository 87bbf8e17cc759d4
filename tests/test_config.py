"""The typed config machinery: YAML fills dataclasses, every key and type checked."""

from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from mini_t2i.config import ConfigError, config_to_dict, load_config, save_config


@dataclass
class Inner:
    n_layer: int = 2
    dropout: float = 0.1
    names: list[str] = field(default_factory=lambda: ["a"])


@dataclass
class Outer:
    model: Inner = field(default_factory=Inner)
    kind: Literal["x", "y"] = "x"
    path: Optional[str] = None
    flag: bool = False


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_defaults_without_file():
    cfg = load_config(Outer)
    assert cfg == Outer()


def test_yaml_fills_nested_and_ints_become_floats(tmp_path):
    cfg = load_config(Outer, write(tmp_path, "model:\n  n_layer: 4\n  dropout: 0\nkind: y\n"))
    assert cfg.model.n_layer == 4 and cfg.model.dropout == 0.0 and isinstance(cfg.model.dropout, float)
    assert cfg.kind == "y"


@pytest.mark.parametrize("text, needle", [
    ("model:\n  n_layers: 4\n", "model.n_layers"),
    ("modle: {}\n", "modle"),
    ("model:\n  n_layer: four\n", "model.n_layer"),
    ("model:\n  n_layer: 2.5\n", "model.n_layer"),
    ("flag: 1\n", "flag"),
    ("kind: z\n", "kind"),
    ("model:\n  names: [1]\n", "model.names[0]"),
    ("model: 3\n", "model"),
])
def test_bad_keys_and_types_name_the_key(tmp_path, text, needle):
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        load_config(Outer, write(tmp_path, text))


def test_dotted_overrides(tmp_path):
    cfg = load_config(Outer, write(tmp_path, "model:\n  n_layer: 4\n"),
                      ["model.n_layer=6", "path=/tmp/x", "flag=true", "model.names=[b, c]"])
    assert cfg.model.n_layer == 6 and cfg.path == "/tmp/x" and cfg.flag is True and cfg.model.names == ["b", "c"]


@pytest.mark.parametrize("override, needle", [
    ("model.n_heads=4", "model.n_heads"),
    ("model.n_layer", "key.subkey=value"),
    ("model.n_layer=x", "model.n_layer"),
    ("=3", "empty key"),
])
def test_bad_overrides(override, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(Outer, None, [override])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Outer, tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Outer, write(tmp_path, "model: [\n"))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(Outer, write(tmp_path, "- 1\n- 2\n"))


def test_save_load_round_trip(tmp_path):
    cfg = load_config(Outer, None, ["model.n_layer=3", "kind=y"])
    save_config(cfg, tmp_path / "saved.yaml")
    assert load_config(Outer, tmp_path / "saved.yaml") == cfg
    assert config_to_dict(cfg)["model"]["n_layer"] == 3


def test_post_init_errors_become_config_errors():
    from mini_t2i.vq.model import VQModelConfig

    with pytest.raises(ConfigError, match="downsample"):
        load_config(VQModelConfig, None, ["downsample=3"])
    with pytest.raises(ConfigError, match="channels"):
        load_config(VQModelConfig, None, ["downsample=8"])


def test_every_shipped_config_loads():
    """Every YAML in configs/ loads into its stage config without error."""
    from pathlib import Path

    from mini_t2i.compare.config import CompareConfig
    from mini_t2i.data.pretokenize import PretokenizeConfig
    from mini_t2i.diffusion.train import DiffusionTrainConfig
    from mini_t2i.pipeline.card import PipelineAssembleConfig
    from mini_t2i.rerank.train import RerankTrainConfig
    from mini_t2i.text.tokenizer import TextTokenizerStageConfig
    from mini_t2i.transformer.config import TransformerTrainConfig
    from mini_t2i.vq.train import VQTrainConfig

    stages = {"vq_": VQTrainConfig, "text_tokenizer_": TextTokenizerStageConfig, "pretokenize_": PretokenizeConfig,
              "transformer_": TransformerTrainConfig, "rerank_": RerankTrainConfig,
              "pipeline_": PipelineAssembleConfig, "diffusion_": DiffusionTrainConfig,
              "compare_": CompareConfig}
    files = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))
    assert files
    for path in files:
        cls = next(c for prefix, c in stages.items() if path.name.startswith(prefix))
        load_config(cls, path)
