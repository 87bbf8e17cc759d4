"""Sampling throughput of a transformer: image tokens per second, with and without the KV cache.

    python -m mini_t2i.bench.sampling --model runs/transformer_shapes64/final --batch-sizes 1 8 --threads 2
    python -m mini_t2i.bench.sampling --preset mini            # random weights, Shapes World layout
    python -m mini_t2i.bench.sampling --preset mini --image-orders raster blocks --guidance-scale 2
                                                               # both designs, interleaved, one run

Times whole images (prefill included): tokens/s = batch x image tokens / seconds, the
best of --repeats runs after one warm-up. Writes the table as JSON (--out).
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from mini_t2i.report import write_report


def measure(model, cfg, batch_size: int, use_cache: bool, guidance_scale: float = 1.0, repeats: int = 2) -> dict:
    from mini_t2i.transformer.sampler import sample_image_tokens

    text = torch.randint(4, cfg.text_vocab_size, (batch_size, cfg.text_len))
    seeds = list(range(batch_size))
    sample_image_tokens(model, cfg, text, seeds, use_cache=use_cache, guidance_scale=guidance_scale)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        sample_image_tokens(model, cfg, text, seeds, use_cache=use_cache, guidance_scale=guidance_scale)
        best = min(best, time.perf_counter() - t0)
    tokens = batch_size * cfg.image_len
    return {"batch_size": batch_size, "kv_cache": use_cache, "guidance_scale": guidance_scale,
            "seconds_per_batch": best, "tokens_per_s": tokens / best, "images_per_s": batch_size / best}


def run(model_path: str | None, preset: str, batch_sizes: list[int], threads: int, device: str,
        with_uncached: bool = True, guidance_scale: float = 1.0, repeats: int = 2,
        image_orders: tuple[str, ...] = ("raster",)) -> dict:
    """Time one saved model, or random models of `preset` in each of `image_orders` (their
    rows interleaved per batch size, so a ratio between designs comes from one run)."""
    from mini_t2i.runtime import setup_runtime
    from mini_t2i.transformer.config import SHAPES_LAYOUT, TransformerConfig
    from mini_t2i.transformer.model import build_model, load_transformer, parameter_count

    dev = setup_runtime(device, threads)
    if model_path:
        models = [load_transformer(model_path, dev)]
    else:
        configs = [TransformerConfig(preset=preset, image_order=order, **SHAPES_LAYOUT) for order in image_orders]
        models = [(build_model(c, seed=0).to(dev).eval(), c) for c in configs]
    rows = []
    for batch_size in batch_sizes:
        for model, cfg in models:
            for use_cache in (True, False) if with_uncached else (True,):
                rows.append({"image_order": cfg.image_order, "parameters": parameter_count(model),
                             **measure(model, cfg, batch_size, use_cache, guidance_scale, repeats)})
    return {"model": model_path or f"random {preset}", "parameters": parameter_count(models[0][0]),
            "image_tokens": models[0][1].image_len, "device": str(dev), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "cpu": platform.processor() or platform.machine(), "results": rows}


def format_table(report: dict) -> str:
    lines = [f"{report['model']} ({report['parameters'] / 1e6:.2f}M params, {report['image_tokens']} image tokens, "
             f"{report['device']}, {report['threads']} threads)",
             "| order | batch | KV cache | guidance | s / batch | tokens/s | images/s |", "|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        lines.append(f"| {r['image_order']} | {r['batch_size']} | {'yes' if r['kv_cache'] else 'no'} | {r['guidance_scale']:g} | "
                     f"{r['seconds_per_batch']:.2f} | {r['tokens_per_s']:.0f} | {r['images_per_s']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a saved transformer folder; omitted: random weights of --preset")
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--guidance-scale", type=float, default=1.0)
    parser.add_argument("--no-uncached", action="store_true", help="skip the slow runs without the cache")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--image-orders", nargs="+", default=["raster"], choices=["raster", "blocks"],
                        help="random models: one per image order, timed side by side")
    parser.add_argument("--out", default="runs/bench/sampling.json")
    args = parser.parse_args(argv)
    report = run(args.model, args.preset, args.batch_sizes, args.threads, args.device, not args.no_uncached,
                 args.guidance_scale, args.repeats, tuple(args.image_orders))
    write_report(report, format_table(report), args.out)


if __name__ == "__main__":
    main()
