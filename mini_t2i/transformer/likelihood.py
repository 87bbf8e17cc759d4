"""The generator as a scorer: how likely a grid of codes is under a caption.

A trained transformer is also a classifier (by Bayes, log p(c | x) = log p(x | c) -
log p(x) + log p(c)), and one that reads what the generator learned to draw:

    log p(x | c)              sum over the image's codes of log softmax(logits)[code],
                              teacher-forced (one forward pass, no sampling)
    log p(x | c) - w log p(x | "")    w = 1: the pointwise mutual information of image and
                              caption; the unconditional term is the empty caption that
                              classifier-free guidance conditions on, and it discounts images
                              that are likely under any caption (plain, empty ones)

For one image and several captions (describe, the hard-negative diagnostic) the
unconditional term is the same for every caption and drops out. For several candidate
images of one caption (reranking) it does not, and `uncond_weight` is chosen on val.

    scores = image_log_likelihood(model, cfg, text_ids, codes)          # (B,) nats
    scores = caption_image_scores(model, cfg, text_ids, codes, uncond_weight=1.0)

codes are (B, h*w) in raster order, as the VQ and the sampler give them, for either image
order (blocks.py). The raw model's distribution is scored: no top-k, no guidance.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mini_t2i.text.special_ids import empty_caption
from mini_t2i.transformer.config import TransformerConfig

SCORE_BATCH = 64  # rows per forward pass: bounds memory, (rows, h*w, codebook) fp32 logits


@torch.no_grad()
def image_log_likelihood(model, cfg: TransformerConfig, text_ids: torch.Tensor, codes: torch.Tensor,
                         batch_size: int = SCORE_BATCH) -> torch.Tensor:
    """(B, text_len) caption ids, (B, h*w) raster codes -> (B,) float32 log p(codes | caption)."""
    from mini_t2i.transformer.blocks import to_sequence_order
    from mini_t2i.transformer.model import sequence_ids

    if text_ids.ndim != 2 or text_ids.shape[1] != cfg.text_len:
        raise ValueError(f"text_ids must be (batch, {cfg.text_len}), got {tuple(text_ids.shape)}")
    if codes.ndim != 2 or codes.shape != (text_ids.shape[0], cfg.image_len):
        raise ValueError(f"codes must be ({text_ids.shape[0]}, {cfg.image_len}) raster codes, got {tuple(codes.shape)}")
    device = next(model.parameters()).device
    out = []
    for s in range(0, len(codes), batch_size):
        t = text_ids[s:s + batch_size].to(device)
        c = codes[s:s + batch_size].to(device).long()
        if cfg.image_order == "blocks":
            seq = to_sequence_order(cfg, c)
            logits = model(t, seq)  # (b, h*w, codebook), position i predicts code i
        else:
            seq = c
            ids = sequence_ids(cfg, t, c)[:, :-1]  # position i predicts token i + 1
            logits = model(input_ids=ids, logits_to_keep=cfg.image_len).logits
            logits = logits[..., cfg.image_offset:cfg.image_offset + cfg.codebook_size]  # (b, h*w, codebook)
        logp = F.log_softmax(logits.float(), dim=-1).gather(-1, seq[..., None])[..., 0]  # (b, h*w)
        out.append(logp.sum(dim=1).cpu())
    return torch.cat(out) if out else torch.zeros(0)


def caption_image_scores(model, cfg: TransformerConfig, text_ids: torch.Tensor, codes: torch.Tensor,
                         uncond_weight: float = 1.0, batch_size: int = SCORE_BATCH) -> torch.Tensor:
    """(B,) log p(codes | caption) - uncond_weight * log p(codes | empty caption), in nats:
    how much better the caption explains each image than no caption (see the module doc)."""
    cond = image_log_likelihood(model, cfg, text_ids, codes, batch_size)
    if uncond_weight == 0:
        return cond
    empty = empty_caption(cfg.text_len).expand(len(codes), -1)
    return cond - uncond_weight * image_log_likelihood(model, cfg, empty, codes, batch_size)
