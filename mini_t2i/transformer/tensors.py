"""A saved transformer's weights without its nn.Module: all that the fast decoder reads.

Sampling with the KV cache (decoder.py) never calls the model's forward: it reads the weight
tensors by name and runs its own loop. Building transformers' `LlamaForCausalLM` only to
read them costs most of a fresh `mini-t2i generate`: importing transformers' Llama takes
3-4 s on a 2-core CPU, against ~0.6 s for sampling 8 candidates (docs/speed.md). So the
pipeline loads the safetensors file straight into a tree of the same attribute names

    weights.model.layers[0].self_attn.q_proj.weight      # as on LlamaForCausalLM
    weights.model.config.hidden_size                      # what CachedLlama reads of the config

and builds the module only when something needs the forward (the uncached reference,
likelihoods, training, saving).

    weights, cfg = load_transformer_tensors("mini_t2i/pretrained/shapes64/transformer")
    tokens = sample_image_tokens(weights, cfg, text_ids, seeds=[0])     # the same draw as the module's

The file's key set is checked against the one the module would have (`expected_keys`, tested
equal to each design's state dict), so a damaged or foreign folder fails here as it would there.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import torch

from mini_t2i.transformer.config import RMS_NORM_EPS, TransformerConfig

_LAYER_KEYS = ("input_layernorm.weight", "post_attention_layernorm.weight",
               *(f"self_attn.{p}_proj.weight" for p in "qkvo"), *(f"mlp.{p}_proj.weight" for p in ("gate", "up", "down")))


def _llama_keys(prefix: str, layers: int) -> set[str]:
    keys = {f"{prefix}.embed_tokens.weight", f"{prefix}.norm.weight"}
    return keys | {f"{prefix}.layers.{i}.{k}" for i in range(layers) for k in _LAYER_KEYS}


def expected_keys(cfg: TransformerConfig) -> set[str]:
    """The state-dict keys of cfg's model (model.py's model_class), computed without building it."""
    layers = cfg.shape[0]
    if cfg.image_order == "blocks":
        keys = _llama_keys("model", layers) | _llama_keys("depth", cfg.depth_layers) | {"head.weight"}
        return keys | ({"caption_proj.weight"} if cfg.caption_encoder == "minilm" else set())
    keys = _llama_keys("model", layers) | {"lm_head.weight"}
    if cfg.image_positions == "rowcol":
        keys |= {"image_rows.weight", "image_cols.weight"}
    return keys


def _tree(state: dict[str, torch.Tensor]) -> SimpleNamespace:
    """{"a.layers.0.b.weight": t} -> root.a.layers[0].b.weight is t (numeric parts become list items)."""
    root: dict = {}
    for key, tensor in state.items():
        node = root
        *parts, leaf = key.split(".")
        for part in parts:
            node = node.setdefault(part, {})
        node[leaf] = tensor

    def build(node):
        if not isinstance(node, dict):
            return node
        if node and all(k.isdigit() for k in node):
            return [build(node[str(i)]) for i in range(len(node))]
        return SimpleNamespace(**{k: build(v) for k, v in node.items()})

    return build(root)


class TransformerTensors:
    """The weights of a saved transformer as attributes named like its module's (`model`,
    `depth`, `lm_head`, `head`, `image_rows`, ...), each Llama with the `config` fields the
    fast decoder reads. Holds no module; `parameters()` yields the tensors (for the device)."""

    def __init__(self, state: dict[str, torch.Tensor], cfg: TransformerConfig) -> None:
        from mini_t2i.checkpoint import key_mismatch

        mismatch = key_mismatch(expected_keys(cfg), state)
        if mismatch:
            raise KeyError(f"the weights do not fit transformer.yaml ({'; '.join(mismatch)}); "
                           "is the folder from another design or damaged?")
        self._state, self.cfg = state, cfg
        tree = _tree(state)
        _, hidden, heads = cfg.shape
        for name, value in vars(tree).items():
            setattr(self, name, value)
        for llama in (self.model, getattr(self, "depth", None)):
            if llama is not None:
                llama.config = SimpleNamespace(hidden_size=hidden, num_attention_heads=heads, rms_norm_eps=RMS_NORM_EPS)

    def parameters(self) -> Iterator[torch.Tensor]:
        return iter(self._state.values())

    def module(self):
        """The model (model.py's model_class) over these weights, in eval mode: imports
        transformers. Its sampling draws equal this object's (tests)."""
        from mini_t2i.transformer.model import build_model

        weight = next(self.parameters())
        model = build_model(self.cfg).to(dtype=weight.dtype, device=weight.device)
        model.load_state_dict(self._state, strict=True)
        return model.eval()


def load_transformer_tensors(path: str | Path, device: str | torch.device = "cpu",
                             dtype: torch.dtype = torch.float32) -> tuple[TransformerTensors, TransformerConfig]:
    """(TransformerTensors, TransformerConfig) of a folder `save_transformer` wrote, with the
    checks of model.load_transformer; fp16 weights are cast to `dtype`. Imports no transformers."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from mini_t2i.checkpoint import CheckpointError
    from mini_t2i.transformer.model import transformer_folder_config

    path = Path(path)
    cfg = transformer_folder_config(path)
    vocab = json.loads((path / "config.json").read_text(encoding="utf-8")).get("vocab_size")
    if vocab != cfg.vocab_size:
        raise CheckpointError(f"{path}: config.json has vocab_size {vocab} but transformer.yaml "
                              f"implies {cfg.vocab_size}; the folder is inconsistent")
    try:
        state = load_file(path / "model.safetensors", device=str(device))
        weights = TransformerTensors({k: v.to(dtype) for k, v in state.items()}, cfg)
    except (SafetensorError, OSError, KeyError) as exc:
        raise CheckpointError(f"cannot load the transformer in {path}: {exc}") from exc
    return weights, cfg
