"""Pieces every training loop here shares: the learning-rate schedule and the metrics log."""

from __future__ import annotations

import json
import math
from pathlib import Path


def warmup_cosine(step: int, lr: float, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """Linear warmup to lr over warmup_steps, then cosine decay to lr * min_lr_ratio at total_steps."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def trim_jsonl(path: Path, step: int) -> None:
    """Drop records written after the checkpoint a run resumes from (they will be written again)."""
    if path.is_file():
        lines = [l for l in path.read_text().splitlines() if l and json.loads(l).get("step", 0) <= step]
        path.write_text("".join(l + "\n" for l in lines))
