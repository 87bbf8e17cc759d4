"""CLIP's forward over plain tensors (clip_tensors.py) against transformers' CLIPModel."""

import numpy as np
import pytest
import torch

from mini_t2i.checkpoint import CheckpointError, load_tensors, save_tensors
from mini_t2i.rerank.clip_tensors import clip_keys
from mini_t2i.rerank.model import RerankConfig, Reranker


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    cfg = RerankConfig(preset="tiny", text_num_layers=2).with_layout(436, 24, 32)
    model = Reranker(cfg, seed=0).eval()
    with torch.no_grad():  # a trained-looking temperature and non-trivial norms
        for name, p in model.clip.named_parameters():
            if "layer_norm" in name or "layrnorm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model, model.save_pretrained(tmp_path_factory.mktemp("rr") / "r")


def _ids(tokenizer):
    return tokenizer.encode(["a red circle", "two blue squares left of a star", "three purple circles"])


def test_clip_keys_are_clipmodels_state_dict(saved):
    model, _ = saved
    layers = model.config.shape[0]
    assert clip_keys(layers, 2) == set(model.clip.state_dict())


def test_light_scores_equal_the_modules(saved, tokenizer):
    model, path = saved
    light = Reranker.from_pretrained(path, light=True)
    assert type(light.clip).__name__ == "ClipTowers"
    images = np.random.default_rng(0).integers(0, 256, (3, 48, 48, 3), dtype=np.uint8)  # resized inside
    ids = _ids(tokenizer)
    torch.testing.assert_close(light.score(images, ids), model.score(images, ids), atol=1e-6, rtol=0)
    torch.testing.assert_close(light.score_matrix(images, ids), model.score_matrix(images, ids), atol=1e-6, rtol=0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    (emb_a, patches_a), (emb_b, patches_b) = light.image_features(x), model.image_features(x)
    torch.testing.assert_close(patches_a, patches_b, atol=1e-5, rtol=0)
    torch.testing.assert_close(emb_a, emb_b, atol=1e-6, rtol=0)
    assert torch.equal(light.clip.logit_scale, model.clip.logit_scale.detach())


def test_light_saves_the_same_folder(saved, tmp_path):
    model, path = saved
    again = Reranker.from_pretrained(path, light=True).save_pretrained(tmp_path / "again")
    a, _ = load_tensors(path / "model.safetensors")
    b, _ = load_tensors(again / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_matching_head_loads_the_module_and_bad_keys_are_refused(tmp_path, saved):
    cfg = RerankConfig(preset="tiny", matcher_layers=1).with_layout(436, 24, 32)
    path = Reranker(cfg, seed=0).save_pretrained(tmp_path / "head")
    assert type(Reranker.from_pretrained(path, light=True).clip).__name__ == "CLIPModel"
    _, good = saved
    tensors, _ = load_tensors(good / "model.safetensors")
    tensors.pop("visual_projection.weight")
    save_tensors(tensors, good.parent / "broken.safetensors")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.yaml").write_text((good / "config.yaml").read_text())
    (good.parent / "broken.safetensors").rename(broken / "model.safetensors")
    with pytest.raises(CheckpointError, match="visual_projection"):
        Reranker.from_pretrained(broken, light=True)
