"""`mini-t2i eval fidelity`: FID / KID of a pipeline's samples for held-back captions beside the
floors, and R-precision, on Shapes World folders rendered here and the tiny pipeline."""

import json

import numpy as np
import pytest

from mini_t2i.cli import main
from mini_t2i.pipeline.fidelity_eval import R_PRECISION_CAPTIONS, evaluate_fidelity, r_precision
from mini_t2i.shapes.files import render_split_to_dir


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("fidelity")
    return (str(render_split_to_dir("val", 36, 32, 0, root / "val")),
            str(render_split_to_dir("train", 40, 32, 0, root / "train")))


def test_evaluate_fidelity(tiny_pipeline_dir, folders, tmp_path):
    val, train = folders
    out, samples = tmp_path / "fidelity.json", tmp_path / "samples"
    result = evaluate_fidelity(str(tiny_pipeline_dir), val, train, num_candidates=2, out=str(out),
                               samples_out=str(samples), is_verbose=False, r_precision_captions=20)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["count"] == 36 and result["num_candidates"] == 2
    for name in ("samples", "reconstructions", "floor"):
        assert np.isfinite(result[name]["fid"]) and result[name]["fid"] > 0 and result[name]["kid_std"] >= 0
    # an untrained generator is far further from real images than real images from each other
    assert result["fid_ratio_samples"] == pytest.approx(result["samples"]["fid"] / result["floor"]["fid"])
    assert result["fid_ratio_samples"] > 1.5
    for key in ("r_precision_samples", "r_precision_real"):
        assert 0 <= result[key]["r_precision"] <= 1 and result[key]["count"] == 36
    # the samples written are the ones scored, one per val caption in order
    lines = [json.loads(line) for line in (samples / "metadata.jsonl").read_text().splitlines()]
    real = [json.loads(line)["text"] for line in open(f"{val}/metadata.jsonl")]
    assert [line["text"] for line in lines] == real and len(list(samples.glob("*.png"))) == 36


def test_cli_refuses_too_few_captions_before_sampling(tiny_pipeline_dir, folders, capsys, tmp_path):
    val, train = folders
    out = tmp_path / "f.json"
    assert main(["eval", "fidelity", "--model", str(tiny_pipeline_dir), "--val", val, "--train", train,
                 "--out", str(out)]) == 2
    assert "100 distinct captions" in capsys.readouterr().err and not out.exists()


def test_r_precision_counts_the_true_caption_first(tiny_pipeline, folders):
    from PIL import Image

    val, _ = folders
    lines = [json.loads(line) for line in open(f"{val}/metadata.jsonl")]
    images = np.stack([np.asarray(Image.open(f"{val}/{x['file_name']}").convert("RGB")) for x in lines])
    captions = [x["text"] for x in lines]
    result = r_precision(tiny_pipeline.reranker, images, captions, tiny_pipeline.tokenizer, num_captions=20)
    # by hand: the same draw of 99 others per image, the true caption strictly above all of them
    texts = sorted(set(captions))
    sims = tiny_pipeline.reranker.score_matrix(images, tiny_pipeline.tokenizer.encode(texts)).numpy()
    rng, hits = np.random.default_rng(0), []
    for i, c in enumerate(captions):
        own = texts.index(c)
        others = rng.choice(len(texts) - 1, 19, replace=False)
        others = others + (others >= own)
        assert own not in others and len(set(others)) == 19
        hits.append(sims[i, own] > sims[i, others].max())
    assert result["r_precision"] == pytest.approx(np.mean(hits)) and result["count"] == len(captions)
    assert len(texts) < R_PRECISION_CAPTIONS  # the default asks for more than this folder has
    with pytest.raises(ValueError, match="needs 100 distinct captions"):
        r_precision(tiny_pipeline.reranker, images, captions, tiny_pipeline.tokenizer)
