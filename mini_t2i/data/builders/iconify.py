"""Iconify emoji sets (npm `@iconify-json/<set>`): SVG icons captioned "<name>, <style> style".

    iconify_source(fetch_npm("@iconify-json/twemoji", "1.2.5", raw_dir), limit=0)
        -> Item(<lazy SVG raster>, "dog face, twemoji style", meta={"icon": "dog-face", ...}), ...

Each package ships icons.json ({"prefix", "width", "height", "icons": {name: {"body", ...}},
"aliases"}) and info.json (name, author, licence). An icon is an SVG body in a viewBox of
the set's width x height (an icon may override them); aliases repeat other icons and are
left out, as are icons marked "hidden" (kept by Iconify only for old names).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Iterator

from PIL import Image

from mini_t2i.data.builders.fetch import Package
from mini_t2i.data.builders.folder import Item, Source, licence_note

# Versions the counts in docs/data.md were measured on; a set not listed is fetched at "latest".
ICONIFY_VERSIONS = {
    "twemoji": "1.2.5", "noto": "1.2.9", "fluent-emoji-flat": "1.2.6", "fluent-emoji": "1.2.7",
    "fluent-emoji-high-contrast": "1.2.6", "openmoji": "1.2.29", "emojione": "1.2.3", "emojione-v1": "1.2.3",
    "fxemoji": "1.2.2", "noto-v1": "1.2.5", "streamline-emojis": "1.2.4",
}
# How a caption names the style; sets not listed use their prefix with dashes as spaces.
STYLE_NAMES = {"fluent-emoji-flat": "fluent flat", "fluent-emoji": "fluent 3d",
               "fluent-emoji-high-contrast": "fluent high contrast", "fxemoji": "firefox",
               "streamline-emojis": "streamline", "noto-v1": "noto v1", "emojione-v1": "emojione v1"}
# The emoji set trained on: not noto, whose art is that of emoji-datasource-google already.
DEFAULT_SETS = ("twemoji", "fluent-emoji-flat", "emojione")

# Skin tones: twemoji/noto/openmoji spell them "waving-hand-medium-skin-tone" (two-person
# emoji carry two), fluent "waving-hand-medium"; for the latter the base name must exist
# too, so that a name merely ending in "dark" stays whole.
_TONES = "medium-light|medium-dark|light|medium|dark"
_SKIN_TONE = re.compile(rf"-({_TONES})-skin-tone")
_TONE_SUFFIX = re.compile(rf"^(?P<base>.+?)-(?P<tone>{_TONES})$")


def package_name(icon_set: str) -> str:
    return f"@iconify-json/{icon_set}"


def style_name(icon_set: str) -> str:
    return STYLE_NAMES.get(icon_set, icon_set.replace("-", " "))


def icon_caption(name: str, style: str, names: set[str] | frozenset[str] = frozenset()) -> str:
    """"dog-face" -> "dog face, twemoji style"; a skin-tone variant of an icon in `names` gets
    ", <tone> skin tone" as emoji-datasource captions do."""
    tones = _SKIN_TONE.findall(name)
    base = _SKIN_TONE.sub("", name)
    suffix = _TONE_SUFFIX.match(name)
    if not tones and suffix and suffix.group("base") in names:
        base, tones = suffix.group("base"), [suffix.group("tone")]
    words = base.replace("-", " ")
    if tones:  # worded as emoji-datasource does: ", medium skin tone" / ", light and dark skin tones"
        words += f", {tones[0]} skin tone" if len(set(tones)) == 1 else f", {' and '.join(tones)} skin tones"
    return f"{' '.join(words.split())}, {style} style"


def icon_svg(icon: dict, defaults: dict) -> bytes:
    """A standalone SVG document for one icons.json entry."""
    box = {k: icon.get(k, defaults.get(k, d)) for k, d in (("left", 0), ("top", 0), ("width", 16), ("height", 16))}
    view_box = f"{box['left']} {box['top']} {box['width']} {box['height']}"
    return (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
            f'viewBox="{view_box}" width="{box["width"]}" height="{box["height"]}">{icon["body"]}</svg>').encode()


def _transform(image: Image.Image, icon: dict) -> Image.Image:
    """Iconify's per-icon transformations: flips, then `rotate` quarter turns clockwise."""
    if icon.get("hFlip"):
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if icon.get("vFlip"):
        image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    turns = int(icon.get("rotate", 0)) % 4
    for _ in range(turns):
        image = image.transpose(Image.Transpose.ROTATE_270)  # PIL's ROTATE_270 is 90 degrees clockwise
    return image


def iconify_source(package: Package, size: int = 64, limit: int = 0) -> Source:
    """The visible, non-alias icons of an unpacked @iconify-json package, as a `Source`.

    `limit` > 0 keeps `limit` icons spread over the whole set (picked by a hash of the
    name, the same on every run), not the first names of the alphabet.
    """
    root = package.root
    icons_file, info_file = root / "icons.json", root / "info.json"
    if not icons_file.is_file():
        raise FileNotFoundError(f"{icons_file}: missing; {root} is not an @iconify-json package")
    data = json.loads(icons_file.read_text(encoding="utf-8"))
    info = json.loads(info_file.read_text(encoding="utf-8")) if info_file.is_file() else {}
    icon_set = data.get("prefix") or package.name.rsplit("/", 1)[-1]
    licence = info.get("license") or {}
    author = info.get("author") or {}
    spdx = licence.get("spdx") or package.license
    files = {"LICENSE.txt": licence_note(spdx, licence.get("title", spdx), licence.get("url", ""),
                                         f"{info.get('name', icon_set)} by {author.get('name', '?')} "
                                         f"({author.get('url', '')}), via the npm package {package.name}.")}
    for shipped in ("LICENSE", "LICENSE.txt", "LICENSE.md"):
        if (root / shipped).is_file():
            files[f"package-{shipped}"] = (root / shipped).read_text(encoding="utf-8", errors="replace")
    style = style_name(icon_set)
    return Source(name=package.name, version=package.version, license=spdx, authors=author.get("name", ""),
                  homepage=author.get("url", "") or package.homepage,
                  items=_items(data, icon_set, style, size, limit), license_files=files,
                  notes=f"captions: the icon name with dashes as spaces + ', {style} style'")


def _items(data: dict, icon_set: str, style: str, size: int, limit: int) -> Iterator[Item]:
    defaults = {k: data[k] for k in ("left", "top", "width", "height") if k in data}
    icons = {name: icon for name, icon in data.get("icons", {}).items() if not icon.get("hidden") and "body" in icon}
    names = sorted(icons)
    if limit and limit < len(names):
        keep = set(sorted(names, key=lambda n: hashlib.sha256(n.encode()).hexdigest())[:limit])
        names = [n for n in names if n in keep]
    all_names = frozenset(icons)
    for name in names:
        icon = icons[name]
        yield Item(image=_loader(icon_svg(icon, defaults), icon, size), text=icon_caption(name, style, all_names),
                   meta={"icon_set": icon_set, "icon": name})


def _loader(svg: bytes, icon: dict, size: int):
    def load() -> Image.Image:
        from mini_t2i.data.builders.raster import render_svg

        return _transform(render_svg(svg, size), icon)

    return load
