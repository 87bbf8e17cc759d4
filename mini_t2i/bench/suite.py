"""`mini-t2i bench`: how fast sampling and training are, against what this machine can do.

    mini-t2i bench                       # the full run (~10 min on 2 cores): shipped shapes64, presets
    mini-t2i bench --quick               # a tiny model, seconds; the same JSON keys (CI runs it)
    python -m mini_t2i.bench --threads 2 --out docs/bench.json

One run measures, and writes to one JSON file (and prints as tables):
  machine   fp32 / bf16 matmul peak, memory read and copy bandwidth (bench/machine.py);
  sampling  per model, tokens/s and images/s at batch 1, 8, 32 with and without CFG, for
            the fast decoder and, as the reference measured in the same run, the uncached
            Llama forward (so every speedup is a ratio of two numbers taken together);
            decode-step latency; FLOPs per image (FlopCounterMode) and achieved GFLOP/s at
            the largest batch as a fraction of the fp32 peak; weight bytes read per decode
            step and the achieved bandwidth at batch 1 as a fraction of the read bandwidth;
  training  tokens/s of a PyTorch optimizer step and MFU (model FLOPs / fp32 peak);
  generate  for a pipeline (shipped shapes64): one full `pipe(prompt)` with its candidates,
            the time of each part (prefill, decode, VQ decode, reranking) and its share,
            and the time to the first streamed preview.
"""

from __future__ import annotations

import argparse
import time

import torch

from mini_t2i.bench.machine import best_seconds
from mini_t2i.report import write_report
from mini_t2i.transformer.config import DECODE_WEIGHTS

GUIDED = 3.0  # the CFG rows use this scale; 1.0 rows are plain conditional sampling


def cpu_formats() -> tuple[str, ...]:
    """The fast decoder's weight formats that run here, all timed on a CPU: "fused" where its C
    step builds (transformer/fused.py)."""
    from mini_t2i.transformer.fused import fused_available

    return tuple(w for w in DECODE_WEIGHTS if w != "fused" or fused_available()[0])


def weight_bytes_per_step(model, cfg, weights: str = "fp32") -> int:
    """Bytes of weights one decode step reads: every matrix and norm, the image rows of the
    head, and one embedding row per sequence (negligible, left out). For image_order=blocks
    the mean over a block's steps: the main transformer once a block, the depth one and its
    head every step. weights="int8": matrices at 1 byte plus a 4-byte scale per output row,
    norms as they are (quantize.py); "fp16" and "fused": matrices at 2 bytes. (The fused step's
    fp16 KV cache is read too, as every format's cache is, and is not counted.)"""
    _, hidden, _ = cfg.shape
    size = next(model.parameters()).element_size()

    def count(module, skip=()) -> float:  # bytes of module's weights, embeddings left out
        total = 0.0
        for name, p in module.named_parameters():
            if name in skip or "embed_tokens" in name:
                continue
            if p.dim() == 2 and weights == "int8":
                total += p.numel() + 4 * p.shape[0]
            elif p.dim() == 2 and weights in ("fp16", "fused"):
                total += 2 * p.numel()
            else:
                total += size * p.numel()
        return total

    head = 1 + 4 / hidden if weights == "int8" else 2 if weights in ("fp16", "fused") else size  # bytes per head weight
    if cfg.image_order == "blocks":
        return int(count(model.model) / cfg.block_len + count(model.depth) + model.head.weight.numel() * head)
    return int(count(model, skip=("lm_head.weight",)) + cfg.codebook_size * hidden * head)


def flops_per_image(model, cfg, guidance_scale: float) -> float:
    """FLOPs of sampling one image (prefill + every decode step), counted by FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    from mini_t2i.transformer.sampler import sample_image_tokens

    text = torch.randint(4, cfg.text_vocab_size, (1, cfg.text_len), device=model.device)
    with FlopCounterMode(display=False) as counter:
        sample_image_tokens(model, cfg, text, [0], guidance_scale=guidance_scale)
    return float(counter.get_total_flops())


def sampling_rows(model, cfg, batch_sizes, uncached_batches, repeats: int, top_k: int = 0,
                  weight_formats: tuple[str, ...] = ("fp32",)) -> list[dict]:
    from mini_t2i.transformer.sampler import sample_image_tokens

    rows = []
    engines = [("decoder", w, batch_sizes) for w in weight_formats] + [("uncached", "fp32", uncached_batches)]
    for batch in sorted(set(batch_sizes) | set(uncached_batches)):
        for engine, weights, batches in engines:  # interleaved: the formats' ratios come from one moment
            if batch not in batches:
                continue
            for guidance in (1.0, GUIDED):
                text = torch.randint(4, cfg.text_vocab_size, (batch, cfg.text_len), device=model.device)
                run = lambda: sample_image_tokens(model, cfg, text, list(range(batch)), top_k=top_k,  # noqa: E731
                                                  guidance_scale=guidance, use_cache=engine == "decoder",
                                                  decode_weights=weights)
                seconds = best_seconds(run, repeats) if engine == "decoder" else best_seconds(run, 1, warmup=False)
                rows.append({"engine": engine, "decode_weights": weights, "batch_size": batch,
                             "guidance_scale": guidance, "seconds": seconds,
                             "tokens_per_s": batch * cfg.image_len / seconds, "images_per_s": batch / seconds,
                             "decode_step_ms": 1000 * seconds / cfg.image_len})
    for row in rows:  # speedup over the uncached reference at the same batch and guidance, when measured
        ref = [r for r in rows if r["engine"] == "uncached" and r["batch_size"] == row["batch_size"]
               and r["guidance_scale"] == row["guidance_scale"]]
        row["speedup_vs_uncached"] = ref[0]["seconds"] / row["seconds"] if ref else None
    return rows


def _row(rows, batch: int, guidance: float, weights: str = "fp32") -> dict:
    return next(r for r in rows if r["engine"] == "decoder" and r["batch_size"] == batch
                and r["guidance_scale"] == guidance and r["decode_weights"] == weights)


def bench_model(name: str, model, cfg, machine: dict, batch_sizes, uncached_batches, repeats: int,
                train_batch: int, top_k: int = 0) -> dict:
    from mini_t2i.bench.training import flops_per_token
    from mini_t2i.transformer.model import parameter_count

    formats = cpu_formats() if model.device.type == "cpu" else ("fp32",)  # the small formats are CPU kernels
    rows = sampling_rows(model, cfg, batch_sizes, uncached_batches, repeats, top_k, formats)
    flops = {g: flops_per_image(model, cfg, g) for g in (1.0, GUIDED)}
    largest = max(batch_sizes)
    compute = {}
    for g in (1.0, GUIDED):
        row = _row(rows, largest, g)
        gflops = flops[g] * row["images_per_s"] / 1e9
        compute[f"cfg_{g:g}"] = {"batch_size": largest, "gflops_per_s": gflops,
                                 "fraction_of_fp32_peak": gflops / machine["fp32_matmul_gflops"]}
    step_bytes = {w: weight_bytes_per_step(model, cfg, w) for w in formats}
    bandwidth = {}  # per weight format: the batch-1 step against one read of its weights
    for w in formats:
        bandwidth[w] = {"guidance_cost": _row(rows, 1, GUIDED, w)["seconds"] / _row(rows, 1, 1.0, w)["seconds"]}
        for g in (1.0, GUIDED):
            gb_s = step_bytes[w] / (_row(rows, 1, g, w)["decode_step_ms"] / 1000) / 1e9
            bandwidth[w][f"cfg_{g:g}"] = {"gb_per_s": gb_s, "fraction_of_read_bandwidth": gb_s / machine["memory_read_gb_s"]}
    training = _training(model, cfg, train_batch)
    training["model_gflops_per_s"] = flops_per_token(cfg) * training["tokens_per_s"] / 1e9
    peak = machine["bf16_matmul_gflops" if training["precision"] == "bf16" else "fp32_matmul_gflops"]
    training["mfu"] = training["model_gflops_per_s"] / peak  # against the peak of the precision it trains in
    return {"name": name, "preset": cfg.preset, "image_order": cfg.image_order, "shape": list(cfg.shape),
            "codebook_size": cfg.codebook_size, "text_len": cfg.text_len, "text_vocab_size": cfg.text_vocab_size,
            "top_k": top_k, "image_tokens": cfg.image_len, "parameters": parameter_count(model), "sampling": rows,
            "flops_per_image": {f"cfg_{g:g}": f for g, f in flops.items()}, "compute_at_largest_batch": compute,
            "weight_bytes_per_decode_step": step_bytes["fp32"], "weight_bytes_per_decode_step_by_format": step_bytes,
            "bandwidth_at_batch_1": bandwidth, "training": training}


def _training(model, cfg, batch: int) -> dict:
    """One AdamW step of the PyTorch trainer on a copy of the model, timed."""
    import copy

    from mini_t2i.transformer.config import TransformerTrainConfig
    from mini_t2i.transformer.train import make_optimizer, train_step, use_bf16

    train_model = copy.deepcopy(model).float().train()
    train_cfg = TransformerTrainConfig(batch_size=batch, steps=1000, warmup_steps=10)
    optimizer = make_optimizer(train_model, train_cfg)
    device = next(train_model.parameters()).device
    text = torch.randint(4, cfg.text_vocab_size, (batch, cfg.text_len), device=device)
    images = torch.randint(0, cfg.codebook_size, (batch, cfg.image_len), device=device)
    bf16 = use_bf16(train_cfg, device)  # bf16 autocast on GPUs that have it, as the trainer does
    seconds = best_seconds(lambda: train_step(train_model, optimizer, cfg, [(text, images)], train_cfg, 0, device, bf16), 2)
    return {"batch_size": batch, "step_s": seconds, "tokens_per_s": batch * (cfg.sequence_length - 1) / seconds,
            "precision": "bf16" if bf16 else "fp32"}


def bench_generate(pipe, num_candidates: int, repeats: int) -> dict:
    """A full `pipe(prompt)` and its parts, timed alone at the same batch."""
    from mini_t2i.transformer.decoder import decoders
    from mini_t2i.transformer.sampler import sample_image_tokens

    prompt = "a red circle above a blue square"
    cfg, settings = pipe.transformer_config, pipe.sampling_settings()
    total = best_seconds(lambda: pipe(prompt, num_images=1, num_candidates=num_candidates), repeats)
    _, text = pipe.encode_prompts(prompt)
    rows = text.repeat(num_candidates, 1)
    guided = settings["guidance_scale"] != 1.0
    rows = rows.to(pipe.device)
    prompt_ids = rows.repeat(2 if guided else 1, 1)
    decoder = decoders(cfg)[0](pipe.transformer, cfg, max_batch=prompt_ids.shape[0])
    prefill = best_seconds(lambda: decoder.prefill(prompt_ids), repeats)
    sample = lambda: sample_image_tokens(pipe.transformer, cfg, rows, list(range(num_candidates)),  # noqa: E731
                                         **settings)
    sampling = best_seconds(sample, repeats)
    tokens = sample()
    vq = best_seconds(lambda: pipe.decode(tokens), repeats)
    images = pipe.decode(tokens)
    rerank = best_seconds(lambda: pipe.score(images, rows), repeats) if pipe.reranker is not None else 0.0
    parts = {"prefill": prefill, "decode": sampling - prefill, "vq_decode": vq, "rerank": rerank}
    t0 = time.perf_counter()
    for item in pipe.stream(prompt, num_images=1, num_candidates=num_candidates, preview_every=cfg.grid_size):
        first_preview = time.perf_counter() - t0
        break
    return {"prompt": prompt, "num_candidates": num_candidates, "sampling": settings, "total_s": total,
            "parts_s": parts, "shares": {k: v / sum(parts.values()) for k, v in parts.items()},
            "other_s": total - sum(parts.values()), "first_preview_s": first_preview,
            "first_preview_tokens": cfg.grid_size}


def run_suite(quick: bool = False, model: str = "shapes64", presets: list[str] | None = None,
              threads: int = 0, device: str = "cpu") -> dict:
    from mini_t2i.bench.machine import measure_machine
    from mini_t2i.bench.sampling import PEERS_LAYOUT
    from mini_t2i.config import config_to_dict
    from mini_t2i.pipeline.pipeline import TextToImagePipeline
    from mini_t2i.runtime import setup_runtime
    from mini_t2i.transformer.config import SHAPES_LAYOUT, TransformerConfig
    from mini_t2i.transformer.model import build_model

    dev = setup_runtime(device, threads)
    machine = measure_machine(quick, str(dev.type))
    pipe = TextToImagePipeline.from_pretrained(model, device=str(dev))
    if quick:  # a tiny random model over the Shapes World layout: the same code paths, seconds
        tiny_cfg = TransformerConfig(preset="tiny", **SHAPES_LAYOUT)
        blocks_cfg = TransformerConfig(preset="tiny", image_order="blocks", **SHAPES_LAYOUT)
        models = [(name, build_model(c, seed=0).to(dev).eval(), c, 0)
                  for name, c in (("tiny (random)", tiny_cfg), ("tiny blocks (random)", blocks_cfg))]
        batch_sizes, uncached, repeats, train_batch, candidates = [1, 2], [1], 2, 4, 2
    else:
        models = [(model, pipe.transformer, pipe.transformer_config, 0)]
        # the other image order at the shipped model's shape, so both designs are timed in one run
        shipped = pipe.transformer_config
        other = TransformerConfig(**{**config_to_dict(shipped), "image_positions": "rope",
                                     "image_order": "raster" if shipped.image_order == "blocks" else "blocks"})
        models.append((f"{other.preset} {other.image_order} (random)", build_model(other, seed=0).to(dev).eval(),
                       other, 0))
        for preset in presets if presets is not None else ["small"]:
            # the peers' configuration (issue 21): 64 caption positions of 16,384 text ids, 16,384
            # codes (VQGAN's), 256 image tokens, top-k 256
            preset_cfg = TransformerConfig(preset=preset, **{**SHAPES_LAYOUT, **PEERS_LAYOUT})
            models.append((f"{preset} (random, peers' layout)", build_model(preset_cfg, seed=0).to(dev).eval(),
                           preset_cfg, 256))
        batch_sizes, uncached, repeats, train_batch, candidates = [1, 8, 32], [1, 8], 1, 32, 8
    results = []
    for i, (name, net, cfg, top_k) in enumerate(models):
        results.append(bench_model(name, net, cfg, machine, batch_sizes, uncached if i == 0 else uncached[:1],
                                   repeats, train_batch, top_k))
    return {"quick": quick, "machine": machine, "models": results,
            "generate": {"model": model, **bench_generate(pipe, candidates, repeats)}}


def format_tables(report: dict) -> str:
    m = report["machine"]
    lines = [f"machine: {m['cpu']}, {m['threads']} threads, torch {m['torch']}: fp32 matmul "
             f"{m['fp32_matmul_gflops']:.0f} GFLOP/s, bf16 {m['bf16_matmul_gflops']:.0f} "
             f"({'fast' if m['bf16_is_fast'] else 'slow'}), memory read {m['memory_read_gb_s']:.1f} GB/s, "
             f"copy {m['memory_copy_gb_s']:.1f} GB/s", ""]
    for r in report["models"]:
        lines += [f"{r['name']}: {r['preset']} {tuple(r['shape'])} {r.get('image_order', 'raster')}, "
                  f"{r['parameters'] / 1e6:.2f}M params, "
                  f"{r['codebook_size']} codes, {r['image_tokens']} image tokens, {r['text_len']} caption positions, "
                  f"top-k {r['top_k'] or 'off'}",
                  "| engine | weights | batch | CFG | s / batch | tokens/s | images/s | step ms | vs uncached |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for s in r["sampling"]:
            speedup = f"{s['speedup_vs_uncached']:.1f}x" if s["speedup_vs_uncached"] else "-"
            lines.append(f"| {s['engine']} | {s['decode_weights']} | {s['batch_size']} | {s['guidance_scale']:g} | "
                         f"{s['seconds']:.2f} | {s['tokens_per_s']:.0f} | {s['images_per_s']:.2f} | "
                         f"{s['decode_step_ms']:.2f} | {speedup} |")
        c, b, t = r["compute_at_largest_batch"], r["bandwidth_at_batch_1"], r["training"]
        f = r["flops_per_image"]
        lines += ["", f"- FLOPs per image: {f['cfg_1'] / 1e9:.2f} G (CFG {f[f'cfg_{GUIDED:g}'] / 1e9:.2f} G); at batch "
                  f"{c['cfg_1']['batch_size']}: {c['cfg_1']['gflops_per_s']:.0f} GFLOP/s = "
                  f"{100 * c['cfg_1']['fraction_of_fp32_peak']:.0f} % of the fp32 peak (CFG: "
                  f"{100 * c[f'cfg_{GUIDED:g}']['fraction_of_fp32_peak']:.0f} %)",
                  *[f"- {w} weights read per decode step: {r['weight_bytes_per_decode_step_by_format'][w] / 1e6:.1f} MB; "
                    f"at batch 1: {b[w]['cfg_1']['gb_per_s']:.1f} GB/s = "
                    f"{100 * b[w]['cfg_1']['fraction_of_read_bandwidth']:.0f} % of the read bandwidth (CFG, 2 rows: "
                    f"{100 * b[w][f'cfg_{GUIDED:g}']['fraction_of_read_bandwidth']:.0f} %); CFG costs "
                    f"{b[w]['guidance_cost']:.2f}x no CFG" for w in b],
                  f"- training (PyTorch, {t['precision']}, batch {t['batch_size']}): {t['tokens_per_s']:.0f} tokens/s, "
                  f"{t['model_gflops_per_s']:.0f} model GFLOP/s, MFU {100 * t['mfu']:.0f} %", ""]
    g = report["generate"]
    lines += [f"generate ({g['model']}, 1 image from {g['num_candidates']} candidates, sampling {g['sampling']}): "
              f"{g['total_s']:.2f} s; first preview ({g['first_preview_tokens']} tokens) after "
              f"{g['first_preview_s']:.2f} s",
              "| part | seconds | share |", "|---|---|---|"]
    lines += [f"| {k} | {v:.3f} | {100 * g['shares'][k]:.0f} % |" for k, v in g["parts_s"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="mini-t2i bench", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    run_from_args(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a tiny model, seconds (the same JSON keys)")
    parser.add_argument("--model", default="shapes64", help="the pipeline to time (a shipped name or a folder)")
    parser.add_argument("--presets", nargs="*", help="random-weight presets to time beside it (default: small)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--out", default="runs/bench/bench.json")


def run_from_args(args) -> dict:
    report = run_suite(args.quick, args.model, args.presets, args.threads, args.device)
    write_report(report, format_tables(report), args.out)
    return report
