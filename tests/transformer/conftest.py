import dataclasses

import pytest
import torch

from mini_t2i.transformer.config import TransformerConfig
from mini_t2i.transformer.model import build_model

TEXT_TOKENIZER = "mini_t2i/pretrained/text_shapes"
VQ_MODEL = "mini_t2i/pretrained/vq_shapes64"


@pytest.fixture(scope="session")
def small_layout(tokenizer):
    """The tiny preset over the real text vocabulary and a 4x4 grid of 64 codes: fast to sample."""
    return TransformerConfig(preset="tiny").with_layout(tokenizer.vocab_size, tokenizer.text_len, 64, 4)


@pytest.fixture(scope="session")
def small_model(small_layout):
    return build_model(small_layout, seed=0).eval()


def captions(tokenizer, n):
    texts = ["a red circle", "two blue squares", "a green triangle left of a yellow star", "three purple circles"]
    return tokenizer.encode([texts[i % len(texts)] for i in range(n)])


def stepped_logits(model, cfg, ids, steps, weights: str) -> torch.Tensor:
    """The fast decoder's logits for a prefill of `ids` (B, text_len), then one decode step per
    column of `steps` (B, n) image ids: (n + 1, B, codebook)."""
    from mini_t2i.transformer.decoder import decoders

    decoder = decoders(cfg)[0](model, cfg, max_batch=ids.shape[0], decode_weights=weights)
    return torch.stack([decoder.prefill(ids)] + [decoder.decode(steps[:, j:j + 1]) for j in range(steps.shape[1])])


def design_and_codes(layout, tokenizer, image_order: str, n: int):
    """(cfg, model, ids, steps): the tiny layout in `image_order`, its seed-0 model, 3 captions'
    ids and n random image ids for each (decode steps after the prefill)."""
    cfg = dataclasses.replace(layout, image_order=image_order)
    steps = torch.randint(0, cfg.codebook_size, (3, n), generator=torch.Generator().manual_seed(1)) + cfg.image_offset
    return cfg, build_model(cfg, seed=0).eval(), captions(tokenizer, 3), steps
