"""Train the VQ image tokenizer (stage 1).

    mini-t2i train vq --config configs/vq_shapes64.yaml [key=value ...]

The data is decoded once into a uint8 cache (`mini_t2i.data.cache`); the batch of
step s is a pure function of (seed, s), and everything else that changes during
training (weights, the codebook's usage EMA, AdamW's moments, the step) is in the
checkpoint, so a run killed at any point resumes to the same weights bit for bit
on the same machine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mini_t2i.checkpoint import resume_training_checkpoint, save_training_checkpoint
from mini_t2i.config import save_config
from mini_t2i.data.config import DataConfig, check_image_sizes
from mini_t2i.runtime import setup_runtime
from mini_t2i.training import RunConfig, RunLog, copy_weights, progress, save_final, step_generator, use_bf16
from mini_t2i.pixels import tensor_from_uint8
from mini_t2i.vq.adversarial import adaptive_gan_weight, hinge_discriminator_loss
from mini_t2i.vq.model import VQModel, VQModelConfig


@dataclass
class VQTrainConfig(RunConfig):
    data: DataConfig = field(default_factory=lambda: DataConfig(source="shapes", split="train", count=20000))
    val_data: DataConfig = field(default_factory=lambda: DataConfig(source="shapes", split="val", count=256))
    model: VQModelConfig = field(default_factory=VQModelConfig)
    run_dir: str = "runs/vq"
    cache_dir: str = "data/cache"  # decoded-image caches, shared between runs
    steps: int = 3000
    log_every: int = 50
    checkpoint_every: int = 500
    l1_weight: float = 1.0  # pixel losses on [-1, 1] images; L1 keeps edges sharper than MSE
    mse_weight: float = 0.0
    edge_weight: float = 0.0  # extra L1 weight on pixels at colour edges (small shapes live there)
    hflip: bool = True  # random horizontal flips: every Shapes World shape is mirror-symmetric
    # The VQGAN recipe (mini_t2i/vq/adversarial.py): an ImageNet EfficientNet-Lite0 feature
    # distance, and a patch discriminator from step disc_start with VQGAN's adaptive weight
    # times disc_weight (0 = no discriminator); its AdamW group runs at disc_lr_scale x lr.
    perceptual_weight: float = 0.0
    disc_weight: float = 0.0
    disc_start: int = 0
    disc_channels: int = 64
    disc_lr_scale: float = 1.0
    # init_from: a saved VQ tokenizer of the same model config (fine-tuning, e.g. on new data)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_image_sizes(self.model.image_size, data=self.data, val_data=self.val_data)
        for name in ("perceptual_weight", "disc_weight", "disc_start", "disc_lr_scale"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")


def batch_for_step(images: np.ndarray, cfg: VQTrainConfig, step: int) -> torch.Tensor:
    """The training batch of `step`: a pure function of (seed, step), so resume is exact.
    Returns (B, 3, H, W) float in [-1, 1]."""
    g = step_generator(cfg.seed, step)
    idx = torch.randint(0, len(images), (cfg.batch_size,), generator=g).numpy()
    x = tensor_from_uint8(torch.from_numpy(images[np.sort(idx)]))  # sorted: sequential memmap reads
    if cfg.hflip:
        flip = torch.rand(cfg.batch_size, generator=g) < 0.5
        x[flip] = x[flip].flip(-1)
    return x


def edge_weights(x: torch.Tensor, edge_weight: float) -> torch.Tensor:
    """(B, 3, H, W) -> per-pixel loss weights (B, 1, H, W): 1 + edge_weight where the 3x3
    neighbourhood's colour range is large (an edge), 1 elsewhere. Flat regions are most of
    an image and easy; the edges carry the shapes, so this is where the loss should look."""
    spread = F.max_pool2d(x, 3, 1, 1) + F.max_pool2d(-x, 3, 1, 1)  # (B, 3, H, W) max - min
    return 1.0 + edge_weight * (spread.amax(dim=1, keepdim=True) > 0.1).float()


def train_step(model: VQModel, optimizer: torch.optim.Optimizer, x: torch.Tensor, cfg: VQTrainConfig, step: int,
               perceptual=None, disc=None) -> dict:
    """One optimizer step on batch x (B, 3, H, W); returns the losses as floats. `perceptual`
    (a PerceptualLoss) and `disc` (a PatchDiscriminator in the optimizer's second group) add
    the VQGAN losses of mini_t2i/vq/adversarial.py."""
    for group in optimizer.param_groups:
        group["lr"] = cfg.learning_rate(step) * group.get("lr_scale", 1.0)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=use_bf16(cfg.precision, x.device)):
        recon, _, vq_loss = model(x)
    recon = recon.float()
    l1, mse = F.l1_loss(recon, x), F.mse_loss(recon, x)
    if cfg.edge_weight > 0:
        w = edge_weights(x, cfg.edge_weight)
        pixel_l1 = (w * (recon - x).abs()).mean() / w.mean()
    else:
        pixel_l1 = l1
    nll = cfg.l1_weight * pixel_l1 + cfg.mse_weight * mse  # the reconstruction loss
    out = {}
    if perceptual is not None and cfg.perceptual_weight > 0:
        p_loss = perceptual(recon, x)
        nll = nll + cfg.perceptual_weight * p_loss
        out["perceptual"] = p_loss.item()
    loss = nll + vq_loss
    gan_on = disc is not None and step >= cfg.disc_start
    if gan_on:
        g_loss = -disc(recon).mean()  # the generator side: reconstructions that pass as real
        lam = adaptive_gan_weight(nll, g_loss, model.decoder.out.weight) * cfg.disc_weight
        loss = loss + lam * g_loss
        out.update(g_loss=g_loss.item(), gan_weight=lam.item())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if disc is not None:
        for p in disc.parameters():
            p.grad = None  # g_loss reached the discriminator too; its own step comes next
        if gan_on:
            d_loss = hinge_discriminator_loss(disc(x), disc(recon.detach()))
            d_loss.backward()
            out["d_loss"] = d_loss.item()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        if disc is not None:
            torch.nn.utils.clip_grad_norm_(disc.parameters(), cfg.grad_clip)
    optimizer.step()
    restarted = 0
    if model.config.restart_every and (step + 1) % model.config.restart_every == 0:
        # A stream of its own (not step_generator's, which drew this step's batch), so that
        # restarting codes does not change which images later steps see.
        g = torch.Generator().manual_seed(cfg.seed * 7_919 + step)
        restarted = model.quantizer.restart_dead_codes(generator=g)
    return {"loss": loss.item(), "l1": l1.item(), "mse": mse.item(), "vq": vq_loss.item(), "restarted": restarted,
            **out}


def make_optimizer(model: VQModel, cfg: VQTrainConfig, disc=None) -> torch.optim.Optimizer:
    """AdamW over the tokenizer; with a discriminator, a second group for it at
    disc_lr_scale x the learning rate with VQGAN's betas (0.5, 0.9)."""
    groups = [{"params": list(model.parameters()), "lr_scale": 1.0}]
    if disc is not None:
        groups.append({"params": list(disc.parameters()), "lr_scale": cfg.disc_lr_scale, "betas": (0.5, 0.9)})
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)


def train_vq(cfg: VQTrainConfig, is_verbose: bool = True) -> Path:
    """Train (or resume) a VQ tokenizer; returns the folder of the final tokenizer
    (``run_dir/final``: model.safetensors, config.yaml, eval.json)."""
    from tqdm.auto import tqdm

    from mini_t2i.data.cache import build_image_cache
    from mini_t2i.pixels import comparison_grid
    from mini_t2i.vq.evaluate import evaluate_vq, reconstruct

    device = setup_runtime(cfg.device, cfg.num_threads)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    train_data = build_image_cache(cfg.data, cfg.cache_dir, is_verbose)
    val_data = build_image_cache(cfg.val_data, cfg.cache_dir, is_verbose)
    if is_verbose:
        print(f"train images: {len(train_data)} (skipped {train_data.skipped}), val images: {len(val_data)}")

    torch.manual_seed(cfg.seed)
    model = VQModel(cfg.model).to(device)
    if cfg.init_from:
        copy_weights(VQModel.from_pretrained(cfg.init_from), model, cfg.init_from)
    perceptual = disc = None
    if cfg.perceptual_weight > 0:
        from mini_t2i.vq.adversarial import PerceptualLoss

        perceptual = PerceptualLoss().to(device)
    state_module = model  # what checkpoints hold: the tokenizer, and its discriminator when there is one
    if cfg.disc_weight > 0:
        from mini_t2i.vq.adversarial import PatchDiscriminator, VQWithDiscriminator

        disc = PatchDiscriminator(cfg.disc_channels).to(device)
        state_module = VQWithDiscriminator(model, disc)
    optimizer = make_optimizer(model, cfg, disc)
    start = resume_training_checkpoint(run_dir, state_module, optimizer) if cfg.resume else 0
    log = RunLog(run_dir, start)
    if start and is_verbose:
        print(f"resumed from step {start}")
    save_config(cfg, run_dir / "config.yaml")

    val_images = np.asarray(val_data.images)
    val_metas = val_data.metas if all(m is not None for m in val_data.metas) else None

    def evaluate(step: int) -> dict:
        metrics = evaluate_vq(model, val_images, val_metas)
        recons, _ = reconstruct(model, val_images[:32])
        (run_dir / "samples").mkdir(exist_ok=True)
        comparison_grid(val_images[:32], recons).save(run_dir / "samples" / f"step_{step:08d}.png")
        log.write({"step": step, "split": "val", **metrics})
        return metrics

    state_module.train()
    bar = progress(cfg, start, "vq", is_verbose)
    for step in bar:
        x = batch_for_step(train_data.images, cfg, step).to(device)
        losses = train_step(model, optimizer, x, cfg, step, perceptual, disc)
        log.count(len(x))
        done = step + 1
        if cfg.is_log_step(done):
            rate = log.write_train(done, cfg.learning_rate(step), losses, "images")
            bar.set_postfix(loss=f"{losses['loss']:.4f}", img_s=f"{rate:.0f}")
        if cfg.is_eval_step(done):
            m = evaluate(done)
            if is_verbose:
                acc = m.get("checker_reconstructions", {}).get("overall")
                tqdm.write(f"step {done}: psnr {m['psnr']:.2f} usage {m['usage']:.3f} ppl {m['perplexity']:.0f}"
                           + (f" checker {acc:.3f}" if acc is not None else ""))
        if cfg.is_checkpoint_step(done):
            save_training_checkpoint(run_dir, done, state_module, optimizer, cfg, cfg.keep_checkpoints)

    metrics = evaluate(cfg.end_step)
    final = save_final(run_dir, lambda folder: model.save_pretrained(folder, stage_config=cfg), metrics)
    log.close()
    if is_verbose:
        print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, dict)}))
        if "checker_reconstructions" in metrics:
            print(f"checker on reconstructions: {metrics['checker_reconstructions']['overall']:.3f} "
                  f"(ground truth {metrics['checker_ground_truth']['overall']:.3f})")
    return final
