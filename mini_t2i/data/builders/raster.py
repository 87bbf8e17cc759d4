"""Make every image of a builder the same thing: an RGB square on white, nothing cropped away.

    pad_to_square(image, 64)     -> RGB 64 x 64: transparency over white, longer side = 64, centred
    render_svg(svg_bytes, 64)    -> RGBA, longer side = 64 (cairosvg; needs the system libcairo)

The loaders in `mini_t2i.data.sources` centre-crop; icons and stamps must not lose their
edges, so the builders pad to a square here and the loader's crop is then a no-op.
"""

from __future__ import annotations

import io
import re

from PIL import Image

from mini_t2i.data.images import to_rgb

WHITE = (255, 255, 255)


def pad_to_square(image: Image.Image, size: int) -> Image.Image:
    """`image` composited on white, scaled so its longer side is `size`, centred on a white square."""
    if size < 1:
        raise ValueError(f"size={size} must be >= 1")
    rgb = to_rgb(image)  # alpha over white first: resizing premultiplied-free RGBA would darken the edges
    width, height = rgb.size
    scale = size / max(width, height)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if new_size != rgb.size:
        # Lanczos for the big downscales of photos; `reducing_gap` box-reduces first (fast, as sharp).
        rgb = rgb.resize(new_size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if new_size == (size, size):
        return rgb if rgb is not image else rgb.copy()
    canvas = Image.new("RGB", (size, size), WHITE)
    canvas.paste(rgb, ((size - new_size[0]) // 2, (size - new_size[1]) // 2))
    return canvas


def _cairosvg():
    try:
        import cairosvg
    except ImportError as err:
        raise ImportError(
            "rasterising SVG needs cairosvg: pip install 'mini-t2i[data]' (or pip install cairosvg)"
        ) from err
    except OSError as err:  # cairocffi found no libcairo.so
        raise ImportError(
            f"cairosvg is installed but the system cairo library is missing ({err}); install it: "
            "apt-get install libcairo2 (Debian/Ubuntu), brew install cairo (macOS)"
        ) from err
    return cairosvg


def require_svg_support() -> None:
    """Raise the ImportError naming the fix unless SVGs can be rasterised here; call it
    before a long build, not at its first SVG."""
    _cairosvg()


def has_svg_support() -> bool:
    """True when `render_svg` can work here (cairosvg importable and libcairo present)."""
    try:
        _cairosvg()
    except ImportError:
        return False
    return True


_LENGTH = re.compile(r"^\s*([0-9.]+)")


def svg_aspect(svg: bytes) -> float:
    """width / height of an SVG from its viewBox (or width/height attributes); 1.0 when unknown."""
    head = svg[:4096].decode("utf-8", "replace")
    box = re.search(r"viewBox\s*=\s*[\"']\s*([-0-9.eE]+)[\s,]+([-0-9.eE]+)[\s,]+([0-9.eE]+)[\s,]+([0-9.eE]+)", head)
    try:
        if box:
            width, height = float(box.group(3)), float(box.group(4))
        else:
            tag = re.search(r"<svg\b[^>]*>", head, re.S)
            attrs = tag.group(0) if tag else ""
            width = float(_LENGTH.match(re.search(r"\swidth\s*=\s*[\"']([^\"']+)", attrs).group(1)).group(1))
            height = float(_LENGTH.match(re.search(r"\sheight\s*=\s*[\"']([^\"']+)", attrs).group(1)).group(1))
    except (AttributeError, ValueError):
        return 1.0
    return width / height if width > 0 and height > 0 else 1.0


_DOCTYPE = re.compile(rb"<!DOCTYPE[^\[>]*(\[(?P<subset>.*?)\])?\s*>", re.S)
_ENTITY = re.compile(rb"<!ENTITY\s+(?P<name>[A-Za-z_][\w.-]*)\s+(?P<q>[\"'])(?P<value>[^&<%]*?)(?P=q)\s*>")


def expand_internal_entities(svg: bytes) -> bytes:
    """Replace the DOCTYPE's plain internal entities (`<!ENTITY ns_svg "http://...">`, as
    Illustrator writes them) by their values and drop the DOCTYPE.

    cairosvg parses with defusedxml, which refuses every entity (against entity bombs and
    external files); plain-text values expanded once here cannot do either. Entities that
    are external or nest other references are left, and such a file still fails.
    """
    match = _DOCTYPE.search(svg)
    if match is None or not match.group("subset"):
        return svg
    entities = {m.group("name"): m.group("value") for m in _ENTITY.finditer(match.group("subset"))}
    if not entities or re.search(rb"<!ENTITY\s+%|SYSTEM|PUBLIC", match.group("subset")):
        return svg
    body = svg[: match.start()] + svg[match.end():]
    return re.sub(rb"&([A-Za-z_][\w.-]*);", lambda m: entities.get(m.group(1), m.group(0)), body)


def render_svg(svg: bytes, size: int) -> Image.Image:
    """Rasterise an SVG so that its longer side is `size` pixels; RGBA (transparent background).

    Rendering straight at the target size (instead of big, then downscaling) lets cairo
    anti-alias at the final resolution: sharp edges, and fast.
    """
    cairosvg = _cairosvg()
    svg = expand_internal_entities(svg)
    aspect = svg_aspect(svg)
    width, height = (size, max(1, round(size / aspect))) if aspect >= 1 else (max(1, round(size * aspect)), size)
    # unsafe=False (the default) keeps cairosvg from fetching external files or URLs named in the SVG.
    png = cairosvg.svg2png(bytestring=svg, output_width=width, output_height=height)
    image = Image.open(io.BytesIO(png))
    image.load()
    return image
