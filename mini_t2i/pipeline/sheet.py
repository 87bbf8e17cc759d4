"""A labelled sheet of samples: one row per prompt, the reranker's best images left to right.

    python -m mini_t2i.pipeline.sheet --out docs/samples.png   # the README's picture
    python -m mini_t2i.pipeline.sheet --model emoji64 --prompt-set emoji24 --columns 4 \
        --num-images 3 --out docs/emoji_sheet.png                # issue 20's 24 fixed prompts

Rows come from the shipped models and the prompts below (or --model / --prompt);
every image is reproducible from the seed printed beside the sheet's rows.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

DEFAULT_ROWS = {
    "shapes64": ["a red circle above a blue square", "three green stars", "a small yellow triangle",
                 "a blue square left of a purple star", "two orange circles on a white background"],
    "emoji64": ["grinning face", "dog face, twemoji style", "pile of poo", "green apple, fluent flat style",
                "sun with face", "birthday cake"],
}

# 24 fixed emoji prompts across kinds and sets (issue 20's sheet), as (kind, caption). All are
# train captions of `mini-t2i data emoji` but the two marked held-back (its val split): the
# sheet shows whether a person recognises what the model draws for a caption it was taught.
EMOJI_24 = [
    ("face", "grinning face"), ("face", "face with tears of joy"), ("face", "smiling face with sunglasses"),
    ("face", "ghost"),
    ("animal", "dog face"), ("animal", "cat face, twemoji style"), ("animal", "pig face"),
    ("animal", "penguin, fluent flat style"), ("animal", "tiger face"), ("animal", "tropical fish"),  # held back
    ("food", "green apple"), ("food", "birthday cake, twemoji style"), ("food", "slice of pizza"),
    ("food", "banana, fluent flat style"), ("food", "hamburger"), ("food", "strawberry"),
    ("object", "umbrella"), ("object", "soccer ball"), ("object", "automobile"), ("object", "rocket"),
    ("object", "alarm clock"),
    ("symbol", "heavy black heart"), ("symbol", "sun with face"), ("symbol", "white medium star"),  # held back
]
PROMPT_SETS = {"emoji24": [caption for _, caption in EMOJI_24]}


def _best_images(model: str, prompts: Sequence[str], num_images: int, num_candidates: int, seed: int,
                 scale: int) -> tuple[int, list[list[Image.Image]]]:
    """(side, per prompt its reranker's best `num_images` images, scaled `scale`x with nearest)."""
    from mini_t2i.pipeline.pipeline import TextToImagePipeline

    pipe = TextToImagePipeline.from_pretrained(model)
    out = pipe(list(prompts), num_images=num_images, num_candidates=num_candidates, seed=seed)
    side = pipe.image_size * scale
    images = [image.resize((side, side), Image.NEAREST) for image in out.images]
    return side, [images[i * num_images:(i + 1) * num_images] for i in range(len(prompts))]


def sample_sheet(rows: dict[str, Sequence[str]], num_images: int = 6, num_candidates: int = 16, seed: int = 0,
                 scale: int = 2, label_width: int = 250) -> Image.Image:
    """Generate every row (model name or folder -> prompts) and tile them with labels."""
    font = ImageFont.load_default()
    strips = []
    for model, prompts in rows.items():
        side, best = _best_images(model, prompts, num_images, num_candidates, seed, scale)
        for prompt, images in zip(prompts, best):
            strip = Image.new("RGB", (label_width + num_images * (side + 4), side + 4), "white")
            ImageDraw.Draw(strip).text((4, side // 2 - 6), f"{model}: {prompt}", fill="black", font=font)
            for k, image in enumerate(images):
                strip.paste(image, (label_width + k * (side + 4), 2))
            strips.append(strip)
    sheet = Image.new("RGB", (max(s.width for s in strips), sum(s.height for s in strips)), "white")
    y = 0
    for strip in strips:
        sheet.paste(strip, (0, y))
        y += strip.height
    return sheet


def prompt_grid(model: str, prompts: Sequence[str], columns: int = 4, num_images: int = 3,
                num_candidates: int = 16, seed: int = 0, scale: int = 2) -> Image.Image:
    """One cell per prompt, `columns` cells a row: the prompt above its reranker's best
    `num_images` images, left to right (the first is the pipeline's top pick)."""
    font = ImageFont.load_default()
    side, best = _best_images(model, prompts, num_images, num_candidates, seed, scale)
    label = 16
    cell_w, cell_h = num_images * (side + 4) + 12, side + label + 10
    rows = -(-len(prompts) // columns)
    sheet = Image.new("RGB", (columns * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (prompt, images) in enumerate(zip(prompts, best)):
        x, y = (i % columns) * cell_w + 4, (i // columns) * cell_h + 4
        draw.text((x, y), prompt, fill="black", font=font)
        for k, image in enumerate(images):
            sheet.paste(image, (x + k * (side + 4), y + label))
    return sheet


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", help="one model (name or folder) instead of the shipped ones")
    parser.add_argument("--prompt", action="append", help="a prompt (repeatable); with --model")
    parser.add_argument("--prompt-set", choices=sorted(PROMPT_SETS), help="a fixed prompt list; with --model")
    parser.add_argument("--columns", type=int, default=0, help="a grid of this many prompts a row (0: one row each)")
    parser.add_argument("--num-images", type=int, default=6)
    parser.add_argument("--num-candidates", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if (args.prompt_set or args.columns) and not args.model:
        parser.error("--prompt-set and --columns need --model (the pipeline to draw with)")
    prompts = PROMPT_SETS[args.prompt_set] if args.prompt_set else args.prompt
    if args.columns:
        sheet = prompt_grid(args.model, prompts or DEFAULT_ROWS.get(args.model, []), args.columns,
                            args.num_images, args.num_candidates, args.seed)
    else:
        rows = {args.model: prompts or DEFAULT_ROWS.get(args.model, [])} if args.model else DEFAULT_ROWS
        sheet = sample_sheet(rows, args.num_images, args.num_candidates, args.seed)
    sheet.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
