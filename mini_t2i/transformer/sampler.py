"""Sampling image tokens from a trained transformer, apart from the model.

Prefill the caption (and any given image-token prefix) once, then decode one token
at a time against a preallocated KV cache, written in place (decoder.py: the model's own
weights, fused, without transformers' per-step overhead; 1.5x its StaticCache here).
use_cache=False swaps in decoder.py's ReferenceDecoder (the plain Llama forward over the
whole sequence each step) behind the same prefill/decode interface.

    tokens = sample_image_tokens(model, cfg, text_ids, seeds=[0, 1], guidance_scale=3.0, top_k=256)
    for partial in stream_image_tokens(model, cfg, text_ids, seeds=[0], yield_every=16):
        ...  # (B, n) codes so far, n = 16, 32, ..., h*w: a progressive preview

Reproducibility: image b draws all its randomness from `torch.Generator().manual_seed(seeds[b])`
up front, as one uniform number per image position, and each token is picked by inverse
CDF with that number. No generator is shared between images, so an image does not
depend on which batch it is sampled in (up to float rounding of the batched matmuls,
which can flip a draw that lands within ~1e-6 of a CDF boundary).

Classifier-free guidance runs the conditional and the unconditional (empty caption)
rows as one batch of 2B rows and mixes their logits:
    logits = uncond + guidance_scale * (cond - uncond)
guidance_scale=1 is plain conditional sampling and skips the unconditional rows.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch

from mini_t2i.text.special_ids import empty_caption
from mini_t2i.transformer.config import TransformerConfig
from mini_t2i.transformer.blocks import sequence_order
from mini_t2i.transformer.decoder import decoders


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """(B, V) logits -> the same with filtered-out entries at -inf.
    top_k > 0 keeps the k largest (ties at the k-th value are kept); top_p < 1 keeps the
    smallest set of most likely tokens whose probability reaches top_p (at least one).
    Expects top_k >= 0 and 0 < top_p <= 1 (TextToImagePipeline.sampling_settings checks them)."""
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # mass of the tokens ranked above each one
        drop_sorted = before >= top_p  # the top token always has before = 0
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def pick_tokens(logits: torch.Tensor, uniforms: torch.Tensor, temperature: float) -> torch.Tensor:
    """(B, V) filtered logits, (B,) uniforms in [0, 1) -> (B,) token indices by inverse CDF.
    temperature 0 is greedy (argmax)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = (logits.double() / temperature).softmax(dim=-1)  # float64: the CDF has no rounding holes
    cdf = probs.cumsum(dim=-1)  # (B, V)
    u = uniforms.double().clamp(1e-12, 1 - 1e-12).unsqueeze(-1) * cdf[:, -1:]  # (B, 1)
    # The first index whose CDF reaches u: never a zero-probability token (its CDF equals
    # the previous one, which is already < u).
    index = torch.searchsorted(cdf, u).squeeze(-1)
    return index.clamp_(max=logits.shape[-1] - 1)


GUIDANCE_SCHEDULES = ("constant", "rising")


def guidance_at(guidance_scale: float, schedule: str, position: int, image_len: int) -> float:
    """The guidance scale of image token `position`: constant, or rising linearly from ~1 at
    the first token to guidance_scale at the last."""
    if schedule == "constant":
        return guidance_scale
    return 1 + (guidance_scale - 1) * (position + 1) / image_len


def seeded_uniforms(seeds: Sequence[int], count: int) -> torch.Tensor:
    """(B, count): image b's uniform draws, from its own generator seeded with seeds[b]."""
    return torch.stack([torch.rand(count, generator=torch.Generator().manual_seed(int(s)), dtype=torch.float64)
                        for s in seeds])


def _check_shapes(cfg: TransformerConfig, text_ids: torch.Tensor, seeds: Sequence[int], prefix) -> None:
    # Shapes and code ranges only: a wrong shape or an out-of-range code would fail deep in the
    # model (an embedding lookup out of bounds) or silently mix rows. Sampling values are the
    # pipeline's to check (TextToImagePipeline.sampling_settings), once, at its boundary.
    if text_ids.ndim != 2 or text_ids.shape[1] != cfg.text_len:
        raise ValueError(f"text_ids must be (batch, {cfg.text_len}) from the model's text tokenizer, "
                         f"got shape {tuple(text_ids.shape)}")
    if len(seeds) != text_ids.shape[0]:
        raise ValueError(f"need one seed per image: {text_ids.shape[0]} captions but {len(seeds)} seeds")
    if prefix is not None:
        if prefix.ndim != 2 or prefix.shape[0] != text_ids.shape[0] or prefix.shape[1] > cfg.image_len:
            raise ValueError(f"prefix must be (batch, n <= {cfg.image_len}) image codes, got {tuple(prefix.shape)}")
        if prefix.numel() and (prefix.min() < 0 or prefix.max() >= cfg.codebook_size):
            raise ValueError(f"prefix codes must be in [0, {cfg.codebook_size})")


@torch.inference_mode()
def stream_image_tokens(
    model,
    cfg: TransformerConfig,
    text_ids: torch.Tensor,
    seeds: Sequence[int],
    *,
    guidance_scale: float = 1.0,
    guidance_schedule: str = "constant",
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    prefix: torch.Tensor | None = None,
    use_cache: bool = True,
    yield_every: int = 0,
    decode_weights: str = "fp32",
) -> Iterator[torch.Tensor]:
    """Sample image tokens for B captions, yielding partial results.

    text_ids: (B, text_len) caption ids; seeds: B ints, one per image;
    guidance_scale >= 0 (1 = off); guidance_schedule "constant", or "rising": the scale grows
    linearly over the image, 1 + (guidance_scale - 1) * (p + 1) / (h*w) at token p, so the
    layout is drawn almost unguided and the details fully guided (as Muse and VAR schedule it);
    temperature >= 0 (0 = greedy), top_k >= 0 (0 = off),
    0 < top_p <= 1 (1 = off): checked by the pipeline (sampling_settings), not here;
    prefix: optional (B, n) VQ codes to keep, in raster order (the top of an image: completion);
    use_cache=False recomputes the whole sequence each step (ReferenceDecoder: for tests
    and benchmarks); yield_every: yield the (B, n) codes so far every this many new tokens
    (0 = only at the end), as the leading raster codes written so far (for image_order=blocks
    a block row fills two raster rows at once); decode_weights: "fp32", or "fp16" / "int8" for
    the fast decoder's matmuls over smaller copies of the weights (quantize.py; CPU only), or
    "fused" for its whole forward in one compiled call over fp16 weights (fused.py; CPU only). The last thing yielded is always the full (B, h*w) grid of codes,
    in raster order whatever the model's order.
    Shapes are checked: ValueError for a wrong text_ids, seeds or prefix.
    """
    _check_shapes(cfg, text_ids, seeds, prefix)
    device = next(model.parameters()).device
    batch, n = text_ids.shape[0], cfg.image_len
    uniforms = seeded_uniforms(seeds, n).to(device)  # (B, h*w), by sequence position
    # The model writes codes in its sequence order (raster, or block by block: blocks.py);
    # order[p] is the raster index of sequence position p. tokens are kept in sequence order.
    order = sequence_order(cfg).to(device)  # (h*w,)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n, device=device)  # the sequence position of each raster index
    tokens = torch.empty(batch, n, dtype=torch.long, device=device)
    given = 0 if prefix is None else prefix.shape[1]  # raster codes 0..given-1 are kept
    forced = order < given  # (h*w,) sequence positions whose code is the prefix's
    if given:
        tokens[:, rank[:given]] = prefix.to(device)
    # Prefill the longest run of given positions in whole blocks; the rest of the prefix (a
    # partial block row) is forced in the loop instead of sampled.
    start = int(forced.long().cumprod(0).sum()) // cfg.block_len * cfg.block_len
    if start == n:
        yield _raster(tokens, order)
        return

    guided = guidance_scale != 1.0
    rows = text_ids.to(device)
    if guided:  # one batch: B conditional rows, then B unconditional ones
        rows = torch.cat([rows, empty_caption(cfg.text_len).to(device).expand(batch, -1)])
    ids = torch.cat([rows, tokens[:, :start].repeat(2 if guided else 1, 1) + cfg.image_offset], dim=1)

    fast, reference = decoders(cfg)
    decoder = (fast if use_cache else reference)(model, cfg, max_batch=ids.shape[0], decode_weights=decode_weights)
    logits = decoder.prefill(ids)  # the caption and the prefix, all at once: (B or 2B, codebook)
    for position in range(start, n):
        if not forced[position]:
            if guided:
                cond, uncond = logits[:batch], logits[batch:]
                logits = uncond + guidance_at(guidance_scale, guidance_schedule, position, n) * (cond - uncond)
            logits = filter_logits(logits, top_k, top_p)
            tokens[:, position] = pick_tokens(logits, uniforms[:, position], temperature)
        if position + 1 < n:
            step_input = (tokens[:, position:position + 1] + cfg.image_offset).repeat(2 if guided else 1, 1)
            logits = decoder.decode(step_input)  # (B', 1) the token just chosen -> next logits
        done = position + 1
        if yield_every and done % yield_every == 0 and done < n:
            ready = int((rank < done).long().cumprod(0).sum())  # leading raster codes all written
            yield _raster(tokens, order)[:, :ready]
    yield _raster(tokens, order)


def _raster(tokens: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """(B, h*w) codes in sequence order -> raster order (a copy)."""
    raster = torch.empty_like(tokens)
    raster[:, order] = tokens
    return raster


def sample_image_tokens(
    model,
    cfg: TransformerConfig,
    text_ids: torch.Tensor,
    seeds: Sequence[int],
    *,
    guidance_scale: float = 1.0,
    guidance_schedule: str = "constant",
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    prefix: torch.Tensor | None = None,
    use_cache: bool = True,
    decode_weights: str = "fp32",
) -> torch.Tensor:
    """(B, text_len) caption ids -> (B, h*w) sampled VQ codes; the arguments are those of
    `stream_image_tokens` (which see), without yield_every."""
    *_, tokens = stream_image_tokens(model, cfg, text_ids, seeds, guidance_scale=guidance_scale,
                                     guidance_schedule=guidance_schedule, temperature=temperature, top_k=top_k, top_p=top_p, prefix=prefix,
                                     use_cache=use_cache, decode_weights=decode_weights)  # yields once
    return tokens
