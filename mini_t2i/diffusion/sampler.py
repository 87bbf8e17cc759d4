"""Sampling the diffusion baseline: DDIM or DPM-Solver, classifier-free guidance as one batch.

    images = sample_images(model, text_ids, seeds=[0, 1], num_steps=25, guidance_scale=3.0)

Row i starts from noise drawn with its own seed and both samplers are deterministic
after that, so an image depends on its seed and caption, not on the batch it shares.
With guidance, conditional and unconditional (empty caption) rows run as one
concatenated batch of 2N, and eps = eps_u + g * (eps_c - eps_u).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def initial_noise(seeds: Sequence[int], image_size: int) -> torch.Tensor:
    """(N, 3, S, S) standard normal noise, row i from seed i alone."""
    rows = [torch.randn(3, image_size, image_size, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
    return torch.stack(rows)


@torch.no_grad()
def sample_images(model, text_ids: torch.Tensor, seeds: Sequence[int], num_steps: int = 25,
                  guidance_scale: float = 1.0, scheduler: str = "ddim") -> np.ndarray:
    """Draw one image per row of `text_ids` (N, L): (N, S, S, 3) uint8. Counts one network
    evaluation per step (two rows per image with guidance)."""
    from mini_t2i.diffusion.model import make_scheduler
    from mini_t2i.pixels import uint8_from_tensor
    from mini_t2i.text.special_ids import empty_caption

    if len(seeds) != len(text_ids):
        raise ValueError(f"{len(seeds)} seeds for {len(text_ids)} captions; give one seed per caption")
    if num_steps < 1:
        raise ValueError(f"num_steps={num_steps} must be >= 1")
    if guidance_scale < 1:
        raise ValueError(f"guidance_scale={guidance_scale} must be >= 1 (1 = no guidance)")
    cfg, device = model.config, model.device
    sched = make_scheduler(cfg, scheduler)
    sched.set_timesteps(num_steps)
    text_ids = text_ids.to(device)
    guided = guidance_scale != 1.0
    if guided:
        uncond = empty_caption(cfg.text_len).to(device)[None].expand(len(text_ids), -1)
        text_ids = torch.cat([text_ids, uncond])  # (2N, L): conditional rows, then unconditional
    text = model.encode_text(text_ids)  # the caption does not change across steps: encode once
    x = initial_noise(seeds, cfg.image_size).to(device) * sched.init_noise_sigma
    for t in sched.timesteps:
        inp = torch.cat([x, x]) if guided else x
        inp = sched.scale_model_input(inp, t)
        eps = model(inp, t.expand(len(inp)).to(device), text_ids, text=text)
        if guided:
            cond, free = eps.chunk(2)
            eps = free + guidance_scale * (cond - free)
        x = sched.step(eps, t, x).prev_sample
    return uint8_from_tensor(x).cpu().numpy()  # (N, S, S, 3)
