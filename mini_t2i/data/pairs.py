"""Image-caption pairs for training: the decoded-image cache plus the captions' token ids."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mini_t2i.data.config import DataConfig


@dataclass
class PairData:
    """Training pairs in memory: images (N, H, W, 3) uint8 (memmap), text_ids (N, text_len)."""
    images: np.ndarray
    text_ids: torch.Tensor
    texts: list[str]
    metas: list[dict | None]
    # Generator samples for some of these captions (a rerank.generated.GeneratedSamples, which
    # the reranker's trainer attaches; typed loosely so data never names a later stage).
    generated: object | None = None
    # The distinct caption styles (None: no style word), for the reranker's style negatives.
    styles: list | None = None


def load_pairs(data: DataConfig, cache_dir: str, tokenizer, is_verbose: bool = False) -> PairData:
    """Decode `data` into the shared image cache (once) and tokenise its captions."""
    from mini_t2i.data.cache import build_image_cache

    cache = build_image_cache(data, cache_dir, is_verbose)
    text_ids = torch.cat([tokenizer.encode(cache.texts[s:s + 4096]) for s in range(0, len(cache), 4096)])
    return PairData(cache.images, text_ids, cache.texts, cache.metas)


def start_pair_run(cfg, is_verbose: bool = False):
    """What every trainer on image-caption pairs does first (the reranker's and the
    diffusion baseline's): set up the device, make run_dir, fill the model config's text
    layout from cfg.text_tokenizer, and load the train and val pairs.
    Returns (device, run_dir, cfg with the layout set, tokenizer, train pairs, val pairs)."""
    from dataclasses import replace
    from pathlib import Path

    from mini_t2i.runtime import setup_runtime
    from mini_t2i.text.tokenizer import TextTokenizer

    device = setup_runtime(cfg.device, cfg.num_threads)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = TextTokenizer.from_pretrained(cfg.text_tokenizer)
    cfg = replace(cfg, model=cfg.model.with_layout(tokenizer.vocab_size, tokenizer.text_len, cfg.data.image_size))
    train_data = load_pairs(cfg.data, cfg.cache_dir, tokenizer, is_verbose)
    val_data = load_pairs(cfg.val_data, cfg.cache_dir, tokenizer, is_verbose)
    return device, run_dir, cfg, tokenizer, train_data, val_data
