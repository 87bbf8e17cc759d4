"""Where and how torch runs: the device and the CPU thread count, chosen from a config,
never at import time (two threads beside a busy core run ~3x slower; see the README)."""

from __future__ import annotations

import torch


def setup_runtime(device: str = "auto", num_threads: int = 0) -> torch.device:
    """Apply `num_threads` (0 keeps torch's default) and resolve `device`
    ("auto" is cuda when available, else cpu)."""
    if num_threads:
        torch.set_num_threads(num_threads)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
