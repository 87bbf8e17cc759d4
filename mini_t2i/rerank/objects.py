"""Reranking by objects: each object of the image alone, scored against each object the caption names.

The reranker reads a single object well (test_iid "single" picks 0.98) and a scene of several badly:
its pooled cosine does not notice one misdrawn shape among three, a cross drawn as a star, or four
circles for "three". So this scorer takes the image apart the way the caption is put together:

    caption "three red crosses"             -> objects ("a red cross", x3)
            "a pink star and a blue circle" -> ("a pink star", x1), ("a blue circle", x1)
            "a red cross above a blue star" -> ("a red cross", x1), ("a blue star", x1), axis "v"
            anything else                   -> (the whole caption, x1)
    image (S, S, 3) -> its foreground components (pixels away from the border colour, 8-connected),
                       each alone on the background: object views (k, S, S, 3) and their centres
    gain[v, slot]  = cos(view v, phrase of slot) - cos(empty background, phrase of slot)
    object term    = (best one-to-one matching of views to slots, summed
                      - for each view left over, its best positive gain) / slots
                     + mean over slots of cos(empty background, phrase)   (the mean matched cosine
                       when every object is found once and nothing else)
    relation term  = max over views a before b on the axis of cos(a, first) + cos(b, second)
                     - the same with the objects swapped                    (captions naming a side)
    consensus term = mean cosine of the image's embedding with its fellow candidates' (same caption)
    score = cosine + object_weight * object + relation_weight * relation + consensus_weight * consensus

A missing object scores 0 (the empty background's), an extra one that looks like a named object costs
what it would have earned: so "three" is told from "two" and "four". The relation is read between the
objects themselves rather than across a fixed cut (rerank/relations.py): the same reading on val
renders and candidates at fewer passes of the vision tower. The consensus term is the medoid idea: a
sample the generator drew many times over is more often a right one; it costs nothing (the candidates'
embeddings are computed for the cosine anyway).

Only English words (numbers, conjunctions, side words) and the trained reranker are used, so it
works on any data; where the background is not plain the whole image is one view and the object
term reduces to the cosine of the image without its border. The views are scored for each caption's
`shortlist` best images by the cosine (the rest take the lowest view term among those, so that no
image outside the shortlist gains more from the views than one inside). `CompositionScorer.score(images, text_ids)` has
`Reranker.score`'s signature, so the pipeline, the diagnostic and `pipeline.rerank_eval` use it in its
place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mini_t2i.rerank.relations import parse_relation

NUMBER_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "2": 2, "3": 3, "4": 4, "5": 5, "6": 6}
# Longest first, so that "together with" is found before "with" would be (" and " last: it also
# joins words inside one object's name less often than the others do).
CONJUNCTIONS = (" together with ", " as well as ", " along with ", " next to ", " beside ", " and ")
FOREGROUND_DISTANCE = 60.0  # RGB distance from the border colour that makes a pixel an object's (of 441)
RIM_DISTANCE = 15.0  # anti-aliased rims: kept within RIM_PIXELS of an object's pixels
RIM_PIXELS = 2
MIN_OBJECT_SHARE = 0.006  # components under this share of the image are specks, not objects
MAX_OBJECTS = 6  # the largest components kept per image
SHORTLIST = 4


@dataclass(frozen=True)
class CaptionObjects:
    """What a caption names: one phrase per object kind, how many of each, and the axis of a relation
    between the two ("h": phrases[0] left of phrases[1]; "v": above; None: no relation)."""
    phrases: tuple[str, ...]
    counts: tuple[int, ...]
    axis: str | None = None

    @property
    def slots(self) -> list[int]:
        """The phrase index of every object the image should hold: (2, 1) counts -> [0, 0, 1]."""
        return [j for j, c in enumerate(self.counts) for _ in range(c)]


def singular(word: str) -> str:
    """An English plural noun's singular, by its ending: crosses -> cross, stars -> star, puppies -> puppy;
    words ending in -ss, -us or -is are taken as singular already (glass, bus, iris)."""
    if word.endswith(("ss", "us", "is")):
        return word
    for suffix, replacement in (("ies", "y"), ("ches", "ch"), ("shes", "sh"), ("sses", "ss"), ("xes", "x"), ("s", "")):
        if word.endswith(suffix) and len(word) > len(suffix) + 1:
            return word[: -len(suffix)] + replacement
    return word


def parse_objects(caption: str) -> CaptionObjects:
    """The caption's objects (module doc). A number word followed by a plural noun within four words
    is a count ("3 green crosses next to each other" -> "a green cross" x3); else a side word splits
    two objects (relations.parse_relation); else a conjunction does; else the caption is one object."""
    text = " ".join(caption.lower().replace(",", " , ").split())
    words = text.split()
    for i, word in enumerate(words):
        if word not in NUMBER_WORDS:
            continue
        for j in range(i + 1, min(i + 5, len(words))):
            if words[j].endswith("s") and len(words[j]) > 2:
                return CaptionObjects((" ".join(["a", *words[i + 1:j], singular(words[j])]),), (NUMBER_WORDS[word],))
        break
    relation = parse_relation(caption)
    if relation is not None:
        return CaptionObjects((relation.first, relation.second), (1, 1), relation.axis)
    for conjunction in CONJUNCTIONS:
        at = text.find(conjunction)
        if at > 0:
            first, second = text[:at].strip(" ,"), text[at + len(conjunction):].strip(" ,")
            if first and second:
                return CaptionObjects((first, second), (1, 1))
    return CaptionObjects((text,), (1,))


def object_views(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (S, S, 3) -> (views (k, S, S, 3) uint8, centres (k, 2) as (x, y) pixels): each of the
    image's k <= MAX_OBJECTS largest foreground components alone, the rest filled with the border
    colour; k = 0 for a plain image."""
    from scipy import ndimage

    from mini_t2i.pixels import border_colour

    side = image.shape[0]
    background = border_colour(image[None])[0]  # (3,)
    distance = np.linalg.norm(image.astype(np.float32) - background.astype(np.float32), axis=-1)  # (S, S)
    foreground = distance > FOREGROUND_DISTANCE
    labels, count = ndimage.label(foreground, structure=np.ones((3, 3), bool))
    empty = (np.zeros((0, *image.shape), np.uint8), np.zeros((0, 2), np.float32))
    if count == 0:
        return empty
    areas = ndimage.sum(foreground, labels, index=np.arange(1, count + 1))  # (count,)
    keep = [k + 1 for k in np.argsort(-areas, kind="stable")[:MAX_OBJECTS] if areas[k] >= MIN_OBJECT_SHARE * side * side]
    if not keep:
        return empty
    rim = distance > RIM_DISTANCE
    views, centres = [], []
    for k in keep:
        own = labels == k
        mask = own | (ndimage.binary_dilation(own, iterations=RIM_PIXELS) & rim)
        views.append(np.where(mask[..., None], image, background[None, None]))
        ys, xs = np.nonzero(own)
        centres.append((xs.mean(), ys.mean()))
    return np.stack(views).astype(np.uint8), np.array(centres, np.float32)


def match_objects(sims: np.ndarray, empty: np.ndarray, objects: CaptionObjects) -> float:
    """The object term of one image (module doc): sims (k, phrases) cosines of its views, empty
    (phrases,) the cosines of its plain background."""
    from scipy.optimize import linear_sum_assignment

    slots = objects.slots
    floor = float(empty[slots].sum())  # every slot at the plain background's cosine
    if len(sims) == 0:
        return floor / len(slots)
    gain = sims[:, slots] - empty[slots][None]  # (k, slots)
    rows, cols = linear_sum_assignment(-gain)  # the best one-to-one matching; unmatched slots earn 0
    total = float(gain[rows, cols].sum())
    left = np.setdiff1d(np.arange(len(sims)), rows)
    if len(left):
        total -= float((sims[left] - empty[None]).clip(min=0).max(axis=1).sum())
    # + floor: a caption whose every object is found scores the mean cosine of its matched views, so
    # that captions of one image compare as cosines do (describe, the diagnostic); for the candidates
    # of one caption it is a constant of the background colour.
    return (floor + total) / len(slots)


def relation_between(sims: np.ndarray, centres: np.ndarray, axis: str) -> float:
    """The relation term of one image: sims (k, 2) cosines of its views with the first and second
    phrase (first = left or top), centres (k, 2). 0 with fewer than two views."""
    if len(sims) < 2:
        return 0.0
    position = centres[:, 0 if axis == "h" else 1]
    before = position[:, None] < position[None, :]  # (k, k): view a lies before view b
    right_way = np.where(before, sims[:, :1] + sims[:, 1][None], -np.inf).max()
    wrong_way = np.where(before, sims[:, 1:2] + sims[:, 0][None], -np.inf).max()
    return float(right_way - wrong_way)


class CompositionScorer:
    """A reranker's cosine plus object, relation and consensus terms (module doc).

    reranker: a `Reranker`; tokenizer: the `TextTokenizer` it reads. score(images, text_ids) as
    `Reranker.score`: (N, H, W, 3) uint8 and (N or 1, text_len) ids -> (N,) float32."""

    def __init__(self, reranker, tokenizer, object_weight: float = 0.5, relation_weight: float = 1.0,
                 consensus_weight: float = 0.25, shortlist: int = SHORTLIST) -> None:
        for name, value in (("object_weight", object_weight), ("relation_weight", relation_weight),
                            ("consensus_weight", consensus_weight)):
            if value < 0:
                raise ValueError(f"{name}={value} must be >= 0 (0 = the term is off)")
        if shortlist < 1:
            raise ValueError(f"shortlist={shortlist} must be >= 1 (images of one caption given the object views)")
        self.reranker, self.tokenizer, self.shortlist = reranker, tokenizer, shortlist
        self.object_weight, self.relation_weight = float(object_weight), float(relation_weight)
        self.consensus_weight = float(consensus_weight)

    def score(self, images: np.ndarray, text_ids: torch.Tensor, use_head: bool | None = None) -> torch.Tensor:
        ids = text_ids if len(text_ids) == len(images) else text_ids[:1]
        if self.reranker.matcher is not None and use_head is not False:
            base = self.reranker.score(images, text_ids, use_head=use_head)  # (N,) the head's logits
            embeds = self.reranker.embed_images(images) if self.consensus_weight else None
        else:  # the cosine, from embeddings the consensus term shares
            embeds = self.reranker.embed_images(images)  # (N, D)
            base = (embeds * self.reranker.embed_texts(ids)).sum(-1)  # (N,), one caption broadcast
        by_caption: dict[str, list[int]] = {}  # each distinct caption once, in order -> its image rows
        for i, caption in enumerate(self.tokenizer.decode(ids)):
            by_caption.setdefault(caption, []).append(i)
        if len(ids) == 1:
            by_caption = {caption: list(range(len(images))) for caption in by_caption}
        extra = torch.zeros(len(images))
        for caption, members in by_caption.items():
            rows = np.array(members)
            if self.consensus_weight and len(rows) > 1:
                e = embeds[rows]  # (m, D)
                fellows = (e @ e.T).sum(1) - 1  # each row without itself
                extra[torch.from_numpy(rows)] += self.consensus_weight * fellows / (len(rows) - 1)
            if (self.object_weight or self.relation_weight) and caption.strip():  # the empty caption names nothing
                top = rows[np.argsort(-base[rows].numpy(), kind="stable")[: self.shortlist]]
                terms = torch.from_numpy(self.view_terms(images[top], parse_objects(caption)))  # (len(top),)
                extra[torch.from_numpy(rows)] += terms.min()
                extra[torch.from_numpy(top)] += terms - terms.min()
        return base.float() + extra

    def view_terms(self, images: np.ndarray, objects: CaptionObjects) -> np.ndarray:
        """(N,) object_weight x object term + relation_weight x relation term for these images and
        one parsed caption: all their object views and plain backgrounds in one pass of the vision tower."""
        from mini_t2i.pixels import border_colour

        parts = [object_views(im) for im in images]
        backgrounds = np.broadcast_to(border_colour(images)[:, None, None], images.shape)  # (N, S, S, 3)
        stack = np.concatenate([backgrounds] + [views for views, _ in parts])
        sims = self.reranker.score_matrix(stack, self.tokenizer.encode(list(objects.phrases))).numpy()  # (N + views, P)
        empty, at = sims[: len(images)], len(images)
        out = np.zeros(len(images), np.float32)
        for i, (views, centres) in enumerate(parts):
            own = sims[at: at + len(views)]
            at += len(views)
            out[i] = self.object_weight * match_objects(own, empty[i], objects)
            if objects.axis is not None and self.relation_weight:
                out[i] += self.relation_weight * relation_between(own, centres, objects.axis)
        return out
