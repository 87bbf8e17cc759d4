"""Rasterise a Shapes World scene.

Each object is sampled analytically at 4x4 points per output pixel (the spec's
"render at 4x and downsample", done as exact point-in-shape tests instead of a
drawing library, so the result does not depend on a Pillow version's polygon
rules). The fraction of covered samples is the pixel's alpha, and the pixel is
``background + alpha * (colour - background)``: a fully covered pixel is exactly
the palette colour, so every object's interior is exact and only its one-pixel
rim is blended with the background.

Geometry is in fractions of the canvas side, so one layout renders the same
scene at 32, 64 and 128 pixels. Speed (one core): ~0.7 ms a scene at 64 px
(~1,400 scenes/s), ~2.4 ms at 128 px.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from mini_t2i.shapes.spec import BACKGROUNDS, PALETTE, SIZES

SUPERSAMPLE = 4

# Regular pentagram: inner radius / outer radius = sin(18 deg) / sin(54 deg).
_STAR_INNER = math.sin(math.radians(18)) / math.sin(math.radians(54))
# A point-up star is wider (2 R cos 18) than it is tall (R + R cos 36); its width is
# set to the extent, so its height is 0.951 of it.
_STAR_WIDTH = 2 * math.cos(math.radians(18))
_STAR_HEIGHT = 1 + math.cos(math.radians(36))


@dataclass(frozen=True)
class PlacedObject:
    """One object of a scene: colour, shape, size name, and the top-left corner
    (x, y) of its extent square, in fractions of the canvas side."""

    color: str
    shape: str
    size: str
    x: float
    y: float

    @property
    def extent(self) -> float:
        return SIZES[self.size]

    def box(self) -> tuple[float, float, float, float]:
        """The drawn shape's bounding box (x0, y0, x1, y1) in canvas fractions.

        The extent square for every shape but the star, which is 0.951 as tall
        as it is wide and sits vertically centred in the square.
        """
        e = self.extent
        if self.shape == "star":
            h = e * _STAR_HEIGHT / _STAR_WIDTH
            top = self.y + (e - h) / 2
            return (self.x, top, self.x + e, top + h)
        return (self.x, self.y, self.x + e, self.y + e)


def _star_vertices(cx: float, cy: float, e: float) -> np.ndarray:
    """(10, 2) outline of a point-up five-point star of width e centred in its box."""
    outer = e / _STAR_WIDTH
    inner = outer * _STAR_INNER
    # Centre of the circumcircle, shifted so the bounding box is centred on (cx, cy).
    oy = cy + outer * (1 - math.cos(math.radians(36))) / 2
    angles = np.radians(-90 + 36 * np.arange(10))
    radii = np.where(np.arange(10) % 2 == 0, outer, inner)
    return np.stack([cx + radii * np.cos(angles), oy + radii * np.sin(angles)], axis=1)


def _inside_polygon(px: np.ndarray, py: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test for sample points against a simple polygon."""
    inside = np.zeros(px.shape, dtype=bool)
    n = len(verts)
    for i in range(n):
        x1, y1 = verts[i]
        x2, y2 = verts[(i + 1) % n]
        if y1 == y2:
            continue  # a horizontal edge never crosses a horizontal ray
        crosses = (y1 > py) != (y2 > py)
        x_at = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (px < x_at)
    return inside


def _inside(shape: str, px: np.ndarray, py: np.ndarray, x0: float, y0: float, e: float) -> np.ndarray:
    """Which sample points (pixel units) fall inside `shape` with extent square (x0, y0, e)."""
    cx, cy = x0 + e / 2, y0 + e / 2
    if shape == "circle":
        return (px - cx) ** 2 + (py - cy) ** 2 <= (e / 2) ** 2
    if shape == "square":
        return (px >= x0) & (px < x0 + e) & (py >= y0) & (py < y0 + e)
    if shape == "diamond":
        return np.abs(px - cx) + np.abs(py - cy) <= e / 2
    if shape == "triangle":
        # Apex (cx, y0), base from (x0, y0 + e) to (x0 + e, y0 + e); the slanted sides
        # satisfy |x - cx| <= (y - y0) / 2.
        return (py < y0 + e) & (np.abs(px - cx) <= (py - y0) / 2)
    if shape == "cross":
        arm = e / 3  # arm width is a third of the extent
        in_x = (px >= x0) & (px < x0 + e)
        in_y = (py >= y0) & (py < y0 + e)
        mid_x = (px >= cx - arm / 2) & (px < cx + arm / 2)
        mid_y = (py >= cy - arm / 2) & (py < cy + arm / 2)
        return (in_x & mid_y) | (in_y & mid_x)
    if shape == "star":
        return _inside_polygon(px, py, _star_vertices(cx, cy, e))
    raise ValueError(f"unknown shape {shape!r}")


def coverage(obj: PlacedObject, size: int) -> tuple[np.ndarray, int, int]:
    """Fraction of each pixel covered by `obj` on a `size` canvas.

    Returns (alpha, row0, col0): alpha is a float array over the object's pixel
    bounding box, whose top-left pixel is (row0, col0).
    """
    e = obj.extent * size
    x0, y0 = obj.x * size, obj.y * size
    col0, row0 = max(int(math.floor(x0)), 0), max(int(math.floor(y0)), 0)
    col1, row1 = min(int(math.ceil(x0 + e)), size), min(int(math.ceil(y0 + e)), size)
    s = SUPERSAMPLE
    # Sample points at the centres of an s x s grid inside each pixel.
    offsets = (np.arange(s) + 0.5) / s
    xs = (np.arange(col0, col1)[:, None] + offsets).ravel()
    ys = (np.arange(row0, row1)[:, None] + offsets).ravel()
    px, py = np.meshgrid(xs, ys)
    inside = _inside(obj.shape, px, py, x0, y0, e)
    h, w = row1 - row0, col1 - col0
    alpha = inside.reshape(h, s, w, s).mean(axis=(1, 3))
    return alpha, row0, col0


def render_array(objects: list[PlacedObject], background: str, size: int) -> np.ndarray:
    """Render a scene to a (size, size, 3) uint8 array."""
    bg = np.asarray(BACKGROUNDS[background], dtype=np.float64)
    canvas = np.empty((size, size, 3), dtype=np.float64)
    canvas[:] = bg
    for obj in objects:
        alpha, r0, c0 = coverage(obj, size)
        h, w = alpha.shape
        color = np.asarray(PALETTE[obj.color], dtype=np.float64)
        region = canvas[r0 : r0 + h, c0 : c0 + w]
        # Objects never overlap, so blending over the background alone is exact.
        a = alpha[..., None]
        region[:] = region * (1 - a) + color * a
    out = np.rint(canvas).astype(np.uint8)
    return out


def render_scene(objects: list[PlacedObject], background: str, size: int) -> Image.Image:
    """Render a scene to a PIL RGB image of `size` x `size`."""
    return Image.fromarray(render_array(objects, background, size))
