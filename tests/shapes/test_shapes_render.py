"""Renderer geometry: exact interiors, extents, gaps, shape orientation."""

import numpy as np
import pytest

from mini_t2i.shapes.render import PlacedObject, coverage
from mini_t2i.shapes.scenes import generate_split
from mini_t2i.shapes.spec import BACKGROUNDS, MIN_GAP, PALETTE, SHAPES, SIZES


def _mask(obj, size):
    """Per-pixel alpha of obj on a full canvas."""
    alpha, r0, c0 = coverage(obj, size)
    full = np.zeros((size, size))
    full[r0 : r0 + alpha.shape[0], c0 : c0 + alpha.shape[1]] = alpha
    return full


@pytest.mark.parametrize("size", [32, 64, 128])
def test_interior_is_exact_palette_colour_and_background_exact(size):
    for sample in generate_split("train", 60, seed=3, size=size):
        arr = np.asarray(sample.image)
        assert arr.shape == (size, size, 3) and arr.dtype == np.uint8
        covered = np.zeros((size, size), dtype=bool)
        for obj in sample.layout:
            alpha = _mask(obj, size)
            interior = alpha == 1.0
            assert interior.sum() > 0
            assert (arr[interior] == PALETTE[obj.color]).all()
            covered |= alpha > 0
        # Everything no object touches is the exact background colour.
        assert (arr[~covered] == BACKGROUNDS[sample.background]).all()


# Area of each ideal shape over its extent squared.
IDEAL_FILL = {"circle": np.pi / 4, "square": 1.0, "triangle": 0.5, "diamond": 0.5,
              "cross": 5 / 9, "star": 0.3103}


def test_extent_and_area_match_the_ideal_shape():
    size = 128
    for shape in SHAPES:
        for name, frac in SIZES.items():
            obj = PlacedObject("red", shape, name, 0.3, 0.25)
            alpha = _mask(obj, size)
            e = frac * size
            # Coverage sums to the ideal area (4x4 supersampling: well within 2%).
            assert abs(alpha.sum() / (IDEAL_FILL[shape] * e * e) - 1) < 0.02, (shape, name)
            cols = np.nonzero(alpha.sum(0) > 0)[0]
            rows = np.nonzero(alpha.sum(1) > 0)[0]
            height = e * (0.951 if shape == "star" else 1.0)
            assert e - 1 <= cols.max() - cols.min() + 1 <= e + 2, (shape, name)
            assert height - 1 <= rows.max() - rows.min() + 1 <= height + 2, (shape, name)


def test_objects_keep_gap_and_never_overlap():
    for sample in generate_split("train", 600, seed=1, size=32):
        objs = sample.layout
        for o in objs:
            assert 0 <= o.x and o.x + o.extent <= 1 and 0 <= o.y and o.y + o.extent <= 1
        for i in range(len(objs)):
            for j in range(i + 1, len(objs)):
                a, b = objs[i], objs[j]
                gap_x = max(b.x - (a.x + a.extent), a.x - (b.x + b.extent))
                gap_y = max(b.y - (a.y + a.extent), a.y - (b.y + b.extent))
                assert max(gap_x, gap_y) >= MIN_GAP - 1e-12


def _rows(shape, size=128):
    alpha = _mask(PlacedObject("red", shape, "large", 0.3, 0.3), size)
    m = alpha >= 0.5
    m = m[m.any(1)][:, m.any(0)]
    return m


def test_triangle_apex_up_and_diamond_symmetric():
    tri = _rows("triangle")
    widths = tri.sum(1)
    assert widths[0] <= 3 and widths[-1] == tri.shape[1]  # apex on top, base at bottom
    dia = _rows("diamond")
    widths = dia.sum(1)
    assert widths[0] <= 3 and widths[-1] <= 3 and widths[len(widths) // 2] >= dia.shape[1] - 2


def test_cross_arm_is_a_third_of_extent():
    size, frac = 128, SIZES["large"]
    obj = PlacedObject("red", "cross", "large", 0.3, 0.3)
    alpha = _mask(obj, size)
    e, top = frac * size, 0.3 * size
    # A row inside the top arm, and one through the middle of the horizontal arm.
    assert abs(alpha[int(top + e / 6)].sum() - e / 3) < 0.3
    assert abs(alpha[int(top + e / 2)].sum() - e) < 0.3


def test_star_has_five_points():
    star = _rows("star")
    ys, xs = np.nonzero(star)
    cy, cx = ys.mean(), xs.mean()
    angles = np.arctan2(ys - cy, xs - cx)
    radii = np.hypot(ys - cy, xs - cx)
    # Farthest pixel in each of 72 angular bins; count the peaks of that profile.
    bins = ((angles + np.pi) / (2 * np.pi) * 72).astype(int) % 72
    profile = np.zeros(72)
    np.maximum.at(profile, bins, radii)
    peaks = [
        k for k in range(72)
        if profile[k] >= profile[k - 1] and profile[k] > profile[(k + 1) % 72]
        and profile[k] > 0.8 * profile.max()
    ]
    assert len(peaks) == 5
    # Point up: the topmost pixel is at the horizontal centre.
    top = np.nonzero(star[0])[0]
    assert abs(top.mean() - (star.shape[1] - 1) / 2) <= 1


def test_square_is_axis_aligned():
    alpha = _mask(PlacedObject("red", "square", "large", 0.3, 0.3), 128)
    touched = alpha > 0
    rows, cols = np.nonzero(touched)
    # Everything touched is one axis-aligned rectangle, fully covered inside its rim.
    assert touched[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
    assert (alpha[rows.min() + 1 : rows.max(), cols.min() + 1 : cols.max()] == 1).all()
