"""Do smaller decode weights change what a model draws? fp16 / int8 / fused against fp32, same seeds.

    python -m mini_t2i.bench.decode_quality --model shapes64 --split test_iid --count 300 \\
        --candidates 2 --weights fp16 int8 --threads 1 --out docs/decode_quality.json

Each format samples the same prompts with the same seeds at the pipeline's default settings
(transformer/quantize.py has the formats). Reported per format:

- token agreement with fp32: the share of image tokens equal at the same place, the share of
  images equal token for token, and the mean position of the first differing token (a
  sampled sequence follows its own tokens, so one changed token changes what comes after);
- Shapes World accuracy (the checker on every sample; one sample, no reranking) with its
  standard error over prompts, and the paired difference from fp32 with the standard error
  of the per-prompt differences: a loss counts only when it is larger than about 2 of those;
- sampling seconds (a side number: `mini-t2i bench` is the speed benchmark).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from mini_t2i.report import mean_se, write_report
from mini_t2i.transformer.config import DECODE_WEIGHTS


def decode_quality(model: str = "shapes64", split: str = "test_iid", count: int = 300, candidates: int = 2,
                   weights: tuple[str, ...] = ("fp16", "int8"), seed: int = 0, batch_size: int | None = None) -> dict:
    from mini_t2i.data.config import DataConfig
    from mini_t2i.data.sources import iter_examples
    from mini_t2i.pipeline.pipeline import TextToImagePipeline
    from mini_t2i.shapes.checker import check_image
    from mini_t2i.transformer.sampler import sample_image_tokens

    pipe = TextToImagePipeline.from_pretrained(model)
    examples = list(iter_examples(DataConfig(source="shapes", split=split, count=count, seed=seed,
                                             image_size=pipe.image_size)))
    metas = [e.meta for e in examples]
    _, text_ids = pipe.encode_prompts([e.text for e in examples])
    rows = text_ids.repeat_interleave(candidates, dim=0)  # (count * candidates, text_len)
    seeds = list(range(len(rows)))
    settings = {k: v for k, v in pipe.sampling_settings().items() if k != "decode_weights"}
    batch_size = batch_size or pipe.config.batch_size
    runs = {}
    for fmt in ("fp32", *weights):
        t0 = time.perf_counter()
        tokens = torch.cat([sample_image_tokens(pipe.transformer, pipe.transformer_config, rows[s:s + batch_size],
                                                seeds[s:s + batch_size], decode_weights=fmt, **settings)
                            for s in range(0, len(rows), batch_size)])
        seconds = time.perf_counter() - t0
        images = pipe.decode(tokens)
        correct = np.array([check_image(im, metas[k // candidates]) for k, im in enumerate(images)], float)
        runs[fmt] = {"tokens": tokens, "per_prompt": correct.reshape(count, candidates).mean(1), "seconds": seconds}
    ref = runs["fp32"]
    report = {"model": model, "split": split, "prompts": count, "candidates": candidates, "seed": seed,
              "sampling": settings, "formats": {}}
    for fmt, run in runs.items():
        same = run["tokens"] == ref["tokens"]  # (N, h*w)
        first = torch.where(same.all(1), torch.full((len(same),), same.shape[1]), (~same).int().argmax(1))
        acc, se = mean_se(run["per_prompt"])
        diff, diff_se = mean_se(run["per_prompt"] - ref["per_prompt"])
        report["formats"][fmt] = {"accuracy": acc, "accuracy_se": se, "difference_from_fp32": diff,
                                  "difference_se": diff_se, "token_agreement": float(same.float().mean()),
                                  "identical_images": float(same.all(1).float().mean()),
                                  "mean_first_difference": float(first.float().mean()), "seconds": run["seconds"]}
    return report


def format_report(report: dict) -> str:
    lines = [f"{report['model']} on {report['prompts']} {report['split']} prompts x {report['candidates']} samples, "
             f"sampling {report['sampling']}", "",
             "| weights | accuracy | vs fp32 (paired) | tokens equal | images equal | first difference at | s |",
             "|---|---|---|---|---|---|---|"]
    for fmt, r in report["formats"].items():
        lines.append(f"| {fmt} | {r['accuracy']:.3f} ± {r['accuracy_se']:.3f} | {r['difference_from_fp32']:+.3f} ± "
                     f"{r['difference_se']:.3f} | {r['token_agreement']:.3f} | {r['identical_images']:.3f} | "
                     f"{r['mean_first_difference']:.0f} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from mini_t2i.runtime import setup_runtime

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="shapes64")
    parser.add_argument("--split", default="test_iid")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--candidates", type=int, default=2, help="samples per prompt (seeds 0..count*candidates-1)")
    parser.add_argument("--weights", nargs="+", default=["fp16", "int8"], choices=[w for w in DECODE_WEIGHTS if w != "fp32"])
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", default="runs/bench/decode_quality.json")
    args = parser.parse_args(argv)
    setup_runtime("cpu", args.threads)
    report = decode_quality(args.model, args.split, args.count, args.candidates, tuple(args.weights),
                            batch_size=args.batch_size)
    write_report(report, format_report(report), args.out)


if __name__ == "__main__":
    main()
