"""The reranker diagnostic on a user's image folder: style words and object names as the changes.

Shapes World's changes come from its metadata (diagnose.py); a folder of emoji or icons has only
captions, of the form the real-data builders write: "<name>" or "<name>, <style> style"
("dog face, twemoji style"). Each image is scored against its caption and two changes of it:

    style   the style swapped for another of the folder's (or added, or dropped: the images
            without a style word are a style of their own): "dog face, openmoji style"
    name    the name swapped for another image's, the style kept: "red apple, twemoji style"

    mini-t2i eval rerank --model mini_t2i/pretrained/emoji64/reranker --images folder \
        --folder data/emoji64/val --text-tokenizer mini_t2i/pretrained/emoji64/text_tokenizer

Pairs are won when the true caption scores strictly higher, per kind and per source (the
`meta.source` of each line, "folder" without one); standard errors are sqrt(p (1 - p) / n).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mini_t2i.rerank.negatives import caption_changes, folder_styles, split_caption


def load_folder(folder: str | Path, count: int = 0) -> tuple[np.ndarray, list[str], list[str]]:
    """An imagefolder split (metadata.jsonl + images) -> ((N, S, S, 3) uint8, captions, sources)."""
    from PIL import Image

    folder = Path(folder)
    meta = folder / "metadata.jsonl"
    if not meta.is_file():
        raise FileNotFoundError(f"{meta} not found: --folder takes an image folder with a metadata.jsonl "
                                "(the layout `mini-t2i data ...` writes, e.g. data/emoji64/val)")
    lines = [json.loads(line) for line in meta.read_text().splitlines() if line.strip()]
    if count:
        lines = lines[:count]
    images = np.stack([np.asarray(Image.open(folder / row["file_name"]).convert("RGB")) for row in lines])
    sources = [str((row.get("meta") or {}).get("source", "folder")) for row in lines]
    return images, [row["text"] for row in lines], sources


def diagnose_folder(model_path: str, folder: str, text_tokenizer: str, count: int = 0, seed: int = 0,
                    out: str | None = None, is_verbose: bool = True) -> dict:
    """Per-kind pairwise rates of the reranker at `model_path` on the images of `folder` (module doc)."""
    from mini_t2i.report import write_report
    from mini_t2i.rerank.diagnose import format_report, pairwise_table
    from mini_t2i.rerank.evaluate import preference_from_rows
    from mini_t2i.rerank.model import Reranker
    from mini_t2i.text.tokenizer import TextTokenizer

    model = Reranker.from_pretrained(model_path)
    images, captions, sources = load_folder(folder, count)
    names = sorted({split_caption(c)[0] for c in captions})
    styles = folder_styles(captions)
    rng = np.random.default_rng(seed)
    texts, owner, kinds = [], [], []
    for i, caption in enumerate(captions):
        texts.append(caption), owner.append(i), kinds.append("")
        for kind, changed in caption_changes(caption, names, styles, rng).items():
            texts.append(changed), owner.append(i), kinds.append(kind)
    result = preference_from_rows(model, images, texts, owner, kinds, sources, TextTokenizer.from_pretrained(text_tokenizer))
    report = {"model": str(model_path), "images": "folder", "split": str(folder), "scenes": len(images),
              "diagnosed": len(images), "score": "matching head" if model.matcher is not None else "cosine",
              "styles": [s or "(none)" for s in styles], "pairwise": pairwise_table(result),
              "all_changes_beaten_per_source": result["hard_negative_per_task"]}
    write_report(report, format_report(report), out, is_verbose)
    return report
