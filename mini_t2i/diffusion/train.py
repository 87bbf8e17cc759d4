"""Train the diffusion baseline (DDPM; v or noise prediction) on image-caption pairs.

    mini-t2i train diffusion --config configs/diffusion_shapes64.yaml [key=value ...]
    python train/train_diffusion.py --config configs/diffusion_tiny.yaml

The same data (the decoded-image cache), text tokenizer, caption dropout, AdamW and
warmup-cosine schedule as the autoregressive trainer, so the two are compared on equal
terms. The batch of step s (images, captions after dropout, noise and timesteps) is a
pure function of (seed, s); checkpoints hold weights, AdamW's state and the step, so a
run killed at any point resumes to the same weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mini_t2i.checkpoint import resume_training_checkpoint, save_training_checkpoint
from mini_t2i.config import save_config
from mini_t2i.data.config import DataConfig, check_image_sizes
from mini_t2i.data.pairs import PairData, start_pair_run
from mini_t2i.diffusion.model import DiffusionConfig, DiffusionModel, make_scheduler
from mini_t2i.pixels import pixels_from_uint8
from mini_t2i.training import RunConfig, RunLog, copy_weights, progress, save_final, step_generator, use_bf16


@dataclass
class DiffusionTrainConfig(RunConfig):
    data: DataConfig = field(default_factory=lambda: DataConfig(source="shapes", split="train", count=100000))
    val_data: DataConfig = field(default_factory=lambda: DataConfig(source="shapes", split="val", count=512))
    text_tokenizer: str = "mini_t2i/pretrained/text_shapes"
    model: DiffusionConfig = field(default_factory=DiffusionConfig)
    run_dir: str = "runs/diffusion"
    cache_dir: str = "data/cache"
    warmup_steps: int = 50
    weight_decay: float = 0.01
    checkpoint_every: int = 100
    caption_dropout: float = 0.1  # share of captions replaced by the empty caption (for guidance)
    val_count: int = 256  # val pairs in the val loss
    sample_count: int = 16  # val captions drawn for the grid
    sample_steps: int = 25  # DDIM steps for the grid
    # init_from: a diffusion folder (final/ or a checkpoint) of the same layout, e.g. to go on
    # with another prediction_type

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.caption_dropout < 1:
            raise ValueError(f"caption_dropout={self.caption_dropout} must be in [0, 1)")
        check_image_sizes(self.model.image_size, data=self.data, val_data=self.val_data)


def make_batch(data: PairData, cfg: DiffusionTrainConfig, step: int, rows: np.ndarray | None = None):
    """Step `step`'s (x0, text_ids, noise, timesteps), a pure function of (seed, step);
    `rows` fixes the examples (the val loss), otherwise they are drawn."""
    from mini_t2i.text.special_ids import empty_caption

    g = step_generator(cfg.seed, step)
    if rows is None:
        rows = np.sort(torch.randperm(len(data.text_ids), generator=g)[: cfg.batch_size].numpy())
    x0 = pixels_from_uint8(np.asarray(data.images[rows]), cfg.model.image_size)
    text_ids = data.text_ids[torch.from_numpy(rows)].clone()
    dropped = torch.rand(len(rows), generator=g) < cfg.caption_dropout
    text_ids[dropped] = empty_caption(text_ids.shape[1])
    noise = torch.randn(x0.shape, generator=g)
    timesteps = torch.randint(0, cfg.model.num_train_timesteps, (len(rows),), generator=g)
    return x0, text_ids, noise, timesteps


def diffusion_loss(model: DiffusionModel, scheduler, batch) -> torch.Tensor:
    """DDPM's simple loss: the mean squared error of the prediction (v or the noise)."""
    x0, text_ids, noise, timesteps = batch
    noisy = scheduler.add_noise(x0, noise, timesteps)
    if model.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(x0, noise, timesteps)
    else:
        target = noise
    return F.mse_loss(model(noisy, timesteps, text_ids), target)


def train_step(model, optimizer, scheduler, batch, cfg: DiffusionTrainConfig, step: int) -> dict:
    for group in optimizer.param_groups:
        group["lr"] = cfg.learning_rate(step)
    device = model.device
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16(cfg.precision, device)):
        loss = diffusion_loss(model, scheduler, [t.to(device) for t in batch])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or float("inf"))
    optimizer.step()
    return {"loss": loss.item(), "grad_norm": float(grad_norm)}


@torch.no_grad()
def val_loss(model, scheduler, data: PairData, cfg: DiffusionTrainConfig) -> float:
    """Mean loss over the first val_count val pairs, fixed noise and timesteps, no dropout."""
    fixed = replace(cfg, caption_dropout=0.0, seed=cfg.seed + 1)
    rows = np.arange(min(cfg.val_count, len(data.text_ids)))
    losses = []
    for start in range(0, len(rows), cfg.batch_size):
        chunk = rows[start:start + cfg.batch_size]
        batch = [t.to(model.device) for t in make_batch(data, fixed, start, chunk)]
        losses.append(diffusion_loss(model, scheduler, batch).item() * len(chunk))
    return sum(losses) / len(rows)


def _evaluate(model, scheduler, val_data: PairData, cfg: DiffusionTrainConfig, step: int, run_dir: Path) -> dict:
    from PIL import Image

    from mini_t2i.diffusion.sampler import sample_images
    from mini_t2i.pixels import image_grid

    model.eval()
    metrics = {"step": step, "split": "val", "val_loss": val_loss(model, scheduler, val_data, cfg)}
    count = min(cfg.sample_count, len(val_data.text_ids))
    if count:
        samples = sample_images(model, val_data.text_ids[:count], list(range(count)), num_steps=cfg.sample_steps)
        real = [Image.fromarray(a) for a in val_data.images[:count]]
        (run_dir / "samples").mkdir(exist_ok=True)
        image_grid(real + [Image.fromarray(a) for a in samples], columns=count).save(
            run_dir / "samples" / f"step_{step:08d}.png")  # real images above samples
    model.train()
    return metrics


def train_diffusion(cfg: DiffusionTrainConfig, is_verbose: bool = True) -> Path:
    """Train (or resume) the baseline; returns run_dir/final (model.safetensors, config.yaml, eval.json)."""
    device, run_dir, cfg, _, train_data, val_data = start_pair_run(cfg, is_verbose)
    model = DiffusionModel(cfg.model, seed=cfg.seed).to(device)
    if cfg.init_from:  # the same layout; the prediction type may differ
        copy_weights(DiffusionModel.from_pretrained(cfg.init_from), model, cfg.init_from,
                     same=lambda theirs, ours: replace(theirs, prediction_type=ours.prediction_type) == ours)
    scheduler = make_scheduler(cfg.model, "ddpm")
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)
    start = resume_training_checkpoint(run_dir, model, optimizer) if cfg.resume else 0
    log = RunLog(run_dir, start)
    save_config(cfg, run_dir / "config.yaml")
    if is_verbose:
        print(f"train pairs: {len(train_data.texts)}; {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M "
              f"parameters" + (f"; resumed from step {start}" if start else ""))

    model.train()
    bar = progress(cfg, start, "diffusion", is_verbose)
    for step in bar:
        out = train_step(model, optimizer, scheduler, make_batch(train_data, cfg, step), cfg, step)
        log.count(cfg.batch_size)
        done = step + 1
        if cfg.is_log_step(done):
            rate = log.write_train(done, cfg.learning_rate(step), out, "images")
            bar.set_postfix(loss=f"{out['loss']:.4f}", img_s=f"{rate:.0f}")
        if cfg.is_eval_step(done):
            log.write(_evaluate(model, scheduler, val_data, cfg, done, run_dir))
        if cfg.is_checkpoint_step(done):
            save_training_checkpoint(run_dir, done, model, optimizer, cfg, cfg.keep_checkpoints)

    metrics = _evaluate(model, scheduler, val_data, cfg, cfg.end_step, run_dir)
    log.write(metrics)
    final = save_final(run_dir, lambda folder: model.save_pretrained(folder, stage_config=cfg), metrics)
    log.close()
    if is_verbose:
        print(json.dumps(metrics))
    return final
