"""The reranker diagnostic on an image folder of free captions (mini_t2i.rerank.diagnose_folder)."""

import json
from pathlib import Path

import numpy as np
import pytest

import mini_t2i
from mini_t2i.rerank.diagnose_folder import diagnose_folder, load_folder
from mini_t2i.rerank.negatives import caption_changes, join_caption, split_caption

SHAPES64 = Path(mini_t2i.__file__).parent / "pretrained" / "shapes64"


def test_split_and_join_captions():
    assert split_caption("dog face, twemoji style") == ("dog face", "twemoji")
    assert split_caption("cat face, fluent flat style") == ("cat face", "fluent flat")
    assert split_caption("dog face") == ("dog face", None)
    for caption in ("dog face, twemoji style", "grinning face"):
        assert join_caption(*split_caption(caption)) == caption


def test_caption_changes_change_one_part():
    rng = np.random.default_rng(0)
    names, styles = ["cat face", "dog face", "red apple"], [None, "openmoji", "twemoji"]
    for caption in ("dog face, twemoji style", "red apple"):
        name, style = split_caption(caption)
        for _ in range(10):
            changed = caption_changes(caption, names, styles, rng)
            assert split_caption(changed["style"])[0] == name and split_caption(changed["style"])[1] != style
            assert split_caption(changed["name"])[1] == style and split_caption(changed["name"])[0] != name
    assert caption_changes("dog face", ["dog face"], [None], rng) == {}  # nothing else to change to


def test_diagnose_folder_on_a_rendered_folder(tmp_path):
    from PIL import Image

    from mini_t2i.shapes.scenes import generate_split

    folder = tmp_path / "val"
    folder.mkdir()
    samples = [s for s in generate_split("val", 40, seed=1, size=64) if s.meta["task"] in ("single", "colors")][:12]
    with open(folder / "metadata.jsonl", "w") as f:
        for i, s in enumerate(samples):
            s.image.save(folder / f"{i:05d}.png")
            text = s.text if i % 2 else f"{s.text}, flat style"
            f.write(json.dumps({"file_name": f"{i:05d}.png", "text": text, "meta": {"source": f"set{i % 2}"}}) + "\n")
    images, captions, sources = load_folder(folder)
    assert images.shape == (12, 64, 64, 3) and sources[:2] == ["set0", "set1"]
    report = diagnose_folder(str(SHAPES64 / "reranker"), str(folder), str(SHAPES64 / "text_tokenizer"),
                             out=str(tmp_path / "r.json"), is_verbose=False)
    assert {k: v["count"] for k, v in report["pairwise"].items()} == {"name": 12, "style": 12}
    assert sorted(report["all_changes_beaten_per_source"]) == ["set0", "set1"]
    # the shapes reranker reads colours and shapes: another scene's name loses to the true one
    assert report["pairwise"]["name"]["rate"] >= 0.75
    assert json.loads((tmp_path / "r.json").read_text())["scenes"] == 12
    with pytest.raises(FileNotFoundError, match="metadata.jsonl"):
        load_folder(tmp_path)
