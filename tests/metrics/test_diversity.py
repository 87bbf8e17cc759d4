"""The diversity metric: 0 for identical samples, 1 for orthogonal features, scale-free."""

import numpy as np
import pytest

from mini_t2i.metrics.diversity import feature_spread, pairwise_spread


def test_pairwise_spread_bounds():
    # float64 cosines: a few ulp (measured <= 1.1e-16), inside approx's defaults (abs 1e-12, rel 1e-6)
    assert pairwise_spread(np.ones((4, 8))) == pytest.approx(0.0)
    assert pairwise_spread(np.eye(5)) == pytest.approx(1.0)
    assert pairwise_spread(np.array([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(2.0)
    x = np.random.default_rng(0).random((6, 16))
    assert pairwise_spread(x) == pytest.approx(pairwise_spread(3.0 * x))  # cosine: the scale does not count


def test_feature_spread_averages_within_prompts_only():
    # float64 cosines of 0/1 vectors: exact (measured 0.0); approx's defaults
    collapsed = np.repeat(np.eye(3)[:, None, :], 4, axis=1)  # 3 prompts, 4 identical samples each
    assert feature_spread(collapsed)["mean"] == pytest.approx(0.0)  # though prompts differ from each other
    spread = np.stack([np.eye(4), np.eye(4)])  # 2 prompts, 4 orthogonal samples each
    assert feature_spread(spread) == {"mean": pytest.approx(1.0), "std": pytest.approx(0.0), "prompts": 2}
    with pytest.raises(ValueError, match="samples >= 2"):
        feature_spread(np.ones((3, 1, 4)))
