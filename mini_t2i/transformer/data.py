"""The transformer's training data: pre-tokenized rows in memory, and the batch of each step.

The batch of optimizer step s is a pure function of (seed, s): which rows, and which of
them lose their caption (caption dropout, for classifier-free guidance). `batch_size` is
the global batch: it is split over processes (torchrun ranks, JAX hosts), then into
`grad_accum` micro-batches, so the same config trains the same on 1 or N processes and on
either trainer (transformer/train.py, transformer_jax/train.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mini_t2i.text.special_ids import empty_caption
from mini_t2i.training import step_generator
from mini_t2i.transformer.config import TransformerConfig, TransformerTrainConfig


@dataclass
class TokenData:
    """Pre-tokenized rows in memory: image_tokens (N, h*w) uint16, text_ids (N, text_len) int64."""
    image_tokens: np.ndarray
    text_ids: torch.Tensor
    texts: list[str]
    metas: list[dict | None]
    grid_size: int
    codebook_size: int

    def __len__(self) -> int:
        return len(self.texts)


def load_token_data(path: str | Path, tokenizer, limit: int = 0, with_metas: bool = True) -> TokenData:
    """Read token shards and tokenize their captions once (limit > 0: the first rows only).
    Columns are read from Arrow directly: going through datasets' numpy formatting row by
    row took ~45 s for 100k rows, this takes well under a second."""
    from mini_t2i.data.pretokenize import load_token_shards

    ds, info = load_token_shards(path)
    table = ds.data.table if hasattr(ds.data, "table") else ds.data
    count = min(limit, len(ds)) if limit else len(ds)
    table = table.slice(0, count)
    images = table.column("image_tokens").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    images = images.astype(np.uint16, copy=False).reshape(count, -1)  # (N, h*w)
    texts = table.column("text").to_pylist()
    metas = [json.loads(m) if m else None for m in table.column("meta").to_pylist()] if with_metas else [None] * count
    return TokenData(images, tokenizer.encode(texts), texts, metas, int(info["grid_size"]), int(info["codebook_size"]))


def load_caption_tokenizer(name: str):
    """The transformer's text tokenizer: a saved TextTokenizer folder, or "minilm" for the frozen
    MiniLM's own tokenizer (text/minilm.py; the model config then says caption_encoder: minilm)."""
    if name == "minilm":
        from mini_t2i.text.minilm import MiniLMTokenizer

        return MiniLMTokenizer()
    from mini_t2i.text.tokenizer import TextTokenizer

    return TextTokenizer.from_pretrained(name)


def load_run_data(cfg: TransformerTrainConfig) -> tuple[TokenData, TokenData, TransformerConfig]:
    """A run's train and val rows and its model config with the layout filled in from the
    text tokenizer and the shards (both trainers, PyTorch and JAX, start here)."""
    tokenizer = load_caption_tokenizer(cfg.text_tokenizer)
    train_data = load_token_data(cfg.tokens, tokenizer, with_metas=False)
    val_data = load_token_data(cfg.val_tokens, tokenizer, limit=max(cfg.val_count, cfg.sample_count))
    if (val_data.grid_size, val_data.codebook_size) != (train_data.grid_size, train_data.codebook_size):
        raise ValueError(f"{cfg.tokens} and {cfg.val_tokens} were made with different VQ tokenizers")
    if (cfg.text_tokenizer == "minilm") != (cfg.model.caption_encoder == "minilm"):
        raise ValueError(f"text_tokenizer={cfg.text_tokenizer!r} and model.caption_encoder={cfg.model.caption_encoder!r} "
                         "disagree: the MiniLM encoder reads MiniLM's ids; set both to minilm or neither")
    model_cfg = cfg.model.with_layout(tokenizer.vocab_size, tokenizer.text_len,
                                      train_data.codebook_size, train_data.grid_size)
    return train_data, val_data, model_cfg


def batch_rows(cfg: TransformerTrainConfig, step: int, n_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The global batch of `step`: (row indices (B,), caption-dropped mask (B,)).
    A pure function of (seed, step), so resume is exact and process count does not matter."""
    g = step_generator(cfg.seed, step)
    rows = torch.randint(0, n_rows, (cfg.batch_size,), generator=g)
    dropped = torch.rand(cfg.batch_size, generator=g) < cfg.caption_dropout
    return rows, dropped


def micro_batches(cfg: TransformerTrainConfig, data: TokenData, step: int, rank: int, world: int):
    """This process's micro-batches of `step`: [(text_ids (b, T), image_tokens (b, h*w))]."""
    per_rank = cfg.batch_size // world
    rows, dropped = batch_rows(cfg, step, len(data))
    rows, dropped = rows[rank * per_rank:(rank + 1) * per_rank], dropped[rank * per_rank:(rank + 1) * per_rank]
    text = data.text_ids[rows].clone()
    text[dropped] = empty_caption(text.shape[1])
    images = torch.from_numpy(data.image_tokens[rows.numpy()].astype(np.int64))
    return list(zip(text.chunk(cfg.grad_accum), images.chunk(cfg.grad_accum)))
