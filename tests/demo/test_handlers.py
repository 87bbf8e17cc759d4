"""The demo's handlers without a server: input checks, streaming, ranking, describe."""

import numpy as np
import pytest
from PIL import Image

from mini_t2i.demo.handlers import DemoInputError

GOOD = dict(num_images=2, num_candidates=4, guidance_scale=1.0, temperature=1.0, top_k=32, top_p=1.0, seed=3)


def run(handlers, prompt="a red circle", model="shapes64", **changes):
    args = {**GOOD, **changes}
    return list(handlers.generate(model, prompt, *args.values()))


def test_default_model_comes_first(pool):
    from mini_t2i.pipeline.folders import DEFAULT_MODEL

    assert pool.names[0] == DEFAULT_MODEL and set(pool.names) >= {"shapes64", "emoji64"}
    rows = pool.examples()
    assert {m for _, m in rows} == set(pool.names) and all(p for p, _ in rows)


def test_generate_streams_previews_then_the_pipelines_images(handlers, pool):
    updates = run(handlers)
    previews, final = updates[:-1], updates[-1]
    assert len(previews) >= 8 and not any(u.done for u in previews)  # one preview per token row
    assert all(len(u.gallery) == 2 for u in updates)
    assert final.done and final.grid_path and Image.open(final.grid_path).size[0] > 256
    # Same images, scores and seeds as calling the pipeline: the demo adds nothing of its own.
    out = pool.get("shapes64")("a red circle", **GOOD)
    for (shown, caption), image, score, seed in zip(final.gallery, out.images, out.scores, out.seeds):
        assert np.array_equal(np.asarray(shown.resize(image.size, Image.NEAREST)), np.asarray(image))
        assert f"score {score:.3f}" in caption and f"seed {seed}" in caption
    assert out.scores[0] >= out.scores[1]


@pytest.mark.parametrize("changes, message", [
    (dict(prompt=""), "prompt is empty"),
    (dict(prompt="   "), "prompt is empty"),
    (dict(prompt="a red circle " * 40), "characters"),
    (dict(prompt="a red circle above a blue square " * 4), "tokens"),
    (dict(num_images=0), "num_images=0 is out of range"),
    (dict(num_images=2.5), "whole number"),
    (dict(num_candidates=1000), "num_candidates=1000 is out of range"),
    (dict(num_candidates=1), "num_candidates=1 < num_images=2: .*give num_candidates >= num_images"),
    (dict(temperature=-1), "temperature=-1 is out of range"),
    (dict(temperature=float("nan")), "temperature must be a number"),
    (dict(top_p=0), "top_p=0 is out of range"),
    (dict(top_k=100000), "top_k=100000 is out of range"),
    (dict(guidance_scale=0.5), "guidance_scale=0.5"),
    (dict(seed=-1), "seed=-1"),
    (dict(seed="abc"), "seed must be a whole number"),
    (dict(model="nope"), "unknown model 'nope'"),
])
def test_generate_refuses_bad_input_with_a_message(handlers, changes, message):
    with pytest.raises(DemoInputError, match=message):
        run(handlers, **changes)


def _save(tmp_path, image, name, **kw):
    path = tmp_path / name
    image.save(path, **kw)
    return str(path)


def test_edit_accepts_odd_modes_and_refuses_bad_files(handlers, tmp_path):
    base = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 70, 3), dtype=np.uint8))
    odd = {"p.png": base.convert("P"), "la.png": base.convert("LA"), "i16.png": base.convert("L").convert("I;16"),
           "cmyk.jpg": base.convert("CMYK"), "bw.png": base.convert("1")}
    for name, image in odd.items():
        gallery, status = handlers.edit("shapes64", _save(tmp_path, image, name), "variations", "", 4, 2, 2, 0)
        assert len(gallery) == 2 and "variations" in status, name
    gallery, status = handlers.edit("shapes64", _save(tmp_path, base, "c.png"), "complete", "a blue square", 8, 1, 2, 0)
    assert len(gallery) == 1 and "8 of 16" in status
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    cases = [(str(bad), "cannot use that image"), (None, "no image"),
             (_save(tmp_path, base.resize((4, 4)), "tiny.png"), "at least 8 px")]
    for path, message in cases:
        with pytest.raises(DemoInputError, match=message):
            handlers.edit("shapes64", path, "variations", "", 4, 2, 2, 0)
    with pytest.raises(DemoInputError, match="keep_rows=17"):
        handlers.edit("shapes64", _save(tmp_path, base, "k.png"), "variations", "", 17, 2, 2, 0)
    with pytest.raises(DemoInputError, match="num_candidates=1 < num_images=2: .*give num_candidates >= num_images"):
        handlers.edit("shapes64", _save(tmp_path, base, "n.png"), "variations", "", 4, 2, 1, 0)  # the pipeline's check
    with pytest.raises(DemoInputError, match="mode"):
        handlers.edit("shapes64", _save(tmp_path, base, "m.png"), "inpaint", "", 4, 2, 2, 0)


def test_describe_ranks_the_true_caption_first(handlers, tmp_path):
    from mini_t2i.shapes.scenes import make_sample

    sample = make_sample("test_iid", 2, size=64)  # a "counting" scene
    path = _save(tmp_path, sample.image, "scene.png")
    captions = [sample.text, "a red circle on a white background", "a cyan triangle and a pink square"]
    labels, table = handlers.describe("shapes64", path, "\n".join(captions[::-1]), 3)
    # an fp32 softmax over 3 sums to 1 within ~3 ulp (4e-7); measured 1.1e-8
    assert list(labels)[0] == sample.text and abs(sum(labels.values()) - 1) < 1e-4
    assert "3 given captions" in table
    labels, table = handlers.describe("shapes64", path, "", 5)  # the model's own caption list
    assert len(labels) == 5 and "the model's" in table
    with pytest.raises(DemoInputError, match="top=0"):
        handlers.describe("shapes64", path, "", 0)
