"""Shapes World scenes: sampling per task, captions, metadata and splits.

Sample ``i`` of a split depends only on (split, seed, i): it draws from its own
generator ``numpy.random.default_rng([seed, split_id, i])``, so any slice of a
split can be produced on its own (``start=``) and the four splits are separate
streams. The layout is in canvas fractions, so ``size`` changes the resolution of
a sample, never its content. Tasks cycle with the index (``TASKS[i % 6]``), so
every block of six consecutive samples holds one of each task.

Captions: test splits use the canonical templates of the spec; train and val use
them half the time and a paraphrase otherwise ("there are three red circles",
"a blue square to the right of a pink star", ...). Paraphrases may reorder the
clauses; ``meta`` always follows the caption's clause order, so it stays exact.

Layout decisions the spec leaves open:
- objects keep ``MARGIN`` (0.02 of the side) from the border, so the checker's
  border pixels are background;
- the 0.04 gap is measured between extent squares (a stricter test than between
  the shapes themselves);
- counting scenes draw each object's size independently (the caption names no
  size); when the objects do not fit after 30 restarts of the placement, a large
  one becomes small. Four large objects fit only in a tight 2 x 2 grid, so they
  appear in ~2% of four-object scenes instead of the 6% drawn;
- position scenes hold the relation with margin: the centre offset along the
  relation's axis is at least twice the offset across it, so GenEval's own
  rule and the spec's rule both give exactly the captioned relation.

Speed (one core): ~0.95 ms a sample including rendering at 64 px (~1,000
samples/s), ~2.7 ms at 128 px.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
from PIL import Image

from mini_t2i.shapes.render import PlacedObject, render_scene
from mini_t2i.shapes.spec import (
    CANVAS_SIZES,
    COLORS,
    COUNT_WORDS,
    HELD_OUT_PAIRS,
    MIN_GAP,
    POSITION_THRESHOLD,
    RELATIONS,
    SHAPES,
    SIZES,
    SPLITS,
    TASKS,
    plural,
)

SPLIT_IDS: dict[str, int] = {name: i for i, name in enumerate(SPLITS)}

MARGIN = 0.02  # distance kept between objects and the canvas border, canvas fractions
CANONICAL_PROB = 0.5  # train/val: share of captions in the canonical test template
BACKGROUND_WORD_PROB = 0.5  # share of captions that name the background
SIZE_WORD_PROB = 0.5  # share of `single` captions that name the object's size

ALL_PAIRS: tuple[tuple[str, str], ...] = tuple(itertools.product(COLORS, SHAPES))
TRAIN_PAIRS: tuple[tuple[str, str], ...] = tuple(p for p in ALL_PAIRS if p not in HELD_OUT_PAIRS)
HELD_PAIRS: tuple[tuple[str, str], ...] = tuple(p for p in ALL_PAIRS if p in HELD_OUT_PAIRS)

_CONVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
# Paraphrases of each relation (the first is the canonical word).
_RELATION_WORDS = {
    "left of": ("left of", "to the left of", "on the left of"),
    "right of": ("right of", "to the right of", "on the right of"),
    "above": ("above", "over", "on top of"),
    "below": ("below", "under", "beneath"),
}
_DIGITS = {2: "2", 3: "3", 4: "4"}


@dataclass
class Sample:
    """One Shapes World sample: the image, its caption and the metadata that the
    checker scores against (the spec's ``meta``), plus the layout it was drawn from."""

    image: Image.Image
    text: str
    meta: dict[str, Any]
    layout: list[PlacedObject] = field(default_factory=list)
    background: str = "black"  # the drawn background, also when meta leaves it open


# ---------------------------------------------------------------------- layout


def _clear(a: tuple[float, float, float], b: tuple[float, float, float]) -> bool:
    """Whether two extent squares (x, y, e) are at least MIN_GAP apart."""
    ax, ay, ae = a
    bx, by, be = b
    return (
        ax + ae + MIN_GAP <= bx
        or bx + be + MIN_GAP <= ax
        or ay + ae + MIN_GAP <= by
        or by + be + MIN_GAP <= ay
    )


def _place(rng: np.random.Generator, sizes: list[str], restarts: int = 30, tries: int = 40):
    """Positions (x, y) for objects of the given sizes, or None if none were found.

    Objects are placed one after another, each at a uniformly drawn position,
    redrawn up to `tries` times until it keeps the gap to those already placed; a
    dead end restarts the scene. Larger objects go first: they are the hard ones
    to fit.
    """
    order = sorted(range(len(sizes)), key=lambda k: -SIZES[sizes[k]])
    for _ in range(restarts):
        placed: dict[int, tuple[float, float, float]] = {}
        for k in order:
            e = SIZES[sizes[k]]
            for _ in range(tries):
                x, y = rng.uniform(MARGIN, 1 - MARGIN - e, size=2)
                cand = (float(x), float(y), e)
                if all(_clear(cand, other) for other in placed.values()):
                    placed[k] = cand
                    break
            else:
                break
        if len(placed) == len(sizes):
            return [placed[k][:2] for k in range(len(sizes))]
    return None


def _place_shrinking(rng: np.random.Generator, sizes: list[str]):
    """Like _place, turning large objects into small ones until the scene fits."""
    sizes = list(sizes)
    while True:
        xy = _place(rng, sizes)
        if xy is not None:
            return sizes, xy
        # Only reachable with three or four large objects; one object always fits.
        sizes[sizes.index("large")] = "small"


def _relation_holds_clearly(a: PlacedObject, b: PlacedObject, relation: str) -> bool:
    """The spec's relation with margin: the offset along the relation's axis is past
    GenEval's threshold and at least twice the offset across it."""
    ax0, ay0, ax1, ay1 = a.box()
    bx0, by0, bx1, by1 = b.box()
    dx = (bx0 + bx1) / 2 - (ax0 + ax1) / 2  # B's centre minus A's
    dy = (by0 + by1) / 2 - (ay0 + ay1) / 2
    thr_x = POSITION_THRESHOLD * ((ax1 - ax0) + (bx1 - bx0))
    thr_y = POSITION_THRESHOLD * ((ay1 - ay0) + (by1 - by0))
    if relation == "left of":
        return dx > thr_x and abs(dy) <= abs(dx) / 2
    if relation == "right of":
        return -dx > thr_x and abs(dy) <= abs(dx) / 2
    if relation == "above":
        return dy > thr_y and abs(dx) <= abs(dy) / 2
    if relation == "below":
        return -dy > thr_y and abs(dx) <= abs(dy) / 2
    raise ValueError(f"unknown relation {relation!r}")


# ------------------------------------------------------------ object choice


def _pick(rng: np.random.Generator, pool) -> Any:
    return pool[int(rng.integers(len(pool)))]


def _pick_pairs(rng: np.random.Generator, held_out: bool, distinct_both: bool):
    """Two distinct colour-shape pairs; with distinct_both they differ in colour
    and in shape. held_out: at least one is a held-out pair, else neither is."""
    first_pool = HELD_PAIRS if held_out else TRAIN_PAIRS
    second_pool = ALL_PAIRS if held_out else TRAIN_PAIRS
    p1 = _pick(rng, first_pool)
    if distinct_both:
        pool = [p for p in second_pool if p[0] != p1[0] and p[1] != p1[1]]
    else:
        pool = [p for p in second_pool if p != p1]
    p2 = _pick(rng, pool)
    if held_out and rng.random() < 0.5:
        p1, p2 = p2, p1  # the held-out pair is not always the first clause
    return p1, p2


def _random_size(rng: np.random.Generator) -> str:
    return "small" if rng.random() < 0.5 else "large"


def _clause(color: str, shape: str, size: str | None = None, count: int = 1) -> dict[str, Any]:
    return {"color": color, "shape": shape, "size": size, "count": count}


def _scene(rng: np.random.Generator, task: str, held_out: bool):
    """Draw one scene: (meta without background, layout)."""
    pool = HELD_PAIRS if held_out else TRAIN_PAIRS
    relation = None
    if task in ("single", "colors"):
        color, shape = _pick(rng, pool)
        size = _random_size(rng)
        named = size if task == "single" and rng.random() < SIZE_WORD_PROB else None
        clauses = [_clause(color, shape, named)]
        specs = [(color, shape, size)]
    elif task == "counting":
        color, shape = _pick(rng, pool)
        n = int(rng.integers(2, 5))
        clauses = [_clause(color, shape, None, n)]
        specs = [(color, shape, _random_size(rng)) for _ in range(n)]
    elif task in ("two", "position", "color_attr"):
        p1, p2 = _pick_pairs(rng, held_out, distinct_both=task == "color_attr")
        clauses = [_clause(*p1), _clause(*p2)]
        specs = [(*p1, _random_size(rng)), (*p2, _random_size(rng))]
        if task == "position":
            relation = {"a": 0, "b": 1, "type": RELATIONS[int(rng.integers(len(RELATIONS)))]}
    else:
        raise ValueError(f"unknown task {task!r}")

    sizes, xy = _place_shrinking(rng, [s[2] for s in specs])
    layout = [PlacedObject(c, sh, sz, x, y) for (c, sh, _), sz, (x, y) in zip(specs, sizes, xy)]
    if relation is not None:
        for _ in range(500):
            if _relation_holds_clearly(layout[0], layout[1], relation["type"]):
                break
            sizes, xy = _place_shrinking(rng, sizes)
            layout = [PlacedObject(c, sh, sz, x, y) for (c, sh, _), sz, (x, y) in zip(specs, sizes, xy)]
        else:  # pragma: no cover - a clear layout is found within a few dozen tries
            raise RuntimeError("could not place a position scene")
    meta = {"task": task, "background": None, "objects": clauses, "relation": relation}
    return meta, layout


# ------------------------------------------------------------------ captions


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _noun_phrase(clause: dict[str, Any]) -> str:
    """Canonical noun phrase of a clause: "a red circle", "a large red circle",
    "an orange star", "three red circles"."""
    color, shape, size, count = clause["color"], clause["shape"], clause["size"], clause["count"]
    if count > 1:
        return f"{COUNT_WORDS[count]} {color} {plural(shape)}"
    words = f"{size} {color} {shape}" if size else f"{color} {shape}"
    return f"{_article(words)} {words}"


def canonical_caption(meta: dict[str, Any]) -> str:
    """The spec's canonical caption for a meta (the test-split template)."""
    objs = meta["objects"]
    if meta["task"] in ("two", "color_attr"):
        text = f"{_noun_phrase(objs[0])} and {_noun_phrase(objs[1])}"
    elif meta["task"] == "position":
        rel = meta["relation"]
        text = f"{_noun_phrase(objs[rel['a']])} {rel['type']} {_noun_phrase(objs[rel['b']])}"
    else:
        text = _noun_phrase(objs[0])
    if meta["background"] is not None:
        text += f" on a {meta['background']} background"
    return text


def training_caption(meta: dict[str, Any], rng: np.random.Generator) -> str:
    """A caption of meta as the train split writes one: canonical with probability
    CANONICAL_PROB, else a paraphrase (so a caption made from a changed meta, a reranker's
    hard negative, is worded like the true captions it is set against)."""
    if rng.random() < CANONICAL_PROB:
        return canonical_caption(meta)
    return _paraphrase(rng, meta)[0]


def _paraphrase(rng: np.random.Generator, meta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A non-canonical caption for meta, with meta reordered to the caption's clauses."""
    task, objs = meta["task"], meta["objects"]
    meta = {**meta, "objects": [dict(o) for o in objs]}

    def choose(options):
        return options[int(rng.integers(len(options)))]

    if task in ("single", "colors"):
        o = objs[0]
        np_ = _noun_phrase(o)
        size = f"{o['size']} " if o["size"] else ""
        that = f"a {size}{o['shape']} that is {o['color']}"
        text = choose(
            [
                f"there is {np_}",
                f"{np_} in the picture",
                f"a picture of {np_}",
                f"an image with {np_}",
                that,
                f"one {size}{o['color']} {o['shape']}",
            ]
        )
        if task == "colors":
            colored = f"{_article(o['color'])} {o['color']} colored {o['shape']}"
            text = choose([text, colored, f"the {o['shape']} is {o['color']}"])
    elif task == "counting":
        o = objs[0]
        n, color, shapes = o["count"], o["color"], plural(o["shape"])
        word = choose([COUNT_WORDS[n], _DIGITS[n]])
        text = choose(
            [
                f"there are {word} {color} {shapes}",
                f"exactly {word} {color} {shapes}",
                f"{word} {color} {shapes} next to each other",
                f"a picture of {word} {color} {shapes}",
                f"{word} {color} {shapes}",
            ]
        )
    elif task in ("two", "color_attr"):
        if rng.random() < 0.5:
            meta["objects"].reverse()
        a, b = (_noun_phrase(o) for o in meta["objects"])
        text = choose([f"{a} and {b}", f"there is {a} and {b}", f"{a} together with {b}",
                       f"{a} as well as {b}", f"a picture of {a} and {b}"])
    elif task == "position":
        rel = dict(meta["relation"])
        if rng.random() < 0.5:
            # "A left of B" said as "B right of A": B becomes clause 0.
            meta["objects"] = [meta["objects"][rel["b"]], meta["objects"][rel["a"]]]
            rel = {"a": 0, "b": 1, "type": _CONVERSE[rel["type"]]}
        meta["relation"] = rel
        a, b = (_noun_phrase(meta["objects"][k]) for k in (rel["a"], rel["b"]))
        word = choose(_RELATION_WORDS[rel["type"]])
        text = choose([f"{a} {word} {b}", f"there is {a} {word} {b}", f"{a} is {word} {b}"])
    else:
        raise ValueError(f"unknown task {task!r}")

    bg = meta["background"]
    if bg is not None:
        text += choose([f" on a {bg} background", f" against a {bg} background", f" on {bg}",
                        f", {bg} background"])
    return text, meta


# -------------------------------------------------------------------- splits


def make_sample(split: str, index: int, seed: int = 0, size: int = 64) -> Sample:
    """Sample `index` of `split`; a pure function of its arguments."""
    if split not in SPLIT_IDS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if size not in CANVAS_SIZES:
        raise ValueError(f"size must be one of {CANVAS_SIZES}, got {size}")
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    rng = np.random.default_rng([seed, SPLIT_IDS[split], index])
    task = TASKS[index % len(TASKS)]
    meta, layout = _scene(rng, task, held_out=split == "test_heldout")
    background = "black" if rng.random() < 0.5 else "white"
    if rng.random() < BACKGROUND_WORD_PROB:
        meta["background"] = background
    if split in ("train", "val") and rng.random() >= CANONICAL_PROB:
        text, meta = _paraphrase(rng, meta)
    else:
        text = canonical_caption(meta)
    image = render_scene(layout, background, size)
    return Sample(image=image, text=text, meta=meta, layout=layout, background=background)


def generate_split(split: str, count: int, seed: int = 0, size: int = 64, start: int = 0) -> Iterator[Sample]:
    """Yield samples start .. start+count-1 of `split` (train, val, test_iid,
    test_heldout) rendered at `size` pixels; see the module docstring."""
    if split not in SPLIT_IDS:  # checked here too, so a bad split fails on the first next()
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    for i in range(start, start + count):
        yield make_sample(split, i, seed, size)


def weighted_indices(split: str, count: int, task_weights: dict[str, float], seed: int = 0) -> list[int]:
    """The first `count` indices of `split` kept when each index of task t is kept with
    probability w_t / max(w) (a task not named weighs 1): a training mix that spends more
    scenes on some tasks. Deterministic: the draw for index i depends only on (seed, i)."""
    weights = np.array([float(task_weights.get(t, 1.0)) for t in TASKS])
    keep = weights / weights.max()  # (6,) acceptance probability per task
    out: list[int] = []
    i = 0
    while len(out) < count:
        # one uniform per index from its own stream (the scene's own stream is [seed, split, i])
        if np.random.default_rng([seed, SPLIT_IDS[split], i, 1]).random() < keep[i % len(TASKS)]:
            out.append(i)
        i += 1
    return out


def generate_weighted(split: str, count: int, task_weights: dict[str, float], seed: int = 0,
                      size: int = 64) -> Iterator[Sample]:
    """Yield `count` samples of `split` in the task mix `task_weights` (see weighted_indices);
    each is the split's own sample at its index, so a weighted set is a subset of the split."""
    for i in weighted_indices(split, count, task_weights, seed):
        yield make_sample(split, i, seed, size)
