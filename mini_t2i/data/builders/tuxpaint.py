"""Tux Paint's default stamps (Debian `tuxpaint-stamps-default`): photos and drawings, one sentence each.

    tuxpaint_source(fetch_deb(TUXPAINT_RELEASE, raw_dir, keep=keep_stamp_file))
        -> Item(<PNG or lazy SVG raster>, "A pink flamingo.", meta={"stamp": "animals/birds/flamingo"}), ...

Under usr/share/tuxpaint/stamps/<category>/.../ every stamp is NAME.png and/or NAME.svg
with NAME.txt beside it. The .txt holds the English description on a line of its own
and its translations as "xx.utf8=..." lines; the English line is the caption. Images
without a .txt (the "_mirror" variants Tux Paint flips at run time) are left out. Where a
stamp has both, the PNG is used: it is the artist's raster and needs no SVG renderer.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Iterator, Optional

from mini_t2i.data.builders.fetch import DebRelease, Package
from mini_t2i.data.builders.folder import Item, Source, licence_note

logger = logging.getLogger(__name__)

# Debian 12 (bookworm)'s package, from its Packages index: the pool path and SHA256 pin
# the exact file, so the download is checked even over plain http.
TUXPAINT_RELEASE = DebRelease(
    package="tuxpaint-stamps-default",
    version="2022.06.04-1",
    filename="pool/main/t/tuxpaint-stamps/tuxpaint-stamps-default_2022.06.04-1_all.deb",
    sha256="6db6c1bfc870a47f1499d6203b083522eacb57c5f9c87d468f2e92eb6d9d5f34",
    license="GPL-2.0-or-later",
    homepage="https://tuxpaint.org/",
)
STAMPS_DIR = "usr/share/tuxpaint/stamps"
COPYRIGHT_FILE = "usr/share/doc/tuxpaint-stamps-default/copyright"
IMAGE_SUFFIXES = (".png", ".svg")

# A translation line: a locale ("es", "pt_BR", "ca@valencia", "zh_TW") then ".utf8=".
_TRANSLATION = re.compile(r"^[A-Za-z]{2,3}(?:_[A-Za-z]{2,4})?(?:@\w+)?\.utf-?8\s*=", re.IGNORECASE)


def keep_stamp_file(path: str) -> bool:
    """The members worth unpacking: stamp images, their captions and the copyright file
    (the package's ~7,800 .ogg sound files are skipped)."""
    return path == COPYRIGHT_FILE or (path.startswith(STAMPS_DIR + "/") and path.endswith((".png", ".svg", ".txt")))


def english_caption(text: str) -> str:
    """The first line of a stamp's .txt that is not a translation; "" if there is none."""
    for line in text.splitlines():
        line = line.strip()
        if line and not _TRANSLATION.match(line):
            return line
    return ""


def tuxpaint_source(package: Package, size: int = 64, limit: int = 0, stamps_dir: Optional[Path] = None) -> Source:
    """The captioned stamps of an unpacked tuxpaint-stamps package (or of `stamps_dir`) as a `Source`."""
    stamps = Path(stamps_dir) if stamps_dir is not None else package.root / STAMPS_DIR
    if not stamps.is_dir():
        raise FileNotFoundError(f"{stamps}: no stamps folder; expected the tuxpaint-stamps layout {STAMPS_DIR}/")
    copyright_file = package.root / COPYRIGHT_FILE
    files = {}
    if copyright_file.is_file():
        files["copyright.txt"] = copyright_file.read_text(encoding="utf-8", errors="replace")
    files["LICENSE.txt"] = licence_note("GPL-2", "GNU General Public License, version 2 or later",
                                        "https://www.gnu.org/licenses/old-licenses/gpl-2.0.html",
                                        "Tux Paint stamps, copyright 2002-2022 Bill Kendrick and contributors.")
    return Source(name=package.name, version=package.version, license=package.license or "GPL-2.0-or-later",
                  authors="Bill Kendrick and the Tux Paint contributors", homepage=package.homepage,
                  items=_items(stamps, size, limit), license_files=files,
                  notes="captions: the English description in each stamp's .txt")


def _items(stamps: Path, size: int, limit: int) -> Iterator[Item]:
    by_stem: dict[Path, list[Path]] = {}
    for path in sorted(stamps.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            by_stem.setdefault(path.with_suffix(""), []).append(path)
    uncaptioned = 0
    count = 0
    for stem, images in sorted(by_stem.items()):
        caption_file = stem.with_name(stem.name + ".txt")
        caption = english_caption(caption_file.read_text("utf-8", errors="replace")) if caption_file.is_file() else ""
        if not caption:
            uncaptioned += 1
            continue
        image = min(images, key=lambda p: IMAGE_SUFFIXES.index(p.suffix.lower()))  # PNG before SVG
        relative = stem.relative_to(stamps).as_posix()
        yield Item(image=_loader(image, size), text=caption,
                   meta={"stamp": relative, "category": relative.split("/")[0], "file": image.name})
        count += 1
        if limit and count >= limit:
            break
    if uncaptioned:
        logger.info("%d stamp images have no caption (.txt) and were left out", uncaptioned)


def _loader(path: Path, size: int):
    def load():
        if path.suffix.lower() == ".svg":
            from mini_t2i.data.builders.raster import render_svg

            return render_svg(path.read_bytes(), size)
        from mini_t2i.data.images import open_image

        # Stamps are PNG; draft_size is for the odd JPEG, harmless otherwise.
        return open_image(path, draft_size=2 * size)

    return load
