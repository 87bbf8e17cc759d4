"""The reranker judged on the generator's own candidates (issue 19): what needs a generator,
so it lives here, above both (mini_t2i.rerank.diagnose does renders and reconstructions).

    mini-t2i eval rerank --model RERANKER --images samples --pipeline shapes64
    python -m mini_t2i.pipeline.rerank_eval --pipeline shapes64 --rerankers mini_t2i/pretrained/rerank_shapes64 \
        runs/rerank_shapes64_matcher/final --count 300 --candidates 8 32

`diagnose_generator` (`mini-t2i eval rerank --score generator --pipeline shapes64`): the same
diagnostic with the generator as the scorer, log p(codes | caption) of each image's VQ codes
(mini_t2i.transformer.likelihood): does the generator itself tell the true caption from each
change? (On renders the unconditional term is the same for every caption of an image.)

`diagnose_samples`: one sample per prompt (seed i, the pipeline's defaults); the checker
says which show their caption, and only those are diagnosed (mini_t2i.rerank.diagnose).
`compare_rerankers`: `max(candidates)` samples per prompt are drawn once (candidate j of
prompt i with seed i * max + j); for each reranker and each candidate count n, the first n
candidates are reranked, and the reranked accuracy is reported beside one sample (the mean
over the n) and the oracle (any of the n is right), per task, with the ratio to the oracle.
The checker's verdicts are the labels of this evaluation only, never of training data.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from mini_t2i.report import write_report


def _sample(pipe, texts: list[str], per_prompt: int, batch_size: int | None = None) -> np.ndarray:
    """(P * per_prompt, S, S, 3) images: candidate j of prompt i with seed i * per_prompt + j."""
    _, text_ids = pipe.encode_prompts(texts)
    sampling = pipe.sampling_settings()  # pipeline.yaml's values, every key
    rows = text_ids.repeat_interleave(per_prompt, dim=0)
    images, _ = pipe.generate_candidates(rows, list(range(len(rows))), batch_size=batch_size, with_scores=False,
                                         **sampling)
    return images


def diagnose_samples(model_path: str, pipeline: str = "shapes64", split: str = "val", count: int = 600,
                     seed: int = 0, text_tokenizer: str = "mini_t2i/pretrained/text_shapes", out: str | None = None,
                     is_verbose: bool = True, score: str = "auto",
                     weights: tuple[float, float, float] = (1.0, 0.5, 0.25)) -> dict:
    """mini_t2i.rerank.diagnose on the samples of `pipeline` that the checker passes; weights: the
    (relation, object, consensus) weights of score "relations" / "composition"."""
    from mini_t2i.pipeline.pipeline import TextToImagePipeline
    from mini_t2i.rerank.diagnose import diagnose_images, format_report, shapes_scenes
    from mini_t2i.rerank.model import Reranker
    from mini_t2i.shapes.checker import check_image
    from mini_t2i.text.tokenizer import TextTokenizer

    pipe = TextToImagePipeline.from_pretrained(pipeline)
    _, metas, texts = shapes_scenes(split, count, seed, pipe.image_size)
    images = _sample(pipe, texts, 1)
    keep = [i for i, (im, m) in enumerate(zip(images, metas)) if check_image(im, m)]
    model = Reranker.from_pretrained(model_path)
    report = diagnose_images(model, TextTokenizer.from_pretrained(text_tokenizer), images[keep],
                             [metas[i] for i in keep], seed, score, *weights)
    report = {"model": str(model_path), "images": "samples", "pipeline": str(pipeline), "split": split,
              "scenes": count, **report}
    write_report(report, format_report(report), out, is_verbose)
    return report


class GeneratorScorer:
    """A pipeline's generator behind the reranker's `score` interface: images (N, H, W, 3)
    uint8 and (N, text_len) ids -> (N,) log p(VQ codes of each image | its caption)."""

    matcher = None  # diagnose_images reports "cosine" unless a reranker has a head

    def __init__(self, pipe, uncond_weight: float = 0.0) -> None:
        self.pipe, self.uncond_weight = pipe, uncond_weight

    def score(self, images: np.ndarray, text_ids, use_head=None):
        """uncond_weight > 0: minus that times log p(codes | empty caption) (likelihood.py)."""
        import torch

        from mini_t2i.pixels import tensor_from_uint8
        from mini_t2i.transformer.likelihood import caption_image_scores

        if images.shape[1:] != (self.pipe.image_size, self.pipe.image_size, 3):  # resize one by one
            codes = torch.stack([self.pipe.image_tokens(im) for im in images])  # (N, h*w)
        else:  # the usual case (renders and candidates at the model's size): the VQ in batches
            codes = torch.cat([self.pipe.vq.encode(tensor_from_uint8(torch.from_numpy(np.ascontiguousarray(
                images[s:s + 256])).to(self.pipe.device))).flatten(1).cpu() for s in range(0, len(images), 256)])
        return caption_image_scores(self.pipe.transformer, self.pipe.transformer_config,
                                    self.pipe.transformer_text_ids(text_ids), codes,
                                    self.uncond_weight)


def diagnose_generator(pipeline: str = "shapes64", images: str = "renders", split: str = "val", count: int = 600,
                       seed: int = 0, out: str | None = None, is_verbose: bool = True) -> dict:
    """mini_t2i.rerank.diagnose with the generator of `pipeline` as the scorer, on renders
    (their VQ codes; reconstructions give nearly the same codes, so only renders are offered)."""
    from mini_t2i.pipeline.pipeline import TextToImagePipeline
    from mini_t2i.rerank.diagnose import diagnose_images, format_report, shapes_scenes

    if images != "renders":
        raise ValueError(f"images={images!r}: the generator scores renders (their VQ codes); use --images renders")
    pipe = TextToImagePipeline.from_pretrained(pipeline)
    pixels, metas, _ = shapes_scenes(split, count, seed, pipe.image_size)
    report = diagnose_images(GeneratorScorer(pipe), pipe.tokenizer, pixels, metas, seed, "auto")
    report = {**report, "model": f"{pipeline} (generator)", "images": images, "split": split, "scenes": count,
              "score": "log p(codes | caption)"}
    write_report(report, format_report(report), out, is_verbose)
    return report


def _summary(values: np.ndarray, tasks: np.ndarray) -> dict:
    out = {"overall": float(values.mean()), "se": math.sqrt(values.mean() * (1 - values.mean()) / len(values))
           if set(np.unique(values)) <= {0.0, 1.0} else None, "tasks": {}}
    for t in sorted(set(tasks)):
        out["tasks"][t] = float(values[tasks == t].mean())
    return out


def compare_rerankers(pipeline: str, rerankers: Sequence[str], split: str = "test_iid", count: int = 300,
                      candidates: Sequence[int] = (8, 32), seed: int = 0, batch_size: int | None = None,
                      out: str | None = None, is_verbose: bool = True) -> dict:
    """Each reranker on the same candidates of `pipeline` (see the module doc)."""
    from mini_t2i.pipeline.pipeline import TextToImagePipeline
    from mini_t2i.rerank.diagnose import shapes_scenes
    from mini_t2i.shapes.checker import check_image

    pipe = TextToImagePipeline.from_pretrained(pipeline)
    _, metas, texts = shapes_scenes(split, count, seed, pipe.image_size)
    most = max(candidates)
    images = _sample(pipe, texts, most, batch_size)  # (P * most, S, S, 3)
    correct = np.array([check_image(im, metas[k // most]) for k, im in enumerate(images)], float).reshape(count, most)
    tasks = np.array([m["task"] for m in metas])
    _, text_ids = pipe.encode_prompts(texts)
    rows = text_ids.repeat_interleave(most, dim=0)
    result = {"pipeline": str(pipeline), "split": split, "count": count, "candidates": {}}
    for n in candidates:
        entry = {"one_sample": _summary(correct[:, :n].mean(1), tasks), "oracle": _summary(correct[:, :n].max(1), tasks),
                 "rerankers": {}}
        result["candidates"][str(n)] = entry
    for path in rerankers:
        scorer = _scorer(pipe, path)
        scores = scorer.score(images, rows).numpy().reshape(count, most)
        for n in candidates:
            entry = result["candidates"][str(n)]
            picked = correct[np.arange(count), scores[:, :n].argmax(1)]
            summary = _summary(picked, tasks)
            summary["of_oracle"] = summary["overall"] / max(entry["oracle"]["overall"], 1e-9)
            entry["rerankers"][str(path)] = summary
    write_report(result, format_comparison(result), out, is_verbose)
    return result


def _scorer(pipe, spec: str):
    """A --rerankers entry: a reranker folder; "generator[:W]" (GeneratorScorer); "relations:W[@FOLDER]"
    (rerank.relations.RelationScorer over FOLDER's reranker, or the pipeline's own); "composition:O,R,C[@FOLDER]"
    (rerank.objects.CompositionScorer with those object, relation and consensus weights)."""
    from mini_t2i.rerank.model import Reranker

    kind, _, rest = spec.partition(":")
    if kind == "generator":
        return GeneratorScorer(pipe, float(rest or 1.0))
    if kind == "relations":
        from mini_t2i.rerank.relations import RelationScorer

        weight, _, folder = rest.partition("@")
        reranker = Reranker.from_pretrained(folder) if folder else pipe.reranker
        if reranker is None:
            raise ValueError(f"{spec!r}: the pipeline has no reranker; name one as relations:W@FOLDER")
        return RelationScorer(reranker, pipe.tokenizer, float(weight or 1.0))
    if kind == "composition":
        from mini_t2i.rerank.objects import CompositionScorer

        weights, _, folder = rest.partition("@")
        values = [float(w) for w in weights.split(",")] if weights else [0.5, 1.0, 0.5]
        if len(values) != 3:
            raise ValueError(f"{spec!r}: give composition:OBJECT,RELATION,CONSENSUS weights, e.g. composition:0.5,1,0.5")
        reranker = Reranker.from_pretrained(folder) if folder else pipe.reranker
        if reranker is None:
            raise ValueError(f"{spec!r}: the pipeline has no reranker; name one as composition:O,R,C@FOLDER")
        return CompositionScorer(reranker, pipe.tokenizer, *values)
    return Reranker.from_pretrained(spec)


def format_comparison(result: dict) -> str:
    lines = []
    for n, entry in result["candidates"].items():
        tasks = list(entry["oracle"]["tasks"])
        lines += ["", f"{result['pipeline']} on {result['count']} {result['split']} prompts, {n} candidates each:", "",
                  "| scorer | overall | of oracle | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 3) + "|"]
        rows = [("one sample", entry["one_sample"], None)] + [
            (Path(p).name if Path(p).name != "final" else Path(p).parent.name, s, s["of_oracle"])
            for p, s in entry["rerankers"].items()] + [("oracle", entry["oracle"], 1.0)]
        for name, s, ratio in rows:
            se = f" ± {s['se']:.3f}" if s.get("se") is not None else ""
            lines.append(f"| {name} | {s['overall']:.3f}{se} | {'-' if ratio is None else f'{ratio:.2f}'} | "
                         + " | ".join(f"{s['tasks'][t]:.2f}" for t in tasks) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", default="shapes64")
    parser.add_argument("--rerankers", nargs="+", required=True,
                        help="reranker folders, scored on the same candidates; generator[:W] scores by the pipeline's "
                             "own log p(codes | caption) - W log p(codes | empty caption) (W = 1: the PMI); relations:W[@FOLDER] "
                             "adds W x the cut-view relation contrast to a reranker's cosine (rerank/relations.py); composition:O,R,C[@FOLDER] "
                             "adds the object, relation and consensus terms (rerank/objects.py)")
    parser.add_argument("--split", default="test_iid", choices=["val", "test_iid", "test_heldout"])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--candidates", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    compare_rerankers(args.pipeline, args.rerankers, args.split, args.count, args.candidates,
                      batch_size=args.batch_size, out=args.out)


if __name__ == "__main__":
    main()
