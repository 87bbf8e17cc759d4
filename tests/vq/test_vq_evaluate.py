"""evaluate_vq scores with the checker only when the metadata is Shapes World's."""

import numpy as np
import torch

from mini_t2i.shapes.files import is_shapes_meta
from mini_t2i.vq.evaluate import evaluate_vq
from mini_t2i.vq.model import VQModel, VQModelConfig


def test_checker_runs_only_on_shapes_metadata():
    from mini_t2i.shapes.scenes import generate_split

    torch.manual_seed(0)
    model = VQModel(VQModelConfig(image_size=32, downsample=4, channels=[8, 8], codebook_size=16, code_dim=4)).eval()
    samples = list(generate_split("val", 4, size=32))
    images = np.stack([np.asarray(s.image) for s in samples])
    assert "checker_reconstructions" in evaluate_vq(model, images, [s.meta for s in samples])
    emoji = [{"source": "emoji-datasource-google", "license": "Apache-2.0"}] * 4  # another dataset's meta
    result = evaluate_vq(model, images, emoji)
    assert "checker_reconstructions" not in result and result["count"] == 4
    assert not is_shapes_meta(emoji) and not is_shapes_meta([]) and not is_shapes_meta(None)
