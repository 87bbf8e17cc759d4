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
    from mini_t2i.pipeline.pipeline import TextToImagePipeline
    from mini_t2i.shapes.scenes import make_sample

    pipe = TextToImagePipeline.from_pretrained("shapes64")
    sample = make_sample("test_iid", 3)  # a "colors" scene: several objects of one colour and shape
    distractors = ["a pink cross on a white background", "a cyan triangle and a yellow square", "a blue circle"]
    matches = describe_image(pipe, sample.image, [*distractors, sample.text], top=4)
    assert [m.caption for m in matches][0] == sample.text
    # an fp32 softmax over 4 sums to 1 within ~4 ulp (5e-7); measured 3.0e-8
    assert matches[0].similarity >= matches[1].similarity and abs(sum(m.probability for m in matches) - 1) < 1e-5
    # A prebuilt index gives the same ranking; the model's own captions.txt is the default.
    index = CaptionIndex(pipe, [*distractors, sample.text])
    assert [m.caption for m in describe_image(pipe, sample.image, index, top=4)] == [m.caption for m in matches]
    assert len(pipe.captions) > 1000 and len(describe_image(pipe, sample.image, top=3)) == 3


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
