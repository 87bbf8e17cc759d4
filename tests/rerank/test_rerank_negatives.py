"""Hard-negative captions: one detail changed, never a held-out pair."""

import numpy as np

from mini_t2i.rerank.negatives import hard_negative_captions, perturb_meta, perturbation_kinds
from mini_t2i.shapes.scenes import canonical_caption, make_sample
from mini_t2i.shapes.spec import HELD_OUT_PAIRS


def test_negatives_differ_from_the_truth_and_avoid_held_out_pairs():
    rng = np.random.default_rng(0)
    for i in range(120):
        meta = make_sample("train", i).meta
        truth = canonical_caption(meta)
        for kind in perturbation_kinds(meta):
            new = perturb_meta(meta, kind, rng)
            if new is None:
                continue
            assert canonical_caption(new) != truth, (kind, truth)
            assert not any((o["color"], o["shape"]) in HELD_OUT_PAIRS for o in new["objects"])
        negatives = hard_negative_captions(meta, 3, rng)
        assert len(negatives) == 3 and truth not in negatives


def test_negatives_are_worded_like_the_training_captions():
    # With canonical negatives only, "not the template" would mean "true" for every paraphrased
    # caption: the wording must carry no label, so negatives are paraphrased as often as the
    # train split's captions are (CANONICAL_PROB).
    from mini_t2i.shapes.scenes import CANONICAL_PROB

    rng = np.random.default_rng(1)
    canonical, total, captions = 0, 0, []
    for i in range(300):
        meta = make_sample("train", i).meta
        for caption in hard_negative_captions(meta, 2, rng):
            captions.append(caption)
            total += 1
            canonical += any(caption == canonical_caption(perturb) for perturb in _changes(meta))
    share = canonical / total  # n = 600: SE ~0.02
    assert abs(share - CANONICAL_PROB) < 0.1, share
    assert len(set(captions)) > 0.9 * len(captions)


def _changes(meta):
    """Every single change of meta, each kind drawn many times (the color and shape kinds are random)."""
    rng = np.random.default_rng(123)
    out = []
    for kind in perturbation_kinds(meta):
        for _ in range(40):
            new = perturb_meta(meta, kind, rng)
            if new is not None:
                out.append(new)
    return out


def test_the_task_specific_change_comes_first():
    rng = np.random.default_rng(0)
    position = make_sample("train", 4).meta  # TASKS[4] == "position"
    assert perturbation_kinds(position)[0] == "relation"
    flipped = perturb_meta(position, "relation", rng)
    assert flipped["relation"]["type"] != position["relation"]["type"]
    assert flipped["objects"] == position["objects"]
    swapped = perturb_meta(position, "swap", rng)
    a, b = position["relation"]["a"], position["relation"]["b"]
    assert (swapped["relation"]["a"], swapped["relation"]["b"]) == (b, a)
    assert swapped["relation"]["type"] == position["relation"]["type"]
    counting = make_sample("train", 2).meta
    assert perturbation_kinds(counting)[0] == "count"
    for _ in range(10):  # count +- 1 only
        assert abs(perturb_meta(counting, "count", rng)["objects"][0]["count"] - counting["objects"][0]["count"]) == 1
    assert hard_negative_captions(None, 3, rng) == []


def test_mirrored_images_are_negatives_exactly_for_captions_that_name_a_side():
    from mini_t2i.rerank.negatives import mirror_axes, mirrored_negatives

    assert mirror_axes("a red circle to the left of a blue square") == (True, False)
    assert mirror_axes("there is a star over a cross, black background") == (False, True)
    assert mirror_axes("two blue squares") == (False, False)
    images = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    out = mirrored_negatives(images, ["a circle right of a star", "three stars", "a cross below a star"])
    assert out.shape == (2, 8, 8, 3) and out.flags["C_CONTIGUOUS"]
    assert np.array_equal(out[0], images[0][:, ::-1]) and np.array_equal(out[1], images[2][::-1])
    assert mirrored_negatives(images[:1], ["a star"]).shape == (0, 8, 8, 3)
    # In Shapes World a left-right mirror reverses the relation and keeps every object
    sample = next(s for i in range(40) if (s := make_sample("train", i)).meta["task"] == "position"
                  and s.meta["relation"]["type"] in ("left of", "right of"))
    from mini_t2i.shapes.checker import check_image

    assert check_image(sample.image, sample.meta)
    assert not check_image(np.ascontiguousarray(np.asarray(sample.image)[:, ::-1]), sample.meta)


def test_frame_negatives_push_content_out_of_the_frame():
    from mini_t2i.pixels import border_colour
    from mini_t2i.rerank.negatives import cut_by_frame_negatives

    images = np.stack([np.asarray(make_sample("val", i).image) for i in range(12)])
    blank = np.full_like(images[:1], 17)
    cut = cut_by_frame_negatives(np.concatenate([images, blank]), np.random.default_rng(0))
    assert cut.shape == images.shape  # every scene has content off the border; the blank image is skipped
    assert (border_colour(cut) == border_colour(images)).all()  # the background stays the background

    def content(x):
        return np.abs(x.astype(int) - border_colour(x)[:, None, None, :].astype(int)).sum(-1) > 40  # (N, H, W)

    before, after = content(images), content(cut)
    assert (after.sum((1, 2)) < before.sum((1, 2))).all()  # part of the content left the frame
    again = cut_by_frame_negatives(images, np.random.default_rng(0))
    assert np.array_equal(again, cut)  # a pure function of the generator's state


def test_style_negatives_change_the_style_only():
    from mini_t2i.rerank.negatives import folder_styles, split_caption, style_negative_captions

    captions = ["dog face", "dog face, twemoji style", "red apple, openmoji style", "cat face, fluent flat style"]
    styles = folder_styles(captions)
    assert styles == [None, "fluent flat", "openmoji", "twemoji"]
    rng = np.random.default_rng(0)
    for caption in captions:
        name, style = split_caption(caption)
        for num in (1, 2, 3, 5):
            out = style_negative_captions(caption, styles, num, rng)
            assert len(out) == min(num, 3) and len(set(out)) == len(out)
            assert all(split_caption(c)[0] == name and split_caption(c)[1] != style for c in out)
    assert style_negative_captions("dog face", [None], 2, rng) == []  # one style: nothing to swap to
    assert style_negative_captions("dog face, twemoji style", styles, 0, rng) == []
