"""The diffusion baseline (issue 6): a small text-conditioned DiT from diffusers' blocks,
trained with DDPM on the same data and captions as the autoregressive model."""
