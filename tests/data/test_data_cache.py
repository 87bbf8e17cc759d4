"""The decoded-image cache: same pixels as the loader, built once, grows for unknown lengths."""

import numpy as np

from mini_t2i.data import cache as cache_module
from mini_t2i.data.cache import build_image_cache
from mini_t2i.data.config import DataConfig
from mini_t2i.data.sources import iter_examples


def test_cache_holds_the_loader_output_and_is_reused(tmp_path, monkeypatch):
    from mini_t2i.shapes.files import render_split_to_dir

    folder = render_split_to_dir("val", 5, 32, 0, tmp_path / "imgs")
    (folder / "00002.png").write_bytes(b"not a png")  # skipped and counted, never fatal
    cfg = DataConfig(source="imagefolder", path=str(folder), count=0, image_size=32)
    monkeypatch.setattr(cache_module, "INITIAL_CAPACITY", 2)  # force the grow-by-doubling path
    cache = build_image_cache(cfg, tmp_path / "cache", is_verbose=False)
    examples = list(iter_examples(cfg))
    assert len(cache) == len(examples) == 4 and cache.skipped == 1
    assert cache.images.shape == (4, 32, 32, 3) and cache.images.dtype == np.uint8
    for i, example in enumerate(examples):
        assert np.array_equal(cache.images[i], np.asarray(example.image))
        assert cache.texts[i] == example.text and cache.metas[i]["meta"] == example.meta["meta"]
    # Built once: a second call reads the finished folder, even with the source gone.
    for png in folder.glob("*.png"):
        png.unlink()
    again = build_image_cache(cfg, tmp_path / "cache", is_verbose=False)
    assert np.array_equal(np.asarray(again.images), np.asarray(cache.images)) and again.texts == cache.texts
    assert sorted(p.name for p in next((tmp_path / "cache").iterdir()).iterdir()) == [
        "captions.jsonl", "done", "images.npy", "skipped"]
