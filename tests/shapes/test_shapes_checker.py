"""The checker: accuracy on ground truth, clause semantics, robustness."""

import time

import numpy as np
import pytest
from PIL import Image, ImageFilter

from mini_t2i.shapes.checker import check_image, detect_objects, relation_holds
from mini_t2i.shapes.render import PlacedObject, render_scene
from mini_t2i.shapes.scenes import generate_split
from mini_t2i.shapes.spec import COLORS, SHAPES


def _accuracy(samples, transform=lambda im: im):
    return float(np.mean([check_image(transform(s.image), s.meta) for s in samples]))


@pytest.mark.parametrize(
    "split,size,count",
    [("test_iid", 64, 360), ("test_heldout", 64, 360), ("train", 64, 360), ("test_iid", 128, 300),
     ("test_heldout", 128, 300)],
)
def test_accuracy_on_ground_truth(split, size, count):
    acc = _accuracy(list(generate_split(split, count, seed=11, size=size)))
    assert acc >= 0.99, acc


def test_accuracy_at_32_is_reported_not_required():
    # 32 px is for machinery tests: a small object is 7 pixels wide (measured ~0.86).
    acc = _accuracy(list(generate_split("test_iid", 120, seed=0, size=32)))
    print(f"checker accuracy at 32 px: {acc:.3f}")
    assert acc > 0.5


def test_tolerates_blur_noise_and_colour_shift():
    samples = list(generate_split("test_iid", 120, seed=2, size=64))
    rng = np.random.default_rng(0)

    def noisy(im):
        arr = np.asarray(im).astype(float) + rng.normal(0, 4, (64, 64, 3)) + rng.uniform(-15, 15, 3)
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))

    assert _accuracy(samples, lambda im: im.filter(ImageFilter.GaussianBlur(0.7))) >= 0.97
    assert _accuracy(samples, noisy) >= 0.95


def test_ignores_tiny_noise_components():
    samples = list(generate_split("test_iid", 60, seed=3, size=64))
    rng = np.random.default_rng(1)
    for s in samples:
        arr = np.asarray(s.image).copy()
        for _ in range(6):  # isolated 1-2 pixel specks of random palette colours
            y, x = rng.integers(0, 63, 2)
            arr[y : y + rng.integers(1, 3), x] = np.array(
                {"red": (220, 40, 40), "blue": (40, 80, 220)}["red" if rng.random() < 0.5 else "blue"])
        assert len(detect_objects(arr).objects) == len(s.layout)


def test_pil_and_array_inputs_agree_and_bad_sizes_fail():
    s = next(generate_split("test_iid", 1, seed=0, size=64))
    assert check_image(s.image, s.meta) == check_image(np.asarray(s.image), s.meta) is True
    with pytest.raises(ValueError):
        check_image(s.image.resize((48, 48)), s.meta)
    with pytest.raises(ValueError):
        check_image(np.zeros((64, 32, 3), np.uint8), s.meta)
    with pytest.raises(ValueError, match="uint8"):
        check_image(np.asarray(s.image) / 255.0, s.meta)


def _scene(objects, background="black", size=64):
    return render_scene([PlacedObject(*o) for o in objects], background, size)


def _meta(task, objects, background=None, relation=None):
    return {"task": task, "background": background,
            "objects": [{"color": c, "shape": s, "size": z, "count": n} for c, s, z, n in objects],
            "relation": relation}


def test_every_shape_colour_and_size_is_recognised():
    for size in (64, 128):
        for color in COLORS:
            for shape in SHAPES:
                for name, bg in (("small", "white"), ("large", "black"), ("small", "black"), ("large", "white")):
                    det = detect_objects(_scene([(color, shape, name, 0.31, 0.27)], bg, size))
                    assert det.background == bg
                    (obj,) = det.objects
                    assert (obj.color, obj.shape, obj.size) == (color, shape, name)


def test_clauses_must_all_hold():
    im = _scene([("red", "circle", "large", 0.05, 0.3), ("blue", "square", "small", 0.6, 0.35)], "white")
    two = _meta("two", [("red", "circle", None, 1), ("blue", "square", None, 1)])
    assert check_image(im, two)
    assert check_image(im, {**two, "background": "white"})
    assert not check_image(im, {**two, "background": "black"})
    # Binding: swapped colours fail colour attribution.
    attr = _meta("color_attr", [("red", "circle", None, 1), ("blue", "square", None, 1)])
    assert check_image(im, attr)
    assert not check_image(im, _meta("color_attr", [("blue", "circle", None, 1), ("red", "square", None, 1)]))
    # Size, when given.
    assert check_image(im, _meta("single", [("red", "circle", "large", 1)]))
    assert not check_image(im, _meta("single", [("red", "circle", "small", 1)]))
    assert not check_image(im, _meta("single", [("green", "circle", None, 1)]))
    # Colors: scored on colour alone.
    assert check_image(im, _meta("colors", [("blue", "triangle", None, 1)]))
    assert not check_image(im, _meta("colors", [("pink", "square", None, 1)]))
    # Position.
    left = _meta("position", [("red", "circle", None, 1), ("blue", "square", None, 1)],
                 relation={"a": 0, "b": 1, "type": "left of"})
    assert check_image(im, left)
    for wrong in ("right of", "above", "below"):
        assert not check_image(im, {**left, "relation": {"a": 0, "b": 1, "type": wrong}})
    assert check_image(im, {**left, "relation": {"a": 1, "b": 0, "type": "right of"}})


def test_counting_is_exact_and_extra_objects_elsewhere_are_allowed():
    objs = [("green", "star", "small", 0.05, 0.05), ("green", "star", "small", 0.6, 0.05),
            ("green", "star", "small", 0.05, 0.6)]
    im = _scene(objs)
    meta = _meta("counting", [("green", "star", None, 3)])
    assert check_image(im, meta)
    for n in (2, 4):
        assert not check_image(im, _meta("counting", [("green", "star", None, n)]))
    # A fourth green star breaks "exactly three"; a pink circle does not.
    assert not check_image(_scene(objs + [("green", "star", "small", 0.6, 0.6)]), meta)
    assert check_image(_scene(objs + [("pink", "circle", "small", 0.6, 0.6)]), meta)
    # Same for single: an unrelated extra object does not fail the clause.
    single = _meta("single", [("green", "star", None, 1)])
    assert check_image(_scene(objs[:1] + [("pink", "circle", "small", 0.6, 0.6)]), single)


def test_two_identical_clauses_need_two_objects():
    meta = _meta("two", [("red", "square", None, 1), ("red", "square", None, 1)])
    assert not check_image(_scene([("red", "square", "small", 0.1, 0.1)]), meta)
    assert check_image(_scene([("red", "square", "small", 0.1, 0.1), ("red", "square", "small", 0.6, 0.6)]), meta)


def test_relation_rule():
    a = (0, 0, 10, 10)
    assert relation_holds(a, (20, 5, 30, 15), "left of")
    assert relation_holds((20, 5, 30, 15), a, "right of")
    assert relation_holds(a, (3, 20, 13, 30), "above")
    assert not relation_holds(a, (1, 0, 11, 10), "left of")  # offset 1 < 0.1 * (10 + 10)
    assert not relation_holds(a, (12, 15, 22, 25), "left of")  # vertical offset dominates


def test_speed_at_64():
    samples = list(generate_split("test_iid", 120, seed=0, size=64))
    t0 = time.perf_counter()
    rendered = list(generate_split("test_iid", 120, seed=1, size=64))
    render_rate = 120 / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    verdicts = [check_image(s.image, s.meta) for s in samples]
    check_rate = 120 / (time.perf_counter() - t0)
    # Targets are 300/s and 200/s on one core (measured ~1,000 and ~650): reported, not asserted, since
    # a busy shared machine's rate says nothing about the code; the work itself is checked instead.
    print(f"render {render_rate:.0f}/s, check {check_rate:.0f}/s")
    assert len(rendered) == 120 and np.mean(verdicts) >= 0.99  # the accuracy bar above; measured 120/120


def test_colour_labels_match_a_brute_force_nearest_segment():
    from mini_t2i.shapes.checker import COLOR_TOL, _background, _color_labels
    from mini_t2i.shapes.spec import PALETTE

    palette = np.array([PALETTE[c] for c in COLORS], dtype=np.float64)
    for s in generate_split("test_iid", 12, seed=5, size=32):
        arr = np.asarray(s.image.filter(ImageFilter.GaussianBlur(1.0)))  # many mixed pixels
        bg, _ = _background(arr)
        v = arr.reshape(-1, 1, 3) - bg  # (N, 1, 3)
        d = palette - bg  # (8, 3)
        alpha = np.clip((v * d).sum(-1) / (d * d).sum(-1), 0, 1)  # (N, 8)
        resid = np.linalg.norm(v - alpha[..., None] * d, axis=-1)
        best = resid.argmin(1)
        rows = np.arange(len(best))
        expected = np.where(resid[rows, best] > COLOR_TOL, -2, np.where(alpha[rows, best] >= 0.5, best, -1))
        got = _color_labels(arr, bg).ravel()
        # float32 vs float64 may only disagree on pixels sitting on a threshold.
        assert (got != expected).mean() < 0.002
