"""The weights-only transformer (tensors.py): the same draws as the module, no transformers import."""

import json
import pytest
import torch

from mini_t2i.checkpoint import CheckpointError
from mini_t2i.transformer.config import TransformerConfig
from mini_t2i.transformer.model import build_model, save_transformer
from mini_t2i.transformer.sampler import sample_image_tokens
from mini_t2i.transformer.tensors import TransformerTensors, expected_keys, load_transformer_tensors

DESIGNS = {
    "raster": dict(),
    "rowcol": dict(image_positions="rowcol"),
    "blocks": dict(image_order="blocks", depth_layers=2),
}


def _saved(tmp_path, design, dtype=torch.float32):
    cfg = TransformerConfig(preset="tiny", **DESIGNS[design]).with_layout(436, 24, 64, 4)
    model = build_model(cfg, seed=0).eval()
    path = save_transformer(model.to(dtype), cfg, tmp_path / design)
    return model.float(), cfg, path


@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_expected_keys_are_the_modules_state_dict(design):
    cfg = TransformerConfig(preset="tiny", **DESIGNS[design]).with_layout(436, 24, 64, 4)
    assert expected_keys(cfg) == set(build_model(cfg).state_dict())


@pytest.mark.parametrize("design", sorted(DESIGNS))
@pytest.mark.parametrize("decode_weights", ["fp32", "int8"])
def test_the_weights_draw_what_the_module_draws(tmp_path, tokenizer, design, decode_weights):
    model, cfg, path = _saved(tmp_path, design)
    weights, loaded_cfg = load_transformer_tensors(path)
    assert loaded_cfg == cfg
    ids = tokenizer.encode(["a red circle", "two blue squares", "a green star"])
    for guidance in (1.0, 3.0):
        kw = dict(guidance_scale=guidance, top_k=8, decode_weights=decode_weights)
        assert torch.equal(sample_image_tokens(weights, cfg, ids, [0, 1, 2], **kw),
                           sample_image_tokens(model, cfg, ids, [0, 1, 2], **kw))


def test_fp16_files_load_as_fp32_and_module_rebuilds_the_same_model(tmp_path):
    model, cfg, path = _saved(tmp_path, "blocks", dtype=torch.float16)
    weights, _ = load_transformer_tensors(path)
    assert all(t.dtype == torch.float32 for t in weights.parameters())
    rebuilt = weights.module()
    assert not rebuilt.training
    for name, tensor in rebuilt.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name].half().float()), name


def test_a_folder_that_does_not_fit_is_refused(tmp_path):
    _, cfg, path = _saved(tmp_path, "raster")
    with pytest.raises(KeyError, match="missing"):
        TransformerTensors({k: torch.zeros(1) for k in sorted(expected_keys(cfg))[1:]}, cfg)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "vocab_size": 7}))
    with pytest.raises(CheckpointError, match="vocab_size"):
        load_transformer_tensors(path)
    (path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="safetensors"):
        load_transformer_tensors(path)


def test_loading_and_sampling_import_no_transformers(transformers_imported_by):
    assert transformers_imported_by(
        "import torch\n"
        "from mini_t2i.transformer.tensors import load_transformer_tensors\n"
        "from mini_t2i.transformer.sampler import sample_image_tokens\n"
        "w, cfg = load_transformer_tensors('mini_t2i/pretrained/shapes64/transformer')\n"
        "ids = torch.zeros(1, cfg.text_len, dtype=torch.long); ids[0, :2] = torch.tensor([2, 3])\n"
        "sample_image_tokens(w, cfg, ids, [0], guidance_scale=2.0, decode_weights='int8')") == []
