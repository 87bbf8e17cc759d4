"""A fixed-budget bake-off of transformer variants: which design draws best per hour of CPU.

    python -m mini_t2i.bench.bakeoff --config configs/transformer_shapes64.yaml --minutes 45 \
        --variant reference --variant rowcol:model.image_positions=rowcol --out runs/bakeoff

1. Probe: each variant runs a few optimizer steps in this process on one thread, nothing
   else running, so its seconds per step are measured on equal terms.
2. Train: every variant in its own process, one thread each, pinned to its own core, side
   by side, from the same data and seed, with `steps` sized so it spends `minutes` (the
   cosine schedule spans exactly its budget), checkpoints along the way for the curve.
3. Measure, the same way for all: val loss per task; one sample per val prompt (seed i)
   at each checkpoint, scored by the Shapes World checker per task with standard errors
   and failure kinds; at the end the reranker's best of `best_of` candidates; a plot of
   accuracy against images seen and against minutes, all variants in one.

The checker only scores: nothing it says reaches training or the choice of data.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch


def parse_variant(text: str) -> tuple[str, list[str]]:
    """"name" or "name:key=value,key=value" -> (name, overrides)."""
    name, _, rest = text.partition(":")
    return name, [o for o in rest.split(",") if o]


def _train_config(config: str, overrides: list[str]):
    from mini_t2i.config import load_config
    from mini_t2i.transformer.config import TransformerTrainConfig

    return load_config(TransformerTrainConfig, config, overrides)


def probe_seconds_per_step(config: str, overrides: list[str], steps: int = 6) -> float:
    """Median seconds of an optimizer step of this variant on one thread (after 2 warm-up steps)."""
    from mini_t2i.transformer.data import load_run_data, micro_batches
    from mini_t2i.transformer.model import build_model
    from mini_t2i.transformer.train import make_optimizer, train_step

    torch.set_num_threads(1)
    cfg = _train_config(config, overrides)
    train_data, _, model_cfg = load_run_data(cfg)
    model = build_model(model_cfg, seed=cfg.seed).train()
    optimizer = make_optimizer(model, cfg)
    times = []
    for step in range(steps + 2):
        t0 = time.perf_counter()
        train_step(model, optimizer, model_cfg, micro_batches(cfg, train_data, step, 0, 1), cfg, step,
                   torch.device("cpu"))
        times.append(time.perf_counter() - t0)
    return float(np.median(times[2:]))


def train_side_by_side(config: str, variants: dict[str, list[str]], steps: dict[str, int], out: Path,
                       curve_points: int) -> dict[str, float]:
    """Train every variant at once, one thread and one core each; returns wall seconds per variant."""
    procs, started = {}, {}
    for core, (name, overrides) in enumerate(variants.items()):
        every = max(1, steps[name] // curve_points)
        cmd = [sys.executable, "-m", "mini_t2i.cli", "train", "transformer", "--config", config, *overrides,
               f"steps={steps[name]}", f"run_dir={out / name}", "num_threads=1", "eval_every=0", "sample_count=0",
               f"checkpoint_every={every}", f"keep_checkpoints={curve_points + 2}", "log_every=25"]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
        cpus = sorted(os.sched_getaffinity(0))
        pin = (lambda c=cpus[core % len(cpus)]: os.sched_setaffinity(0, {c})) if len(cpus) >= len(variants) else None
        log = open(out / f"{name}.log", "w")
        procs[name] = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=pin)
        started[name] = time.perf_counter()
    seconds = {}
    for name, proc in procs.items():
        if proc.wait():
            raise RuntimeError(f"variant {name} failed; see {out / (name + '.log')}")
        seconds[name] = time.perf_counter() - started[name]
    return seconds


def failure_kind(image: np.ndarray, meta: dict) -> str:
    """Why the checker refuses an image, coarsely: "ok", "background", "object missing" (a
    clause's colour is nowhere), "wrong shape" (the colour is there, never in the shape or
    size asked), "wrong count", or "wrong relation / binding" (every clause is met alone)."""
    from mini_t2i.shapes.checker import check_detection, detect_objects

    det = detect_objects(image)
    if check_detection(det, meta):
        return "ok"
    if meta.get("background") is not None and det.background != meta["background"]:
        return "background"
    for clause in meta["objects"]:
        same_colour = [o for o in det.objects if o.color == clause["color"]]
        if not same_colour:
            return "object missing"
        if meta["task"] != "colors" and not any(
                o.shape == clause["shape"] and clause.get("size") in (None, o.size) for o in same_colour):
            return "wrong shape"
    return "wrong count" if meta["task"] == "counting" else "wrong relation / binding"


def score(images: np.ndarray, metas: list[dict]) -> dict:
    """Per-task accuracy with its standard error sqrt(p(1-p)/n), overall, and failure kinds."""
    kinds = [failure_kind(im, m) for im, m in zip(images, metas)]
    ok = np.array([k == "ok" for k in kinds])
    tasks = sorted({m["task"] for m in metas})
    out = {"overall": float(ok.mean()), "overall_se": float(math.sqrt(ok.mean() * (1 - ok.mean()) / len(ok))),
           "count": len(ok), "tasks": {}, "failures": {}}
    for task in tasks:
        sel = np.array([m["task"] == task for m in metas])
        p = float(ok[sel].mean())
        out["tasks"][task] = {"accuracy": p, "se": math.sqrt(p * (1 - p) / sel.sum()), "count": int(sel.sum())}
    for k in kinds:
        if k != "ok":
            out["failures"][k] = out["failures"].get(k, 0) + 1
    return out


def load_step(run_dir: Path, step: int | None):
    """(model, model config) of a run's checkpoint `step`, or of final/ when step is None."""
    from mini_t2i.checkpoint import checkpoint_dir, load_state_dict_strict, load_tensors
    from mini_t2i.config import load_config
    from mini_t2i.transformer.config import TransformerConfig
    from mini_t2i.transformer.model import build_model, load_transformer

    final = run_dir / "final"
    if step is None:
        return load_transformer(final)
    model_cfg = load_config(TransformerConfig, final / "transformer.yaml")
    model = build_model(model_cfg)
    tensors, _ = load_tensors(checkpoint_dir(run_dir, step) / "model.safetensors")
    load_state_dict_strict(model, tensors, str(run_dir))
    return model.eval(), model_cfg


def guidance_sweep(model, model_cfg, vq, text_ids, metas, top_k: int, scales=(1.0, 1.5, 2.0, 3.0),
                   schedules=("constant", "rising")) -> dict:
    """One sample per prompt at each guidance scale x schedule: {"1.5/rising": score, ...}."""
    from mini_t2i.transformer.evaluate import sample_images

    out = {}
    for scale in scales:
        for schedule in schedules if scale != 1.0 else ("constant",):  # at 1 there is nothing to schedule
            images, _ = sample_images(model, model_cfg, vq, text_ids, list(range(len(text_ids))),
                                      guidance_scale=scale, guidance_schedule=schedule, top_k=top_k)
            out[f"{scale:g}/{schedule}"] = score(images, metas)
    return out


def sweep_pipeline(name: str, count: int, top_k: int, split: str = "val") -> dict:
    """The guidance sweep on a pipeline folder or shipped model (e.g. shapes64), on `count`
    prompts of a Shapes World split, one sample each (seed i): what its default should be."""
    from mini_t2i.data.config import DataConfig
    from mini_t2i.data.sources import iter_examples
    from mini_t2i.pipeline.pipeline import TextToImagePipeline

    pipe = TextToImagePipeline.from_pretrained(name)
    examples = list(iter_examples(DataConfig(source="shapes", split=split, count=count, image_size=pipe.image_size)))
    _, text_ids = pipe.encode_prompts([e.text for e in examples])
    return guidance_sweep(pipe.transformer, pipe.transformer_config, pipe.vq, text_ids, [e.meta for e in examples],
                          top_k)


def measure(run_dir: Path, count: int, best_of: int, guidance_scale: float, top_k: int,
            sweep: bool = False, reranker=None) -> dict:
    """The curve (one sample per val prompt at each kept checkpoint), val loss per task and,
    with a `reranker`, the final best-of-`best_of`. The VQ and the text tokenizer are the
    run's own (its config's vq_model and text_tokenizer)."""
    from mini_t2i.checkpoint import finished_checkpoints
    from mini_t2i.pipeline.pipeline import TextToImagePipeline
    from mini_t2i.text.tokenizer import TextTokenizer
    from mini_t2i.transformer.data import load_run_data
    from mini_t2i.transformer.evaluate import sample_images, val_loss
    from mini_t2i.vq.model import VQModel

    cfg = _train_config(str(run_dir / "config.yaml"), [])
    _, val, _ = load_run_data(replace(cfg, val_count=count, sample_count=count))
    metas = val.metas[:count]
    text_ids = val.text_ids[:count]
    vq = VQModel.from_pretrained(cfg.vq_model).eval()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [r["tokens_per_s"] for r in records if r["split"] == "train"]
    curve = []
    for ckpt in finished_checkpoints(run_dir):
        step = int(ckpt.name.split("_")[1])
        model, model_cfg = load_step(run_dir, step)
        images, _ = sample_images(model, model_cfg, vq, text_ids, list(range(count)),
                                  guidance_scale=guidance_scale, top_k=top_k)
        curve.append({"step": step, "images_seen": step * cfg.batch_size, **score(images, metas)})
    model, model_cfg = load_step(run_dir, None)
    tokens = torch.from_numpy(val.image_tokens[:count].astype(np.int64))
    losses = {task: val_loss(model, model_cfg, text_ids[sel], tokens[sel])
              for task in sorted({m["task"] for m in metas})
              for sel in [torch.tensor([m["task"] == task for m in metas])]}
    result = {"steps": cfg.steps, "batch_size": cfg.batch_size, "train_tokens_per_s": float(np.median(rates)),
              "val_loss_per_task": losses, "curve": curve}
    if sweep:
        result["guidance_sweep"] = guidance_sweep(model, model_cfg, vq, text_ids, metas, top_k)
    if best_of > 1 and reranker is not None:
        pipe = TextToImagePipeline(TextTokenizer.from_pretrained(cfg.text_tokenizer), model, model_cfg, vq, reranker)
        rows = text_ids.repeat_interleave(best_of, dim=0)
        images, scores = pipe.generate_candidates(rows, list(range(len(rows))), guidance_scale=guidance_scale,
                                                  top_k=top_k, temperature=1.0, top_p=1.0)
        pick = scores.reshape(count, best_of).argmax(1) + np.arange(count) * best_of
        result[f"best_of_{best_of}"] = score(images[pick], metas)
    return result


def markdown(report: dict) -> str:
    """The bake-off's tables (docs/bakeoff.md): one row per variant at its last checkpoint,
    the per-task accuracies, and the guidance sweep where one ran."""
    plan, results = report["plan"], report["results"]
    tasks = sorted({t for r in results.values() for t in r["curve"][-1]["tasks"]})
    best = next((k for k in next(iter(results.values())) if k.startswith("best_of_")), None)
    lines = ["| variant | tok/s | steps | images seen | minutes | one sample | " + (f"{best.replace('_', ' ')} | " if best else "")
             + " | ".join(tasks) + " | val loss (mean of tasks) |",
             "|---|---|---|---|---|---|" + ("---|" if best else "") + "---|" * len(tasks) + "---|"]
    for name, r in results.items():
        last = r["curve"][-1]
        row = [name, f"{r['train_tokens_per_s']:.0f}", str(r["steps"]), f"{last['images_seen']:,}",
               f"{plan['seconds'][name] / 60:.0f}", f"{last['overall']:.3f} ± {last['overall_se']:.3f}"]
        if best:
            row.append(f"{r[best]['overall']:.3f} ± {r[best]['overall_se']:.3f}")
        row += [f"{last['tasks'][t]['accuracy']:.2f}" for t in tasks]
        row.append(f"{np.mean(list(r['val_loss_per_task'].values())):.4f}")
        lines.append("| " + " | ".join(row) + " |")
    for name, r in results.items():
        if "guidance_sweep" in r:
            lines += ["", f"Guidance sweep, {name} (one sample, {r['curve'][-1]['count']} val prompts):", "",
                      "| guidance | one sample | " + " | ".join(tasks) + " |", "|---|---|" + "---|" * len(tasks)]
            for setting, s in r["guidance_sweep"].items():
                lines.append(f"| {setting} | {s['overall']:.3f} ± {s['overall_se']:.3f} | "
                             + " | ".join(f"{s['tasks'][t]['accuracy']:.2f}" for t in tasks) + " |")
    return "\n".join(lines)


def plot(results: dict, seconds: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_images, by_minutes) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for name, r in results.items():
        xs = [c["images_seen"] for c in r["curve"]]
        ys = [c["overall"] for c in r["curve"]]
        errs = [c["overall_se"] for c in r["curve"]]
        minutes = [seconds[name] / 60 * c["step"] / r["steps"] for c in r["curve"]]
        by_images.errorbar(xs, ys, yerr=errs, marker="o", label=name, capsize=3)
        by_minutes.errorbar(minutes, ys, yerr=errs, marker="o", label=name, capsize=3)
    by_images.set(xlabel="images seen", ylabel="checker accuracy, one sample (val)")
    by_minutes.set(xlabel="training minutes (one thread)")
    by_images.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config")
    parser.add_argument("--variant", action="append", help="name or name:key=value,key=value")
    parser.add_argument("--minutes", type=float, default=60.0, help="training budget of each variant")
    parser.add_argument("--out", default="runs/bakeoff")
    parser.add_argument("--count", type=int, default=400, help="val prompts scored")
    parser.add_argument("--best-of", type=int, default=8)
    parser.add_argument("--reranker", default="mini_t2i/pretrained/rerank_shapes64", help="picks the best of --best-of")
    parser.add_argument("--curve-points", type=int, default=4)
    parser.add_argument("--guidance-scale", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=32)
    parser.add_argument("--measure-only", action="store_true", help="skip probing and training (runs exist)")
    parser.add_argument("--sweep", action="store_true", help="guidance {1, 1.5, 2, 3} x {constant, rising} on the final models")
    parser.add_argument("--sweep-pipeline", metavar="MODEL", help="only the guidance sweep of a pipeline (shapes64)")
    args = parser.parse_args(argv)
    if args.sweep_pipeline:
        torch.set_num_threads(len(os.sched_getaffinity(0)))
        result = sweep_pipeline(args.sweep_pipeline, args.count, args.top_k)
        for setting, r in result.items():
            print(f"{setting:>13}: {r['overall']:.3f} +- {r['overall_se']:.3f}  "
                  + ", ".join(f"{t} {v['accuracy']:.2f}" for t, v in r["tasks"].items()))
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / f"sweep_{Path(args.sweep_pipeline).name}.json").write_text(json.dumps(result, indent=2))
        return
    if not args.config or not args.variant:
        parser.error("give --config and at least one --variant (or --sweep-pipeline MODEL)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    variants = dict(parse_variant(v) for v in args.variant)
    plan_path = out / "plan.json"
    if not args.measure_only:
        per_step = {name: probe_seconds_per_step(args.config, o) for name, o in variants.items()}
        steps = {name: max(10, int(args.minutes * 60 / s)) for name, s in per_step.items()}
        print(json.dumps({"seconds_per_step": per_step, "steps": steps}), flush=True)
        seconds = train_side_by_side(args.config, variants, steps, out, args.curve_points)
        plan_path.write_text(json.dumps({"seconds_per_step": per_step, "steps": steps, "seconds": seconds,
                                         "variants": variants, "minutes": args.minutes}, indent=2))
    plan = json.loads(plan_path.read_text())
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    reranker = None
    if args.best_of > 1:
        from mini_t2i.rerank.model import Reranker

        reranker = Reranker.from_pretrained(args.reranker)  # loaded once, for every variant
    results = {}
    for name in variants:  # each variant's numbers are on disk as soon as they exist (a long measurement)
        results[name] = measure(out / name, args.count, args.best_of, args.guidance_scale, args.top_k, args.sweep,
                                reranker)
        (out / "bakeoff.partial.json").write_text(json.dumps(results, indent=2))
        print(f"measured {name}", flush=True)
    plot(results, plan["seconds"], out / "curve.png")
    report = {"plan": plan, "results": results, "cpu": _cpu_name()}
    (out / "bakeoff.json").write_text(json.dumps(report, indent=2))
    (out / "bakeoff.md").write_text(markdown(report) + "\n")
    for name, r in results.items():
        last = r["curve"][-1]
        best = r.get(f"best_of_{args.best_of}", {})
        print(f"{name}: {r['train_tokens_per_s']:.0f} tok/s, {plan['steps'][name]} steps; one sample "
              f"{last['overall']:.3f} +- {last['overall_se']:.3f}"
              + (f", best of {args.best_of} {best['overall']:.3f} +- {best['overall_se']:.3f}" if best else "")
              + "; " + ", ".join(f"{t} {v['accuracy']:.2f}" for t, v in last["tasks"].items()))


def _cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown"


if __name__ == "__main__":
    main()
