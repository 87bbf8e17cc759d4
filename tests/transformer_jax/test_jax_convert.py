"""The converter between Flax parameters and the PyTorch checkpoint: lossless, strict."""

import numpy as np
import pytest
import torch

from mini_t2i.checkpoint import CheckpointError
from mini_t2i.transformer.config import TransformerConfig
from mini_t2i.transformer.model import build_model, load_transformer
from mini_t2i.transformer_jax.convert import (
    export_to_torch,
    flax_from_torch,
    import_from_torch,
    parameter_table,
    torch_from_flax,
)
from mini_t2i.transformer_jax.model import init_params

CFG = TransformerConfig(preset="tiny").with_layout(436, 24, 64, 4)


def test_every_parameter_is_mapped_with_its_shape():
    model = build_model(CFG, seed=0)
    table = parameter_table(CFG)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {k: v[1] for k, v in table.items()}


def test_torch_to_flax_to_torch_is_exact():
    state = build_model(CFG, seed=0).state_dict()
    back = torch_from_flax(flax_from_torch(state, CFG), CFG)
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)


def test_flax_to_torch_to_flax_is_exact():
    import jax

    params = init_params(CFG, seed=3)
    back = flax_from_torch(torch_from_flax(params, CFG), CFG)
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    flat_back = dict(jax.tree_util.tree_flatten_with_path(back)[0])
    assert len(flat) == len(flat_back)
    for path, value in flat:
        np.testing.assert_array_equal(np.asarray(value), flat_back[path])


def test_export_writes_the_folder_the_pipeline_loads(tmp_path):
    params = init_params(CFG, seed=3)
    folder = export_to_torch(params, CFG, tmp_path / "final")
    model, cfg = load_transformer(folder)
    assert cfg == CFG
    again, cfg_again = import_from_torch(folder)
    assert cfg_again == CFG
    np.testing.assert_array_equal(again["lm_head"]["kernel"], np.asarray(params["lm_head"]["kernel"]))
    assert not (tmp_path / "final.tmp").exists()


def test_missing_unexpected_and_misshapen_weights_are_named():
    state = build_model(CFG, seed=0).state_dict()
    missing = {k: v for k, v in state.items() if k != "model.norm.weight"}
    with pytest.raises(CheckpointError, match=r"missing model\.norm\.weight"):
        flax_from_torch(missing, CFG)
    with pytest.raises(CheckpointError, match=r"unexpected model\.extra\.weight"):
        flax_from_torch({**state, "model.extra.weight": torch.zeros(2)}, CFG)
    bad = {**state, "model.layers.0.mlp.up_proj.weight": torch.zeros(3, 64)}
    with pytest.raises(CheckpointError, match=r"up_proj\.weight has shape \(3, 64\)"):
        flax_from_torch(bad, CFG)
    params = init_params(CFG, seed=0)
    params["layers_1"]["mlp"]["down_proj"]["kernel"] = np.zeros((7, 64), np.float32)
    with pytest.raises(CheckpointError, match="layers_1/mlp/down_proj/kernel"):
        torch_from_flax(params, CFG)
    # Weights of another model size fail on shapes, not silently.
    bigger = TransformerConfig(preset="tiny", hidden_size=128).with_layout(436, 24, 64, 4)
    with pytest.raises(CheckpointError, match="the config implies"):
        flax_from_torch(state, bigger)
