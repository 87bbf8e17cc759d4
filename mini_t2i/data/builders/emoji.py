"""emoji-datasource-google (npm): Google's Noto emoji as 64 px PNGs, captioned by Unicode name.

    emoji_source(fetch_npm(EMOJI_PACKAGE, EMOJI_VERSION, raw_dir))
        -> Item(<64 px RGBA>, "cat face with wry smile", meta={"unified": "1F63C", ...}), ...

The package's emoji.json lists every emoji: "name" (e.g. "CAT FACE WITH WRY SMILE"),
"short_name", "category", the image file in img/google/64/, and "skin_variations" (one
image per skin tone, or per pair of tones for two-person emoji). Captions are the name
lower-cased; a variation adds ", medium skin tone" or ", light and dark skin tones".
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterator

from mini_t2i.data.builders.fetch import Package
from mini_t2i.data.builders.folder import Item, Source, licence_note

logger = logging.getLogger(__name__)

EMOJI_PACKAGE = "emoji-datasource-google"
EMOJI_VERSION = "16.0.0"  # pinned so the set (and its counts in docs/data.md) stay the same; "latest" asks npm
IMAGE_DIR = "img/google/64"

# The Fitzpatrick modifiers as emoji.json keys them (U+1F3FB..U+1F3FF), in CLDR's words.
SKIN_TONES = {"1F3FB": "light", "1F3FC": "medium-light", "1F3FD": "medium", "1F3FE": "medium-dark", "1F3FF": "dark"}


def emoji_caption(entry: dict) -> str:
    """The lower-cased Unicode name; the short name (underscores as spaces) when the name is empty."""
    name = (entry.get("name") or "").strip()
    if not name:
        name = (entry.get("short_name") or "").replace("_", " ")
    return " ".join(name.lower().split())


def skin_tone_caption(caption: str, key: str) -> str:
    """"waving hand sign" + "1F3FD" -> "waving hand sign, medium skin tone" (two tones: "... skin tones")."""
    tones = [SKIN_TONES.get(part.upper(), part.lower()) for part in key.split("-")]
    if len(set(tones)) == 1:
        return f"{caption}, {tones[0]} skin tone"
    return f"{caption}, {' and '.join(tones)} skin tones"


def emoji_source(package: Package, skin_tones: bool = True, limit: int = 0) -> Source:
    """The emoji of an unpacked emoji-datasource-google as a `Source` (base emoji first, then tones).

    `skin_tones=False` keeps the base emoji only (1,911 in 16.0.0 instead of 3,786);
    `limit` > 0 keeps the first `limit` images.
    """
    root = package.root
    index = root / "emoji.json"
    if not index.is_file():
        raise FileNotFoundError(f"{index}: missing; {root} is not an emoji-datasource package")
    entries = json.loads(index.read_text(encoding="utf-8"))
    licence = "MIT (emoji data) AND Apache-2.0 (Noto emoji images)"
    files = {}
    if (root / "LICENSE").is_file():
        files["LICENSE-data.txt"] = (root / "LICENSE").read_text(encoding="utf-8", errors="replace")
    files["LICENSE-images.txt"] = licence_note(
        "Apache-2.0", "Apache License 2.0", "https://github.com/googlefonts/noto-emoji/blob/main/LICENSE",
        "The emoji images (img/google/) are Google's Noto Color Emoji, copyright Google Inc.")
    return Source(name=package.name, version=package.version, license=licence,
                  authors=package.authors or "Cal Henderson (data); Google Inc. (images)",
                  homepage=package.homepage or "https://github.com/iamcal/emoji-data",
                  items=_items(root / IMAGE_DIR, entries, skin_tones, limit), license_files=files,
                  notes="captions: the Unicode name, lower-cased; skin-tone variations add ', <tone> skin tone'")


def _items(image_dir: Path, entries: list[dict], skin_tones: bool, limit: int) -> Iterator[Item]:
    if not image_dir.is_dir():
        raise FileNotFoundError(f"{image_dir}: missing; this emoji-datasource package has no 64 px Google images")
    records = []  # (image file, caption, meta)
    for entry in sorted(entries, key=lambda e: (e.get("sort_order", 0), e.get("unified", ""))):
        caption = emoji_caption(entry)
        meta = {k: entry.get(k) for k in ("unified", "short_name", "category", "subcategory")}
        if entry.get("has_img_google", True):
            records.append((entry.get("image"), caption, meta))
    if skin_tones:  # after every base emoji, so that `limit` keeps whole base sets first
        for entry in sorted(entries, key=lambda e: (e.get("sort_order", 0), e.get("unified", ""))):
            for key, variation in sorted((entry.get("skin_variations") or {}).items()):
                if variation.get("has_img_google", True):
                    meta = {"unified": variation.get("unified"), "short_name": entry.get("short_name"),
                            "category": entry.get("category"), "subcategory": entry.get("subcategory"),
                            "skin_tone": key}
                    records.append((variation.get("image"), skin_tone_caption(emoji_caption(entry), key), meta))
    missing = 0
    for count, (file_name, caption, meta) in enumerate(records):
        if limit and count >= limit:
            break
        path = image_dir / str(file_name)
        if not file_name or not path.is_file():
            missing += 1
            continue
        yield Item(image=_loader(path), text=caption, meta=meta)
    if missing:
        logger.warning("%d emoji listed in emoji.json have no image in %s", missing, image_dir)


def _loader(path: Path):
    def load():
        from mini_t2i.data.images import open_image

        return open_image(path)

    return load
