"""Write one or more sources into an image folder, with a stable val split and the licences.

    write_image_folder("data/emoji64", [emoji_source(...), iconify_source(...)], size=64)

    data/emoji64/train/00000.png ...  train/metadata.jsonl   {"file_name", "text", "meta": {...}}
    data/emoji64/val/00000.png ...    val/metadata.jsonl
    data/emoji64/LICENSES/<source>-<file>   the licence texts each package ships
    data/emoji64/NOTICE.txt                 source, version, licence, authors, count per source
    data/emoji64/build.json                 the same as data, plus the build settings

`mini_t2i.data.sources` reads OUT/train and OUT/val as source "imagefolder"; `datasets`
reads OUT as "imagefolder" with train and val splits. Everything is written to OUT.tmp
and renamed to OUT at the end, so an interrupted build leaves no half folder behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Union

from PIL import Image

from mini_t2i.atomic import atomic_folder
from mini_t2i.data.builders.raster import pad_to_square

logger = logging.getLogger(__name__)

VAL_FRACTION = 0.03  # ~3 %: a few hundred images of a ~15k set, enough for a val loss and sample grids
BUILD_FILE = "build.json"  # marks a folder as a builder's output: only such folders are replaced


@dataclass
class Item:
    """One image-caption pair as a source yields it, before padding and writing."""

    image: Union[Image.Image, Callable[[], Image.Image]]  # a callable is called at write time (lazy raster)
    text: str
    meta: dict = field(default_factory=dict)  # the original id/name; source and license are added on write


@dataclass
class Source:
    """A package turned into items, with what its NOTICE entry needs."""

    name: str  # e.g. "emoji-datasource-google" or "@iconify-json/twemoji"
    version: str
    license: str  # SPDX id where the package gives one
    authors: str
    homepage: str
    items: Iterable[Item]  # produced lazily, in a deterministic order
    license_files: dict[str, str] = field(default_factory=dict)  # file name -> licence text, copied to LICENSES/
    notes: str = ""  # one line for NOTICE.txt (e.g. how captions were made)


def split_of(key: str, val_fraction: float = VAL_FRACTION) -> str:
    """"val" for about `val_fraction` of keys, chosen by a hash: the same on every run and machine."""
    bucket = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2.0**64
    return "val" if bucket < val_fraction else "train"


def write_image_folder(out: str | Path, sources: list[Source], size: int = 64,
                       val_fraction: float = VAL_FRACTION) -> dict:
    """Write every item of `sources` to `out` (see the module docstring); returns the build summary.

    The split is by caption, so identical captions never straddle train and val. An item
    whose image cannot be made is skipped and counted ("skipped" in the summary), not fatal.
    `out` is replaced only if it is missing or an earlier build's output.
    """
    out = Path(out)
    if out.exists() and not (out / BUILD_FILE).is_file():
        raise ValueError(f"{out} exists and is not a builder's output (no {BUILD_FILE}); "
                         "choose another --out or remove it yourself")
    with atomic_folder(out) as tmp:  # an error or Ctrl-C leaves no half-written folder behind
        summary = _write(tmp, sources, size, val_fraction)
    return summary


def _write(tmp: Path, sources: list[Source], size: int, val_fraction: float) -> dict:
    """The body of `write_image_folder`: everything into `tmp`; returns the summary."""
    folders = {split: tmp / split for split in ("train", "val")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    started = time.perf_counter()
    summary: dict = {"size": size, "val_fraction": val_fraction, "sources": []}
    lines: dict[str, list[str]] = {"train": [], "val": []}
    for source in sources:
        counts: Counter = Counter()
        for item in source.items:
            text = " ".join(item.text.split())
            if not text:
                counts["skipped: no caption"] += 1
                continue
            try:
                image = item.image() if callable(item.image) else item.image
                image = pad_to_square(image, size)
            except ImportError:
                raise  # a missing dependency (cairosvg) is no odd file: every SVG would fail
            except Exception as err:  # noqa: BLE001 - one odd icon must not end a 15k-image build
                counts[f"skipped: {type(err).__name__}"] += 1
                logger.warning("%s %s: skipped, %s: %s", source.name, item.meta, type(err).__name__, err)
                continue
            split = split_of(text, val_fraction)
            file_name = f"{len(lines[split]):05d}.png"
            image.save(folders[split] / file_name)
            meta = {"source": source.name, "license": source.license, **item.meta}
            lines[split].append(json.dumps({"file_name": file_name, "text": text, "meta": meta}, ensure_ascii=False))
            counts[split] += 1
            if sum(len(v) for v in lines.values()) % 1000 == 0:
                logger.info("%d images written (%s)", sum(len(v) for v in lines.values()), source.name)
        for file_name, text in source.license_files.items():
            (tmp / "LICENSES").mkdir(exist_ok=True)
            (tmp / "LICENSES" / f"{_safe(source.name)}-{file_name}").write_text(text, encoding="utf-8")
        summary["sources"].append(dict(name=source.name, version=source.version, license=source.license,
                                       authors=source.authors, homepage=source.homepage, notes=source.notes,
                                       train=counts["train"], val=counts["val"],
                                       skipped={k: v for k, v in counts.items() if k.startswith("skipped")}))
    for split, split_lines in lines.items():
        (folders[split] / "metadata.jsonl").write_text("".join(line + "\n" for line in split_lines), encoding="utf-8")
    summary.update(train=len(lines["train"]), val=len(lines["val"]),
                   seconds=round(time.perf_counter() - started, 1))
    (tmp / "NOTICE.txt").write_text(notice_text(summary), encoding="utf-8")
    (tmp / BUILD_FILE).write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return summary



def notice_text(summary: dict) -> str:
    """NOTICE.txt: what each source is, under which licence, by whom; the images keep those terms."""
    parts = ["This folder holds images and captions derived from third-party packages. Each keeps its own",
             "licence; the licence texts the packages ship are in LICENSES/. Images were rasterised,",
             f"composited on white and padded to {summary['size']} px squares; captions were derived from",
             "the names/descriptions the packages give.", ""]
    for s in summary["sources"]:
        parts += [f"{s['name']} {s['version']}",
                  f"  licence: {s['license'] or 'see LICENSES/'}",
                  f"  authors: {s['authors'] or 'see LICENSES/'}",
                  f"  homepage: {s['homepage'] or '-'}",
                  f"  images: {s['train']} train + {s['val']} val"]
        if s["notes"]:
            parts.append(f"  {s['notes']}")
        parts.append("")
    return "\n".join(parts)


def licence_note(spdx: str, title: str, url: str, preamble: str = "") -> str:
    """A LICENSES/ file for a package that names its licence but ships no text of it.

    The full text is appended from /usr/share/common-licenses (Debian, Ubuntu) when that
    system copy exists; otherwise the file points to `url`.
    """
    text = (preamble + "\n\n" if preamble else "") + f"Licence: {title} (SPDX: {spdx})\nFull text: {url}\n"
    system_copy = Path("/usr/share/common-licenses") / spdx
    if spdx and system_copy.is_file():
        text += "\n" + system_copy.read_text(encoding="utf-8", errors="replace")
    return text


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name.lstrip("@"))
