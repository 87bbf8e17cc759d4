"""How close are a pipeline's pictures to real ones for captions it never saw? FID, KID, R-precision.

    mini-t2i eval fidelity --model emoji64 --val data/emoji64/val --train data/emoji64/train

For every caption of the held-back image folder `val`, the pipeline draws one image with its
defaults (the reranker's best of `num_candidates`, seeds `i * num_candidates ...`). On
EfficientNet-Lite0 ImageNet features (mini_t2i.metrics), against the real val images:

- FID / KID of the samples;
- the same for the pipeline VQ's reconstructions of the real val images (the tokenizer's floor:
  no sample can be closer than what its tokenizer gives back);
- the same for as many real *train* images (the real-vs-real floor at this sample size).

FID is biased upwards at small sizes, so the floors are measured at the same size and only the
ratios (samples / real-vs-real floor) compare across runs. Issue 20 asks for <= 2.0x.

R-precision: each sample's own caption against 99 other val captions (distinct texts, drawn per
sample with a fixed seed), by the reranker's cosine: the share where its caption comes first.
The same reranker picked the sample, so this flatters the samples; the real val images' own
R-precision, measured the same way, is printed beside it as the reference.
"""

from __future__ import annotations

import json
import time

import numpy as np

R_PRECISION_CAPTIONS = 100  # the true caption and 99 others


def _distinct_captions(captions: list[str], needed: int) -> list[str]:
    texts = sorted(set(captions))
    if len(texts) < needed:
        raise ValueError(f"R-precision needs {needed} distinct captions, the val folder has "
                         f"{len(texts)}; use a larger held-back set (or a larger --count)")
    return texts


def r_precision(reranker, images: np.ndarray, captions: list[str], tokenizer, seed: int = 0,
                num_captions: int = R_PRECISION_CAPTIONS) -> dict:
    """Share of images i whose caption i outscores num_captions - 1 other distinct captions of
    `captions` (cosine; ties count against). Needs at least num_captions distinct ones."""
    texts = _distinct_captions(captions, num_captions)
    index = {t: i for i, t in enumerate(texts)}
    sims = reranker.score_matrix(images, tokenizer.encode(texts)).numpy()  # (N, T)
    rng = np.random.default_rng(seed)
    hits = []
    for i, caption in enumerate(captions):
        own = index[caption]
        others = rng.choice(len(texts) - 1, num_captions - 1, replace=False)
        others = others + (others >= own)  # skip the true caption
        hits.append(bool(sims[i, own] > sims[i, others].max()))
    p = float(np.mean(hits))
    return {"r_precision": p, "se": float(np.sqrt(p * (1 - p) / len(hits))), "count": len(hits),
            "num_captions": num_captions}


def evaluate_fidelity(model: str, val: str, train: str, count: int = 0, num_candidates: int | None = None,
                      seed: int = 0, batch_size: int | None = None, out: str | None = None,
                      is_verbose: bool = True, samples_out: str | None = None,
                      r_precision_captions: int = R_PRECISION_CAPTIONS) -> dict:
    """The module doc's numbers for a pipeline (a shipped name or folder) on image folders
    `val` (held back) and `train`; writes JSON to `out` and the samples (PNG) to `samples_out`."""
    from mini_t2i.metrics.efficientnet import image_features, load_efficientnet_lite0
    from mini_t2i.pipeline.pipeline import TextToImagePipeline
    from mini_t2i.vq.evaluate import reconstruct
    from mini_t2i.vq.fidelity import distances, floor_images, folder_examples

    pipe = TextToImagePipeline.from_pretrained(model)
    if pipe.reranker is None:
        raise ValueError(f"{model} has no reranker; R-precision needs one (assemble the pipeline with a reranker)")
    n = num_candidates or pipe.config.num_candidates
    real, captions = folder_examples(val, pipe.image_size, count)
    _distinct_captions(captions, r_precision_captions)  # before an hour of sampling, not after
    others = floor_images(train, pipe.image_size, len(real), val, seed)

    sampling = pipe.sampling_settings()
    _, text_ids = pipe.encode_prompts(captions)
    t0 = time.perf_counter()
    images, scores = pipe.generate_candidates(text_ids.repeat_interleave(n, dim=0), list(range(len(real) * n)),
                                              batch_size=batch_size, progress=is_verbose, **sampling)
    seconds = time.perf_counter() - t0
    best = scores.reshape(len(real), n).argmax(1) + np.arange(len(real)) * n
    samples = images[best]  # (N, S, S, 3): the reranker's pick per caption
    recon, _ = reconstruct(pipe.vq, real)

    net = load_efficientnet_lite0()
    f_real, f_samples, f_recon, f_other = (image_features(net, x) for x in (real, samples, recon, others))
    result = {"model": str(model), "val": val, "train": train, "count": len(real), "num_candidates": n,
              "sampling": sampling, "seconds_sampling": round(seconds, 1)}
    for name, feats in (("samples", f_samples), ("reconstructions", f_recon), ("floor", f_other)):
        result[name] = distances(feats, f_real)
    result["fid_ratio_samples"] = result["samples"]["fid"] / result["floor"]["fid"]
    result["fid_ratio_reconstructions"] = result["reconstructions"]["fid"] / result["floor"]["fid"]
    for name, x in (("samples", samples), ("real", real)):
        result[f"r_precision_{name}"] = r_precision(pipe.reranker, x, captions, pipe.tokenizer, seed,
                                                    r_precision_captions)
    if samples_out:
        from mini_t2i.shapes.files import write_image_dir

        write_image_dir(samples_out, samples, captions, [{} for _ in captions])
    if out:
        from mini_t2i.atomic import atomic_write_text

        atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    return result


def format_result(r: dict) -> str:
    """A short table of an `evaluate_fidelity` result."""
    rows = [f"{r['model']} on {r['count']} held-back captions of {r['val']} (best of {r['num_candidates']}):",
            "| | FID | x floor | KID |", "|---|---|---|---|"]
    for name in ("samples", "reconstructions", "floor"):
        s = r[name]
        rows.append(f"| {name} | {s['fid']:.1f} | {s['fid'] / r['floor']['fid']:.2f} | "
                    f"{s['kid']:.4f} ± {s['kid_std']:.4f} |")
    rs, rr = r["r_precision_samples"], r["r_precision_real"]
    rows.append(f"R-precision (1 of {rs['num_captions']}): samples {rs['r_precision']:.3f} ± {rs['se']:.3f}, "
                f"real val images {rr['r_precision']:.3f} ± {rr['se']:.3f}")
    return "\n".join(rows)
