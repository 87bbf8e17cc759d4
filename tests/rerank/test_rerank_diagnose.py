"""`mini-t2i eval rerank`: per-kind pairwise rates with standard errors on renders,
reconstructions and checker-passed samples."""

import json

import pytest


def test_the_shipped_reranker_is_diagnosed_on_renders_and_reconstructions(tmp_path):
    from mini_t2i.cli import main

    out = tmp_path / "renders.json"
    assert main(["eval", "rerank", "--model", "mini_t2i/pretrained/rerank_shapes64", "--count", "36",
                 "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["score"] == "cosine" and report["diagnosed"] == 36
    kinds = report["pairwise"]
    # 36 val scenes = 6 of each task: every scene has a colour and a shape change; position scenes a flip and a swap
    assert kinds["color"]["count"] == kinds["shape"]["count"] == 36
    assert kinds["relation"]["count"] == kinds["swap"]["count"] == 6
    for k in kinds.values():
        assert 0 <= k["rate"] <= 1 and k["se"] == pytest.approx((k["rate"] * (1 - k["rate"]) / k["count"]) ** 0.5)
    assert kinds["color"]["rate"] > 0.9  # the shipped CLIP knows colours (docs/rerank.md: 1.00 on 120)
    assert main(["eval", "rerank", "--model", "mini_t2i/pretrained/rerank_shapes64", "--count", "12", "--images",
                 "reconstructions", "--out", str(tmp_path / "recon.json")]) == 0
    recon = json.loads((tmp_path / "recon.json").read_text())
    assert recon["images"] == "reconstructions" and recon["pairwise"]["color"]["count"] == 12


def test_samples_keep_only_what_the_checker_passes(tmp_path):
    from mini_t2i.pipeline.rerank_eval import diagnose_samples
    from mini_t2i.rerank.diagnose import diagnose

    report = diagnose_samples("mini_t2i/pretrained/rerank_shapes64", "shapes64", count=12, is_verbose=False)
    # seeded samples: the same on every CPU (tests/pipeline/test_expected_slice.py says why)
    assert 0 < report["diagnosed"] < 12 and report["images"] == "samples"
    assert sum(v["count"] for v in report["pairwise"].values()) >= 2 * report["diagnosed"]  # colour + shape each
    with pytest.raises(ValueError, match="renders, reconstructions or samples"):
        diagnose("mini_t2i/pretrained/rerank_shapes64", images="pixels")


def test_rerankers_are_compared_on_the_same_candidates(tmp_path):
    from mini_t2i.pipeline.rerank_eval import compare_rerankers

    shipped = "mini_t2i/pretrained/rerank_shapes64"
    result = compare_rerankers("shapes64", [shipped, shipped], count=6, candidates=(2, 4), is_verbose=False,
                               out=str(tmp_path / "c.json"))
    for n in ("2", "4"):
        entry = result["candidates"][n]
        a, b = entry["rerankers"][shipped], entry["oracle"]
        assert 0 <= a["overall"] <= b["overall"] and entry["one_sample"]["overall"] <= b["overall"]
    # more candidates: the oracle can only gain
    assert result["candidates"]["4"]["oracle"]["overall"] >= result["candidates"]["2"]["oracle"]["overall"]


def test_the_generator_is_diagnosed_as_a_scorer(tmp_path):
    from mini_t2i.cli import main
    from mini_t2i.pipeline.rerank_eval import diagnose_generator

    out = tmp_path / "gen.json"
    assert main(["eval", "rerank", "--score", "generator", "--pipeline", "shapes64", "--count", "12",
                 "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["score"] == "log p(codes | caption)" and report["diagnosed"] == 12
    kinds = report["pairwise"]
    assert kinds["color"]["count"] == 12 and kinds["relation"]["count"] == 2
    # colours are what the generator reads best (docs/rerank.md: 1.00 on 300 val renders; 12 here)
    assert kinds["color"]["rate"] > 0.9
    with pytest.raises(ValueError, match="use --images renders"):
        diagnose_generator("shapes64", images="samples", count=2, is_verbose=False)
    with pytest.raises(SystemExit, match="give --model"):
        main(["eval", "rerank", "--count", "2"])
