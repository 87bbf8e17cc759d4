"""Conversions between images and tensors, in one place for every stage.

    x = tensor_from_uint8(images)                  # (B, H, W, 3) uint8 -> (B, 3, H, W) float in [-1, 1]
    images = uint8_from_tensor(x)                  # and back (clamped, rounded)
    x = pixels_from_uint8(array, image_size)       # numpy or torch uint8, resized for a model's input
    images = images_from_tokens(vq, tokens)        # (N, h*w) VQ codes -> (N, H, W, 3) uint8
    image_grid(pil_images, columns).save(...)      # tiles with white gaps
    comparison_grid(originals, others).save(...)   # rows of originals, each above a row of the others

Every model here reads and writes images in [-1, 1] (x / 127.5 - 1): the VQ tokenizer, the
reranker and the diffusion baseline. A leaf module: it imports nothing of the package, so
a stage that needs a conversion never imports another stage for it.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def tensor_from_uint8(images: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float in [-1, 1]."""
    return images.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def uint8_from_tensor(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float in [-1, 1] (any float dtype) -> (B, H, W, 3) uint8."""
    return images.float().clamp(-1, 1).add(1.0).mul(127.5).round().to(torch.uint8).permute(0, 2, 3, 1)


def pixels_from_uint8(images: np.ndarray | torch.Tensor, image_size: int) -> torch.Tensor:
    """uint8 (N, H, W, 3), numpy (memmaps too) or torch -> float (N, 3, image_size, image_size)
    in [-1, 1], resized (bilinear, antialiased) where H, W differ from image_size."""
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.array(images))  # a copy: memmaps are read-only
    if x.dim() != 4 or x.shape[-1] != 3 or x.dtype != torch.uint8:
        raise ValueError(f"images must be a uint8 array of shape (N, H, W, 3), got {x.dtype} {tuple(x.shape)}")
    x = tensor_from_uint8(x)  # (N, 3, H, W)
    if x.shape[-2:] != (image_size, image_size):
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    return x


def images_from_tokens(vq, tokens: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """(N, h*w) codes of the VQ tokenizer `vq` (row-major) -> (N, H, W, 3) uint8 images."""
    device = next(vq.parameters()).device
    g = vq.config.grid_size
    out = [uint8_from_tensor(vq.decode(tokens[i:i + batch_size].reshape(-1, g, g).to(device))).cpu().numpy()
           for i in range(0, len(tokens), batch_size)]
    return np.concatenate(out)


def image_grid(images: Sequence[Image.Image], columns: int | None = None, pad: int = 2) -> Image.Image:
    """Tile equal-size images into one (white gaps of `pad` px), `columns` wide (default ~square)."""
    if not images:
        raise ValueError("no images to tile")
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    w, h = images[0].size
    grid = Image.new("RGB", (columns * (w + pad) + pad, rows * (h + pad) + pad), "white")
    for k, im in enumerate(images):
        grid.paste(im, (pad + (k % columns) * (w + pad), pad + (k // columns) * (h + pad)))
    return grid


def comparison_grid(originals: np.ndarray, others: np.ndarray, columns: int = 8) -> Image.Image:
    """(N, H, W, 3) uint8 twice -> rows of originals, each followed by a row of the others
    (reconstructions, samples); at most 4 rows of `columns`."""
    n = (min(len(originals), 4 * columns) // columns) * columns or len(originals)
    cols = min(columns, n)
    h, w = originals.shape[1:3]
    rows = (n + cols - 1) // cols
    canvas = np.full((rows * 2 * (h + 2), cols * (w + 2), 3), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = r * 2 * (h + 2), c * (w + 2)
        canvas[y:y + h, x:x + w] = originals[i]
        canvas[y + h + 2:y + 2 * h + 2, x:x + w] = others[i]
    return Image.fromarray(canvas)


def border_colour(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, 3) uint8: the median colour of each image's outermost pixels,
    its background where it has a plain one (the fill of the reranker's cut views and shifts)."""
    border = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], axis=1)  # (N, 2H+2W, 3)
    return np.median(border, axis=1).astype(np.uint8)
