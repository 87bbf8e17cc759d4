"""The autoregressive pipeline against the diffusion baseline: `mini-t2i compare` (harness.py)."""
