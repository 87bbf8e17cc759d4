"""Image folders: render, read back with datasets, score."""

import json

import numpy as np
import pytest
from PIL import Image

from mini_t2i.shapes.files import format_scores, render_split_to_dir, score_dir, score_images
from mini_t2i.shapes.scenes import generate_split


def test_render_and_score_round_trip(tmp_path):
    out = render_split_to_dir("test_iid", 24, 64, 0, tmp_path / "gt")
    lines = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert [r["file_name"] for r in lines] == [f"{i:05d}.png" for i in range(24)]
    expected = list(generate_split("test_iid", 24, seed=0, size=64))
    for row, sample in zip(lines, expected):
        assert list(row) == ["file_name", "text", "meta"]
        assert row["text"] == sample.text and row["meta"] == sample.meta
        with Image.open(out / row["file_name"]) as im:
            assert im.mode == "RGB" and np.array_equal(np.asarray(im), np.asarray(sample.image))

    scores = score_dir(out)
    assert scores["overall"] == 1.0 and scores["count"] == 24
    assert list(scores["tasks"]) == ["single", "two", "counting", "colors", "position", "color_attr"]
    assert all(t == {"accuracy": 1.0, "count": 4} for t in scores["tasks"].values())
    assert json.loads((out / "scores.json").read_text()) == scores
    table = format_scores(scores)
    assert table.splitlines()[0].split() == ["task", "accuracy", "count"]
    assert table.splitlines()[-1].split() == ["overall", "1.000", "24"]


def test_rerender_replaces_stale_files(tmp_path):
    render_split_to_dir("train", 12, 32, 0, tmp_path)
    score_dir(tmp_path)
    render_split_to_dir("train", 6, 32, 1, tmp_path, start=6)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [f"{i:05d}.png" for i in range(6)]
    assert not (tmp_path / "scores.json").exists()
    texts = [json.loads(line)["text"] for line in (tmp_path / "metadata.jsonl").read_text().splitlines()]
    assert texts == [s.text for s in generate_split("train", 6, seed=1, size=32, start=6)]


def test_datasets_reads_the_folder_as_imagefolder(tmp_path):
    datasets = pytest.importorskip("datasets")
    out = render_split_to_dir("test_heldout", 12, 32, 0, tmp_path / "ds")
    ds = datasets.load_dataset("imagefolder", data_dir=str(out), split="train", cache_dir=str(tmp_path / "cache"))
    assert len(ds) == 12
    rows = {r["text"]: r["meta"] for r in ds}
    for sample in generate_split("test_heldout", 12, seed=0, size=32):
        assert rows[sample.text] == sample.meta


def test_wrong_images_score_lower_and_errors_are_clear(tmp_path):
    out = render_split_to_dir("test_iid", 12, 64, 0, tmp_path)
    Image.new("RGB", (64, 64), (20, 20, 20)).save(out / "00000.png")  # an empty canvas
    assert score_dir(out)["overall"] == pytest.approx(11 / 12)  # a float64 ratio of counts: ulp-exact

    Image.new("RGB", (48, 48), (20, 20, 20)).save(out / "00001.png")
    with pytest.raises(ValueError, match="00001.png is 48x48"):
        score_dir(out)

    (out / "metadata.jsonl").write_text(json.dumps({"file_name": "00002.png", "text": "a red circle"}) + "\n")
    with pytest.raises(ValueError, match="meta"):
        score_dir(out)
    (out / "metadata.jsonl").unlink()
    with pytest.raises(FileNotFoundError):
        score_dir(out)


def test_score_images_counts_per_task():
    samples = list(generate_split("test_iid", 12, seed=0, size=32))
    scores = score_images([s.image for s in samples], [s.meta for s in samples])
    assert scores["count"] == 12 and sum(t["count"] for t in scores["tasks"].values()) == 12
    assert score_images([], []) == {"overall": 0.0, "count": 0, "tasks": {}}
