"""Hard-negative captions: the true caption, changed in one detail (Shapes World scenes, and the
style of the real-data builders' folder captions).

In-batch negatives mostly differ from the true caption in many words at once, so a
contrastive model can pass them by reading colours and shapes alone. The captions a
generator gets wrong differ in one detail: "left of" for "right of", three for two,
the colours of two objects swapped. `perturb_meta` makes such a change to a scene's
metadata and `training_caption` re-captions it, canonical or paraphrased as often as the
train split's own captions are, so that the wording never tells a changed caption from a
true one (with canonical negatives only, "not the template" meant "true" for half the
images); training puts these captions as extra columns in the image -> text softmax and
in the matching head's lists (mini_t2i.rerank.train). The diagnostic (evaluate.py) words
both sides canonically.

A perturbed scene never names a held-out colour-shape pair: the reranker trains on
the `train` split and must not see those pairs in any text either.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import numpy as np

from mini_t2i.shapes.scenes import training_caption
from mini_t2i.shapes.spec import COLORS, COUNT_WORDS, HELD_OUT_PAIRS, SHAPES

_CONVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
_OTHER_BACKGROUND = {"black": "white", "white": "black"}


def perturbation_kinds(meta: dict[str, Any]) -> list[str]:
    """The changes that apply to this scene, the task's own first (the ones that matter most)."""
    task, objs = meta["task"], meta["objects"]
    kinds = []
    if task == "position":
        kinds += ["relation", "swap"]  # "A left of B" -> "A right of B"; -> "B left of A"
    if task == "counting":
        kinds.append("count")
    if len(objs) == 2 and objs[0]["color"] != objs[1]["color"] and objs[0]["shape"] != objs[1]["shape"]:
        kinds.append("bind")  # swap the colours: "a red circle and a blue square" -> blue circle, red square
    kinds += ["color", "shape"]
    if task == "single" and objs[0]["size"] is not None:
        kinds.append("size")
    if meta.get("background") is not None:
        kinds.append("background")
    return kinds


def _allowed(meta: dict[str, Any]) -> bool:
    """No held-out pair, and two objects stay two different colour-shape pairs."""
    pairs = [(o["color"], o["shape"]) for o in meta["objects"]]
    return not any(p in HELD_OUT_PAIRS for p in pairs) and len(set(pairs)) == len(pairs)


def perturb_meta(meta: dict[str, Any], kind: str, rng: np.random.Generator) -> dict[str, Any] | None:
    """A copy of `meta` changed by `kind` (see perturbation_kinds), or None when no
    allowed change of that kind exists for this scene."""
    for _ in range(20):  # random choices may hit a held-out pair; redraw a few times
        new = copy.deepcopy(meta)
        objs = new["objects"]
        k = int(rng.integers(len(objs)))  # which object changes
        if kind == "relation":
            new["relation"]["type"] = _CONVERSE[new["relation"]["type"]]
        elif kind == "swap":  # subject and object trade places, the relation word stays
            new["relation"]["a"], new["relation"]["b"] = new["relation"]["b"], new["relation"]["a"]
        elif kind == "count":  # one more or one fewer: the count a generator gets wrong
            objs[0]["count"] = int(rng.choice([n for n in COUNT_WORDS if abs(n - objs[0]["count"]) == 1]))
        elif kind == "bind":
            objs[0]["color"], objs[1]["color"] = objs[1]["color"], objs[0]["color"]
        elif kind == "color":
            objs[k]["color"] = str(rng.choice([c for c in COLORS if c != objs[k]["color"]]))
        elif kind == "shape":
            objs[k]["shape"] = str(rng.choice([s for s in SHAPES if s != objs[k]["shape"]]))
        elif kind == "size":
            objs[k]["size"] = "small" if objs[k]["size"] == "large" else "large"
        elif kind == "background":
            new["background"] = _OTHER_BACKGROUND[new["background"]]
        else:
            raise ValueError(f"unknown perturbation {kind!r}")
        if _allowed(new):
            return new
        if kind in ("relation", "swap", "bind", "size", "background", "count"):
            return None  # deterministic (or already checked) changes: redrawing does not help
    return None


def hard_negative_captions(meta: dict[str, Any] | None, num: int, rng: np.random.Generator) -> list[str]:
    """`num` captions of `meta` changed in one detail each, the task's own change first.

    Captions are worded as the train split words its own (`training_caption`). A row
    without Shapes World metadata (another data source) gets no negatives: returns [].
    """
    if not meta or "objects" not in meta or num <= 0:
        return []
    kinds = perturbation_kinds(meta)
    out: list[str] = []
    for i in range(num * 3):  # a few spare draws for changes that are not allowed here
        kind = kinds[0] if i == 0 else kinds[int(rng.integers(len(kinds)))]
        new = perturb_meta(meta, kind, rng)
        if new is not None:
            out.append(training_caption(new, rng))
            if len(out) == num:
                break
    return out


# Folder captions (the real-data builders' "<name>" or "<name>, <style> style"): the diagnostic
# on a folder (diagnose_folder.py) and `style_negatives` in training change them.
STYLE = re.compile(r"^(?P<name>.+), (?P<style>[^,]+) style$")


def split_caption(caption: str) -> tuple[str, str | None]:
    """"dog face, twemoji style" -> ("dog face", "twemoji"); "dog face" -> ("dog face", None)."""
    match = STYLE.match(caption.strip())
    return (match["name"], match["style"]) if match else (caption.strip(), None)


def join_caption(name: str, style: str | None) -> str:
    return f"{name}, {style} style" if style else name


def caption_changes(caption: str, names: list[str], styles: list[str | None], rng: np.random.Generator) -> dict[str, str]:
    """{kind: changed caption} for one caption, given the folder's distinct names and styles
    (None among them: no style word). A kind is missing where the folder offers no other value."""
    name, style = split_caption(caption)
    out = {}
    other_styles = [s for s in styles if s != style]
    if other_styles:
        out["style"] = join_caption(name, other_styles[rng.integers(len(other_styles))])
    other_names = [n for n in names if n != name]
    if other_names:
        out["name"] = join_caption(other_names[rng.integers(len(other_names))], style)
    return out


def style_negative_captions(caption: str, styles: list[str | None], num: int, rng: np.random.Generator) -> list[str]:
    """Up to `num` distinct captions of a folder caption with its style swapped for another of
    `styles` (the folder's; None = no style word, so a style is also added or dropped), the name
    kept: the one detail in-batch captions rarely isolate ("dog face" against "dog face, twemoji
    style"). [] where the folder has one style only."""
    name, style = split_caption(caption)
    others = [s for s in styles if s != style]
    picked = rng.permutation(len(others))[:num] if others and num > 0 else []
    return [join_caption(name, others[k]) for k in picked]


def folder_styles(captions: list[str]) -> list[str | None]:
    """The distinct styles of folder captions, None (no style word) first."""
    return sorted({split_caption(c)[1] for c in captions}, key=lambda s: s or "")


# Words that put objects on a side: a caption with one of these is false of its image mirrored
# across that axis (the same objects, the relation reversed). A rule on the caption's words, so
# it holds on any data whose captions say left and right, not only Shapes World's.
HORIZONTAL_WORDS = frozenset({"left", "right"})
VERTICAL_WORDS = frozenset({"above", "below", "over", "under", "beneath", "top", "bottom"})


def mirror_axes(caption: str) -> tuple[bool, bool]:
    """(mirror left-right, mirror top-bottom): whether the caption is false of its image so flipped."""
    words = set(caption.lower().replace(",", " ").split())
    return bool(words & HORIZONTAL_WORDS), bool(words & VERTICAL_WORDS)


def mirrored_negatives(images: np.ndarray, captions: list[str]) -> np.ndarray:
    """(M, H, W, 3) uint8: each image whose caption names a side, mirrored across that axis
    (both, in turn, when it names both): images its caption does not describe."""
    out = []
    for image, caption in zip(images, captions):
        horizontal, vertical = mirror_axes(caption)
        if horizontal:
            out.append(image[:, ::-1])
        if vertical:
            out.append(image[::-1])
    return np.ascontiguousarray(np.stack(out)) if out else np.zeros((0, *images.shape[1:]), dtype=images.dtype)


def cut_by_frame_negatives(images: np.ndarray, rng: np.random.Generator, tolerance: int = 40) -> np.ndarray:
    """(M, H, W, 3) uint8: each image shifted so that its content runs out of the frame.

    A generator's near misses include objects cut by the border, which a reranker trained on
    whole pictures scores as well as whole ones (docs/rerank.md). The content is what differs
    from the border colour by more than `tolerance` (summed over RGB); each image moves along
    a random side by its distance to that side plus 30-60 % of the content's extent that way, and
    the uncovered part takes the border colour. Images without content (all background) or
    whose content already touches every side are skipped. A rule on pixels, so any data with
    a plain background works."""
    from mini_t2i.pixels import border_colour

    fills = border_colour(images)
    out = []
    for image, fill in zip(images, fills):
        content = np.abs(image.astype(np.int16) - fill.astype(np.int16)).sum(-1) > tolerance  # (H, W)
        rows, cols = np.nonzero(content.any(1))[0], np.nonzero(content.any(0))[0]
        if not len(rows):
            continue
        h, w = content.shape
        top, bottom, left, right = rows[0], h - 1 - rows[-1], cols[0], w - 1 - cols[-1]  # margins to each side
        sides = [k for k, margin in enumerate((top, bottom, left, right)) if margin > 0]
        if not sides:
            continue
        side = sides[int(rng.integers(len(sides)))]
        extent = (rows[-1] - rows[0] + 1) if side < 2 else (cols[-1] - cols[0] + 1)
        shift = int((top, bottom, left, right)[side] + np.ceil(rng.uniform(0.3, 0.6) * extent))
        moved = np.empty_like(image)
        moved[:] = fill
        if side == 0:  # up
            moved[:h - shift] = image[shift:]
        elif side == 1:  # down
            moved[shift:] = image[:h - shift]
        elif side == 2:  # left
            moved[:, :w - shift] = image[:, shift:]
        else:  # right
            moved[:, shift:] = image[:, :w - shift]
        out.append(moved)
    return np.stack(out) if out else np.zeros((0, *images.shape[1:]), dtype=images.dtype)
