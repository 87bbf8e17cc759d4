"""Reranking that reads spatial relations: the caption's two objects scored on the two sides of a cut.

CLIP's pooled cosine is close to a bag of words: in the shipped Shapes World reranker "a red
circle left of a blue square" and "a red circle right of a blue square" embed at cosine 0.996,
an image and its mirror at 0.976, and five runs of contrastive training with the flipped
relation and the mirrored image as hard negatives left relation and subject/object swaps at
chance (docs/rerank.md). The same model reads single objects well. So where a caption says
"A left of B" (or right of, above, below and their paraphrases), this scorer asks it about
one object at a time, where each should be:

    image (S, S, 3) --cut at x = c--> left view (right of c filled)  . "A"    -> cos_A(left, c)
                                      right view (left of c filled)  . "B"    -> cos_B(right, c)
    right_way = max over cuts c of cos_A(left, c) + cos_B(right, c)
    wrong_way = max over cuts c of cos_B(left, c) + cos_A(right, c)
    score = cosine(image, caption) + weight * (right_way - wrong_way)

Cuts at 3/8, 1/2 and 5/8 of the side, because two objects "left of" each other need not sit
in opposite halves (five cuts from 1/4 to 3/4 read no better); the filled part takes the
median colour of the image's border (the background). The views cost 6 passes of the vision
tower an image, so only each caption's 4 best images by the reranker's own score get them
(`shortlist`). Only the caption's words and the trained reranker are used, so it works on any
data whose captions name a side in English, and a caption without a relation word scores
as the reranker alone. Vertical relations cut across rows ("A above B": A in the top view).

`RelationScorer.score(images, text_ids)` has `Reranker.score`'s signature, so the pipeline,
the compare harness and `pipeline.rerank_eval` use it in its place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

# (phrase, axis, the first-named object's side): longest phrases first, so "to the left of"
# is found before "left of". "h": A left of B; "v": A above B (first = left or top object).
RELATION_PHRASES: tuple[tuple[str, str, bool], ...] = (
    ("to the left of", "h", True), ("on the left of", "h", True), ("left of", "h", True),
    ("to the right of", "h", False), ("on the right of", "h", False), ("right of", "h", False),
    ("on top of", "v", True), ("above", "v", True), ("over", "v", True),
    ("beneath", "v", False), ("below", "v", False), ("under", "v", False),
)
CUTS = (0.375, 0.5, 0.625)  # cut positions, as shares of the image side (five, 1/4..3/4, read no better)
SHORTLIST = 4  # images of one caption, best first by the reranker's own score, that get the cut views


@dataclass(frozen=True)
class Relation:
    """A caption read as two objects on an axis: `first` is the one on the left (axis "h") or
    on top ("v"), whatever order the caption names them in."""
    first: str
    second: str
    axis: str


def parse_relation(caption: str) -> Relation | None:
    """The caption's two objects and axis, or None when it names no side (or names it at an end).

    "a red circle left of a blue square" -> Relation("a red circle", "a blue square", "h");
    "there is a cat under a table" -> Relation("a table", "there is a cat", "v"). The text
    after the relation keeps any trailing words (a background), which the score compares
    across candidates of one caption, so a shared extra phrase cancels."""
    text = " ".join(caption.lower().replace(",", " , ").split())
    for phrase, axis, first_is_a in RELATION_PHRASES:
        at = text.find(f" {phrase} ")
        if at < 0:
            continue
        a = text[:at].removesuffix(" is").strip(" ,")
        b = text[at + len(phrase) + 2:].strip(" ,")
        if not a or not b:
            return None
        return Relation(a, b, axis) if first_is_a else Relation(b, a, axis)
    return None


def split_views(images: np.ndarray, axis: str, cuts: Sequence[float] = CUTS) -> np.ndarray:
    """(N, S, S, 3) uint8 -> (N, len(cuts), 2, S, S, 3): for each cut, the image with the part
    after the cut filled (view 0: left or top) and with the part before it filled (view 1),
    in the median colour of the image's border."""
    from mini_t2i.pixels import border_colour

    n, h, w, _ = images.shape
    fill = border_colour(images)[:, None, None, :]  # (N, 1, 1, 3)
    out = np.repeat(np.repeat(images[:, None, None], len(cuts), axis=1), 2, axis=2)  # (N, C, 2, S, S, 3)
    side = w if axis == "h" else h
    for k, share in enumerate(cuts):
        c = int(round(share * side))
        if axis == "h":
            out[:, k, 0, :, c:] = fill
            out[:, k, 1, :, :c] = fill
        else:
            out[:, k, 0, c:] = fill
            out[:, k, 1, :c] = fill
    return out


class RelationScorer:
    """A reranker's score (`Reranker.score`) plus `weight` x the cut-view relation contrast (module doc).

    reranker: a `Reranker`; tokenizer: the `TextTokenizer` it reads. score(images, text_ids)
    as `Reranker.score`: (N, H, W, 3) uint8 and (N or 1, text_len) ids -> (N,) float32."""

    def __init__(self, reranker, tokenizer, weight: float = 1.0, cuts: Sequence[float] = CUTS,
                 shortlist: int = SHORTLIST) -> None:
        if weight < 0:
            raise ValueError(f"relation weight={weight} must be >= 0 (0 = the cosine alone)")
        if not cuts or not all(0 < c < 1 for c in cuts):
            raise ValueError(f"cuts={tuple(cuts)} must be shares of the side strictly between 0 and 1")
        if shortlist < 1:
            raise ValueError(f"shortlist={shortlist} must be >= 1 (images of one caption given the cut views)")
        self.reranker, self.tokenizer, self.weight, self.cuts = reranker, tokenizer, float(weight), tuple(cuts)
        self.shortlist = shortlist

    def score(self, images: np.ndarray, text_ids: torch.Tensor, use_head: bool | None = None) -> torch.Tensor:
        cosine = self.reranker.score(images, text_ids, use_head=use_head)  # (N,): what reranking reads
        if self.weight == 0:
            return cosine
        ids = text_ids if len(text_ids) == len(images) else text_ids[:1]
        by_caption: dict[str, list[int]] = {}  # each distinct caption once, in order -> its image rows
        for i, caption in enumerate(self.tokenizer.decode(ids)):
            by_caption.setdefault(caption, []).append(i)
        if len(ids) == 1:  # one caption shared by every image
            by_caption = {caption: list(range(len(images))) for caption in by_caption}
        extra = torch.zeros(len(images))
        for caption, members in by_caption.items():
            relation = parse_relation(caption)
            if relation is None:
                continue
            rows = np.array(members)
            # The cut views cost 2 x len(cuts) passes of the vision tower an image, so only the caption's
            # `shortlist` best images by the reranker's own score get them; the rest take the lowest
            # contrast among those, which keeps every shortlisted image above every other.
            top = rows[np.argsort(-cosine[rows].numpy(), kind="stable")[: self.shortlist]]
            contrast = self.relation_contrast(images[top], relation)
            extra[torch.from_numpy(rows)] = contrast.min()
            extra[torch.from_numpy(top)] = contrast
        return cosine + self.weight * extra

    def relation_contrast(self, images: np.ndarray, relation: Relation) -> torch.Tensor:
        """(N,) right_way - wrong_way for these images and one parsed caption."""
        n, c = len(images), len(self.cuts)
        views = split_views(images, relation.axis, self.cuts).reshape(n * c * 2, *images.shape[1:])
        phrases = self.tokenizer.encode([relation.first, relation.second])  # (2, text_len)
        sims = self.reranker.score_matrix(views, phrases).reshape(n, c, 2, 2)  # (N, cut, view, phrase)
        right_way = (sims[:, :, 0, 0] + sims[:, :, 1, 1]).amax(1)  # first in view 0, second in view 1
        wrong_way = (sims[:, :, 0, 1] + sims[:, :, 1, 0]).amax(1)
        return right_way - wrong_way
