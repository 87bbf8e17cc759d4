"""How good is a reranker: retrieval, reranking among close images, and hard negatives.

Three numbers, from the easiest to the one that matters for DALL-E-style reranking:

- retrieval: image -> text and text -> image top-1 within blocks of 100 val pairs;
- rerank_top1: for each caption, its ground-truth image against 7 images of other
  captions of the same Shapes World task (close negatives: same kind of scene), the
  share where the true image scores highest (chance: 1/8). A same-task image may show
  the caption as well (another "red circle"); rerank_distinct_top1 leaves out the
  candidates that the Shapes World checker says fit the caption;
- hard_negatives: for each image, its true caption against the same caption changed
  in one detail (relation flipped, count changed, colours swapped, ...), per task:
  the share where the true caption beats every perturbation. Both sides use the
  canonical template, so only the content differs.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from mini_t2i.rerank.model import Reranker

RERANK_CANDIDATES = 8  # images per caption in rerank_top1: the truth and 7 of the same task
RETRIEVAL_BLOCK = 100  # pairs per retrieval block


def _embeddings(model: Reranker, images: np.ndarray, text_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return model.embed_images(np.asarray(images)), model.embed_texts(text_ids)


def retrieval_top1(sims: torch.Tensor, block: int = RETRIEVAL_BLOCK) -> dict:
    """sims (N, N) image x text for matching pairs on the diagonal -> top-1 rates
    within consecutive blocks of `block` pairs (a trailing partial block is used too)."""
    i2t, t2i, n = 0, 0, len(sims)
    for s in range(0, n, block):
        sub = sims[s:s + block, s:s + block]  # (b, b)
        target = torch.arange(len(sub))
        i2t += int((sub.argmax(1) == target).sum())
        t2i += int((sub.argmax(0) == target).sum())
    return {"retrieval_i2t_top1": i2t / n, "retrieval_t2i_top1": t2i / n, "retrieval_block": min(block, n)}


def rerank_top1(sims: torch.Tensor, tasks: list[str], seed: int = 0, candidates: int = RERANK_CANDIDATES,
                fits=None, prefix: str = "rerank") -> dict:
    """sims (N, N) image x text. For each caption j: its image j against candidates - 1
    other images of the same task; the share where image j scores highest, overall and per task.
    fits(i, j), when given, says that image i also shows caption j: such an image is no
    negative for j and is left out of its candidates."""
    rng = np.random.default_rng(seed)
    by_task: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(tasks):
        by_task[t].append(i)
    wins: dict[str, list[bool]] = defaultdict(list)
    for j, task in enumerate(tasks):
        pool = [i for i in by_task[task] if i != j and (fits is None or not fits(i, j))]
        if len(pool) < candidates - 1:
            pool = [i for i in range(len(tasks)) if i != j and (fits is None or not fits(i, j))]  # any task
        others = rng.choice(pool, size=min(candidates - 1, len(pool)), replace=False)
        wins[task].append(bool(sims[j, j] > sims[others, j].max()))
    every = [w for ws in wins.values() for w in ws]
    return {f"{prefix}_top1": float(np.mean(every)), "rerank_candidates": candidates,
            f"{prefix}_top1_per_task": {t: float(np.mean(ws)) for t, ws in sorted(wins.items())}}


def hard_negative_preference(model: Reranker, images: np.ndarray, metas: list[dict], tokenizer, seed: int = 0,
                             use_head: bool | None = None) -> dict:
    """For each image: its canonical caption against one perturbation of every kind
    that applies (mini_t2i.rerank.negatives), scored as reranking scores (`Reranker.score`).
    Returns the share where the true caption wins against all of them, per task, and the
    pairwise win rate per kind."""
    from mini_t2i.rerank.negatives import perturb_meta, perturbation_kinds
    from mini_t2i.shapes.scenes import canonical_caption

    rng = np.random.default_rng(seed)
    rows: list[tuple[str, int, str]] = []  # (caption, its image, the perturbation; "" = the true caption)
    for i, meta in enumerate(metas):
        rows.append((canonical_caption(meta), i, ""))
        for kind in perturbation_kinds(meta):
            new = perturb_meta(meta, kind, rng)
            if new is not None:
                rows.append((canonical_caption(new), i, kind))
    texts, owner, kinds = (list(col) for col in zip(*rows))
    return preference_from_rows(model, images, texts, owner, kinds, [m["task"] for m in metas], tokenizer, use_head)


def preference_from_rows(model, images: np.ndarray, texts: list[str], owner: list[int], kinds: list[str],
                         tasks: list[str], tokenizer, use_head: bool | None = None) -> dict:
    """hard_negative_preference's numbers for given rows: caption texts[r] of image owner[r], kinds[r]
    the change it makes ("" = the image's true caption, one per image); tasks[i] groups image i."""
    # What reranking reads: the matching head's logit where there is one, else the cosine. One call per
    # image with its captions: a scorer that reads rows of one caption as candidates of one prompt
    # (rerank/objects.py, relations.py) must not see other scenes that happen to share a caption.
    ids = tokenizer.encode(texts)  # (T, text_len)
    owners = np.array(owner)
    sims = [0.0] * len(texts)
    for i in range(len(images)):
        rows = np.flatnonzero(owners == i)
        if not len(rows):
            continue
        for r, s in zip(rows, model.score(images[owners[rows]], ids[torch.from_numpy(rows)], use_head=use_head).tolist()):
            sims[r] = s
    true_sim: dict[int, float] = {o: s for o, s, k in zip(owner, sims, kinds) if k == ""}
    beaten: dict[int, bool] = defaultdict(bool)
    per_kind: dict[str, list[bool]] = defaultdict(list)
    for o, s, k in zip(owner, sims, kinds):
        if k:
            per_kind[k].append(true_sim[o] > s)
            beaten[o] |= s >= true_sim[o]
    per_task: dict[str, list[bool]] = defaultdict(list)
    for i, task in enumerate(tasks):
        per_task[task].append(not beaten[i])
    every = [w for ws in per_task.values() for w in ws]
    return {"hard_negative_all": float(np.mean(every)),
            "hard_negative_per_task": {t: float(np.mean(ws)) for t, ws in sorted(per_task.items())},
            "hard_negative_pairwise_per_kind": {k: float(np.mean(ws)) for k, ws in sorted(per_kind.items())},
            "hard_negative_pairwise_count_per_kind": {k: len(ws) for k, ws in sorted(per_kind.items())}}


def evaluate_rerank(model: Reranker, data, tokenizer, seed: int = 0, full: bool = True) -> dict:
    """All metrics on `data` (a mini_t2i.rerank.train.PairData of val pairs); `full=False`
    skips the hard-negative test (for quick evaluations during training)."""
    img, txt = _embeddings(model, data.images, data.text_ids)
    sims = (img @ txt.T).cpu()  # (N, N) images x captions
    is_shapes = all(m is not None and "task" in m for m in data.metas)
    tasks = [m["task"] for m in data.metas] if is_shapes else ["all"] * len(data.metas)
    result = {"count": len(data.texts), **retrieval_top1(sims), **rerank_top1(sims, tasks, seed)}
    if full and is_shapes:
        # Same-task images can show the caption too (another red circle): the checker finds
        # them, and rerank_distinct_top1 draws the candidates from the images it rejects.
        from mini_t2i.shapes.checker import check_detection, detect_objects

        detections = [detect_objects(np.asarray(im)) for im in data.images]
        result.update(rerank_top1(sims, tasks, seed, fits=lambda i, j: check_detection(detections[i], data.metas[j]),
                                  prefix="rerank_distinct"))
        result.update(hard_negative_preference(model, np.asarray(data.images), data.metas, tokenizer, seed))
    return result


def evaluate_rerank_on_data(model_path: str, text_tokenizer: str = "mini_t2i/pretrained/text_shapes",
                            split: str = "val", count: int = 600, seed: int = 0, is_verbose: bool = True) -> dict:
    """Evaluate a saved reranker on a freshly rendered Shapes World split at its resolution."""
    import json

    from mini_t2i.data.config import DataConfig
    from mini_t2i.data.sources import iter_examples
    from mini_t2i.data.pairs import PairData
    from mini_t2i.text.tokenizer import TextTokenizer

    model = Reranker.from_pretrained(model_path)
    tokenizer = TextTokenizer.from_pretrained(text_tokenizer)
    cfg = DataConfig(source="shapes", split=split, count=count, seed=seed, image_size=model.config.image_size)
    examples = list(iter_examples(cfg))
    data = PairData(images=np.stack([np.asarray(e.image, dtype=np.uint8) for e in examples]),
                    text_ids=tokenizer.encode([e.text for e in examples]),
                    texts=[e.text for e in examples], metas=[e.meta for e in examples])
    result = evaluate_rerank(model, data, tokenizer, seed=seed) | {"split": split}
    if is_verbose:
        print(json.dumps(result, indent=2))
    return result
