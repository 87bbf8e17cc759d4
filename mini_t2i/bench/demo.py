"""Latency of the demo as a user sees it: time to the first preview and to the final images.

    python -m mini_t2i.bench.demo --threads 2 --num-images 4 --repeats 3
    python -m mini_t2i.bench.demo --browser          # also through headless Chromium

Starts the demo on 127.0.0.1 in this process and calls `/generate` through
`gradio_client`, as a remote user would (queue, streaming and file transfer included);
with --browser, also types the prompt into the page and waits for the images. Reports the
median over --repeats runs after one warm-up, per model; writes the table as JSON (--out).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

from mini_t2i.report import write_report

PROMPTS = {"shapes64": "a red circle above a blue square", "emoji64": "grinning face"}


def time_generate(client, model: str, prompt: str, num_images: int, num_candidates: int, seed: int) -> dict:
    """One /generate call: seconds to its first streamed update and to its final result."""
    t0 = time.perf_counter()
    job = client.submit(prompt, model, num_images, num_candidates, 1.0, 1.0, 32, 1.0, seed, api_name="/generate")
    first = None
    for _ in job:  # each streamed update (previews, then the ranked images)
        first = first or time.perf_counter() - t0
    result = job.result()
    final = time.perf_counter() - t0
    return {"first_preview_s": first or final, "final_s": final, "images": len(result[0])}


def run(models: list[str], num_images: int, num_candidates: int, repeats: int, threads: int,
        with_browser: bool = False) -> dict:
    import torch
    from gradio_client import Client

    from mini_t2i.demo.ui import build_demo, free_port, launch
    from mini_t2i.runtime import setup_runtime

    setup_runtime("cpu", threads)
    demo = build_demo(models=models)
    port = free_port()
    launch(demo, "127.0.0.1", port, block=False)
    url = f"http://127.0.0.1:{port}/"
    rows = []
    try:
        client = Client(url, verbose=False)
        for model in demo.pool.names:
            prompt = PROMPTS.get(model, demo.pool.get(model).config.examples[0])
            time_generate(client, model, prompt, num_images, num_candidates, seed=100)  # warm-up
            runs = [time_generate(client, model, prompt, num_images, num_candidates, seed) for seed in range(repeats)]
            rows.append({"model": model, "via": "gradio_client", "num_images": num_images,
                         "num_candidates": num_candidates, "repeats": repeats,
                         "first_preview_s": statistics.median(r["first_preview_s"] for r in runs),
                         "final_s": statistics.median(r["final_s"] for r in runs)})
        if with_browser:
            from mini_t2i.demo.browser import drive_demo

            drive_demo(url, PROMPTS["shapes64"])  # warm-up (the page's first load)
            runs = [drive_demo(url, PROMPTS["shapes64"]) for _ in range(repeats)]
            rows.append({"model": demo.pool.names[0], "via": "chromium", "num_images": 4,
                         "num_candidates": demo.pool.get(demo.pool.names[0]).config.num_candidates,
                         "repeats": repeats, "first_preview_s": statistics.median(r.first_preview_s for r in runs),
                         "final_s": statistics.median(r.final_s for r in runs)})
    finally:
        demo.close()
    return {"threads": torch.get_num_threads(), "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(), "results": rows}


def format_table(report: dict) -> str:
    lines = [f"demo latency, CPU, {report['threads']} threads (median of repeats)",
             "| model | via | images / candidates | first preview s | final s |", "|---|---|---|---|---|"]
    for r in report["results"]:
        lines.append(f"| {r['model']} | {r['via']} | {r['num_images']} / {r['num_candidates']} | "
                     f"{r['first_preview_s']:.2f} | {r['final_s']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", default=None, help="repeat for several (default: every shipped)")
    parser.add_argument("--num-images", type=int, default=4)
    parser.add_argument("--num-candidates", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--browser", action="store_true", help="also time the page in headless Chromium")
    parser.add_argument("--out", default="runs/bench/demo.json")
    args = parser.parse_args(argv)
    report = run(args.model, args.num_images, args.num_candidates, args.repeats, args.threads, args.browser)
    write_report(report, format_table(report), args.out)


if __name__ == "__main__":
    main()
