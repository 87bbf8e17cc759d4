"""Training throughput of the transformer: the PyTorch trainer's step against the JAX one's.

    python -m mini_t2i.bench.training --preset mini --batch-size 32 --threads 2
    python -m mini_t2i.bench.training --backends jax --device gpu --preset small --batch-size 64
    XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m mini_t2i.bench.training --backends jax --parallel fsdp

Times whole optimizer steps (forward, backward, clipping, AdamW) of the two trainers' own
step functions on the same random batch, after --warmup steps (the JAX step compiles in the
first; that time is reported apart). tokens/s counts the tokens a step trains on
(batch x (sequence - 1)); model GFLOP/s uses 6 x parameters x tokens plus attention
(12 x layers x hidden x sequence per token), the usual estimate. Writes JSON (--out).
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from mini_t2i.report import write_report


def _settings(preset: str, batch_size: int, steps: int, parallel: str):
    from mini_t2i.transformer.config import SHAPES_LAYOUT, TransformerConfig
    from mini_t2i.transformer.config import TransformerTrainConfig

    model_cfg = TransformerConfig(preset=preset, **SHAPES_LAYOUT)
    train_cfg = TransformerTrainConfig(batch_size=batch_size, steps=1000, warmup_steps=10, parallel=parallel)
    g = np.random.default_rng(0)
    text = g.integers(4, model_cfg.text_vocab_size, (batch_size, model_cfg.text_len))
    images = g.integers(0, model_cfg.codebook_size, (batch_size, model_cfg.image_len))
    return model_cfg, train_cfg, text, images


def flops_per_token(model_cfg) -> float:
    """Training FLOPs per sequence token (of text_len + h*w - 1): 6 x the non-embedding
    parameters + the attention scores. For image_order=blocks the main transformer runs over
    main_length positions and the depth one over every image token (k*k at a time)."""
    from mini_t2i.transformer.config import config_parameter_count, layer_parameter_count

    layers, hidden, _ = model_cfg.shape
    tokens = model_cfg.sequence_length - 1
    if model_cfg.image_order == "blocks":
        per_layer = layer_parameter_count(hidden)
        main, depth = layers * per_layer, model_cfg.depth_layers * per_layer + model_cfg.codebook_size * hidden
        length, inner = model_cfg.main_length, model_cfg.block_len
        row = (6 * main * length + 12 * layers * hidden * length ** 2
               + (6 * depth + 12 * model_cfg.depth_layers * hidden * inner) * model_cfg.image_len)
        return row / tokens
    params = config_parameter_count(model_cfg) - model_cfg.vocab_size * hidden  # embedding lookups are free
    return 6 * params + 12 * layers * hidden * model_cfg.sequence_length


def _timed(step, warmup: int, steps: int) -> tuple[float, float]:
    """(seconds of the first call, best-of-3 mean seconds per step over `steps` calls)."""
    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    for _ in range(warmup - 1):
        step()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, (time.perf_counter() - t0) / steps)
    return first, best


def bench_torch(preset: str, batch_size: int, steps: int, warmup: int, threads: int, device: str) -> dict:
    import torch

    from mini_t2i.runtime import setup_runtime
    from mini_t2i.transformer.model import build_model
    from mini_t2i.transformer.train import make_optimizer, train_step, use_bf16

    dev = setup_runtime(device, threads)
    model_cfg, cfg, text, images = _settings(preset, batch_size, steps, "ddp")
    model = build_model(model_cfg, seed=0).to(dev).train()
    optimizer = make_optimizer(model, cfg)
    batches = [(torch.from_numpy(text), torch.from_numpy(images))]
    bf16 = use_bf16(cfg, dev)

    def step():
        train_step(model, optimizer, model_cfg, batches, cfg, 0, dev, bf16)
        if dev.type == "cuda":
            torch.cuda.synchronize()
    first, seconds = _timed(step, warmup, steps)
    return {"backend": "torch", "device": f"{dev.type} x1", "threads": torch.get_num_threads(),
            "precision": "bf16" if bf16 else "fp32", "parallel": "-", "first_step_s": first, "step_s": seconds}


def bench_jax(preset: str, batch_size: int, steps: int, warmup: int, device: str, parallel: str) -> dict:
    import jax

    from mini_t2i.transformer_jax import sharding as sh
    from mini_t2i.transformer_jax.model import init_params
    from mini_t2i.transformer_jax.step import init_state, jit_train_step, make_optimizer
    from mini_t2i.transformer_jax.train import compute_dtype, select_devices

    model_cfg, cfg, text, images = _settings(preset, batch_size, steps, parallel)
    devices = select_devices(device)
    mesh = sh.make_mesh(devices)
    optimizer = make_optimizer(cfg)
    dtype = compute_dtype(cfg, devices)
    abstract = jax.eval_shape(lambda: init_state(init_params(model_cfg), optimizer))
    shardings = sh.state_shardings(abstract, mesh, parallel)
    state = jax.jit(lambda: init_state(init_params(model_cfg, 0), optimizer), out_shardings=shardings)()
    train_step = jit_train_step(model_cfg, optimizer, 0.0, dtype, shardings, sh.batch_sharding(mesh))
    batch = (sh.global_batch(text[None].astype(np.int32), mesh), sh.global_batch(images[None].astype(np.int32), mesh))
    holder = [state]

    def step():
        holder[0], metrics = train_step(holder[0], *batch)
        jax.block_until_ready(metrics)
    first, seconds = _timed(step, warmup, steps)
    return {"backend": "jax", "device": f"{devices[0].platform} x{len(devices)}", "threads": "XLA",
            "precision": jax.numpy.dtype(dtype).name.replace("float32", "fp32").replace("bfloat16", "bf16"),
            "parallel": parallel, "first_step_s": first, "step_s": seconds}


def run(preset: str, batch_size: int, steps: int, warmup: int, backends: list[str], threads: int,
        torch_device: str, jax_device: str, parallel: str) -> dict:
    from mini_t2i.transformer.config import SHAPES_LAYOUT, TransformerConfig, preset_parameter_count

    model_cfg = TransformerConfig(preset=preset, **SHAPES_LAYOUT)
    tokens = batch_size * (model_cfg.sequence_length - 1)
    rows = []
    for backend in backends:
        row = (bench_torch(preset, batch_size, steps, warmup, threads, torch_device) if backend == "torch"
               else bench_jax(preset, batch_size, steps, warmup, jax_device, parallel))
        row["tokens_per_s"] = tokens / row["step_s"]
        row["model_gflops_per_s"] = flops_per_token(model_cfg) * row["tokens_per_s"] / 1e9
        rows.append(row)
    return {"preset": preset, "parameters": preset_parameter_count(preset), "batch_size": batch_size,
            "tokens_per_step": tokens, "cpu": platform.processor() or platform.machine(), "results": rows}


def format_table(report: dict) -> str:
    lines = [f"transformer {report['preset']} ({report['parameters'] / 1e6:.2f}M params), batch {report['batch_size']}"
             f" x {report['tokens_per_step'] // report['batch_size']} tokens, one optimizer step (AdamW)",
             "| backend | device | threads | precision | parallel | first step s | s / step | tokens/s | model GFLOP/s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        lines.append(f"| {r['backend']} | {r['device']} | {r['threads']} | {r['precision']} | {r['parallel']} | "
                     f"{r['first_step_s']:.1f} | {r['step_s']:.3f} | {r['tokens_per_s']:.0f} | "
                     f"{r['model_gflops_per_s']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per repeat (best of 3 repeats)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (the JAX step compiles)")
    parser.add_argument("--backends", nargs="+", default=["torch", "jax"], choices=["torch", "jax"])
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--device", default="auto", help="torch: auto | cpu | cuda; jax: auto | cpu | gpu | tpu")
    parser.add_argument("--parallel", default="ddp", choices=["ddp", "fsdp"], help="the JAX mesh's mode")
    parser.add_argument("--out", default="runs/bench/training.json")
    args = parser.parse_args(argv)
    torch_device = "cuda" if args.device == "gpu" else ("auto" if args.device == "tpu" else args.device)
    jax_device = "gpu" if args.device == "cuda" else args.device
    report = run(args.preset, args.batch_size, args.steps, args.warmup, args.backends, args.threads,
                 torch_device, jax_device, args.parallel)
    write_report(report, format_table(report), args.out)


if __name__ == "__main__":
    main()
