"""Pre-tokenization: encode a dataset once into token shards, so the transformer
never touches pixels.

    mini-t2i pretokenize --config configs/pretokenize_shapes64.yaml

Output (an Arrow dataset written by `datasets.Dataset.save_to_disk`):
  image_tokens  uint16[h*w]  the VQ token grid, row-major
  text          string       the caption, as given (the text tokenizer runs at train time,
                             so it can change without re-encoding images)
  meta          string       JSON metadata when the source has it (Shapes World), else ""
plus ``pretokenize.yaml`` (the resolved config) and ``info.json`` (grid size, codebook
size, counts). Written to ``out_dir.tmp`` and renamed, so a killed run leaves nothing
that looks finished.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mini_t2i.config import save_config
from mini_t2i.data.config import DataConfig


@dataclass
class PretokenizeConfig:
    data: DataConfig = field(default_factory=lambda: DataConfig(source="shapes", split="train", count=20000))
    vq_model: str = "runs/vq_shapes64/final"  # the tokenizer folder
    out_dir: str = "data/tokens/shapes64_train"
    batch_size: int = 128  # images encoded at once
    num_shards: int = 1  # Arrow files written
    device: str = "auto"  # auto | cpu | cuda
    num_threads: int = 0  # torch CPU threads (0 = torch's default)


def _encoded_rows(cfg: PretokenizeConfig, model, stats, device):
    """Yield {"image_tokens", "text", "meta"} rows, encoding images in batches."""
    from mini_t2i.data.sources import iter_examples
    from mini_t2i.vq.model import tensor_from_uint8

    batch = []

    def flush():
        images = torch.from_numpy(np.stack([np.asarray(e.image, dtype=np.uint8) for e in batch])).to(device)
        tokens = model.encode(tensor_from_uint8(images)).reshape(len(batch), -1)  # (B, h*w)
        tokens = tokens.cpu().numpy().astype(np.uint16)
        for e, t in zip(batch, tokens):
            yield {"image_tokens": t, "text": e.text, "meta": json.dumps(e.meta) if e.meta is not None else ""}
        batch.clear()

    for example in iter_examples(cfg.data, stats):
        batch.append(example)
        if len(batch) == cfg.batch_size:
            yield from flush()
    if batch:
        yield from flush()


def pretokenize(cfg: PretokenizeConfig, is_verbose: bool = True) -> Path:
    """Encode `cfg.data` with the tokenizer `cfg.vq_model` into `cfg.out_dir`; returns it."""
    import datasets
    from tqdm.auto import tqdm

    from mini_t2i.data.sources import LoadStats
    from mini_t2i.vq.model import VQModel

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if cfg.device == "auto" else cfg.device))
    model = VQModel.from_pretrained(cfg.vq_model).to(device)
    if cfg.data.image_size != model.cfg.image_size:
        raise ValueError(f"data.image_size={cfg.data.image_size} but the tokenizer {cfg.vq_model} was trained at "
                         f"{model.cfg.image_size} px; set data.image_size={model.cfg.image_size}")
    out = Path(cfg.out_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    features = datasets.Features({
        "image_tokens": datasets.Sequence(datasets.Value("uint16"), length=model.cfg.grid_size ** 2),
        "text": datasets.Value("string"),
        "meta": datasets.Value("string"),
    })
    stats = LoadStats()
    start = time.perf_counter()
    bar = tqdm(total=cfg.data.count or None, desc="pretokenize", disable=not is_verbose)

    def rows():
        for row in _encoded_rows(cfg, model, stats, device):
            bar.update(1)
            yield row

    # from_generator writes Arrow in batches to its cache (here inside tmp), so memory stays bounded.
    ds = datasets.Dataset.from_generator(rows, features=features, cache_dir=str(tmp / "cache"))
    bar.close()
    if len(ds) == 0:
        raise ValueError(f"no readable examples in {cfg.data.source}:{cfg.data.path or cfg.data.split} "
                         f"(skipped {stats.skipped}: {dict(stats.reasons)})")
    ds.save_to_disk(str(tmp / "dataset"), num_shards=min(cfg.num_shards, len(ds)))
    del ds
    shutil.rmtree(tmp / "cache", ignore_errors=True)
    seconds = time.perf_counter() - start
    info = {"count": stats.yielded, "skipped": stats.skipped, "skip_reasons": dict(stats.reasons),
            "grid_size": model.cfg.grid_size, "codebook_size": model.cfg.codebook_size,
            "image_size": model.cfg.image_size, "seconds": round(seconds, 1)}
    (tmp / "info.json").write_text(json.dumps(info, indent=2))
    save_config(cfg, tmp / "pretokenize.yaml")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    if is_verbose:
        print(f"wrote {info['count']} examples ({info['skipped']} skipped) to {out} in {seconds:.1f}s "
              f"({info['count'] / seconds:.0f} images/s)")
    return out


def load_token_shards(path: str | Path):
    """The pre-tokenized dataset at `path` (numpy format) and its info dict."""
    import datasets

    path = Path(path)
    if not (path / "info.json").is_file():
        raise FileNotFoundError(f"{path} is not a pre-tokenized dataset (no info.json); run `mini-t2i pretokenize` first")
    ds = datasets.load_from_disk(str(path / "dataset")).with_format("numpy", columns=["image_tokens"],
                                                                    output_all_columns=True)
    return ds, json.loads((path / "info.json").read_text())
