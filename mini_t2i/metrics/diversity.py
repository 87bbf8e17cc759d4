"""Diversity: how far apart the samples of one prompt are, in a feature space.

    spread = feature_spread(features.reshape(prompts, samples, -1))   # mean within-prompt distance

The distance is the cosine distance (1 - cos) between features (EfficientNet-Lite0's
here), averaged over every pair of samples of a prompt and then over prompts. 0 means
every seed gives the same image; mode collapse shows as a spread far below that of
different real images (`pairwise_spread` of a real set gives that scale).
"""

from __future__ import annotations

import numpy as np


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def pairwise_spread(features: np.ndarray) -> float:
    """Mean cosine distance over all pairs of distinct rows of (N, D) features."""
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need (N, D) features with N >= 2, got {features.shape}")
    unit = _unit(features.astype(np.float64))
    cos = unit @ unit.T
    off = ~np.eye(len(unit), dtype=bool)
    return float((1 - cos[off]).mean())


def feature_spread(features: np.ndarray) -> dict:
    """(P, K, D) features of K samples for each of P prompts -> {"mean", "std"} over
    prompts of the within-prompt mean pairwise cosine distance."""
    if features.ndim != 3 or features.shape[1] < 2:
        raise ValueError(f"need (prompts, samples >= 2, D) features, got {features.shape}")
    per_prompt = np.array([pairwise_spread(f) for f in features])
    return {"mean": float(per_prompt.mean()), "std": float(per_prompt.std()), "prompts": int(len(per_prompt))}
