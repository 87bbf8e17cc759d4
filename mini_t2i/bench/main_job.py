"""The README's main job, timed as a user runs it: a fresh process, start to files on disk.

    python -m mini_t2i.bench.main_job --repeats 3 [--threads 2] [--decode-weights int8]

Runs `mini-t2i generate "a red circle above a blue square" --num-images 4 --out DIR` in a
new process `repeats` times (wall seconds, median), then once more in a child process that
times its own parts in order: interpreter start, `import torch`, the rest of the imports
the command makes, loading the pipeline, sampling the candidates, reranking, and writing
the files. The parts are the same function calls `mini-t2i generate` makes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

from mini_t2i.report import write_report
from mini_t2i.transformer.config import DECODE_WEIGHT_CHOICES

PROMPT = "a red circle above a blue square"

_CHILD = r"""
import json, sys, time
t = {"start": time.perf_counter()}
import torch
t["import torch"] = time.perf_counter()
from mini_t2i.cli import build_parser
from mini_t2i.pipeline.generate import generate_to_dir
from mini_t2i.pipeline.pipeline import TextToImagePipeline
t["import mini_t2i"] = time.perf_counter()
args = build_parser().parse_args(sys.argv[1:])
from mini_t2i.runtime import setup_runtime
device = setup_runtime(args.device, args.threads)
pipe = TextToImagePipeline.from_pretrained(args.model, device=str(device))
t["load pipeline"] = time.perf_counter()
score = pipe.score
def timed_score(*a, **k):
    t0 = time.perf_counter()
    out = score(*a, **k)
    t.setdefault("_rerank", 0.0)
    t["_rerank"] += time.perf_counter() - t0
    return out
pipe.score = timed_score
result = pipe(args.prompt, num_images=args.num_images, decode_weights=args.decode_weights)
t["sample + rerank"] = time.perf_counter()
generate_to_dir(pipe, args.out, prompt=args.prompt, num_images=args.num_images, progress=False,
                decode_weights=args.decode_weights)
t["generate + write (again, warm)"] = time.perf_counter()
print(json.dumps(t))
"""


def run_main_job(repeats: int = 3, threads: int = 0, decode_weights: str | None = None,
                 model: str | None = None) -> dict:
    extra = (["--threads", str(threads)] if threads else []) + (["--model", model] if model else []) + (
        ["--decode-weights", decode_weights] if decode_weights else [])
    walls = []
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "mini_t2i", "generate", PROMPT, "--num-images", "4", *extra]
        for k in range(repeats):
            t0 = time.perf_counter()
            subprocess.run(command + ["--out", f"{tmp}/gen{k}"], check=True, capture_output=True)
            walls.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        child = subprocess.run([sys.executable, "-c", _CHILD, "generate", PROMPT, "--num-images", "4", *extra,
                                "--out", f"{tmp}/parts"], check=True, capture_output=True, text=True)
        child_wall = time.perf_counter() - t0
    stamps = json.loads(child.stdout.strip().splitlines()[-1])
    rerank = stamps.pop("_rerank", 0.0)
    names = [k for k in stamps if k != "start"]
    parts, last = {}, stamps["start"]
    for name in names:
        parts[name] = stamps[name] - last
        last = stamps[name]
    first_call = parts.pop("sample + rerank")
    parts["sample"], parts["rerank"] = first_call - rerank, rerank
    accounted = last - stamps["start"] - parts.pop("generate + write (again, warm)")
    parts["interpreter start and exit"] = max(0.0, child_wall - (last - stamps["start"]))
    return {"command": " ".join(["mini-t2i", "generate", repr(PROMPT), "--num-images", "4", *extra]),
            "repeats": repeats, "wall_s": walls, "median_wall_s": statistics.median(walls),
            "parts_s": parts, "parts_total_s": accounted + parts["interpreter start and exit"]}


def format_report(report: dict) -> str:
    lines = [f"{report['command']}: median {report['median_wall_s']:.2f} s wall over {report['repeats']} fresh "
             f"processes ({', '.join(f'{w:.2f}' for w in report['wall_s'])})", "", "| part | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in report["parts_s"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--decode-weights", choices=DECODE_WEIGHT_CHOICES)
    parser.add_argument("--model")
    parser.add_argument("--out", default="runs/bench/main_job.json")
    args = parser.parse_args(argv)
    report = run_main_job(args.repeats, args.threads, args.decode_weights, args.model)
    write_report(report, format_report(report), args.out)


if __name__ == "__main__":
    main()
