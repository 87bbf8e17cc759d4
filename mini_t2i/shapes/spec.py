"""Shapes World constants, as fixed by the Shapes World spec (specs/shapes_world.md).

Everything here is plain data: the palette, the two backgrounds, the six shapes,
the two sizes, the held-out colour-shape pairs, the tasks and the relations. The
renderer, the caption grammar and the checker all read these names, so a change
here changes the benchmark; other parties' checkers are written to the same spec.
"""

from __future__ import annotations

# Palette: colour name -> RGB. Insertion order is the canonical colour order.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "purple": (140, 60, 190),
    "orange": (245, 140, 30),
    "cyan": (40, 200, 210),
    "pink": (245, 130, 190),
}
COLORS: tuple[str, ...] = tuple(PALETTE)

BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (20, 20, 20),
    "white": (235, 235, 235),
}

# triangle: apex up; diamond: a square rotated 45 degrees; star: five points, apex up;
# cross: a plus sign whose arms are 1/3 of its extent wide.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star", "cross")

# An object's extent (side of its bounding box) as a fraction of the canvas side.
SIZES: dict[str, float] = {"small": 0.22, "large": 0.38}

CANVAS_SIZES: tuple[int, ...] = (32, 64, 128)
DEFAULT_SIZE = 64

# Minimum gap between any two objects, as a fraction of the canvas side.
MIN_GAP = 0.04

# Colour-shape pairs that never appear in train/val/test_iid images or captions.
# A tuple, not a set, so that iterating over it has the same order in every process.
HELD_OUT_PAIRS: tuple[tuple[str, str], ...] = (
    ("red", "star"),
    ("green", "triangle"),
    ("blue", "cross"),
    ("yellow", "diamond"),
    ("purple", "circle"),
    ("orange", "square"),
)

TASKS: tuple[str, ...] = ("single", "two", "counting", "colors", "position", "color_attr")

RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")

# GenEval's position threshold: the centre offset along the relation's axis must
# exceed this fraction of the two objects' summed extents along that axis.
POSITION_THRESHOLD = 0.1

COUNT_WORDS: dict[int, str] = {2: "two", 3: "three", 4: "four"}

SPLITS: tuple[str, ...] = ("train", "val", "test_iid", "test_heldout")


def is_held_out(color: str, shape: str) -> bool:
    """Whether (color, shape) is one of the six held-out pairs."""
    return (color, shape) in HELD_OUT_PAIRS


def plural(shape: str) -> str:
    """English plural of a shape name ("cross" -> "crosses", "star" -> "stars")."""
    return shape + "es" if shape.endswith("ss") else shape + "s"
