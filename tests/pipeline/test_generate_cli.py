"""`mini-t2i generate`, `eval shapes` and `pipeline assemble/card` end to end on a tiny pipeline."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mini_t2i.cli import main


def test_generate_one_prompt(tiny_pipeline_dir, tmp_path):
    out = tmp_path / "gen"
    assert main(["generate", "a red circle above a blue square", "--model", str(tiny_pipeline_dir),
                 "--num-images", "3", "--num-candidates", "4", "--seed", "7", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert [r["file_name"] for r in rows] == ["00000.png", "00001.png", "00002.png"]
    assert all(7 <= r["seed"] < 11 for r in rows)
    assert rows[0]["score"] >= rows[1]["score"] >= rows[2]["score"]
    assert Image.open(out / "00000.png").size == (32, 32)
    assert (out / "grid.png").is_file()


def test_generate_with_int8_decode_weights_draws_what_the_pipeline_draws(tiny_pipeline_dir, tmp_path):
    from mini_t2i.pipeline.pipeline import TextToImagePipeline

    out = tmp_path / "gen"
    assert main(["generate", "a red circle", "--model", str(tiny_pipeline_dir), "--num-candidates", "2",
                 "--decode-weights", "int8", "--out", str(out)]) == 0
    pipe = TextToImagePipeline.from_pretrained(tiny_pipeline_dir)
    expected = pipe("a red circle", num_candidates=2, decode_weights="int8").images[0]
    assert np.array_equal(np.asarray(Image.open(out / "00000.png")), np.asarray(expected))


def test_generate_prompts_file_keeps_the_layout(tiny_pipeline_dir, tmp_path):
    """The Shapes World protocol: render, generate from the captions, score."""
    prompts = tmp_path / "split"
    assert main(["shapes", "render", "--split", "test_iid", "--count", "5", "--size", "32", "--out", str(prompts)]) == 0
    gen = tmp_path / "gen"
    assert main(["generate", "--prompts", str(prompts / "metadata.jsonl"), "--model", str(tiny_pipeline_dir),
                 "--out", str(gen), "--num-candidates", "2", "--batch-size", "3"]) == 0
    src = [json.loads(line) for line in (prompts / "metadata.jsonl").read_text().splitlines()]
    got = [json.loads(line) for line in (gen / "metadata.jsonl").read_text().splitlines()]
    assert [(r["file_name"], r["text"], r["meta"]) for r in got] == [(r["file_name"], r["text"], r["meta"]) for r in src]
    assert not (gen / "grid.png").exists()  # the folder stays a clean imagefolder
    assert main(["shapes", "score", str(gen)]) == 0
    assert json.loads((gen / "scores.json").read_text())["count"] == 5
    # a text file, one prompt a line, works too; the same seed gives the same first image
    text = tmp_path / "prompts.txt"
    text.write_text(src[0]["text"] + "\n\n" + src[1]["text"] + "\n")
    gen2 = tmp_path / "gen2"
    assert main(["generate", "--prompts", str(text), "--model", str(tiny_pipeline_dir), "--out", str(gen2),
                 "--num-candidates", "2"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(gen2 / "00000.png")), np.asarray(Image.open(gen / "00000.png")))


@pytest.mark.parametrize("args, message", [
    (["--num-images", "2", "--prompts", "PROMPTS"], "one image per line"),
    ([], "either a prompt or a prompts file"),
    (["a circle", "--num-images", "2", "--num-candidates", "1"], "num_candidates"),
    (["a circle", "--model", "no-such-model"], "shipped"),
    (["--prompts", "BAD"], "not JSON"),
])
def test_generate_errors(tiny_pipeline_dir, tmp_path, capsys, args, message):
    (tmp_path / "p.jsonl").write_text('{"text": "a red circle"}\n')
    (tmp_path / "bad.jsonl").write_text('{"text": "a red circle"\n')
    args = [{"PROMPTS": str(tmp_path / "p.jsonl"), "BAD": str(tmp_path / "bad.jsonl")}.get(a, a) for a in args]
    if "--model" not in args:
        args += ["--model", str(tiny_pipeline_dir)]
    assert main(["generate", *args, "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


def test_eval_shapes(tiny_pipeline_dir, tmp_path):
    from mini_t2i.pipeline.evaluate import evaluate_pipeline

    out = tmp_path / "eval.json"
    result = evaluate_pipeline(str(tiny_pipeline_dir), ["test_iid"], count=6, num_candidates=3, out=str(out),
                               is_verbose=False)
    r = result["splits"]["test_iid"]
    assert r["ground_truth"]["overall"] == 1.0 and r["count"] == 6
    for task, s in r["oracle"]["tasks"].items():  # the oracle is an upper bound of both picks
        assert s["accuracy"] >= r["reranked"]["tasks"][task]["accuracy"]
        assert s["accuracy"] >= r["one_sample"]["tasks"][task]["accuracy"]
    assert json.loads(out.read_text()) == result


def test_assemble_and_card(tiny_pipeline, tiny_pipeline_dir, tmp_path):
    from mini_t2i.pipeline.card import ModelCardInfo, PipelineAssembleConfig, assemble_pipeline, write_card
    from mini_t2i.pipeline.pipeline import TextToImagePipeline
    from mini_t2i.transformer.model import save_transformer

    parts = tmp_path / "parts"
    save_transformer(tiny_pipeline.transformer, tiny_pipeline.transformer_config, parts / "transformer")
    tiny_pipeline.vq.save_pretrained(parts / "vq")
    tiny_pipeline.reranker.save_pretrained(parts / "reranker")
    cfg = PipelineAssembleConfig(out=str(tmp_path / "pipe"), transformer=str(parts / "transformer"),
                                 reranker=str(parts / "reranker"), vq=str(parts / "vq"),
                                 text_tokenizer="mini_t2i/pretrained/text_shapes",
                                 card=ModelCardInfo(title="tiny test model", training=["`mini-t2i train ...`: 1 s"],
                                                    design=["| variant | score |"], figures=["docs/bakeoff_curve.png"]))
    folder = assemble_pipeline(cfg)
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlicense: apache-2.0") and "# tiny test model" in card and "## Scores" not in card
    # the design section and its figure, copied into the folder so that the card shows it anywhere
    assert "## How it was chosen\n\n| variant | score |" in card and "![bakeoff_curve](bakeoff_curve.png)" in card
    assert (folder / "bakeoff_curve.png").read_bytes() == Path("docs/bakeoff_curve.png").read_bytes()
    assert write_card(folder).read_text() == card  # card.yaml names the copy: re-writing changes nothing
    pipe = TextToImagePipeline.from_pretrained(folder)
    assert pipe.reranker is not None and pipe.card == card
    # scores appear once eval.json is there
    summary = {"overall": 0.5, "count": 2, "tasks": {"single": {"accuracy": 0.5, "count": 2}}}
    split = {"count": 2, "num_candidates": 2, "sampling": {},
             **{c: summary for c in ("ground_truth", "reconstructions", "one_sample", "reranked", "oracle")}}
    (folder / "eval.json").write_text(json.dumps({"description": "d", "splits": {"test_iid": split}}))
    card = write_card(folder).read_text()
    assert "## Scores" in card and "| single | 0.500 |" in card and "| overall | **0.500** |" in card
    assert main(["pipeline", "card", str(folder)]) == 0
    # Re-assembled over itself from its own card.yaml: the same card, and the folder's results and
    # figures survive (what a model's README points at)
    (folder / "fidelity.json").write_text('{"fid_ratio_samples": 1.9}')
    from dataclasses import replace

    again = assemble_pipeline(replace(cfg, card=ModelCardInfo(), card_file=str(folder / "card.yaml")))
    assert (again / "README.md").read_text() == card
    assert json.loads((again / "fidelity.json").read_text()) == {"fid_ratio_samples": 1.9}
    assert (again / "eval.json").is_file() and (again / "bakeoff_curve.png").is_file()
    with pytest.raises(FileNotFoundError, match="card_file"):
        assemble_pipeline(replace(cfg, card_file=str(tmp_path / "missing.yaml")))
