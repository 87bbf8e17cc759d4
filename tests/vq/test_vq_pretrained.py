"""The tokenizer that ships with the package: it loads, and it still draws what the
checker can read (the ceiling every generator built on it shares)."""

import json
from pathlib import Path

import numpy as np

import mini_t2i

SHIPPED = Path(mini_t2i.__file__).parent / "pretrained" / "vq_shapes64"


def test_shipped_tokenizer_reconstructs_shapes_world():
    from mini_t2i.shapes.files import score_images
    from mini_t2i.shapes.scenes import generate_split
    from mini_t2i.vq.evaluate import codebook_stats, reconstruct
    from mini_t2i.vq.model import VQModel

    model = VQModel.from_pretrained(SHIPPED)
    assert model.config.grid_size == 16 and model.config.codebook_size == 1024
    recorded = json.loads((SHIPPED / "eval.json").read_text())
    assert recorded["checker_reconstructions"]["overall"] >= 0.95 and recorded["usage"] >= 0.8

    samples = list(generate_split("test_heldout", 60, seed=1, size=64))
    images = np.stack([np.asarray(s.image) for s in samples])
    recons, tokens = reconstruct(model, images)
    # 60 images: allow sampling noise below the recorded 300-image accuracy.
    assert score_images(list(recons), [s.meta for s in samples])["overall"] >= 0.85
    assert codebook_stats(tokens, 1024)["codes_used"] > 100
