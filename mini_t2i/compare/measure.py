"""Cost of one image, counted and timed the same way for both kinds of model.

    cost = generation_cost(gen, text_ids[:1], gen.settings())   # FLOPs, network calls
    speed = generation_speed(gen, text_ids, gen.settings(), batch_sizes=[1, 8, 32])

FLOPs come from torch's FlopCounterMode over one whole generation at batch 1 (text
encoding, every sampling step with both guidance rows, and the VQ decode for the
autoregressive model); it counts matrix products and convolutions, which is nearly
all the work. FlopCounterMode does not see int8 products (torch._int_mm), so the count runs
with fp32 decode weights: the same multiply-adds in another number format. Sequential network evaluations are counted with a forward hook on the
generator's `network`, plus the steps of the autoregressive sampler's decoder (which
calls no module): calls that must run one after another, whatever the batch.
"""

from __future__ import annotations

import time
from typing import Sequence

import torch


def generation_cost(generator, text_ids: torch.Tensor, settings: dict) -> dict:
    """FLOPs per image and sequential network calls for one image ((1, L) caption ids)."""
    from torch.utils.flop_counter import FlopCounterMode

    if len(text_ids) != 1:
        raise ValueError(f"count the cost of one image: give (1, L) caption ids, not {tuple(text_ids.shape)}")
    from mini_t2i.transformer.decoder import ImageTokenDecoder

    if settings.get("decode_weights", "fp32") != "fp32":
        settings = {**settings, "decode_weights": "fp32"}  # the same arithmetic, visible to the counter
    calls = []
    hook = generator.network.register_forward_hook(lambda *_: calls.append(1))
    decoder_steps = ImageTokenDecoder.evaluations
    try:
        with FlopCounterMode(display=False) as counter:
            generator.generate(text_ids, [0], settings, batch_size=1)
    finally:
        hook.remove()
    calls += [1] * (ImageTokenDecoder.evaluations - decoder_steps)
    return {"flops_per_image": int(counter.get_total_flops()), "sequential_network_calls": len(calls)}


def generation_speed(generator, text_ids: torch.Tensor, settings: dict, batch_sizes: Sequence[int],
                     repeats: int = 2) -> dict:
    """Seconds per image at each batch size: best of `repeats` timed batches after an
    untimed warm-up batch. Images are generated, not reranked."""
    rows = {}
    for batch in batch_sizes:
        ids = text_ids[:batch]
        if len(ids) < batch:  # fewer prompts than the batch: repeat them
            ids = ids.repeat((batch + len(ids) - 1) // len(ids), 1)[:batch]
        seeds = list(range(batch))
        generator.generate(ids, seeds, settings, batch_size=batch)  # warm-up: allocations, caches
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            generator.generate(ids, seeds, settings, batch_size=batch)
            best = min(best, time.perf_counter() - start)
        rows[str(batch)] = {"seconds_per_batch": best, "seconds_per_image": best / batch, "images_per_s": batch / best}
    best_batch = max(rows, key=lambda b: rows[b]["images_per_s"])
    return {"batches": rows, "seconds_per_image_batch1": rows.get("1", {}).get("seconds_per_image"),
            "best_images_per_s": rows[best_batch]["images_per_s"], "best_batch_size": int(best_batch),
            "threads": torch.get_num_threads()}
