"""Every odd input a user can give, at every entry point: a clear error naming the problem and
the fix, or, where the input is odd but valid (other scripts, emoji, palette images), a result.
The catalogue counted in the issue's closing note; nothing here may end in a bare traceback."""

import io
import math

import numpy as np
import pytest
from PIL import Image

from mini_t2i.checkpoint import CheckpointError
from mini_t2i.config import ConfigError, load_config
from mini_t2i.demo.handlers import DemoInputError, DemoLimits, check_prompt, check_sampling

OK = None  # the input is valid: the call must succeed

PROMPTS = [
    ("", "empty"),
    ("   \n\t ", "empty"),
    ("a red circle " * 60, "shorten it"),
    ("a red \udcff circle", "not valid UTF-8"),  # undecodable bytes, escaped by surrogateescape
    (b"a red circle", "decode it"),
    ("\x00\x07a red circle", "control character U\\+0000"),
    ("\u202ea red circle", OK),  # right-to-left override: valid text
    ("\u05e2\u05d9\u05d2\u05d5\u05dc \u05d0\u05d3\u05d5\u05dd", OK),  # Hebrew, right to left
    ("دائرة حمراء", OK),
    ("赤い丸", OK),
    ("赤い丸と青い四角", "25 tokens; this model reads at most 22: shorten it"),  # 3 byte tokens a character
    ("🔴 above 🟦", OK),
    ([], "no prompt"),
    (["a red circle", ""], "empty"),
    (42, "must be a str or a list of str, got int"),
]


@pytest.mark.parametrize("prompt, error", PROMPTS)
def test_prompts(tiny_pipeline, prompt, error):
    if error is OK:
        out = tiny_pipeline(prompt, num_images=1, num_candidates=1)
        assert len(out.images) == 1
        return
    with pytest.raises((ValueError, TypeError), match=error):
        tiny_pipeline(prompt, num_images=1, num_candidates=1)


SAMPLING = [
    (dict(num_images=0), "num_images=0 must be >= 1"),
    (dict(num_images=-3), "must be >= 1"),
    (dict(num_images=10**9), "the limit is 65536"),  # refused before anything is allocated
    (dict(num_images=2.5), "must be an int"),
    (dict(num_images=2, num_candidates=1), "num_candidates=1 < num_images=2"),
    (dict(guidance_scale=-1.0), "guidance_scale=-1.0 must be >= 0"),
    (dict(guidance_scale=math.nan), "must be a finite number"),
    (dict(temperature=-0.5), "temperature=-0.5 must be >= 0"),
    (dict(temperature=math.inf), "must be a finite number"),
    (dict(top_k=-1), "top_k=-1 must be >= 0"),
    (dict(top_k=1.5), "must be an int"),
    (dict(top_p=0.0), r"top_p=0.0 in \(0, 1\]"),
    (dict(top_p=1.5), r"in \(0, 1\]"),
    (dict(seed=-1), "seed=-1 must be an int >= 0"),
    (dict(seed="7"), "must be an int"),
]


@pytest.mark.parametrize("options, error", SAMPLING)
def test_sampling_arguments(tiny_pipeline, options, error):
    with pytest.raises(ValueError, match=error):
        tiny_pipeline("a red circle", **{"num_candidates": max(1, options.get("num_images", 1))
                                         if isinstance(options.get("num_images", 1), int)
                                         and 0 < options.get("num_images", 1) < 10 else None, **options})


def _png(image: Image.Image, **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG" if not save else save.pop("format"), **save)
    return buffer.getvalue()


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (40, 40), c) for c in ("red", "blue", "green")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


IMAGES = [
    ("truncated.png", lambda: _png(Image.new("RGB", (64, 64), "red"))[:60], "truncated"),
    ("one_pixel.png", lambda: _png(Image.new("RGB", (1, 1))), "at least 8 px"),
    ("bomb.png", lambda: _png(Image.new("1", (20000, 20000))), "decompression bomb"),
    ("sixteen_bit.png", lambda: _png(Image.new("I;16", (48, 48), 30000)), OK),
    ("cmyk.jpg", lambda: _png(Image.new("CMYK", (48, 48), (0, 255, 0, 0)), format="JPEG"), OK),
    ("palette.png", lambda: _png(Image.new("RGB", (48, 48), "red").convert("P")), OK),
    ("rgba.png", lambda: _png(Image.new("RGBA", (48, 48), (255, 0, 0, 128))), OK),
    ("grey_alpha.png", lambda: _png(Image.new("LA", (48, 48))), OK),
    ("animated.gif", _animated_gif, OK),
    ("not_an_image.png", lambda: b"<html>surely not a png</html>", "not an image Pillow can read"),
    ("empty.png", lambda: b"", "not an image"),
]


@pytest.mark.parametrize("name, make, error", IMAGES)
def test_image_files(tiny_pipeline, tmp_path, name, make, error):
    path = tmp_path / name
    path.write_bytes(make())
    if error is OK:
        assert tiny_pipeline.image_tokens(path).shape == (tiny_pipeline.transformer_config.image_len,)
        return
    with pytest.raises(ValueError, match=error):
        tiny_pipeline.image_tokens(path)


@pytest.mark.parametrize("image, error", [
    (Image.new("1", (20000, 20000)), "at most 67,108,864 pixels"),  # in memory: refused before any conversion
    (np.zeros((64, 64, 3), np.float32), "uint8"),
    (np.zeros((64, 64), np.uint8), r"\(H, W, 3\)"),
    ("/no/such/image.png", "No such file"),
    (12, "must be a PIL image"),
])
def test_images_in_memory_and_paths(tiny_pipeline, image, error):
    with pytest.raises((ValueError, TypeError, FileNotFoundError), match=error):
        tiny_pipeline.image_tokens(image)


def test_configs(tmp_path):
    from mini_t2i.transformer.config import TransformerTrainConfig

    bad = {"unknown.yaml": ("stepz: 10\n", "stepz"), "type.yaml": ("steps: many\n", "steps"),
           "syntax.yaml": ("steps: [1, 2\n", "YAML"), "range.yaml": ("steps: 4\nstop_after: 9\n", "stop_after"),
           "nested.yaml": ("model: {preset: huge}\n", "preset")}
    for name, (text, needle) in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ConfigError, match=needle):
            load_config(TransformerTrainConfig, tmp_path / name)
    with pytest.raises(ConfigError, match="nope.yaml' does not exist"):
        load_config(TransformerTrainConfig, tmp_path / "nope.yaml")


def test_checkpoints(tiny_pipeline_dir, tmp_path):
    import shutil

    from mini_t2i.pipeline.pipeline import TextToImagePipeline

    def broken(name, damage):
        folder = tmp_path / name
        shutil.copytree(tiny_pipeline_dir, folder)
        damage(folder / "transformer")
        return folder

    truncated = broken("truncated", lambda t: (t / "model.safetensors").write_bytes(
        (t / "model.safetensors").read_bytes()[:1000]))
    pickled = broken("pickled", lambda t: (t / "model.safetensors").write_bytes(b"\x80\x04\x95" + b"\0" * 64))
    missing = broken("missing", lambda t: (t / "model.safetensors").unlink())
    mismatched = broken("mismatched", lambda t: (t / "transformer.yaml").write_text(
        (t / "transformer.yaml").read_text().replace("codebook_size: 64", "codebook_size: 4096")))
    for folder, needle in ((truncated, "cannot load|truncated|corrupt"), (pickled, "cannot load|pickle"),
                           (missing, "no model.safetensors"), (mismatched, "inconsistent")):
        with pytest.raises((CheckpointError, FileNotFoundError), match=needle):
            TextToImagePipeline.from_pretrained(folder)


@pytest.mark.parametrize("argv, needle", [
    (["generate", "", "--model", "{pipe}", "--out", "{tmp}/a"], "empty"),
    (["generate", "a red circle", "--model", "{pipe}", "--num-images", "0", "--out", "{tmp}/b"], "num_images"),
    (["generate", "a red circle", "--model", "{tmp}/no_such_model", "--out", "{tmp}/c"], "no_such_model"),
    (["train", "transformer", "stepz=3"], "stepz"),
    (["train", "vq", "--config", "{tmp}/missing.yaml"], "missing.yaml"),
    (["export-jax", "{tmp}", "--out", "{tmp}/d"], "not a JAX training run"),
])
def test_cli_errors_are_one_line_and_exit_2(tiny_pipeline_dir, tmp_path, capsys, argv, needle):
    from mini_t2i.cli import main

    argv = [a.format(pipe=tiny_pipeline_dir, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()  # loading bars may come first
    assert not any("Traceback" in line for line in err)
    assert err[-1].startswith("mini-t2i: error:") and needle in err[-1], err


@pytest.mark.parametrize("call, needle", [
    (lambda l: check_prompt("x" * 1000, l), "characters"),
    (lambda l: check_prompt(None, l), "empty"),
    (lambda l: check_prompt(["a"], l), "must be text"),
    (lambda l: check_prompt("a naked figure", l), "does not draw"),
    (lambda l: check_sampling(_Stub(), l, 10**6, 1, 1, 1, 0, 1, 0), "num_images=1000000 is out of range"),
    (lambda l: check_sampling(_Stub(), l, 1, 1, "abc", 1, 0, 1, 0), "guidance_scale must be a number"),
    (lambda l: check_sampling(_Stub(), l, 1, 1, 1, 1, 0, 1, -5), "seed=-5 is out of range"),
])
def test_demo_controls(call, needle):
    with pytest.raises(DemoInputError, match=needle):
        call(DemoLimits())


class _Stub:
    """The one thing check_sampling reads of a pipeline."""
    class transformer_config:
        codebook_size = 64
