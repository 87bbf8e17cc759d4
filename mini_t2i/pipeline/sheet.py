"""A labelled sheet of samples: one row per prompt, the reranker's best images left to right.

    python -m mini_t2i.pipeline.sheet --out docs/samples.png   # the README's picture

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


def sample_sheet(rows: dict[str, Sequence[str]], num_images: int = 6, num_candidates: int = 16, seed: int = 0,
                 scale: int = 2, label_width: int = 250) -> Image.Image:
    """Generate every row (model name or folder -> prompts) and tile them with labels."""
    from mini_t2i.pipeline.pipeline import TextToImagePipeline

    font = ImageFont.load_default()
    strips = []
    for model, prompts in rows.items():
        pipe = TextToImagePipeline.from_pretrained(model)
        out = pipe(list(prompts), num_images=num_images, num_candidates=num_candidates, seed=seed)
        side = pipe.image_size * scale
        for i, prompt in enumerate(prompts):
            strip = Image.new("RGB", (label_width + num_images * (side + 4), side + 4), "white")
            ImageDraw.Draw(strip).text((4, side // 2 - 6), f"{model}: {prompt}", fill="black", font=font)
            for k in range(num_images):
                image = out.images[i * num_images + k].resize((side, side), Image.NEAREST)
                strip.paste(image, (label_width + k * (side + 4), 2))
            strips.append(strip)
    sheet = Image.new("RGB", (max(s.width for s in strips), sum(s.height for s in strips)), "white")
    y = 0
    for strip in strips:
        sheet.paste(strip, (0, y))
        y += strip.height
    return sheet


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", help="one model (name or folder) instead of the shipped ones")
    parser.add_argument("--prompt", action="append", help="a prompt (repeatable); with --model")
    parser.add_argument("--num-images", type=int, default=6)
    parser.add_argument("--num-candidates", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows = {args.model: args.prompt or DEFAULT_ROWS.get(args.model, [])} if args.model else DEFAULT_ROWS
    sample_sheet(rows, args.num_images, args.num_candidates, args.seed).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
