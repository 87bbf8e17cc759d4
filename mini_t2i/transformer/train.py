"""Train the transformer (stage 2) on pre-tokenized shards.

    mini-t2i train transformer --config configs/transformer_shapes64.yaml [key=value ...]
    torchrun --nproc_per_node N -m mini_t2i.cli train transformer --config ... [parallel=fsdp]

The batch of optimizer step s is a pure function of (seed, s): which rows, and which of
them lose their caption (caption dropout, for classifier-free guidance). The checkpoint
holds the weights, AdamW's state, the RNG states and the step (= the data position), so a
run killed at any point resumes to the same weights bit for bit on the same machine.
`batch_size` is the global batch of one optimizer step: it is split over torchrun's
processes and then into `grad_accum` micro-batches, so the same config gives the same
training on 1 or N processes.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from mini_t2i.transformer.model import TransformerConfig


@dataclass
class TransformerTrainConfig:
    tokens: str = "data/tokens/shapes64_train"  # pre-tokenized shards (mini-t2i pretokenize)
    val_tokens: str = "data/tokens/shapes64_val"
    text_tokenizer: str = "mini_t2i/pretrained/text_shapes"
    vq_model: str = "mini_t2i/pretrained/vq_shapes64"  # decodes the sample grids; must match the shards
    model: TransformerConfig = field(default_factory=TransformerConfig)
    run_dir: str = "runs/transformer"  # checkpoints, metrics.jsonl, samples/, final/ (the model)
    steps: int = 2000  # optimizer steps (the learning-rate schedule spans them)
    stop_after: int = 0  # stop (and write final/) after this step; the schedule still plans for `steps`; 0 = steps
    batch_size: int = 32  # sequences per optimizer step, over all processes and micro-batches
    grad_accum: int = 1  # micro-batches per optimizer step (per process)
    lr: float = 1e-3  # peak AdamW learning rate
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1  # on matrices only, not on norms
    beta2: float = 0.95
    grad_clip: float = 1.0  # max global gradient norm (0 = off)
    caption_dropout: float = 0.1  # share of rows trained on the empty caption (classifier-free guidance)
    text_loss_weight: float = 0.0  # DALL-E 1 used 1/8; 0 = image tokens only
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on GPUs that have it, else fp32
    parallel: Literal["ddp", "fsdp"] = "ddp"  # torch: only under torchrun; jax: how the mesh holds the weights
    multihost: bool = False  # jax backend: jax.distributed.initialize() (TPU pod slices, multi-node GPUs)
    seed: int = 0
    log_every: int = 25
    eval_every: int = 500  # val loss + a sample grid (0 = only at the end)
    val_count: int = 512  # val rows for the val loss
    sample_count: int = 32  # val captions sampled for the grid (scored when they are Shapes World)
    sample_top_k: int = 0  # sampling settings of the grid
    sample_guidance_scale: float = 1.0
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    num_threads: int = 0  # torch CPU threads (0 = torch's default)
    device: str = "auto"  # auto | cpu | cuda
    resume: bool = True  # continue from run_dir's latest checkpoint if there is one
    init_from: str = ""  # a saved transformer whose weights start the run (fine-tuning); its preset wins over model

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("steps, batch_size and grad_accum must be >= 1")
        if not 0 <= self.stop_after <= self.steps:
            raise ValueError(f"stop_after={self.stop_after} must be in [0, steps={self.steps}] (0 = run all steps)")
        if not 0.0 <= self.caption_dropout < 1.0:
            raise ValueError(f"caption_dropout must be in [0, 1), got {self.caption_dropout}")


@dataclass
class TokenData:
    """Pre-tokenized rows in memory: image_tokens (N, h*w) uint16, text_ids (N, text_len) int64."""
    image_tokens: np.ndarray
    text_ids: torch.Tensor
    texts: list[str]
    metas: list[dict | None]
    grid_size: int
    codebook_size: int

    def __len__(self) -> int:
        return len(self.texts)


def load_token_data(path: str | Path, tokenizer, limit: int = 0, with_metas: bool = True) -> TokenData:
    """Read token shards and tokenize their captions once (limit > 0: the first rows only).
    Columns are read from Arrow directly: going through datasets' numpy formatting row by
    row took ~45 s for 100k rows, this takes well under a second."""
    from mini_t2i.data.pretokenize import load_token_shards

    ds, info = load_token_shards(path)
    table = ds.data.table if hasattr(ds.data, "table") else ds.data
    count = min(limit, len(ds)) if limit else len(ds)
    table = table.slice(0, count)
    images = table.column("image_tokens").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    images = images.astype(np.uint16, copy=False).reshape(count, -1)  # (N, h*w)
    texts = table.column("text").to_pylist()
    metas = [json.loads(m) if m else None for m in table.column("meta").to_pylist()] if with_metas else [None] * count
    return TokenData(images, tokenizer.encode(texts), texts, metas, int(info["grid_size"]), int(info["codebook_size"]))


def load_run_data(cfg: TransformerTrainConfig) -> tuple[TokenData, TokenData, TransformerConfig]:
    """A run's train and val rows and its model config with the layout filled in from the
    text tokenizer and the shards (both trainers, PyTorch and JAX, start here)."""
    from mini_t2i.text.tokenizer import TextTokenizer

    tokenizer = TextTokenizer.from_pretrained(cfg.text_tokenizer)
    train_data = load_token_data(cfg.tokens, tokenizer, with_metas=False)
    val_data = load_token_data(cfg.val_tokens, tokenizer, limit=max(cfg.val_count, cfg.sample_count))
    if (val_data.grid_size, val_data.codebook_size) != (train_data.grid_size, train_data.codebook_size):
        raise ValueError(f"{cfg.tokens} and {cfg.val_tokens} were made with different VQ tokenizers")
    model_cfg = cfg.model.with_layout(tokenizer.vocab_size, tokenizer.text_len,
                                      train_data.codebook_size, train_data.grid_size)
    return train_data, val_data, model_cfg


def batch_rows(cfg: TransformerTrainConfig, step: int, n_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The global batch of `step`: (row indices (B,), caption-dropped mask (B,)).
    A pure function of (seed, step), so resume is exact and process count does not matter."""
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    rows = torch.randint(0, n_rows, (cfg.batch_size,), generator=g)
    dropped = torch.rand(cfg.batch_size, generator=g) < cfg.caption_dropout
    return rows, dropped


def micro_batches(cfg: TransformerTrainConfig, data: TokenData, step: int, rank: int, world: int):
    """This process's micro-batches of `step`: [(text_ids (b, T), image_tokens (b, h*w))]."""
    from mini_t2i.transformer.model import empty_caption

    per_rank = cfg.batch_size // world
    rows, dropped = batch_rows(cfg, step, len(data))
    rows, dropped = rows[rank * per_rank:(rank + 1) * per_rank], dropped[rank * per_rank:(rank + 1) * per_rank]
    text = data.text_ids[rows].clone()
    text[dropped] = empty_caption(text.shape[1])
    images = torch.from_numpy(data.image_tokens[rows.numpy()].astype(np.int64))
    return list(zip(text.chunk(cfg.grad_accum), images.chunk(cfg.grad_accum)))


def make_optimizer(model: torch.nn.Module, cfg: TransformerTrainConfig) -> torch.optim.Optimizer:
    """AdamW; weight decay on 2-d weights (matmuls, embeddings), none on norms."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, cfg.beta2))


def use_bf16(cfg: TransformerTrainConfig, device: torch.device) -> bool:
    if cfg.precision == "bf16":
        return True
    return cfg.precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()


def train_step(model, optimizer, model_cfg: TransformerConfig, batches, cfg: TransformerTrainConfig, step: int,
               device: torch.device, bf16: bool = False) -> dict:
    """One optimizer step over this process's micro-batches; returns losses as floats."""
    from mini_t2i.training import warmup_cosine
    from mini_t2i.transformer.model import compute_loss

    for group in optimizer.param_groups:
        group["lr"] = warmup_cosine(step, cfg.lr, cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio)
    optimizer.zero_grad(set_to_none=True)
    totals: dict[str, float] = {}
    for i, (text, images) in enumerate(batches):
        # DDP: sync gradients only on the last micro-batch.
        sync = i == len(batches) - 1 or not hasattr(model, "no_sync")
        ctx = model.no_sync() if not sync else torch.enable_grad()
        with ctx, torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss, metrics = compute_loss(model, model_cfg, text.to(device), images.to(device), cfg.text_loss_weight)
        (loss / len(batches)).backward()
        for k, v in {"loss": loss.item(), **metrics}.items():
            totals[k] = totals.get(k, 0.0) + v / len(batches)
    if cfg.grad_clip > 0:
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        totals["grad_norm"] = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
    optimizer.step()
    return totals


def _checkpoint_files(cfg: TransformerTrainConfig, step: int, info, model_state: dict, optim_state: dict) -> dict:
    """The files of a checkpoint, as {name: write(path)} for write_checkpoint_dir."""
    from mini_t2i.checkpoint import save_state, save_tensors
    from mini_t2i.config import save_config

    state = {"step": step, "optimizer": optim_state, "torch_rng": torch.get_rng_state(),
             "world_size": info.world_size}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state()
    return {
        "model.safetensors": lambda p: save_tensors({k: v.contiguous() for k, v in model_state.items()}, p),
        "config.yaml": lambda p: save_config(cfg, p),
        "training_state.safetensors": lambda p: save_state(state, p),
    }


def _resume(run_dir: Path, model, optimizer, cfg: TransformerTrainConfig, info) -> int:
    from mini_t2i.checkpoint import latest_checkpoint, load_state, load_tensors
    from mini_t2i.distributed import load_full_state

    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        return 0
    tensors, _ = load_tensors(ckpt / "model.safetensors")
    state = load_state(ckpt / "training_state.safetensors")
    load_full_state(model, optimizer, tensors, state["optimizer"], cfg.parallel, info)
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda_rng"])
    return int(state["step"])


def _init_from(path: str, data_cfg: TransformerConfig):
    """Start from a saved transformer's weights; its layout must match the token shards'."""
    from mini_t2i.transformer.model import load_transformer

    model, model_cfg = load_transformer(path, device="cpu")
    theirs = (model_cfg.text_vocab_size, model_cfg.text_len, model_cfg.codebook_size, model_cfg.image_grid)
    ours = (data_cfg.text_vocab_size, data_cfg.text_len, data_cfg.codebook_size, data_cfg.image_grid)
    if theirs != ours:
        raise ValueError(f"init_from={path} has layout (text vocab, text len, codes, grid) {theirs}, but the "
                         f"tokenizer and token shards give {ours}; pretokenize with that model's components")
    model.train()
    return model, model_cfg


def _save_final(model, model_cfg: TransformerConfig, cfg: TransformerTrainConfig, final: Path) -> None:
    """Write run_dir/final via a temporary folder renamed into place."""
    import shutil

    from mini_t2i.transformer.model import save_transformer

    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_transformer(model, model_cfg, tmp, stage_config=cfg)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def train_transformer(cfg: TransformerTrainConfig, is_verbose: bool = True) -> Path:
    """Train (or resume) a transformer; returns the folder of the final model (run_dir/final)."""
    from tqdm.auto import tqdm

    from mini_t2i.checkpoint import write_checkpoint_dir
    from mini_t2i.config import save_config
    from mini_t2i.distributed import (all_reduce_mean, barrier, full_state, init_distributed, shutdown, unwrap,
                                      wrap_model)
    from mini_t2i.runtime import setup_runtime
    from mini_t2i.training import append_jsonl, trim_jsonl, warmup_cosine
    from mini_t2i.transformer.evaluate import EvalSet, evaluate_during_training
    from mini_t2i.transformer.model import build_model, parameter_count

    device = setup_runtime(cfg.device, cfg.num_threads)
    info, device = init_distributed(device)
    if cfg.batch_size % (info.world_size * cfg.grad_accum):
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by processes x grad_accum = "
                         f"{info.world_size} x {cfg.grad_accum}")
    is_verbose = is_verbose and info.is_main
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    train_data, val_data, model_cfg = load_run_data(cfg)
    model = build_model(model_cfg, seed=cfg.seed)
    if cfg.init_from:
        model, model_cfg = _init_from(cfg.init_from, model_cfg)
    model = model.to(device)
    if is_verbose:
        print(f"train rows: {len(train_data)}, val rows: {len(val_data)}; model {model_cfg.preset} "
              f"{model_cfg.shape}: {parameter_count(model) / 1e6:.2f}M parameters, "
              f"sequence {model_cfg.text_len} + {model_cfg.image_len} tokens; {info.world_size} process(es)")
    bf16 = use_bf16(cfg, device)
    model = wrap_model(model, info, cfg.parallel, device)
    optimizer = make_optimizer(model, cfg)
    start = _resume(run_dir, model, optimizer, cfg, info) if cfg.resume else 0
    log_path = run_dir / "metrics.jsonl"
    if info.is_main:
        trim_jsonl(log_path, start)
        save_config(cfg, run_dir / "config.yaml")
        if start and is_verbose:
            print(f"resumed from step {start}")
    writer = _tensorboard(run_dir) if info.is_main else None
    eval_set = EvalSet.build(val_data, cfg, device) if info.is_main else None

    def evaluate(step: int) -> None:
        # FSDP shards must be gathered on every rank; the evaluation itself runs on rank 0.
        model_state = full_state(model, optimizer, cfg.parallel, info)[0] if info.enabled and cfg.parallel == "fsdp" else None
        if info.is_main:
            metrics = evaluate_during_training(unwrap(model), model_cfg, eval_set, run_dir, step, model_state, bf16)
            append_jsonl(log_path, {"step": step, "split": "val", **metrics})
            if writer:
                for k, v in metrics.items():
                    writer.add_scalar(f"val/{k}", v, step)
            if is_verbose:
                tqdm.write(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        barrier(info)

    model.train()
    tokens_per_row = model_cfg.sequence_length - 1
    end = cfg.stop_after or cfg.steps
    bar = tqdm(range(start, end), initial=start, total=end, desc="transformer", disable=not is_verbose)
    t0, seen = time.perf_counter(), 0
    for step in bar:
        batches = micro_batches(cfg, train_data, step, info.rank, info.world_size)
        losses = train_step(model, optimizer, model_cfg, batches, cfg, step, device, bf16)
        seen += cfg.batch_size * tokens_per_row
        done = step + 1
        if done % cfg.log_every == 0 or done == end:
            losses = {k: all_reduce_mean(v, info, device) for k, v in losses.items()}
            rate = seen / (time.perf_counter() - t0)
            t0, seen = time.perf_counter(), 0
            record = {"step": done, "split": "train", "lr": warmup_cosine(step, cfg.lr, cfg.warmup_steps, cfg.steps,
                                                                             cfg.min_lr_ratio),
                      "tokens_per_s": rate, **losses}
            if info.is_main:
                append_jsonl(log_path, record)
                if writer:
                    for k, v in record.items():
                        if k not in ("step", "split"):
                            writer.add_scalar(f"train/{k}", v, done)
            bar.set_postfix(loss=f"{losses['image_loss']:.4f}", tok_s=f"{rate:.0f}")
        if cfg.eval_every and done % cfg.eval_every == 0 and done < end:
            evaluate(done)
            model.train()
        if done % cfg.checkpoint_every == 0 or done == end:
            model_state, optim_state = full_state(model, optimizer, cfg.parallel, info)
            if info.is_main:
                write_checkpoint_dir(run_dir, done, _checkpoint_files(cfg, done, info, model_state, optim_state),
                                     keep_last=cfg.keep_checkpoints)
            barrier(info)

    final = run_dir / "final"
    model_state = full_state(model, optimizer, cfg.parallel, info)[0]
    if info.is_main:
        final_model = build_model(model_cfg)
        final_model.load_state_dict(model_state)
        _save_final(final_model, model_cfg, cfg, final)
    evaluate(end)
    if info.is_main:
        last_val = [r for r in map(json.loads, log_path.read_text().splitlines()) if r["split"] == "val"][-1]
        (final / "eval.json").write_text(json.dumps(last_val, indent=2))
    if writer:
        writer.close()
    barrier(info)
    shutdown(info)
    return final


def _tensorboard(run_dir: Path):
    """A TensorBoard writer when tensorboard is installed, else None (metrics.jsonl always)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))
