"""Train the transformer (stage 2) on pre-tokenized shards.

    mini-t2i train transformer --config configs/transformer_shapes64.yaml [key=value ...]
    torchrun --nproc_per_node N -m mini_t2i.cli train transformer --config ... [parallel=fsdp]

The batch of step s is a pure function of (seed, s) (transformer/data.py). The checkpoint
holds the weights, AdamW's state, the RNG states and the step (= the data position), so a
run killed at any point resumes to the same weights bit for bit on the same machine.
`batch_size` is the global batch of one optimizer step: it is split over torchrun's
processes and then into `grad_accum` micro-batches, so the same config gives the same
training on 1 or N processes. The config (TransformerTrainConfig) and the data live in
transformer/config.py and transformer/data.py, shared with the JAX trainer.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mini_t2i.training import RunLog, progress, save_final, use_bf16
from mini_t2i.transformer.config import TransformerConfig, TransformerTrainConfig


def make_optimizer(model: torch.nn.Module, cfg: TransformerTrainConfig) -> torch.optim.Optimizer:
    """AdamW; weight decay on 2-d weights (matmuls, embeddings), none on norms."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, cfg.beta2))


def train_step(model, optimizer, model_cfg: TransformerConfig, batches, cfg: TransformerTrainConfig, step: int,
               device: torch.device, bf16: bool = False) -> dict:
    """One optimizer step over this process's micro-batches; returns losses as floats."""
    from mini_t2i.transformer.model import compute_loss

    for group in optimizer.param_groups:
        group["lr"] = cfg.learning_rate(step)
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


def train_transformer(cfg: TransformerTrainConfig, is_verbose: bool = True) -> Path:
    """Train (or resume) a transformer; returns the folder of the final model (run_dir/final)."""
    from tqdm.auto import tqdm

    from mini_t2i.checkpoint import write_checkpoint_dir
    from mini_t2i.config import save_config
    from mini_t2i.distributed import (all_reduce_mean, barrier, full_state, init_distributed, shutdown, unwrap,
                                      wrap_model)
    from mini_t2i.runtime import setup_runtime
    from mini_t2i.transformer.data import load_run_data, micro_batches
    from mini_t2i.transformer.evaluate import EvalSet, evaluate_during_training
    from mini_t2i.transformer.model import build_model, load_matching_transformer, parameter_count, save_transformer

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
    if cfg.init_from:  # fine-tuning: the saved model's preset wins over cfg.model
        model, model_cfg = load_matching_transformer(cfg.init_from, model_cfg)
    model = model.to(device)
    if is_verbose:
        print(f"train rows: {len(train_data)}, val rows: {len(val_data)}; model {model_cfg.preset} "
              f"{model_cfg.shape}: {parameter_count(model) / 1e6:.2f}M parameters, "
              f"sequence {model_cfg.text_len} + {model_cfg.image_len} tokens; {info.world_size} process(es)")
    bf16 = use_bf16(cfg.precision, device)
    model = wrap_model(model, info, cfg.parallel, device)
    optimizer = make_optimizer(model, cfg)
    start = _resume(run_dir, model, optimizer, cfg, info) if cfg.resume else 0
    log = RunLog(run_dir, start, is_main=info.is_main)
    if info.is_main:
        save_config(cfg, run_dir / "config.yaml")
        if start and is_verbose:
            print(f"resumed from step {start}")
    eval_set = EvalSet.build(val_data, cfg, device) if info.is_main else None

    def evaluate(step: int) -> dict:
        # FSDP shards must be gathered on every rank; the evaluation itself runs on rank 0.
        model_state = full_state(model, optimizer, cfg.parallel, info)[0] if info.enabled and cfg.parallel == "fsdp" else None
        record = {}
        if info.is_main:
            metrics = evaluate_during_training(unwrap(model), model_cfg, eval_set, run_dir, step, model_state, bf16)
            record = {"step": step, "split": "val", **metrics}
            log.write(record)
            if is_verbose:
                tqdm.write(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        barrier(info)
        return record

    model.train()
    tokens_per_row = model_cfg.sequence_length - 1
    bar = progress(cfg, start, "transformer", is_verbose)
    for step in bar:
        batches = micro_batches(cfg, train_data, step, info.rank, info.world_size)
        losses = train_step(model, optimizer, model_cfg, batches, cfg, step, device, bf16)
        log.count(cfg.batch_size * tokens_per_row)
        done = step + 1
        if cfg.is_log_step(done):
            losses = {k: all_reduce_mean(v, info, device) for k, v in losses.items()}
            rate = log.write_train(done, cfg.learning_rate(step), losses, "tokens")
            bar.set_postfix(loss=f"{losses['image_loss']:.4f}", tok_s=f"{rate:.0f}")
        if cfg.is_eval_step(done):
            evaluate(done)
            model.train()
        if cfg.is_checkpoint_step(done):
            model_state, optim_state = full_state(model, optimizer, cfg.parallel, info)
            if info.is_main:
                write_checkpoint_dir(run_dir, done, _checkpoint_files(cfg, done, info, model_state, optim_state),
                                     keep_last=cfg.keep_checkpoints)
            barrier(info)

    model_state = full_state(model, optimizer, cfg.parallel, info)[0]
    metrics = evaluate(cfg.end_step)
    final = run_dir / "final"
    if info.is_main:
        final_model = build_model(model_cfg)
        final_model.load_state_dict(model_state)
        save_final(run_dir, lambda folder: save_transformer(final_model, model_cfg, folder, stage_config=cfg), metrics)
    log.close()
    barrier(info)
    shutdown(info)
    return final
