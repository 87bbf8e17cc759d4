"""Shapes World on disk: render a split to an image folder, score an image folder.

The folder layout is the one `datasets` reads as ``imagefolder``::

    DIR/00000.png, DIR/00001.png, ...
    DIR/metadata.jsonl   one line per image:
        {"file_name": "00000.png", "text": "<caption>", "meta": {...}}

A generator writes the same layout (same file names, the lines copied with their
``meta``), so ``score_dir`` scores rendered ground truth and generated images
alike, and writes ``DIR/scores.json``.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from mini_t2i.shapes.checker import check_image
from mini_t2i.shapes.scenes import generate_split
from mini_t2i.shapes.spec import CANVAS_SIZES, TASKS

METADATA_FILE = "metadata.jsonl"
SCORES_FILE = "scores.json"
_IMAGE_NAME = re.compile(r"^\d{5,}\.png$")


def render_split_to_dir(
    split: str, count: int, size: int, seed: int, out_dir: str | Path, start: int = 0
) -> Path:
    """Render samples start .. start+count-1 of `split` into `out_dir` (created if
    needed) as ``00000.png ...`` plus ``metadata.jsonl``; returns the folder.

    Files of an earlier render in the same folder (numbered PNGs, the metadata and
    a scores.json) are replaced, so the folder always holds exactly this split.
    """
    samples = list(generate_split(split, count, seed=seed, size=size, start=start))
    return write_image_dir(out_dir, [s.image for s in samples], [s.text for s in samples], [s.meta for s in samples])


def write_image_dir(out_dir: str | Path, images: Sequence[Image.Image | np.ndarray], texts: Sequence[str],
                    metas: Sequence[dict[str, Any]]) -> Path:
    """Write images as ``00000.png ...`` plus ``metadata.jsonl`` (the layout above), for
    rendered ground truth and generated images alike; returns the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = set()
    lines = []
    for i, (image, text, meta) in enumerate(zip(images, texts, metas, strict=True)):
        name = f"{i:05d}.png"
        (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(out / name)
        names.add(name)
        lines.append(json.dumps({"file_name": name, "text": text, "meta": meta}))
    (out / METADATA_FILE).write_text("".join(line + "\n" for line in lines))
    # A stale image would be picked up by imagefolder, a stale score misread.
    for path in out.iterdir():
        if _IMAGE_NAME.match(path.name) and path.name not in names:
            path.unlink()
    (out / SCORES_FILE).unlink(missing_ok=True)
    return out


def is_shapes_meta(metas: Sequence[Any] | None) -> bool:
    """Whether every item is Shapes World metadata (other datasets' `meta` is anything else)."""
    return bool(metas) and all(isinstance(m, dict) and m.get("task") in TASKS for m in metas)


def score_images(images: Sequence[Image.Image | np.ndarray], metas: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Check each image against its meta; per-task and overall accuracy.

    Returns ``{"overall": float, "count": int, "tasks": {task: {"accuracy": float,
    "count": int}}}``; overall is the share of all images that are correct, and
    tasks are listed in the spec's order.
    """
    if len(images) != len(metas):
        raise ValueError(f"{len(images)} images but {len(metas)} metas")
    per_task: dict[str, list[bool]] = defaultdict(list)
    for image, meta in zip(images, metas):
        if meta.get("task") not in TASKS:
            raise ValueError(f"unknown task {meta.get('task')!r}; expected one of {TASKS}")
        per_task[meta["task"]].append(check_image(image, meta))
    results = [ok for oks in per_task.values() for ok in oks]
    return {
        "overall": float(np.mean(results)) if results else 0.0,
        "count": len(results),
        "tasks": {
            task: {"accuracy": float(np.mean(per_task[task])), "count": len(per_task[task])}
            for task in TASKS
            if task in per_task
        },
    }


def _read_metadata(folder: Path) -> list[dict[str, Any]]:
    path = folder / METADATA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: score needs the metadata.jsonl written by `shapes render`")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        for key in ("file_name", "meta"):
            if key not in row:
                raise ValueError(f"{path}, line {n}: no {key!r}; each line needs file_name and meta")
        rows.append(row)
    if not rows:
        raise ValueError(f"{path} lists no images")
    return rows


def score_dir(folder: str | Path) -> dict[str, Any]:
    """Score the images of an image folder against the metas of its metadata.jsonl,
    write ``scores.json`` there and return the scores (as score_images).

    Images are scored at their own size, which must be square and 32, 64 or 128.
    """
    folder = Path(folder)
    rows = _read_metadata(folder)
    images = []
    for row in rows:
        path = folder / row["file_name"]
        with Image.open(path) as im:
            image = im.convert("RGB")
        if image.width != image.height or image.width not in CANVAS_SIZES:
            raise ValueError(
                f"{path} is {image.width}x{image.height}; Shapes World scores square images "
                f"of side {', '.join(map(str, CANVAS_SIZES))}"
            )
        images.append(image)
    scores = score_images(images, [row["meta"] for row in rows])
    (folder / SCORES_FILE).write_text(json.dumps(scores, indent=2) + "\n")
    return scores


def format_scores(scores: dict[str, Any]) -> str:
    """A small aligned table: accuracy and count per task, then overall."""
    rows = [(task, s["accuracy"], s["count"]) for task, s in scores["tasks"].items()]
    rows.append(("overall", scores["overall"], scores["count"]))
    width = max(len("task"), *(len(r[0]) for r in rows))
    lines = [f"{'task':<{width}}  accuracy  count"]
    lines += [f"{name:<{width}}  {acc:8.3f}  {count:5d}" for name, acc, count in rows]
    return "\n".join(lines)
