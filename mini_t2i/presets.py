"""Size presets shared by the patch-based models (the reranker, the diffusion baseline):
(layers, hidden size, heads, patch size), each overridable by a nonzero config field."""

from __future__ import annotations


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
