"""Size presets shared by the patch-based models (the reranker, the diffusion baseline):
(layers, hidden size, heads, patch size), each overridable by a nonzero config field.
`PatchModelConfig` holds the fields and checks both configs share."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar


def preset_shape(presets: dict[str, tuple[int, int, int, int]], cfg, kind: str) -> tuple[int, int, int, int]:
    """`cfg`'s (layers, hidden, heads, patch) after overrides, checked against `cfg.image_size`."""
    if cfg.preset not in presets:
        raise ValueError(f"unknown {kind} preset {cfg.preset!r}; choose one of {', '.join(presets)}")
    layers, hidden, heads, patch = presets[cfg.preset]
    shape = (cfg.num_layers or layers, cfg.hidden_size or hidden, cfg.num_heads or heads, cfg.patch_size or patch)
    if shape[1] % shape[2]:
        raise ValueError(f"hidden_size={shape[1]} is not divisible by num_heads={shape[2]}")
    if cfg.image_size % shape[3]:
        raise ValueError(f"image_size={cfg.image_size} is not a multiple of patch_size={shape[3]}")
    return shape


def check_text_layout(cfg, kind: str, trainer: str) -> None:
    """Raise when the layout taken from the text tokenizer (vocab size, length) is unset."""
    missing = [n for n in ("text_vocab_size", "text_len") if getattr(cfg, n) <= 0]
    if missing:
        raise ValueError(f"{kind} layout not set: {', '.join(missing)}; they come from the text tokenizer "
                         f"(see {trainer})")


@dataclass
class PatchModelConfig:
    """The shape and layout fields of a patch-based model's config; a subclass names its
    `PRESETS` table, its `KIND` (for messages) and its `TRAINER` module (which fills the layout)."""
    PRESETS: ClassVar[dict[str, tuple[int, int, int, int]]] = {}
    KIND: ClassVar[str] = "model"
    TRAINER: ClassVar[str] = ""

    preset: str = "mini"  # tiny | mini | small | base (see the subclass's PRESETS)
    num_layers: int = 0  # 0 = the preset's; set to override it
    hidden_size: int = 0
    num_heads: int = 0
    patch_size: int = 0
    # The layout. 0 = filled in from the text tokenizer and the data when training
    # starts; a saved model always has them set.
    text_vocab_size: int = 0
    text_len: int = 0
    image_size: int = 64

    def __post_init__(self) -> None:
        _ = self.shape  # checks the preset and the overrides

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(layers, hidden size, heads, patch size) after overrides."""
        return preset_shape(self.PRESETS, self, self.KIND)

    def check_layout(self) -> None:
        check_text_layout(self, self.KIND, self.TRAINER)

    def with_layout(self, text_vocab_size: int, text_len: int, image_size: int):
        return replace(self, text_vocab_size=text_vocab_size, text_len=text_len, image_size=image_size)

    @classmethod
    def from_folder(cls, path):
        """The config of a saved model folder's config.yaml (this config, or a stage config
        holding it under `model`), layout checked; CheckpointError when it is not one."""
        import yaml

        from mini_t2i.checkpoint import CheckpointError
        from mini_t2i.config import ConfigError, config_from_dict

        data = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8")) or {}
        if isinstance(data, dict) and isinstance(data.get("model"), dict):
            data = data["model"]  # a stage config: the model's part
        try:
            cfg = config_from_dict(cls, data)
            cfg.check_layout()
        except (ConfigError, ValueError) as exc:
            raise CheckpointError(f"{path / 'config.yaml'} is not a {cls.KIND} config: {exc}") from None
        return cfg
