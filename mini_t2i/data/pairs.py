"""Image-caption pairs for training: the decoded-image cache plus the captions' token ids."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from mini_t2i.data.config import DataConfig

if TYPE_CHECKING:
    from mini_t2i.rerank.generated import GeneratedSamples


@dataclass
class PairData:
    """Training pairs in memory: images (N, H, W, 3) uint8 (memmap), text_ids (N, text_len)."""
    images: np.ndarray
    text_ids: torch.Tensor
    texts: list[str]
    metas: list[dict | None]
    generated: "GeneratedSamples | None" = None  # generator samples for some of these captions


def load_pairs(data: DataConfig, cache_dir: str, tokenizer, is_verbose: bool = False) -> PairData:
    """Decode `data` into the shared image cache (once) and tokenise its captions."""
    from mini_t2i.data.cache import build_image_cache

    cache = build_image_cache(data, cache_dir, is_verbose)
    text_ids = torch.cat([tokenizer.encode(cache.texts[s:s + 4096]) for s in range(0, len(cache), 4096)])
    return PairData(cache.images, text_ids, cache.texts, cache.metas)
