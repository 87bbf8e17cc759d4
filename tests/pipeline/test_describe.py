"""describe: the reranker ranks captions for an image; captions.txt travels with the pipeline."""

import pytest

from mini_t2i.pipeline.describe import (CaptionIndex, captions_from_files, describe_image, read_captions,
                                        shapes_captions, write_captions)


def test_shapes_captions_cover_every_split_and_are_canonical():
    captions = shapes_captions(400)
    assert len(captions) == len(set(captions)) > 300
    assert any("red star" in c for c in captions)  # a held-out pair: test_heldout is drawn from too
    assert all(c == c.strip().lower() for c in captions)


def test_captions_and_examples_survive_save_and_load(tiny_pipeline_factory, tmp_path):
    from mini_t2i.pipeline.pipeline import TextToImagePipeline

    pipe = tiny_pipeline_factory()
    pipe.captions = ["a red circle", "three green stars"]
    pipe.config.examples = ["two blue squares"]
    loaded = TextToImagePipeline.from_pretrained(pipe.save_pretrained(tmp_path / "p", half_precision=False))
    assert loaded.captions == pipe.captions and loaded.config.examples == ["two blue squares"]
    assert read_captions(tmp_path / "p") == pipe.captions and read_captions(tmp_path) == []


def test_describe_with_the_shipped_reranker():
    import math

    from mini_t2i.pipeline.pipeline import TextToImagePipeline
    from mini_t2i.shapes.scenes import make_sample

    pipe = TextToImagePipeline.from_pretrained("shapes64")
    sample = make_sample("test_iid", 3)  # a "colors" scene: several objects of one colour and shape
    distractors = ["a pink cross on a white background", "a cyan triangle and a yellow square", "a blue circle"]
    captions = [*distractors, sample.text]
    # The cosine alone: ordered by similarity, an fp32 softmax over 4 sums to 1 within ~4 ulp (5e-7).
    cosine = describe_image(pipe, sample.image, captions, top=4, shortlist=0)
    assert cosine[0].caption == sample.text and all(math.isnan(m.log_likelihood) for m in cosine)
    assert [m.similarity for m in cosine] == sorted((m.similarity for m in cosine), reverse=True)
    assert abs(sum(m.probability for m in cosine) - 1) < 1e-5
    # The default: the generator orders the shortlist (here all 4) by log p(codes | caption);
    # the probabilities are its posterior over them (a float64 softmax: 1 within 1e-12).
    matches = describe_image(pipe, sample.image, captions, top=4)
    assert matches[0].caption == sample.text and {m.caption for m in matches} == set(captions)
    assert [m.log_likelihood for m in matches] == sorted((m.log_likelihood for m in matches), reverse=True)
    assert abs(sum(m.probability for m in matches) - 1) < 1e-9
    assert {m.caption: m.similarity for m in matches} == {m.caption: m.similarity for m in cosine}
    # A prebuilt index gives the same ranking; the model's own captions.txt is the default.
    index = CaptionIndex(pipe, captions)
    assert [m.caption for m in describe_image(pipe, sample.image, index, top=4)] == [m.caption for m in matches]
    assert len(pipe.captions) > 1000 and len(describe_image(pipe, sample.image, top=3)) == 3


def test_the_generator_orders_only_the_cosine_shortlist(tiny_pipeline):
    from mini_t2i.shapes.scenes import make_sample

    captions = ["a red circle", "two blue stars", "a green square", "three pink crosses", "a cyan diamond"]
    image = make_sample("val", 0, size=32).image
    cosine = [m.caption for m in describe_image(tiny_pipeline, image, captions, top=5, shortlist=0)]
    short = describe_image(tiny_pipeline, image, captions, top=2, shortlist=3)
    assert {m.caption for m in short} <= set(cosine[:3]) and len(short) == 2  # drawn from the best 3 cosines
    assert describe_image(tiny_pipeline, image, captions, top=4, shortlist=2)[3].caption in cosine[:4]  # top > shortlist


def test_describe_errors(tiny_pipeline_factory):
    from PIL import Image

    image = Image.new("RGB", (32, 32))
    with pytest.raises(ValueError, match="no reranker"):
        describe_image(tiny_pipeline_factory(with_reranker=False), image, ["a red circle"])
    pipe = tiny_pipeline_factory()
    with pytest.raises(ValueError, match="no captions to rank"):
        describe_image(pipe, image)  # the tiny pipeline has no captions.txt
    with pytest.raises(ValueError, match="top=0"):
        describe_image(pipe, image, ["a red circle"], top=0)
    with pytest.raises(ValueError, match="shortlist=-1"):
        describe_image(pipe, image, ["a red circle"], shortlist=-1)
    with pytest.raises(ValueError, match="tokens"):
        describe_image(pipe, image, ["a red circle above a blue square " * 5])


def test_caption_files_and_the_cli(tiny_pipeline_dir, tmp_path):
    import shutil

    from mini_t2i.cli import main

    folder = shutil.copytree(tiny_pipeline_dir, tmp_path / "pipe")  # the shared folder stays as it is

    (tmp_path / "metadata.jsonl").write_text('{"file_name": "a.png", "text": "grinning face"}\n\n'
                                             '{"file_name": "b.png", "text": "red apple"}\n')
    (tmp_path / "more.txt").write_text("red apple\npizza\n")
    files = [tmp_path / "metadata.jsonl", tmp_path / "more.txt"]
    assert captions_from_files(files) == ["grinning face", "red apple", "pizza"]
    (tmp_path / "bad.jsonl").write_text('{"file": "x"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        captions_from_files([tmp_path / "bad.jsonl"])
    with pytest.raises(ValueError, match="no captions"):
        write_captions(tmp_path, ["", "  "])
    assert main(["pipeline", "captions", str(folder), "--shapes", "30", "--from", *map(str, files)]) == 0
    written = read_captions(folder)
    assert written[-3:] == ["grinning face", "red apple", "pizza"] and len(written) > 20
    assert main(["pipeline", "captions", str(folder)]) == 2  # no source: a one-line error


def test_describe_is_evaluated_by_the_checker(tmp_path):
    import json

    from mini_t2i.pipeline.describe_eval import evaluate_describe

    out = tmp_path / "d.json"
    result = evaluate_describe("shapes64", count=6, shortlists=(0, 4), out=str(out), is_verbose=False)
    assert json.loads(out.read_text()) == result and result["vocabulary"] > 1000
    for r in result["shortlists"].values():
        assert 0 <= r["exact"] <= r["fits"] <= 1 and set(r["tasks"]) == {
            "single", "two", "counting", "colors", "position", "color_attr"}  # 6 val scenes: one of each task
