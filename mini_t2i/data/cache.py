"""A decoded-image cache: read a dataset once into a uint8 array on disk.

Training the VQ tokenizer samples random batches for thousands of steps; decoding
and resizing every image each time would cost more than the model on a CPU. So the
data loader runs once, into ``images.npy`` (N, H, W, 3) uint8, memory-mapped on
use, plus ``captions.jsonl`` (text and metadata per row). Random access makes the
batch order a pure function of (seed, step), which is what makes resume exact.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mini_t2i.config import config_to_dict
from mini_t2i.data.config import DataConfig

INITIAL_CAPACITY = 1024  # rows allocated first when the source's length is unknown (count=0)


@dataclass
class ImageCache:
    images: np.ndarray  # (N, H, W, 3) uint8, memory-mapped
    texts: list[str]
    metas: list[dict | None]
    skipped: int  # examples the loader could not read

    def __len__(self) -> int:
        return len(self.texts)


def cache_key(cfg: DataConfig) -> str:
    """A short stable hash of everything that decides the cached pixels."""
    return hashlib.sha256(json.dumps(config_to_dict(cfg), sort_keys=True).encode()).hexdigest()[:12]


def cache_folder(cfg: DataConfig, cache_dir: str | os.PathLike) -> Path:
    """The folder of `cfg`'s cache: ``cache_dir/<source>-<split>-<hash>/``."""
    return Path(cache_dir) / f"{cfg.source}-{cfg.split}-{cache_key(cfg)}"


def build_image_cache(cfg: DataConfig, cache_dir: str | os.PathLike, is_verbose: bool = True) -> ImageCache:
    """Load `cfg`'s examples into `cache_folder` once; reuse it afterwards."""
    from tqdm.auto import tqdm

    from mini_t2i.data.sources import LoadStats, iter_examples

    folder = cache_folder(cfg, cache_dir)
    done = folder / "done"
    if not done.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        stats = LoadStats()
        s = cfg.image_size
        capacity = cfg.count if cfg.count > 0 else INITIAL_CAPACITY
        tmp_path = folder / "images.tmp.npy"
        arr = np.lib.format.open_memmap(tmp_path, mode="w+", dtype=np.uint8, shape=(capacity, s, s, 3))
        rows = []
        bar = tqdm(total=cfg.count or None, desc=f"caching {cfg.source}:{cfg.split}", disable=not is_verbose, leave=False)
        for example in iter_examples(cfg, stats):
            if len(rows) == capacity:  # unknown length: grow by doubling
                arr.flush()
                capacity *= 2
                grown = np.lib.format.open_memmap(folder / "images.grow.npy", mode="w+", dtype=np.uint8,
                                                  shape=(capacity, s, s, 3))
                grown[: len(rows)] = arr[: len(rows)]
                del arr
                os.replace(folder / "images.grow.npy", tmp_path)
                arr = grown
            arr[len(rows)] = np.asarray(example.image, dtype=np.uint8)
            rows.append({"text": example.text, "meta": example.meta})
            bar.update(1)
        bar.close()
        if not rows:
            raise ValueError(f"the data source {cfg.source}:{cfg.path or cfg.split} yielded no readable examples "
                             f"(skipped {stats.skipped}: {dict(stats.reasons)})")
        # Trim to the rows actually read, then publish atomically.
        final = np.lib.format.open_memmap(folder / "images.trim.npy", mode="w+", dtype=np.uint8, shape=(len(rows), s, s, 3))
        final[:] = arr[: len(rows)]
        final.flush()
        del arr, final
        os.replace(folder / "images.trim.npy", folder / "images.npy")
        tmp_path.unlink(missing_ok=True)
        with open(folder / "captions.jsonl", "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
        (folder / "skipped").write_text(str(stats.skipped))
        done.write_text("ok")
    images = np.load(folder / "images.npy", mmap_mode="r")
    rows = [json.loads(line) for line in (folder / "captions.jsonl").read_text(encoding="utf-8").splitlines()]
    skipped = int((folder / "skipped").read_text()) if (folder / "skipped").is_file() else 0
    return ImageCache(images=images, texts=[r["text"] for r in rows], metas=[r["meta"] for r in rows], skipped=skipped)
