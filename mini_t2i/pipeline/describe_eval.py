"""How well does `describe` caption an image? The Shapes World checker judges its first caption.

    python -m mini_t2i.pipeline.describe_eval --pipeline shapes64 --count 300 --shortlist 0 16 32

For `count` renders of `split`, `describe_image` ranks a vocabulary of canonical captions: the
pipeline's captions.txt entries that are captions of some Shapes World scene (the scenes of
`shapes_captions`' draw), plus the renders' own. A caption counts as right when the checker
says the render shows it (`check_image` with that caption's scene), so an equally true
caption ("a red circle" for a red circle on black) counts too; `exact` is the share where
it is the render's own canonical caption. Per shortlist size (0: the reranker's cosine
alone), overall with its standard error and per task, and the seconds per image. The
checker only scores here; nothing is trained or selected on it.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import defaultdict
from typing import Sequence

import numpy as np

from mini_t2i.report import write_report

VOCAB_SCENES = 4000  # scenes drawn (round-robin over the splits) to map captions to scenes


def evaluate_describe(pipeline: str = "shapes64", split: str = "val", count: int = 300,
                      shortlists: Sequence[int] = (0, 16, 32), seed: int = 0, out: str | None = None,
                      is_verbose: bool = True) -> dict:
    """The module doc's table for the pipeline at `pipeline`."""
    from mini_t2i.pipeline.describe import CaptionIndex, describe_image, shapes_scenes_by_caption
    from mini_t2i.pipeline.pipeline import TextToImagePipeline
    from mini_t2i.rerank.diagnose import shapes_scenes
    from mini_t2i.shapes.checker import check_image
    from mini_t2i.shapes.scenes import canonical_caption

    pipe = TextToImagePipeline.from_pretrained(pipeline)
    pixels, metas, _ = shapes_scenes(split, count, seed, pipe.image_size)
    truth = [canonical_caption(m) for m in metas]
    scene_of = dict(zip(truth, metas))  # caption -> a scene it describes (the renders' own first)
    for caption, meta in shapes_scenes_by_caption(VOCAB_SCENES, seed).items():
        scene_of.setdefault(caption, meta)
    vocab = [c for c in dict.fromkeys(list(pipe.captions) + truth) if c in scene_of]
    index = CaptionIndex(pipe, vocab)
    result = {"pipeline": str(pipeline), "split": split, "count": count, "vocabulary": len(vocab), "shortlists": {}}
    for shortlist in shortlists:
        fits, exact = defaultdict(list), []
        start = time.perf_counter()
        for i in range(count):
            best = describe_image(pipe, pixels[i], index, top=1, shortlist=shortlist)[0].caption
            fits[metas[i]["task"]].append(bool(check_image(pixels[i], scene_of[best])))
            exact.append(best == truth[i])
        every = [x for xs in fits.values() for x in xs]
        p = float(np.mean(every))
        result["shortlists"][str(shortlist)] = {
            "fits": p, "se": math.sqrt(p * (1 - p) / len(every)), "exact": float(np.mean(exact)),
            "tasks": {t: float(np.mean(xs)) for t, xs in sorted(fits.items())},
            "seconds_per_image": (time.perf_counter() - start) / count}
    write_report(result, format_describe(result), out, is_verbose)
    return result


def format_describe(result: dict) -> str:
    tasks = list(next(iter(result["shortlists"].values()))["tasks"])
    lines = [f"describe on {result['count']} {result['split']} renders of {result['pipeline']}, "
             f"{result['vocabulary']} captions: does the first fit the image?", "",
             "| shortlist | fits | exact | " + " | ".join(tasks) + " | s / image |", "|---" * (len(tasks) + 4) + "|"]
    for k, r in result["shortlists"].items():
        name = "cosine alone" if k == "0" else f"generator orders {k}"
        lines.append(f"| {name} | {r['fits']:.3f} ± {r['se']:.3f} | {r['exact']:.3f} | "
                     + " | ".join(f"{r['tasks'][t]:.2f}" for t in tasks) + f" | {r['seconds_per_image']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", default="shapes64")
    parser.add_argument("--split", default="val", choices=["val", "test_iid", "test_heldout"])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--shortlist", type=int, nargs="+", default=[0, 16, 32])
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    evaluate_describe(args.pipeline, args.split, args.count, args.shortlist, out=args.out)


if __name__ == "__main__":
    main()
