"""Score a pipeline on Shapes World: checker accuracy with and without reranking.

    mini-t2i eval shapes --model shapes64 --count 300 --num-candidates 8 --out eval.json

For each split, every prompt gets `num_candidates` samples (candidate j of prompt i
drawn with seed i * num_candidates + j, as the pipeline does for seed 0). From the
checker's verdict on every candidate it reports, per task:

- ground_truth: the renders themselves (the checker's own accuracy, >= 0.99);
- reconstructions: the renders through the VQ (the ceiling of every generator on it);
- one_sample: the mean over candidates, i.e. one sample without reranking;
- reranked: the candidate the reranker scores highest;
- oracle: a prompt counts when any candidate is correct (the best a reranker can do).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from mini_t2i.shapes.spec import TASKS

COLUMNS = ("ground_truth", "reconstructions", "one_sample", "reranked", "oracle")


def accuracy_summary(values: np.ndarray, tasks: Sequence[str]) -> dict:
    """Per-prompt scores in [0, 1] -> the {"overall", "count", "tasks"} layout of score_images."""
    tasks = np.asarray(tasks)
    return {"overall": float(values.mean()), "count": int(len(values)),
            "tasks": {t: {"accuracy": float(values[tasks == t].mean()), "count": int((tasks == t).sum())}
                      for t in TASKS if (tasks == t).any()}}


def evaluate_split(pipe, split: str, count: int, num_candidates: int, seed: int = 0, batch_size: int | None = None,
                   progress: bool = True, **sampling) -> dict:
    """One split's scores (see the module doc); `seed` picks the split's scenes."""
    from mini_t2i.data.config import DataConfig
    from mini_t2i.data.sources import iter_examples
    from mini_t2i.shapes.checker import check_image
    from mini_t2i.vq.evaluate import reconstruct

    examples = list(iter_examples(DataConfig(source="shapes", split=split, count=count, seed=seed,
                                             image_size=pipe.image_size)))
    metas = [e.meta for e in examples]
    tasks = [m["task"] for m in metas]
    real = np.stack([np.asarray(e.image, dtype=np.uint8) for e in examples])
    recons, _ = reconstruct(pipe.vq, real)
    _, text_ids = pipe.encode_prompts([e.text for e in examples])
    seeds = list(range(count * num_candidates))
    images, scores = pipe.generate_candidates(text_ids.repeat_interleave(num_candidates, dim=0), seeds,
                                              batch_size=batch_size, progress=progress, **sampling)
    correct = np.array([check_image(im, metas[k // num_candidates]) for k, im in enumerate(images)],
                       dtype=np.float64).reshape(count, num_candidates)
    scores = scores.reshape(count, num_candidates)
    result = {"count": count, "num_candidates": num_candidates, "sampling": sampling,
              "ground_truth": accuracy_summary(np.array([check_image(im, m) for im, m in zip(real, metas)], float),
                                               tasks),
              "reconstructions": accuracy_summary(np.array([check_image(im, m) for im, m in zip(recons, metas)],
                                                           float), tasks),
              "one_sample": accuracy_summary(correct.mean(axis=1), tasks),
              "oracle": accuracy_summary(correct.max(axis=1), tasks)}
    if not np.isnan(scores).any():
        best = scores.argmax(axis=1)
        result["reranked"] = accuracy_summary(correct[np.arange(count), best], tasks)
    return result


def evaluate_pipeline(model: str | None = None, splits: Sequence[str] = ("test_iid", "test_heldout"), count: int = 300,
                      num_candidates: int = 8, seed: int = 0, batch_size: int | None = None,
                      guidance_scale: float | None = None, temperature: float | None = None, top_k: int | None = None,
                      top_p: float | None = None, out: str | None = None, device: str = "cpu",
                      is_verbose: bool = True, guidance_schedule: str | None = None,
                      decode_weights: str | None = None) -> dict:
    """Evaluate a pipeline (path or shipped name) on Shapes World splits; writes JSON to `out`."""
    import time

    from mini_t2i.pipeline.pipeline import TextToImagePipeline

    pipe = TextToImagePipeline.from_pretrained(model, device=device)
    sampling = pipe.sampling_settings(guidance_scale=guidance_scale, guidance_schedule=guidance_schedule,
                                      temperature=temperature, top_k=top_k, top_p=top_p,
                                      decode_weights=decode_weights)
    result = {"model": str(model or "default"), "description": (
        f"Checker accuracy on Shapes World prompts ({count} per split, seed {seed}); one sample = mean over the "
        f"{num_candidates} candidates of a prompt; reranked = the reranker's pick; any candidate = the oracle pick."),
        "splits": {}}
    for split in splits:
        t0 = time.perf_counter()
        r = evaluate_split(pipe, split, count, num_candidates, seed, batch_size, progress=is_verbose, **sampling)
        r["seconds"] = round(time.perf_counter() - t0, 1)
        result["splits"][split] = r
        if is_verbose:
            print(format_split(split, r))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2) + "\n")
    return result


def format_split(split: str, r: dict) -> str:
    """An aligned per-task table of one split's result."""
    cols = [c for c in COLUMNS if c in r]
    head = f"{split}: {r['count']} prompts x {r['num_candidates']} candidates, {r.get('seconds', '?')} s"
    rows = [head, f"{'task':<12}" + "".join(f"{c:>17}" for c in cols)]
    for task in list(r["ground_truth"]["tasks"]) + ["overall"]:
        vals = [r[c]["overall"] if task == "overall" else r[c]["tasks"][task]["accuracy"] for c in cols]
        rows.append(f"{task:<12}" + "".join(f"{v:>17.3f}" for v in vals))
    return "\n".join(rows)
