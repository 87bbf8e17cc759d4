"""How good is a VQ tokenizer: PSNR, codebook usage, and the Shapes World ceiling.

The checker's accuracy on reconstructions is the ceiling every generator built on
this tokenizer shares: a transformer can at best reproduce the tokens of a real
image, and the decoder then draws what these numbers measure.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mini_t2i.pixels import tensor_from_uint8, uint8_from_tensor
from mini_t2i.vq.model import VQModel


@torch.no_grad()
def reconstruct(model: VQModel, images: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """images (N, H, W, 3) uint8 -> (reconstructions (N, H, W, 3) uint8, tokens (N, h, w) int64)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    recons, tokens = [], []
    for start in range(0, len(images), batch_size):
        x = tensor_from_uint8(torch.from_numpy(np.array(images[start:start + batch_size])).to(device))
        t = model.encode(x)
        recons.append(uint8_from_tensor(model.decode(t)).cpu().numpy())
        tokens.append(t.cpu().numpy())
    model.train(was_training)
    return np.concatenate(recons), np.concatenate(tokens)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Mean PSNR in dB over images, for uint8 arrays of shape (N, H, W, 3)."""
    err = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(axis=1)
    return float(np.mean(10 * np.log10(255.0**2 / np.maximum(err, 1e-10))))


def codebook_stats(tokens: np.ndarray, codebook_size: int) -> dict:
    """Share of codes used and the perplexity of the token histogram."""
    counts = np.bincount(tokens.reshape(-1), minlength=codebook_size)
    p = counts[counts > 0] / counts.sum()
    return {
        "codes_used": int((counts > 0).sum()),
        "usage": float((counts > 0).mean()),
        "perplexity": float(math.exp(-(p * np.log(p)).sum())),
    }


def evaluate_vq(model: VQModel, images: np.ndarray, metas: list | None = None, batch_size: int = 64) -> dict:
    """PSNR, codebook usage and (when Shapes World metadata is given) checker accuracy
    on the reconstructions, with the checker's accuracy on the originals beside it."""
    from mini_t2i.shapes.files import is_shapes_meta, score_images

    recons, tokens = reconstruct(model, images, batch_size)
    result = {"count": int(len(images)), "psnr": psnr(images, recons),
              **codebook_stats(tokens, model.config.codebook_size)}
    if is_shapes_meta(metas):
        result["checker_reconstructions"] = score_images(list(recons), metas)
        result["checker_ground_truth"] = score_images(list(np.asarray(images)), metas)
    return result


def evaluate_vq_on_data(model_path: str, split: str = "val", count: int = 300, seed: int = 0,
                        is_verbose: bool = True) -> dict:
    """Evaluate a saved tokenizer on a freshly rendered Shapes World split at its resolution."""
    import json

    from mini_t2i.data.config import DataConfig
    from mini_t2i.data.sources import iter_examples

    model = VQModel.from_pretrained(model_path)
    cfg = DataConfig(source="shapes", split=split, count=count, seed=seed, image_size=model.config.image_size)
    examples = list(iter_examples(cfg))
    images = np.stack([np.asarray(e.image, dtype=np.uint8) for e in examples])
    result = evaluate_vq(model, images, [e.meta for e in examples])
    result["split"] = split
    if is_verbose:
        print(json.dumps(result, indent=2))
    return result
