"""The generator's own samples as negatives for the reranker.

A reranker trained only on real pairs scores a malformed sample (a blob for a circle,
a shape cut by the border) almost as high as a clean one of the same content: it has
never been asked to tell them apart, yet that is all reranking asks of it. So the
reranker can be fine-tuned with the generator's samples for *training* captions:

    mini-t2i shapes render --split train --count 4000 --out data/generated/shapes_train4000
    mini-t2i generate --prompts data/generated/shapes_train4000/metadata.jsonl --num-candidates 1 \\
        --seed 500000 --out data/generated/shapes64_train4000
    mini-t2i train rerank --config configs/rerank_shapes64_generated.yaml

Each step then draws `generated_per_step` samples; each brings its caption's real image
into the batch as a positive, and itself as an extra image column of the text -> image
softmax: a negative for every caption, its own included. Nothing here is specific to
Shapes World: any `generate --prompts` folder made from the training captions works.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class GeneratedSamples:
    images: np.ndarray  # (N, S, S, 3) uint8
    rows: np.ndarray  # (N,) the training pair whose caption each sample was drawn for


def load_generated(folder: str | Path, texts: list[str], image_size: int) -> GeneratedSamples:
    """Read a `generate --prompts` folder (PNGs + metadata.jsonl) and match each sample to
    a training pair with the same caption; refuse captions the training data lacks."""
    from mini_t2i.data.images import open_image, to_rgb_square

    folder = Path(folder)
    meta_path = folder / "metadata.jsonl"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder} has no metadata.jsonl; make it with `mini-t2i generate --prompts "
                                "TRAIN_METADATA --num-candidates 1 --out DIR`")
    row_of = {}
    for row, text in enumerate(texts):
        row_of.setdefault(text, row)
    records = [json.loads(line) for line in meta_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    missing = [r["text"] for r in records if r["text"] not in row_of]
    if missing:
        raise ValueError(f"{len(missing)} of {len(records)} captions in {meta_path} are not training captions "
                         f"(e.g. {missing[0]!r}); generate from the training data's own captions")
    images = np.stack([np.asarray(to_rgb_square(open_image(folder / r["file_name"]), image_size), dtype=np.uint8)
                       for r in records])
    return GeneratedSamples(images, np.array([row_of[r["text"]] for r in records], dtype=np.int64))
