"""bench/decode_quality.py: fp16 / int8 decode weights against fp32 on the same seeds."""

import json

import pytest


def test_formats_are_compared_with_fp32_on_the_same_seeds(tiny_pipeline_dir, tmp_path):
    from mini_t2i.bench.decode_quality import main

    out = tmp_path / "quality.json"
    main(["--model", str(tiny_pipeline_dir), "--split", "val", "--count", "6", "--candidates", "2",
          "--weights", "fp16", "int8", "--threads", "1", "--out", str(out)])
    report = json.loads(out.read_text())
    formats = report["formats"]
    assert list(formats) == ["fp32", "fp16", "int8"]
    ref = formats["fp32"]  # fp32 against itself: every token equal, no difference
    assert ref["token_agreement"] == 1.0 and ref["identical_images"] == 1.0 and ref["difference_from_fp32"] == 0.0
    assert ref["mean_first_difference"] == 16  # the tiny pipeline's 4x4 grid: no difference anywhere
    for r in formats.values():
        assert 0.0 <= r["token_agreement"] <= 1.0 and 0.0 <= r["accuracy"] <= 1.0
        assert r["identical_images"] <= r["token_agreement"] + 1e-12  # an equal image has all tokens equal
        # the paired difference is the difference of the two means (same prompts): float64 rounding only
        assert r["difference_from_fp32"] == pytest.approx(r["accuracy"] - ref["accuracy"], abs=1e-12)
