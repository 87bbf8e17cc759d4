"""The cached VQ reconstructions: equal to reconstruct(), made once, keyed by the weights."""

import numpy as np
import pytest
import torch

from mini_t2i.vq.evaluate import reconstruct
from mini_t2i.vq.model import VQModel, VQModelConfig
from mini_t2i.vq.reconstructions import cached_reconstructions, vq_fingerprint


def _vq(folder, seed):
    torch.manual_seed(seed)
    model = VQModel(VQModelConfig(image_size=32, downsample=4, channels=[8, 8], codebook_size=16, code_dim=4)).eval()
    model.save_pretrained(folder)
    return model


def test_reconstructions_are_cached_per_vq_weights(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    model = _vq(tmp_path / "vq", 0)
    first = cached_reconstructions(images, tmp_path / "vq", tmp_path / "cache")
    assert first.dtype == np.uint8 and first.shape == images.shape
    assert np.array_equal(first, reconstruct(model, images)[0])
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [f"recon-{vq_fingerprint(tmp_path / 'vq')}.npy"]
    assert not list((tmp_path / "cache").glob("*.tmp.npy"))  # published atomically
    assert np.array_equal(cached_reconstructions(images, tmp_path / "vq", tmp_path / "cache"), first)  # read back
    other = _vq(tmp_path / "vq2", 1)  # other weights: another file, other pixels
    second = cached_reconstructions(images, tmp_path / "vq2", tmp_path / "cache")
    assert len(list((tmp_path / "cache").iterdir())) == 2 and np.array_equal(second, reconstruct(other, images)[0])


def test_a_wrong_folder_or_size_is_refused(tmp_path):
    images = np.zeros((2, 64, 64, 3), dtype=np.uint8)
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        cached_reconstructions(images, tmp_path / "missing", tmp_path / "cache")
    _vq(tmp_path / "vq", 0)
    with pytest.raises(ValueError, match="32 px"):
        cached_reconstructions(images, tmp_path / "vq", tmp_path / "cache")
