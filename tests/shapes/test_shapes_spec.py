"""The constants are the spec's, value for value."""

from mini_t2i.shapes.spec import (
    BACKGROUNDS,
    HELD_OUT_PAIRS,
    MIN_GAP,
    PALETTE,
    RELATIONS,
    SHAPES,
    SIZES,
    TASKS,
    plural,
)


def test_palette_and_backgrounds():
    assert PALETTE == {
        "red": (220, 40, 40),
        "green": (40, 170, 60),
        "blue": (40, 80, 220),
        "yellow": (240, 210, 40),
        "purple": (140, 60, 190),
        "orange": (245, 140, 30),
        "cyan": (40, 200, 210),
        "pink": (245, 130, 190),
    }
    assert BACKGROUNDS == {"black": (20, 20, 20), "white": (235, 235, 235)}


def test_shapes_sizes_tasks_relations():
    assert set(SHAPES) == {"circle", "square", "triangle", "diamond", "star", "cross"}
    assert SIZES == {"small": 0.22, "large": 0.38}
    assert MIN_GAP == 0.04
    assert TASKS == ("single", "two", "counting", "colors", "position", "color_attr")
    assert set(RELATIONS) == {"left of", "right of", "above", "below"}


def test_held_out_pairs():
    assert set(HELD_OUT_PAIRS) == {
        ("red", "star"),
        ("green", "triangle"),
        ("blue", "cross"),
        ("yellow", "diamond"),
        ("purple", "circle"),
        ("orange", "square"),
    }


def test_plural():
    assert [plural(s) for s in ("circle", "star", "cross")] == ["circles", "stars", "crosses"]
