"""The bake-off's measurement (mini_t2i/bench/bakeoff.py): failure kinds and per-task
scores with standard errors, on ground-truth renders and their damaged copies."""

import numpy as np

from mini_t2i.bench.bakeoff import failure_kind, parse_variant, score
from mini_t2i.shapes.scenes import generate_split


def test_variants_parse_into_names_and_overrides():
    assert parse_variant("reference") == ("reference", [])
    assert parse_variant("rowcol:model.image_positions=rowcol,lr=0.003") == (
        "rowcol", ["model.image_positions=rowcol", "lr=0.003"])


def test_renders_pass_and_a_blank_image_is_an_object_missing():
    samples = [s for s in generate_split("val", 60, size=64)][:24]
    images = np.stack([np.asarray(s.image) for s in samples])
    metas = [s.meta for s in samples]
    assert [failure_kind(im, m) for im, m in zip(images, metas)].count("ok") >= 23  # the checker's ground truth: >= 0.99
    # An image of the background colour alone: every clause's object is missing (or the background is wrong).
    blank = np.broadcast_to(images[:, :1, :1], images.shape).copy()
    assert {failure_kind(im, m) for im, m in zip(blank, metas)} <= {"object missing", "background"}


def test_scores_carry_standard_errors_and_failure_counts():
    samples = [s for s in generate_split("val", 60, size=64)][:40]
    images = np.stack([np.asarray(s.image) for s in samples])
    metas = [s.meta for s in samples]
    images[:10] = images[:10, :1, :1]  # the first ten lose their objects
    result = score(images, metas)
    n_ok = round(result["overall"] * 40)
    assert n_ok <= 30 and sum(result["failures"].values()) == 40 - n_ok
    p = result["overall"]
    assert abs(result["overall_se"] - np.sqrt(p * (1 - p) / 40)) < 1e-12
    assert sum(t["count"] for t in result["tasks"].values()) == 40
