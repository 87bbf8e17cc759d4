"""Pre-tokenization: encode a dataset once into token shards, so the transformer
never touches pixels.

    mini-t2i pretokenize --config configs/pretokenize_shapes64.yaml

Output: Arrow IPC stream shards ``tokens-00000.arrow ...`` (what `datasets` writes as
its cache files; `load_token_shards` opens them with `datasets.Dataset.from_file`):
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
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mini_t2i.config import save_config
from mini_t2i.data.config import DataConfig
from mini_t2i.runtime import setup_runtime


@dataclass
class PretokenizeConfig:
    data: DataConfig = field(default_factory=lambda: DataConfig(source="shapes", split="train", count=20000))
    vq_model: str = "runs/vq_shapes64/final"  # the tokenizer folder
    out_dir: str = "data/tokens/shapes64_train"
    batch_size: int = 128  # images encoded at once
    rows_per_shard: int = 50000  # rows per Arrow file
    device: str = "auto"  # auto | cpu | cuda
    num_threads: int = 0  # torch CPU threads (0 = torch's default)


def _encoded_rows(cfg: PretokenizeConfig, model, stats, device):
    """Yield {"image_tokens", "text", "meta"} rows, encoding images in batches."""
    from mini_t2i.data.sources import iter_examples
    from mini_t2i.pixels import tensor_from_uint8

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
    from mini_t2i.atomic import atomic_folder
    from mini_t2i.vq.model import VQModel

    device = setup_runtime(cfg.device, cfg.num_threads)
    model = VQModel.from_pretrained(cfg.vq_model).to(device)
    if cfg.data.image_size != model.config.image_size:
        raise ValueError(f"data.image_size={cfg.data.image_size} but the tokenizer {cfg.vq_model} was trained at "
                         f"{model.config.image_size} px; set data.image_size={model.config.image_size}")
    out = Path(cfg.out_dir)
    with atomic_folder(out) as tmp:  # a killed run leaves nothing half-written
        info, seconds = _write_shards(cfg, model, device, tmp, is_verbose)
    if is_verbose:
        print(f"wrote {info['count']} examples ({info['skipped']} skipped) to {out} in {seconds:.1f}s "
              f"({info['count'] / seconds:.0f} images/s)")
    return out


def _write_shards(cfg: PretokenizeConfig, model, device, tmp: Path, is_verbose: bool) -> tuple[dict, float]:
    """Encode into the Arrow shards, info.json and pretokenize.yaml of folder `tmp`;
    returns (info, seconds)."""
    import datasets
    import pyarrow as pa
    from tqdm.auto import tqdm

    from mini_t2i.data.sources import LoadStats

    features = datasets.Features({
        "image_tokens": datasets.Sequence(datasets.Value("uint16"), length=model.config.grid_size ** 2),
        "text": datasets.Value("string"),
        "meta": datasets.Value("string"),
    })
    schema = features.arrow_schema
    stats = LoadStats()
    start = time.perf_counter()
    bar = tqdm(total=cfg.data.count or None, desc="pretokenize", disable=not is_verbose)
    shards: list[str] = []
    writer, rows_in_shard, pending = None, 0, []

    def write_pending() -> None:
        if pending:
            writer.write_batch(pa.RecordBatch.from_pylist(pending, schema=schema))
            pending.clear()

    # Arrow IPC streams, the format of `datasets`' own cache files: Dataset.from_file
    # memory-maps them, so neither writing nor reading holds the dataset in memory.
    for row in _encoded_rows(cfg, model, stats, device):
        if writer is None:
            shards.append(f"tokens-{len(shards):05d}.arrow")
            writer = pa.ipc.new_stream(str(tmp / shards[-1]), schema)
        row["image_tokens"] = row["image_tokens"].tolist()
        pending.append(row)
        rows_in_shard += 1
        bar.update(1)
        if len(pending) == 1024:
            write_pending()
        if rows_in_shard == cfg.rows_per_shard:
            write_pending()
            writer.close()
            writer, rows_in_shard = None, 0
    if writer is not None:
        write_pending()
        writer.close()
    bar.close()
    if not shards:
        raise ValueError(f"no readable examples in {cfg.data.source}:{cfg.data.path or cfg.data.split} "
                         f"(skipped {stats.skipped}: {dict(stats.reasons)})")
    seconds = time.perf_counter() - start
    info = {"count": stats.yielded, "skipped": stats.skipped, "skip_reasons": dict(stats.reasons),
            "shards": shards, "grid_size": model.config.grid_size, "codebook_size": model.config.codebook_size,
            "image_size": model.config.image_size, "seconds": round(seconds, 1)}
    (tmp / "info.json").write_text(json.dumps(info, indent=2))
    save_config(cfg, tmp / "pretokenize.yaml")
    return info, seconds


def load_token_shards(path: str | Path):
    """The pre-tokenized dataset at `path` (numpy format) and its info dict."""
    import datasets

    path = Path(path)
    if not (path / "info.json").is_file():
        raise FileNotFoundError(f"{path} is not a pre-tokenized dataset (no info.json); run `mini-t2i pretokenize` first")
    info = json.loads((path / "info.json").read_text())
    parts = [datasets.Dataset.from_file(str(path / name)) for name in info["shards"]]
    ds = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    return ds.with_format("numpy", columns=["image_tokens"], output_all_columns=True), info
