"""`mini-t2i compare`: the autoregressive pipeline against the diffusion baseline, on the same prompts.

    mini-t2i compare --config configs/compare_shapes64.yaml      # -> runs/compare/compare.{json,md,png}

For each model, with the same prompts, seeds, best-of-N and shared reranker:

- quality: Shapes World checker accuracy per task on every split (one sample, and the
  reranker's pick of N when num_candidates > 1); the reranker's CLIP score (cosine of
  image and caption); FID and KID on EfficientNet-Lite0 features against renders of the
  same captions, beside the real-vs-real floor and the VQ tokenizer's reconstructions
  (the ceiling of the autoregressive model);
- diversity: the spread of `diversity_samples` samples of each of `diversity_prompts`
  prompts (mean pairwise cosine distance of features; metrics.diversity);
- speed: seconds per image at each batch size, FLOPs per image and sequential network
  calls (compare.measure);
- sweeps on the first `sweep_count` test_iid prompts: quality against guidance scale
  (both) and against sampling steps (diffusion; the autoregressive model has one fixed
  number of steps, one per image token).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from mini_t2i.compare.config import CompareConfig

DIVERSITY_SEED = 1_000_000  # diversity samples use seeds from here: none is a quality sample's


class PromptSet:
    """One split's prompts: captions, caption ids, checker metadata and the real renders."""

    def __init__(self, split: str, count: int, seed: int, image_size: int, tokenizer) -> None:
        from mini_t2i.data.config import DataConfig
        from mini_t2i.data.sources import iter_examples

        examples = list(iter_examples(DataConfig(source="shapes", split=split, count=count, seed=seed,
                                                 image_size=image_size)))
        self.split = split
        self.texts = [e.text for e in examples]
        self.metas = [e.meta for e in examples]
        self.tasks = [m["task"] for m in self.metas]
        self.real = np.stack([np.asarray(e.image, dtype=np.uint8) for e in examples])  # (P, S, S, 3)
        self.text_ids = tokenizer.encode(self.texts)  # (P, L)


def _checker(images: np.ndarray, metas: list, per_prompt: int = 1) -> np.ndarray:
    """(P * K, S, S, 3) images, K per prompt -> (P, K) 0/1 checker verdicts."""
    from mini_t2i.shapes.checker import check_image

    return np.array([check_image(im, metas[k // per_prompt]) for k, im in enumerate(images)],
                    dtype=np.float64).reshape(-1, per_prompt)


class Scorer:
    """The shared reranker and the feature network, with the distribution metrics over them."""

    def __init__(self, reranker, device: str, kid_subset_size: int) -> None:
        from mini_t2i.metrics.efficientnet import load_efficientnet_lite0

        self.reranker = reranker
        self.features_net = load_efficientnet_lite0(device)
        self.kid_subset_size = kid_subset_size

    def clip(self, images: np.ndarray, text_ids: torch.Tensor) -> np.ndarray:
        return self.reranker.score(images, text_ids).float().numpy()

    def features(self, images: np.ndarray) -> np.ndarray:
        from mini_t2i.metrics.efficientnet import image_features

        return image_features(self.features_net, images)

    def distance(self, real_features: np.ndarray, fake_features: np.ndarray, with_fid: bool = True) -> dict:
        from mini_t2i.metrics.distribution import frechet_distance, kernel_inception_distance

        kid, kid_std = kernel_inception_distance(real_features, fake_features, subset_size=self.kid_subset_size)
        out = {"kid": kid, "kid_std": kid_std}
        if with_fid:
            out["fid"] = frechet_distance(real_features, fake_features)
        return out


def _quality(gen, sets: list[PromptSet], settings: dict, cfg: CompareConfig, scorer: Scorer, real_feats,
             is_verbose: bool) -> tuple[dict, dict]:
    """Main-setting quality of one model: ({split: accuracies, CLIP, s/image}, {split: (P, N, S, S, 3)
    candidates})."""
    from mini_t2i.pipeline.evaluate import accuracy_summary

    n, out, candidates, chosen = cfg.num_candidates, {"splits": {}}, {}, []
    for ps in sets:
        ids = ps.text_ids.repeat_interleave(n, dim=0)  # (P * N, L): prompt i's candidates together
        start = time.perf_counter()
        images = gen.generate(ids, list(range(len(ids))), settings, cfg.batch_size, progress=is_verbose)
        seconds = time.perf_counter() - start
        correct = _checker(images, ps.metas, n)  # (P, N)
        clip = scorer.clip(images, ids).reshape(-1, n)  # (P, N)
        pick = clip.argmax(axis=1) if n > 1 else np.zeros(len(ps.texts), dtype=int)
        rows = np.arange(len(ps.texts))
        split = {"one_sample": accuracy_summary(correct.mean(axis=1), ps.tasks),
                 "clip_score": float(clip[rows, pick].mean()), "seconds_per_image": seconds / len(ids)}
        if n > 1:
            split["reranked"] = accuracy_summary(correct[rows, pick], ps.tasks)
            split["oracle"] = accuracy_summary(correct.max(axis=1), ps.tasks)
        out["splits"][ps.split] = split
        candidates[ps.split] = images.reshape(len(rows), n, *images.shape[1:])
        chosen.append(candidates[ps.split][rows, pick])
    fake = scorer.features(np.concatenate(chosen))
    out.update(scorer.distance(real_feats, fake))
    out["clip_score"] = float(np.mean([out["splits"][ps.split]["clip_score"] for ps in sets]))
    return out, candidates


def _references(sets: list[PromptSet], cfg: CompareConfig, pipe, scorer: Scorer, tokenizer) -> tuple[dict, np.ndarray]:
    """Real renders and VQ reconstructions scored like a model, and the real-vs-real floor."""
    from mini_t2i.pipeline.evaluate import accuracy_summary
    from mini_t2i.vq.evaluate import reconstruct

    real = np.concatenate([ps.real for ps in sets])
    real_feats = scorer.features(real)
    second = np.concatenate([PromptSet(ps.split, len(ps.texts), cfg.seed + 1, pipe.image_size, tokenizer).real
                             for ps in sets])  # other scenes of the same splits, as many
    refs = {"real": {"splits": {}}, "vq_reconstructions": {"splits": {}}}
    recons = []
    for ps in sets:
        rec, _ = reconstruct(pipe.vq, ps.real)
        recons.append(rec)
        for name, images in (("real", ps.real), ("vq_reconstructions", rec)):
            refs[name]["splits"][ps.split] = {
                "one_sample": accuracy_summary(_checker(images, ps.metas)[:, 0], ps.tasks),
                "clip_score": float(scorer.clip(images, ps.text_ids).mean())}
    refs["real"].update(scorer.distance(real_feats, scorer.features(second)))  # the floor: real vs other real
    refs["vq_reconstructions"].update(scorer.distance(real_feats, scorer.features(np.concatenate(recons))))
    for name in refs:
        refs[name]["clip_score"] = float(np.mean([s["clip_score"] for s in refs[name]["splits"].values()]))
    return refs, real_feats


def _diversity(gens: dict, main: dict, ps: PromptSet, cfg: CompareConfig, scorer: Scorer) -> dict:
    from mini_t2i.metrics.diversity import feature_spread, pairwise_spread

    p, k = min(cfg.diversity_prompts, len(ps.texts)), cfg.diversity_samples
    ids = ps.text_ids[:p].repeat_interleave(k, dim=0)  # (P * K, L)
    seeds = list(range(DIVERSITY_SEED, DIVERSITY_SEED + p * k))
    out = {"prompts": p, "samples_per_prompt": k,
           "real_across_prompts": pairwise_spread(scorer.features(ps.real[:p * k]))}
    for name, gen in gens.items():
        images = gen.generate(ids, seeds, main[name], cfg.batch_size)
        out[name] = feature_spread(scorer.features(images).reshape(p, k, -1))
        out[name]["accuracy"] = float(_checker(images, ps.metas[:p], k).mean())
    return out


def _sweep_point(gen, ps: PromptSet, settings: dict, cfg: CompareConfig, scorer: Scorer, real_feats,
                 reuse: tuple[np.ndarray, float] | None) -> dict:
    """One setting on the first sweep_count prompts, one sample each (candidate 0's seed);
    `reuse`: (images, s/image) of the main run, when `settings` are the main ones."""
    count = cfg.sweep_count
    ids, seeds = ps.text_ids[:count], [i * cfg.num_candidates for i in range(count)]
    if reuse is not None:
        images, seconds = reuse
    else:
        start = time.perf_counter()
        images = gen.generate(ids, seeds, settings, cfg.batch_size)
        seconds = (time.perf_counter() - start) / count
    point = {"accuracy": float(_checker(images, ps.metas[:count]).mean()),
             "clip_score": float(scorer.clip(images, ids).mean()), "seconds_per_image": seconds}
    point.update(scorer.distance(real_feats[:count], scorer.features(images), with_fid=False))
    return point


def _sweeps(gens: dict, main: dict, ps: PromptSet, cfg: CompareConfig, scorer: Scorer, real_feats,
            reuse: dict, is_verbose: bool) -> dict:
    """{"guidance_scale": {model: [points]}, "num_steps": {model: [points]}} on test_iid;
    reuse: {model: (main images of the sweep prompts, s/image)}."""
    axes = {"guidance_scale": cfg.guidance_sweep, "num_steps": cfg.step_sweep}
    out = {axis: {} for axis in axes}
    for axis, values in axes.items():
        for name, gen in gens.items():
            if axis not in gen.sweeps() or not values:
                continue
            points = []
            for value in values:
                settings = gen.settings(**{axis: value})
                point = _sweep_point(gen, ps, settings, cfg, scorer, real_feats,
                                     reuse[name] if settings == main[name] else None)
                points.append({"value": value, **point})
                if is_verbose:
                    print(f"  sweep {axis}={value} {name}: accuracy {point['accuracy']:.3f}, "
                          f"CLIP {point['clip_score']:.3f}, {point['seconds_per_image']:.3f} s/image")
            out[axis][name] = points
    return out


def run_compare(cfg: CompareConfig, is_verbose: bool = True) -> dict:
    """Run everything in the module doc; write compare.json, compare.md and compare.png
    to cfg.out_dir and return the result."""
    from mini_t2i.compare.generators import load_generators
    from mini_t2i.compare.measure import generation_cost, generation_speed
    from mini_t2i.compare.report import markdown_report, plot_report
    from mini_t2i.config import config_to_dict

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    started = time.perf_counter()
    say = print if is_verbose else (lambda *a, **k: None)
    autoregressive, diffusion, reranker = load_generators(cfg)
    gens = {"autoregressive": autoregressive, "diffusion": diffusion}
    main = {name: gen.settings() for name, gen in gens.items()}
    pipe, tokenizer = autoregressive.pipe, autoregressive.pipe.tokenizer
    sets = [PromptSet(split, cfg.count, cfg.seed, pipe.image_size, tokenizer) for split in cfg.splits]
    scorer = Scorer(reranker, cfg.device, cfg.kid_subset_size)

    say(f"references: real renders, real-vs-real floor, VQ reconstructions ({cfg.count} prompts x {cfg.splits})")
    references, real_feats = _references(sets, cfg, pipe, scorer, tokenizer)
    result = {"config": config_to_dict(cfg), "image_size": pipe.image_size, "models": {}, "references": references,
              "quality": {}}
    iid = next((ps for ps in sets if ps.split == "test_iid"), sets[0])
    reuse = {}
    for name, gen in gens.items():
        source = cfg.autoregressive if name == "autoregressive" else cfg.diffusion
        result["models"][name] = {"source": str(source), "parameters": gen.parameters(), "settings": main[name]}
        say(f"quality: {name} {main[name]}")
        result["quality"][name], candidates = _quality(gen, sets, main[name], cfg, scorer, real_feats, is_verbose)
        reuse[name] = (candidates[iid.split][:cfg.sweep_count, 0],
                       result["quality"][name]["splits"][iid.split]["seconds_per_image"])

    if cfg.diversity_prompts:
        say(f"diversity: {cfg.diversity_prompts} prompts x {cfg.diversity_samples} samples")
        result["diversity"] = _diversity(gens, main, iid, cfg, scorer)
    iid_feats = scorer.features(iid.real)
    say(f"sweeps on {cfg.sweep_count} test_iid prompts")
    result["sweeps"] = _sweeps(gens, main, iid, cfg, scorer, iid_feats, reuse, is_verbose)

    result["speed"] = {}
    for name, gen in gens.items():
        say(f"speed: {name} at batch sizes {cfg.speed_batch_sizes}")
        cost = generation_cost(gen, iid.text_ids[:1], main[name])
        speed = generation_speed(gen, iid.text_ids, main[name], cfg.speed_batch_sizes, cfg.speed_repeats)
        result["speed"][name] = {**cost, **speed}
    result["seconds"] = round(time.perf_counter() - started, 1)

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (out / "compare.md").write_text(markdown_report(result), encoding="utf-8")
    plot_report(result, out / "compare.png")
    say(markdown_report(result))
    say(f"wrote {out / 'compare.json'}, {out / 'compare.md'} and {out / 'compare.png'} in {result['seconds']} s")
    return result
