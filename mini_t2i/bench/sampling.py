"""Sampling throughput of a transformer: image tokens per second, with and without the KV cache.

    python -m mini_t2i.bench.sampling --model runs/transformer_shapes64/final --batch-sizes 1 8 --threads 2
    python -m mini_t2i.bench.sampling --preset mini            # random weights, Shapes World layout
    python -m mini_t2i.bench.sampling --preset mini --image-orders raster blocks --guidance-scales 2
                                                               # both designs, interleaved, one run
    python -m mini_t2i.bench.sampling --preset small --peers --top-k 256 --threads 1 --no-uncached \
        --guidance-scales 1 3 --decode-weights fp32 fp16 int8   # issue 21's rows: the peers' layout

Times whole images (prefill included): tokens/s = batch x image tokens / seconds, the
best of --repeats runs after one warm-up. Writes the table as JSON (--out).
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from mini_t2i.report import write_report
from mini_t2i.transformer.config import DECODE_WEIGHTS


# The configuration the peers (LlamaGen, min-dalle, minDALL-E) were timed at (issue 21):
# 64 caption positions over a 16,384-id text vocabulary, 16,384 image codes, 256 image tokens.
PEERS_LAYOUT = {"text_vocab_size": 16384, "text_len": 64, "codebook_size": 16384, "grid_size": 16}


def measure(model, cfg, batch_size: int, use_cache: bool, guidance_scale: float = 1.0, repeats: int = 2,
            decode_weights: str = "fp32", top_k: int = 0) -> dict:
    from mini_t2i.transformer.sampler import sample_image_tokens

    text = torch.randint(4, cfg.text_vocab_size, (batch_size, cfg.text_len))
    seeds = list(range(batch_size))
    run = lambda: sample_image_tokens(model, cfg, text, seeds, use_cache=use_cache,  # noqa: E731
                                      guidance_scale=guidance_scale, decode_weights=decode_weights, top_k=top_k)
    run()  # warm-up (and the packed weights' one-time copy)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    tokens = batch_size * cfg.image_len
    return {"batch_size": batch_size, "kv_cache": use_cache, "guidance_scale": guidance_scale,
            "decode_weights": decode_weights, "top_k": top_k,
            "seconds_per_batch": best, "tokens_per_s": tokens / best, "images_per_s": batch_size / best,
            "decode_step_ms": 1000 * best / cfg.image_len}


def run(model_path: str | None, preset: str, batch_sizes: list[int], threads: int, device: str,
        with_uncached: bool = True, guidance_scales: tuple[float, ...] = (1.0,), repeats: int = 2,
        image_orders: tuple[str, ...] = ("raster",), decode_weights: tuple[str, ...] = ("fp32",),
        top_k: int = 0, peers: bool = False) -> dict:
    """Time one saved model, or random models of `preset` in each of `image_orders` (their
    rows interleaved per batch size, so a ratio between designs or weight formats comes from
    one run). peers: the random models take PEERS_LAYOUT instead of Shapes World's."""
    from mini_t2i.runtime import setup_runtime
    from mini_t2i.transformer.config import SHAPES_LAYOUT, TransformerConfig
    from mini_t2i.transformer.model import build_model, load_transformer, parameter_count

    dev = setup_runtime(device, threads)
    if model_path:
        models = [load_transformer(model_path, dev)]
    else:
        layout = {**SHAPES_LAYOUT, **PEERS_LAYOUT} if peers else SHAPES_LAYOUT
        configs = [TransformerConfig(preset=preset, image_order=order, **layout) for order in image_orders]
        models = [(build_model(c, seed=0).to(dev).eval(), c) for c in configs]
    engines = [(True, w) for w in decode_weights] + ([(False, "fp32")] if with_uncached else [])
    rows = []
    for batch_size in batch_sizes:
        for guidance_scale in guidance_scales:
            for model, cfg in models:
                for use_cache, weights in engines:
                    rows.append({"image_order": cfg.image_order, "parameters": parameter_count(model),
                                 **measure(model, cfg, batch_size, use_cache, guidance_scale, repeats, weights, top_k)})
    return {"model": model_path or f"random {preset}{' (peers layout)' if peers else ''}",
            "parameters": parameter_count(models[0][0]),
            "image_tokens": models[0][1].image_len, "device": str(dev), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "cpu": platform.processor() or platform.machine(), "results": rows}


def format_table(report: dict) -> str:
    lines = [f"{report['model']} ({report['parameters'] / 1e6:.2f}M params, {report['image_tokens']} image tokens, "
             f"{report['device']}, {report['threads']} threads)",
             "| order | batch | KV cache | weights | guidance | s / batch | step ms | tokens/s | images/s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        lines.append(f"| {r['image_order']} | {r['batch_size']} | {'yes' if r['kv_cache'] else 'no'} | "
                     f"{r['decode_weights']} | {r['guidance_scale']:g} | {r['seconds_per_batch']:.2f} | "
                     f"{r['decode_step_ms']:.2f} | {r['tokens_per_s']:.0f} | {r['images_per_s']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a saved transformer folder; omitted: random weights of --preset")
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--guidance-scales", type=float, nargs="+", default=[1.0])
    parser.add_argument("--decode-weights", nargs="+", default=["fp32"], choices=DECODE_WEIGHTS,
                        help="the fast decoder's weight formats, timed side by side")
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--peers", action="store_true",
                        help="random models in the peers' layout (64 caption positions, 16,384 text ids and codes)")
    parser.add_argument("--no-uncached", action="store_true", help="skip the slow runs without the cache")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--image-orders", nargs="+", default=["raster"], choices=["raster", "blocks"],
                        help="random models: one per image order, timed side by side")
    parser.add_argument("--out", default="runs/bench/sampling.json")
    args = parser.parse_args(argv)
    report = run(args.model, args.preset, args.batch_sizes, args.threads, args.device, not args.no_uncached,
                 tuple(args.guidance_scales), args.repeats, tuple(args.image_orders), tuple(args.decode_weights),
                 args.top_k, args.peers)
    write_report(report, format_table(report), args.out)


if __name__ == "__main__":
    main()
