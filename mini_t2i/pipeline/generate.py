"""What `mini-t2i generate` does: prompts in, PNG files out.

    mini-t2i generate "a red circle above a blue square" --num-images 4 --out DIR
        DIR/00000.png ... (best first), DIR/grid.png, DIR/metadata.jsonl
    mini-t2i generate --prompts SPLIT/metadata.jsonl --out GEN --seed 0
        GEN/<the same file_name>.png for every line, GEN/metadata.jsonl (the lines copied,
        `meta` kept, plus `seed` and `score`); no grid, so the folder stays a clean
        imagefolder that `datasets` and `mini-t2i shapes score` read

The batch form is the Shapes World protocol (../shared/specs/shapes_world.md): render
prompts, generate from their captions, `mini-t2i shapes score GEN`. A text file with
one prompt a line works too. The model is loaded once and all prompts are batched.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

GRID_FILE = "grid.png"
METADATA_FILE = "metadata.jsonl"
_SAFE_NAME = re.compile(r"^[\w\-. ]+\.png$")


def read_prompts(path: str | Path) -> list[dict[str, Any]]:
    """Lines of a metadata.jsonl (each with `text`; `file_name` kept if there) or of a text
    file (one prompt a line, blank lines skipped), as metadata rows with a `file_name`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such prompts file (a metadata.jsonl or a text file, one prompt a line)")
    rows = []
    is_jsonl = path.suffix == ".jsonl"
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        if is_jsonl:
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}, line {n}: not JSON ({exc.msg}); each line must be a JSON object") from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise ValueError(f"{path}, line {n}: needs a \"text\" string (the prompt)")
        else:
            row = {"text": line.strip()}
        name = row.get("file_name") or f"{len(rows):05d}.png"
        if not _SAFE_NAME.match(Path(name).name) or Path(name).name != name:
            raise ValueError(f"{path}, line {n}: file_name {name!r} must be a plain .png name, no folders")
        row["file_name"] = name
        rows.append(row)
    if not rows:
        raise ValueError(f"{path} holds no prompts")
    names = [r["file_name"] for r in rows]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: file_name values repeat; each line needs its own")
    return rows


def generate_to_dir(pipe, out_dir: str | Path, prompt: str | None = None, prompts_file: str | None = None,
                    num_images: int = 1, progress: bool = True, **options) -> Path:
    """Generate for one prompt (`num_images` files) or every line of `prompts_file` (one
    image each) and write the layout of the module doc; options go to the pipeline call."""
    from mini_t2i.pixels import image_grid

    if (prompt is None) == (prompts_file is None):
        raise ValueError("give either a prompt or a prompts file (--prompts), not both or neither")
    if prompts_file is not None:
        if num_images != 1:
            raise ValueError("--prompts writes one image per line (the image-folder layout); leave --num-images at 1")
        rows = read_prompts(prompts_file)
        texts = [r["text"] for r in rows]
    else:
        rows = [{"file_name": f"{k:05d}.png", "text": prompt} for k in range(num_images)]
        texts = prompt
    result = pipe(texts, num_images=num_images, progress=progress, **options)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for row, image, seed, score in zip(rows, result.images, result.seeds, result.scores, strict=True):
        image.save(out / row["file_name"])
        lines.append(json.dumps({**row, "seed": seed, "score": None if score != score else round(score, 5)}))
    if prompts_file is None:
        image_grid(result.images).save(out / GRID_FILE)
    # Written last: a folder with a metadata.jsonl is complete.
    (out / METADATA_FILE).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return out
