"""Does the reranker read composition? The rate at which the true caption outscores each
minimal change of it, per kind of change, on three kinds of image.

    mini-t2i eval rerank --model mini_t2i/pretrained/rerank_shapes64 --images renders --count 600
    mini-t2i eval rerank --model ... --images reconstructions --vq mini_t2i/pretrained/vq_shapes64
    mini-t2i eval rerank --model ... --images samples --pipeline shapes64     # the generator's own
                                                  # (pipeline/rerank_eval.py: a generator is a later stage)

The changes (mini_t2i.rerank.negatives): relation flipped ("left of" -> "right of"),
subject and object swapped, colours swapped between the two objects (binding), a colour,
a shape, a size changed, count +- 1, background changed. Each image is scored against its
canonical caption and one change of every kind that applies, with the score reranking reads
(`Reranker.score`: the matching head's logit, or the cosine); a pair counts as won when the
true caption scores strictly higher. Standard errors are sqrt(p (1 - p) / n).

`samples`: the pipeline draws one image per prompt (seed i), the Shapes World checker says
which ones show their caption, and only those are diagnosed: the checker's verdict is the
label of an evaluation here, never of training data.
"""

from __future__ import annotations

import math

import numpy as np

from mini_t2i.report import write_report


def pairwise_table(result: dict) -> dict:
    """hard_negative_preference's per-kind rates -> {kind: {"rate", "se", "count"}}."""
    rates, counts = result["hard_negative_pairwise_per_kind"], result["hard_negative_pairwise_count_per_kind"]
    return {k: {"rate": p, "se": math.sqrt(p * (1 - p) / counts[k]), "count": counts[k]} for k, p in rates.items()}


def diagnose(model_path: str, images: str = "renders", split: str = "val", count: int = 600, seed: int = 0,
             text_tokenizer: str = "mini_t2i/pretrained/text_shapes", vq: str = "mini_t2i/pretrained/vq_shapes64",
             out: str | None = None, is_verbose: bool = True, score: str = "auto",
             relation_weight: float = 1.0, object_weight: float = 0.5, consensus_weight: float = 0.25) -> dict:
    """The per-kind pairwise rates of the reranker at `model_path` on `count` scenes of `split`,
    on `images`: "renders" or "reconstructions" (through the VQ at `vq`); score: "auto" (what
    reranking reads), "cosine", "head", "relations" (auto + relation_weight x rerank/relations.py) or
    "composition" (auto + the object, relation and consensus terms of rerank/objects.py)."""
    from mini_t2i.rerank.model import Reranker
    from mini_t2i.text.tokenizer import TextTokenizer

    if images not in ("renders", "reconstructions"):
        raise ValueError(f"images={images!r}: choose renders, reconstructions or samples")
    model = Reranker.from_pretrained(model_path)
    pixels, metas, texts = shapes_scenes(split, count, seed, model.config.image_size)
    if images == "reconstructions":
        from mini_t2i.vq.evaluate import reconstruct
        from mini_t2i.vq.model import VQModel

        pixels, _ = reconstruct(VQModel.from_pretrained(vq).eval(), pixels)
    report = diagnose_images(model, TextTokenizer.from_pretrained(text_tokenizer), pixels, metas, seed, score,
                             relation_weight, object_weight, consensus_weight)
    report = {"model": str(model_path), "images": images, "split": split, "scenes": count, **report}
    write_report(report, format_report(report), out, is_verbose)
    return report


def shapes_scenes(split: str, count: int, seed: int, size: int) -> tuple[np.ndarray, list[dict], list[str]]:
    """(N, S, S, 3) uint8 renders, their metas and captions: the first `count` scenes of `split`."""
    from mini_t2i.data.config import DataConfig
    from mini_t2i.data.sources import iter_examples

    examples = list(iter_examples(DataConfig(source="shapes", split=split, count=count, seed=seed, image_size=size)))
    return (np.stack([np.asarray(e.image, dtype=np.uint8) for e in examples]), [e.meta for e in examples],
            [e.text for e in examples])


SCORES = {"auto": None, "cosine": False, "head": True, "relations": None, "composition": None}  # --score -> Reranker.score's use_head


def diagnose_images(model, tokenizer, pixels: np.ndarray, metas: list[dict], seed: int = 0,
                    score: str = "auto", relation_weight: float = 1.0, object_weight: float = 0.5,
                    consensus_weight: float = 0.25) -> dict:
    """The report's numbers for these images and their scenes' metas. score "relations": what
    reranking reads plus relation_weight x the cut-view relation contrast (rerank/relations.py);
    "composition": plus the weighted object, relation and consensus terms (rerank/objects.py)."""
    from mini_t2i.rerank.evaluate import hard_negative_preference

    if score not in SCORES:
        raise ValueError(f"score={score!r}: choose auto, cosine, head, relations or composition")
    head = model.matcher is not None and score != "cosine"
    name = "matching head" if head else "cosine"
    scorer = model
    if score == "relations":
        from mini_t2i.rerank.relations import RelationScorer

        scorer, name = RelationScorer(model, tokenizer, relation_weight), f"{name} + {relation_weight:g} x relations"
    if score == "composition":
        from mini_t2i.rerank.objects import CompositionScorer

        scorer = CompositionScorer(model, tokenizer, object_weight, relation_weight, consensus_weight)
        name = f"{name} + objects {object_weight:g}, relations {relation_weight:g}, consensus {consensus_weight:g}"
    result = hard_negative_preference(scorer, pixels, metas, tokenizer, seed, SCORES[score])
    return {"diagnosed": len(metas), "score": name,
            "pairwise": pairwise_table(result), "all_changes_beaten_per_task": result["hard_negative_per_task"]}


def format_report(report: dict) -> str:
    lines = [f"{report['model']} ({report['score']}) on {report['diagnosed']} {report['images']} of "
             f"{report['split']}: the true caption beats the changed one", "",
             "| change | pairwise | n |", "|---|---|---|"]
    lines += [f"| {k} | {v['rate']:.3f} ± {v['se']:.3f} | {v['count']} |" for k, v in report["pairwise"].items()]
    return "\n".join(lines)
