"""Describe an image: which captions fit it best (a small CLIP interrogator, then the generator).

    pipe = TextToImagePipeline.from_pretrained("shapes64")
    describe_image(pipe, "photo.png")                 # the model's own caption list
    describe_image(pipe, im, ["a red circle", "two blue stars"], top=2)
    describe_image(pipe, im, shortlist=0)             # the reranker's cosine alone

Two stages, as retrieval then reranking: the reranker's cosine ranks every caption (one
image embedding and one matrix product, whatever the vocabulary), and the `shortlist` best
are re-ordered by the generator's own likelihood of the image's VQ codes under each caption,
log p(codes | caption) (mini_t2i.transformer.likelihood): a Bayes classifier with a uniform
prior over the shortlist. The generator reads colours, shapes and their binding far better
than the small CLIP does (docs/rerank.md: on 300 val renders with a 2,471-caption vocabulary,
the first caption fits the image 0.83 of the time against 0.30 for the cosine alone, with the
block model), at the cost of one teacher-forced forward pass per shortlisted caption (~0.7 s
for 32 on one thread).

A pipeline folder may hold `captions.txt`, one caption per line: the vocabulary used
when no captions are given (for the shipped models, captions of their training domain).
`mini-t2i pipeline captions DIR --shapes 4000 --from data/emoji64/train/metadata.jsonl`
writes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

CAPTIONS_FILE = "captions.txt"


DEFAULT_SHORTLIST = 32  # captions the generator re-orders; 0: the cosine alone


@dataclass
class CaptionMatch:
    """One ranked caption. `similarity`: the reranker's cosine; `log_likelihood`: the
    generator's log p(codes | caption) in nats (nan without the generator stage);
    `probability`: with the generator, the posterior over the shortlist (softmax of the
    log-likelihoods), else the softmax over all captions at the reranker's learnt temperature."""
    caption: str
    probability: float
    similarity: float
    log_likelihood: float = float("nan")


def read_captions(folder: str | Path) -> list[str]:
    """The caption vocabulary of a pipeline folder (empty when it has no captions.txt)."""
    path = Path(folder) / CAPTIONS_FILE
    if not path.is_file():
        return []
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class CaptionIndex:
    """Captions with their reranker embeddings, computed once: ranking an image against
    thousands of captions then costs one image embedding and one matrix product."""

    def __init__(self, pipe, captions: Sequence[str] | None = None, batch_size: int = 256) -> None:
        if pipe.reranker is None:
            raise ValueError("this pipeline has no reranker, which describing an image needs")
        self.captions = [c.strip() for c in (captions if captions is not None else pipe.captions) if c and c.strip()]
        if not self.captions:
            raise ValueError("no captions to rank: give candidate captions (one per line), or use a model whose "
                             f"folder has a {CAPTIONS_FILE}")
        _, text_ids = pipe.encode_prompts(self.captions)  # raises for an over-long caption, naming it
        self.text_ids = text_ids  # (N, text_len), for the generator stage
        reranker = pipe.reranker
        with torch.no_grad():
            self.embeds = torch.cat([reranker.text_embeds(text_ids[i:i + batch_size].to(reranker.device))
                                     for i in range(0, len(text_ids), batch_size)]).float()  # (N, D), unit norm
        self.scale = float(reranker.clip.logit_scale.detach().exp().clamp(max=100.0))


def describe_image(pipe, image, captions: Sequence[str] | CaptionIndex | None = None,
                   top: int = 5, shortlist: int = DEFAULT_SHORTLIST) -> list[CaptionMatch]:
    """Rank `captions` (default: the pipeline's caption vocabulary; a `CaptionIndex` to reuse
    their embeddings) by how well they describe `image` (PIL image, (H, W, 3) uint8 array, or
    path); best `top` first. The reranker's cosine keeps the best max(shortlist, top), and the
    generator orders those (see the module doc); shortlist=0 returns the cosine's order."""
    from mini_t2i.data.images import open_image, to_rgb_square
    from mini_t2i.pixels import pixels_from_uint8

    index = captions if isinstance(captions, CaptionIndex) else CaptionIndex(pipe, captions)
    if top < 1:
        raise ValueError(f"top={top} must be >= 1")
    if shortlist < 0:
        raise ValueError(f"shortlist={shortlist} must be >= 0 (0: the reranker's cosine alone)")
    if isinstance(image, (str, Path, bytes)):
        image = open_image(image)
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"an image array must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
        pixels = image
    else:
        pixels = np.asarray(to_rgb_square(image, pipe.reranker.config.image_size), dtype=np.uint8)
    reranker = pipe.reranker
    with torch.no_grad():
        image_embed = reranker.image_embeds(pixels_from_uint8(pixels[None], reranker.config.image_size)
                                            .to(reranker.device))  # (1, D), unit norm
    cosine = (index.embeds @ image_embed[0]).float().cpu()  # (N,)
    order = torch.argsort(cosine, descending=True, stable=True)
    if shortlist == 0:
        probs = torch.softmax(cosine * index.scale, dim=0)
        return [CaptionMatch(index.captions[i], float(probs[i]), float(cosine[i])) for i in order[:top].tolist()]
    from mini_t2i.transformer.likelihood import image_log_likelihood

    short = order[:max(shortlist, top)]  # (K,) caption indices, best cosine first
    codes = pipe.image_tokens(image)[None].expand(len(short), -1)  # (K, h*w)
    loglik = image_log_likelihood(pipe.transformer, pipe.transformer_config,
                                  pipe.transformer_text_ids(index.text_ids[short]), codes)  # (K,)
    posterior = torch.softmax(loglik.double(), dim=0)
    ranked = torch.argsort(loglik, descending=True, stable=True)[:top]  # ties keep the cosine's order
    return [CaptionMatch(index.captions[int(short[k])], float(posterior[k]), float(cosine[short[k]]), float(loglik[k]))
            for k in ranked.tolist()]


def shapes_captions(count: int, seed: int = 0) -> list[str]:
    """Canonical Shapes World captions of `count` scenes from every split (so the held-out
    colour-shape pairs are there too), deduplicated, in first-seen order."""
    return list(shapes_scenes_by_caption(count, seed))


def shapes_scenes_by_caption(count: int, seed: int = 0) -> dict[str, dict]:
    """{canonical caption: the first scene's meta} for `count` scenes drawn round-robin from
    every split, in first-seen order (what `shapes_captions` lists, with a scene for each)."""
    from mini_t2i.shapes.scenes import canonical_caption, make_sample
    from mini_t2i.shapes.spec import SPLITS

    out: dict[str, dict] = {}
    splits = list(SPLITS)
    for index in range(count):
        meta = make_sample(splits[index % len(splits)], index // len(splits), seed=seed, size=32).meta
        out.setdefault(canonical_caption(meta), meta)
    return out


def captions_from_files(paths: Iterable[str | Path]) -> list[str]:
    """Captions from metadata.jsonl files (their "text" field) or plain text files (a line
    each), deduplicated, in first-seen order."""
    out: dict[str, None] = {}
    for path in map(Path, paths):
        lines = path.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines, 1):
            line = line.strip()
            if not line:
                continue
            if path.suffix == ".jsonl":
                try:
                    line = str(json.loads(line)["text"]).strip()
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise ValueError(f"{path}:{n}: not a JSON object with a \"text\" field") from None
            out[line] = None
    return list(out)


def write_captions(folder: str | Path, captions: Sequence[str], tokenizer=None) -> Path:
    """Write the caption vocabulary of a pipeline folder (atomically). With a tokenizer,
    captions longer than the model reads are dropped."""
    from mini_t2i.atomic import atomic_write_text

    captions = [c.replace("\n", " ").strip() for c in captions if c and c.strip()]
    if tokenizer is not None:
        lengths = tokenizer.token_lengths(captions)
        captions = [c for c, n in zip(captions, lengths) if n <= tokenizer.text_len]
    if not captions:
        raise ValueError("no captions to write")
    path = Path(folder) / CAPTIONS_FILE
    atomic_write_text(path, "\n".join(captions) + "\n")
    return path
