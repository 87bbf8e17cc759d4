"""Flax parameters <-> the PyTorch transformer checkpoint, strictly, both ways.

The PyTorch side is a `LlamaForCausalLM` state dict (the pipeline's transformer folder:
model.safetensors + config.json + transformer.yaml). The names map one to one:

    model.embed_tokens.weight                  (vocab, d)  <-> embed_tokens/embedding   (vocab, d)
    model.layers.{i}.self_attn.q_proj.weight   (out, in)   <-> layers_{i}/self_attn/q_proj/kernel (in, out), transposed
    model.layers.{i}.input_layernorm.weight    (d,)        <-> layers_{i}/input_layernorm/weight
    model.norm.weight, lm_head.weight                      <-> norm/weight, lm_head/kernel (transposed)

For image_order=blocks (BlockLlama) the two stacks keep their prefixes: model.layers.{i}...
<-> model/layers_{i}/..., depth.layers.{i}... <-> depth/layers_{i}/..., head.weight <-> head/kernel.

Every key must be present on both sides and every shape must be the one the config
implies; anything else is an error naming the keys, never a silent skip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mini_t2i.checkpoint import CheckpointError
from mini_t2i.transformer.config import TransformerConfig, mlp_width


def parameter_table(cfg: TransformerConfig) -> dict[str, tuple[tuple[str, ...], tuple[int, ...], bool]]:
    """{torch key: (flax path, torch shape, transposed)} for every parameter of cfg's model."""
    layers, d, _ = cfg.shape
    if cfg.image_order == "blocks":  # BlockLlama: model.* and depth.* stacks, head (transformer_jax/blocks.py)
        table = {"head.weight": (("head", "kernel"), (cfg.codebook_size, d), True)}
        for prefix, count, vocab in (("model", layers, cfg.vocab_size), ("depth", cfg.depth_layers, cfg.codebook_size)):
            table.update({f"{prefix}.{key}": ((prefix, *path), shape, transposed)
                          for key, (path, shape, transposed) in _stack_table(count, d, vocab).items()})
        return table
    table = {f"model.{key}": value for key, value in _stack_table(layers, d, cfg.vocab_size).items()}
    table["lm_head.weight"] = (("lm_head", "kernel"), (cfg.vocab_size, d), True)
    return table


def _stack_table(layers: int, d: int, vocab: int) -> dict:
    """The names of one LlamaModel (without the "model." prefix): embedding, layers, norm."""
    inner = mlp_width(d)
    table = {"embed_tokens.weight": (("embed_tokens", "embedding"), (vocab, d), False),
             "norm.weight": (("norm", "weight"), (d,), False)}
    for i in range(layers):
        t, f = f"layers.{i}.", f"layers_{i}"
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            table[f"{t}self_attn.{name}.weight"] = ((f, "self_attn", name, "kernel"), (d, d), True)
        for name, shape in (("gate_proj", (inner, d)), ("up_proj", (inner, d)), ("down_proj", (d, inner))):
            table[f"{t}mlp.{name}.weight"] = ((f, "mlp", name, "kernel"), shape, True)
        for name in ("input_layernorm", "post_attention_layernorm"):
            table[f"{t}{name}.weight"] = ((f, name, "weight"), (d,), False)
    return table


def _flatten(tree: dict, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], object]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) or hasattr(value, "items") and not hasattr(value, "shape"):
            out.update(_flatten(value, prefix + (str(key),)))
        else:
            out[prefix + (str(key),)] = value
    return out


def _check_keys(have: set, want: set, what: str) -> None:
    missing, unexpected = sorted(want - have), sorted(have - want)
    if missing or unexpected:
        show = lambda keys: ", ".join(map(str, keys[:4])) + (" ..." if len(keys) > 4 else "")  # noqa: E731
        raise CheckpointError(f"{what} do not match the model of the config: "
                              + "; ".join(p for p in (missing and f"missing {show(missing)}",
                                                      unexpected and f"unexpected {show(unexpected)}") if p))


def flax_from_torch(state_dict: dict, cfg: TransformerConfig) -> dict:
    """A LlamaForCausalLM state dict -> nested fp32 numpy Flax params for FlaxTransformer(cfg)."""
    table = parameter_table(cfg)
    _check_keys(set(state_dict), set(table), "the PyTorch weights")
    params: dict = {}
    for key, (path, shape, transposed) in table.items():
        value = state_dict[key].detach().float().cpu().numpy()
        if tuple(value.shape) != shape:
            raise CheckpointError(f"PyTorch weight {key} has shape {tuple(value.shape)}, the config implies {shape}")
        node = params
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = np.array(value.T if transposed else value, order="C", copy=True)  # never shares torch memory
    return params


def torch_from_flax(params: dict, cfg: TransformerConfig) -> dict:
    """Flax params (nested, jax or numpy arrays) -> a LlamaForCausalLM state dict of fp32 tensors."""
    import torch

    table = parameter_table(cfg)
    flat = _flatten(params)
    _check_keys(set(flat), {path for path, _, _ in table.values()}, "the Flax parameters")
    state = {}
    for key, (path, shape, transposed) in table.items():
        value = np.asarray(flat[path], dtype=np.float32)
        value = value.T if transposed else value
        if tuple(value.shape) != shape:
            raise CheckpointError(f"Flax parameter {'/'.join(path)} gives {key} the shape {tuple(value.shape)}, "
                                  f"the config implies {shape}")
        state[key] = torch.from_numpy(np.array(value, copy=True))
    return state


def torch_model_from_flax(params: dict, cfg: TransformerConfig):
    """A LlamaForCausalLM (fp32, CPU, eval mode) holding params."""
    from mini_t2i.checkpoint import load_state_dict_strict
    from mini_t2i.transformer.model import build_model

    model = build_model(cfg)
    load_state_dict_strict(model, torch_from_flax(params, cfg), "the Flax parameters")
    return model.eval()


def export_to_torch(params: dict, cfg: TransformerConfig, folder: str | Path, stage_config=None) -> Path:
    """Write params as the PyTorch transformer folder that load_transformer, the pipeline and
    `mini-t2i pipeline assemble` read; through a temporary folder renamed into place."""
    from mini_t2i.atomic import atomic_folder
    from mini_t2i.transformer.model import save_transformer

    with atomic_folder(folder) as tmp:
        save_transformer(torch_model_from_flax(params, cfg), cfg, tmp, stage_config=stage_config)
    return Path(folder)


def import_from_torch(folder: str | Path) -> tuple[dict, TransformerConfig]:
    """Read a PyTorch transformer folder -> (Flax params, its TransformerConfig)."""
    from mini_t2i.transformer.model import load_transformer

    model, cfg = load_transformer(folder)
    return flax_from_torch(model.state_dict(), cfg), cfg
