"""Images as the tokenizer gives them back: a cached array of VQ reconstructions.

Everything a generator draws goes through the VQ decoder, so a later stage that judges
generated images (the reranker) sees the tokenizer's soft edges and quantised colours on
every candidate. Trained on clean renders only, it can learn "a render" as a feature, which
no candidate has. `cached_reconstructions` turns a dataset's images into their VQ
reconstructions once and keeps them beside the image cache (uint8 memmap, written
atomically), keyed by the VQ's weights, so that a later stage can train on what it will see.

    recon = cached_reconstructions(images, "mini_t2i/pretrained/vq_shapes64", "data/cache/shapes-train-.../")
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

RECON_BATCH = 256  # images per VQ call


def vq_fingerprint(vq_path: str | os.PathLike) -> str:
    """A short hash of a VQ folder's weights: a retrained tokenizer gets a new cache."""
    weights = Path(vq_path) / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{vq_path} has no model.safetensors; give a VQ folder (mini_t2i/pretrained/vq_... "
                                "or runs/vq_.../final)")
    digest = hashlib.sha256()
    with open(weights, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


def cached_reconstructions(images: np.ndarray, vq_path: str | os.PathLike, cache_folder: str | os.PathLike,
                           is_verbose: bool = False) -> np.ndarray:
    """images (N, S, S, 3) uint8 -> their reconstructions through the VQ at vq_path, (N, S, S, 3) uint8,
    memory-mapped from ``cache_folder/recon-<vq hash>.npy`` (made on first use)."""
    import torch
    from tqdm.auto import tqdm

    from mini_t2i.vq.evaluate import reconstruct
    from mini_t2i.vq.model import VQModel

    path = Path(cache_folder) / f"recon-{vq_fingerprint(vq_path)}.npy"
    if path.is_file():
        recon = np.load(path, mmap_mode="r")
        if recon.shape == images.shape:
            return recon
    model = VQModel.from_pretrained(vq_path).eval()
    if model.config.image_size != images.shape[1]:
        raise ValueError(f"the VQ at {vq_path} reads {model.config.image_size} px images but the data has "
                         f"{images.shape[1]} px; use the tokenizer of this resolution")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=images.shape)
    with torch.no_grad():
        for s in tqdm(range(0, len(images), RECON_BATCH), desc="VQ reconstructions", disable=not is_verbose, leave=False):
            out[s:s + RECON_BATCH] = reconstruct(model, images[s:s + RECON_BATCH])[0]
    out.flush()
    del out
    os.replace(tmp, path)
    return np.load(path, mmap_mode="r")
