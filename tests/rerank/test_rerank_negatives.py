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
