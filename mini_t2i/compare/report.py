"""compare.json -> the markdown tables and the PNG plot that `mini-t2i compare` writes.

    text = markdown_report(json.load(open("runs/compare/compare.json")))
    plot_report(result, "runs/compare/compare.png")       # needs matplotlib (the `eval` extra)
"""

from __future__ import annotations

from pathlib import Path

MODELS = ("autoregressive", "diffusion")
FID_CAVEAT = (
    "FID and KID use ImageNet EfficientNet-Lite0 features (not Inception), on {size} px images resized to 224 px, "
    "with as many real images as generated ones: they rank models within this table, not against published "
    "FIDs. FID is biased upwards at this sample size; the real row is the floor (real renders against other "
    "real renders of the same splits), and differences smaller than the KID std are noise.")


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def _rows(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def headline(result: dict) -> list[str]:
    """The verdict in numbers: who wins on quality and on speed, and by what ratio."""
    q, sp = result["quality"], result["speed"]
    splits = list(q["autoregressive"]["splits"])
    col = "reranked" if result["config"]["num_candidates"] > 1 else "one_sample"
    lines = []
    for split in splits:
        a, d = (q[m]["splits"][split][col]["overall"] for m in MODELS)
        lines.append(f"- **{split} accuracy** ({col.replace('_', ' ')}): autoregressive {a:.3f}, diffusion "
                     f"{d:.3f} (autoregressive/diffusion: {_ratio(a, d)}).")
    a, d = q["autoregressive"]["fid"], q["diffusion"]["fid"]
    lines.append(f"- **FID** (lower is better; real floor {result['references']['real']['fid']:.2f}): "
                 f"autoregressive {a:.2f}, diffusion {d:.2f}.")
    a, d = sp["autoregressive"]["seconds_per_image_batch1"], sp["diffusion"]["seconds_per_image_batch1"]
    if a and d:
        lines.append(f"- **Speed at batch 1**: autoregressive {a:.3f} s/image, diffusion {d:.3f} s/image "
                     f"(autoregressive/diffusion speed: {_ratio(d, a)}).")
    a, d = sp["autoregressive"]["best_images_per_s"], sp["diffusion"]["best_images_per_s"]
    lines.append(f"- **Best throughput**: autoregressive {a:.2f} images/s, diffusion {d:.2f} images/s "
                 f"(autoregressive/diffusion: {_ratio(a, d)}).")
    a, d = sp["autoregressive"]["flops_per_image"], sp["diffusion"]["flops_per_image"]
    lines.append(f"- **FLOPs per image**: autoregressive {a / 1e9:.3g} G, diffusion {d / 1e9:.3g} G "
                 f"(diffusion needs {_ratio(d, a)}).")
    return lines


def markdown_report(result: dict) -> str:
    cfg, q, refs = result["config"], result["quality"], result["references"]
    n = cfg["num_candidates"]
    col = "reranked" if n > 1 else "one_sample"
    pick = f"best of {n} by the shared reranker" if n > 1 else "one sample per prompt, no reranking"
    out = [f"# Autoregressive vs diffusion ({cfg['count']} prompts per split, {pick})", ""]
    out += headline(result) + [""]

    out += ["## Models", ""]
    out += _rows(["model", "source", "parameters", "non-embedding", "sampling"], [
        [m, f"`{result['models'][m]['source']}`", f"{result['models'][m]['parameters']['total'] / 1e6:.2f}M",
         f"{result['models'][m]['parameters']['non_embedding'] / 1e6:.2f}M",
         ", ".join(f"{k}={v}" for k, v in result["models"][m]["settings"].items())] for m in MODELS]) + [""]

    out += ["## Shapes World checker accuracy", ""]
    for split in q["autoregressive"]["splits"]:
        tasks = list(refs["real"]["splits"][split]["one_sample"]["tasks"])
        sources = [("real renders", refs["real"]["splits"][split]["one_sample"]),
                   ("VQ reconstructions", refs["vq_reconstructions"]["splits"][split]["one_sample"])]
        sources += [(m, q[m]["splits"][split][col]) for m in MODELS]
        rows = [[t] + [f"{s['tasks'][t]['accuracy']:.3f}" for _, s in sources] for t in tasks]
        rows.append(["**overall**"] + [f"**{s['overall']:.3f}**" for _, s in sources])
        out += [f"`{split}` ({refs['real']['splits'][split]['one_sample']['count']} prompts):", ""]
        out += _rows(["task"] + [name for name, _ in sources], rows) + [""]

    out += ["## Distribution, CLIP score and diversity", ""]
    div = result.get("diversity", {})
    rows = []
    for name, r in [("real renders (floor)", refs["real"]), ("VQ reconstructions", refs["vq_reconstructions"])] + \
            [(m, q[m]) for m in MODELS]:
        spread = div.get(name, {}).get("mean") if name in MODELS else None
        rows.append([name, f"{r['fid']:.2f}", f"{r['kid']:.4f} ± {r['kid_std']:.4f}", f"{r['clip_score']:.3f}",
                     f"{spread:.3f}" if spread is not None else ""])
    out += _rows(["images", "FID", "KID", "CLIP score", "diversity"], rows) + [""]
    if div:
        out += [f"Diversity: mean cosine distance between the features of {div['samples_per_prompt']} samples of "
                f"each of {div['prompts']} test_iid prompts (0 = every seed gives the same image); different "
                f"real images are {div['real_across_prompts']:.3f} apart. CLIP score: the shared reranker's cosine "
                "of image and caption.", ""]
    out += [FID_CAVEAT.format(size=result.get("image_size", "?")), ""]

    out += ["## Speed", ""]
    sp = result["speed"]
    out += _rows(["model", "s/image at batch 1", "best images/s (batch)", "sequential network calls",
                  "GFLOPs per image", "threads"], [
        [m, f"{sp[m]['seconds_per_image_batch1']:.3f}" if sp[m]["seconds_per_image_batch1"] else "",
         f"{sp[m]['best_images_per_s']:.2f} ({sp[m]['best_batch_size']})", str(sp[m]["sequential_network_calls"]),
         f"{sp[m]['flops_per_image'] / 1e9:.3g}", str(sp[m]["threads"])] for m in MODELS]) + [""]
    out += ["Generation only (text encoding, sampling, VQ decode), not reranking; FLOPs counted by "
            "torch's FlopCounterMode over one image with its guidance rows.", ""]

    sweeps = result.get("sweeps", {})
    for axis, label in (("guidance_scale", "guidance scale"), ("num_steps", "sampling steps")):
        runs = sweeps.get(axis, {})
        if not runs:
            continue
        out += [f"## Quality against {label} (first {cfg['sweep_count']} test_iid prompts, one sample each)", ""]
        rows = [[m, f"{p['value']:g}", f"{p['accuracy']:.3f}", f"{p['clip_score']:.3f}", f"{p['kid']:.4f}",
                 f"{p['seconds_per_image']:.3f}"] for m, points in runs.items() for p in points]
        out += _rows(["model", label, "accuracy", "CLIP score", "KID", "s/image"], rows) + [""]
    out += [f"Whole comparison: {result.get('seconds', '?')} s.", ""]
    return "\n".join(out)


def _main_point(result: dict, model: str) -> tuple[float, float]:
    """(accuracy, s/image) of a model's main settings on the sweep prompts: its guidance
    sweep point at its main guidance scale (the same prompts as the other sweeps), or,
    without one, its main run on test_iid."""
    settings = result["models"][model]["settings"]
    for point in result.get("sweeps", {}).get("guidance_scale", {}).get(model, []):
        if point["value"] == settings.get("guidance_scale"):
            return point["accuracy"], point["seconds_per_image"]
    splits = result["quality"][model]["splits"]
    main = splits.get("test_iid", next(iter(splits.values())))
    return main["one_sample"]["overall"], main["seconds_per_image"]


def plot_report(result: dict, path: str | Path) -> Path:
    """Three panels: accuracy against sequential network calls, against guidance scale and
    against seconds per image (test_iid sweeps)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("the comparison plot needs matplotlib: pip install -e '.[eval]'") from None
    sweeps, speed = result.get("sweeps", {}), result["speed"]
    colors = {"autoregressive": "tab:blue", "diffusion": "tab:orange"}
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    steps = sweeps.get("num_steps", {})
    for m in MODELS:
        calls = speed[m]["sequential_network_calls"]
        if m in steps:
            axes[0].plot([p["value"] for p in steps[m]], [p["accuracy"] for p in steps[m]], "o-", color=colors[m],
                         label=f"{m} (steps)")
            axes[2].plot([p["seconds_per_image"] for p in steps[m]], [p["accuracy"] for p in steps[m]], "o-",
                         color=colors[m], label=f"{m} (steps)")
        else:
            acc, seconds = _main_point(result, m)
            axes[0].plot([calls], [acc], "s", color=colors[m], markersize=9, label=f"{m} ({calls} calls)")
            axes[2].plot([seconds], [acc], "s", color=colors[m], markersize=9, label=m)
        guidance = sweeps.get("guidance_scale", {}).get(m)
        if guidance:
            axes[1].plot([p["value"] for p in guidance], [p["accuracy"] for p in guidance], "o-", color=colors[m],
                         label=m)
    axes[0].set(xscale="log", xlabel="sequential network calls per image", ylabel="test_iid accuracy",
                title="quality vs sampling steps")
    axes[1].set(xlabel="guidance scale", ylabel="test_iid accuracy", title="quality vs guidance")
    axes[2].set(xscale="log", xlabel=f"seconds per image (batch {result['config']['batch_size']})",
                ylabel="test_iid accuracy", title="quality vs time")
    from matplotlib.ticker import NullFormatter

    for ax in axes:
        ax.set_ylim(bottom=-0.01)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
