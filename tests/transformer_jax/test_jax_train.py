"""The JAX trainer: sharded steps equal one device's, it follows the PyTorch trainer step for
step, resumes exactly, and what it exports samples in the PyTorch pipeline."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from mini_t2i.checkpoint import load_tensors
from mini_t2i.config import load_config
from mini_t2i.transformer.config import TransformerConfig, TransformerTrainConfig
from mini_t2i.transformer.model import build_model, save_transformer
from mini_t2i.transformer.train import train_transformer
from mini_t2i.transformer_jax import sharding as sh
from mini_t2i.transformer_jax.model import init_params
from mini_t2i.transformer_jax.step import init_state, jit_train_step, make_optimizer
from mini_t2i.transformer_jax.train import train_transformer_jax

REPO = Path(__file__).resolve().parents[2]
LAYOUT = TransformerConfig(preset="tiny").with_layout(436, 24, 1024, 16)  # the shards' layout


def tiny_cfg(shards, run_dir, *overrides):
    base = [f"tokens={shards['train']}", f"val_tokens={shards['val']}",
            f"text_tokenizer={REPO / 'mini_t2i/pretrained/text_shapes'}",
            f"vq_model={REPO / 'mini_t2i/pretrained/vq_shapes64'}", "model.preset=tiny", f"run_dir={run_dir}",
            "steps=4", "batch_size=8", "warmup_steps=2", "lr=0.003", "eval_every=0", "val_count=4",
            "sample_count=0", "log_every=1", "checkpoint_every=2", "num_threads=1"]
    return load_config(TransformerTrainConfig, None, base + list(overrides))


def losses(run_dir: Path) -> list[float]:
    records = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["image_loss"] for r in records if r["split"] == "train"]


@pytest.fixture(scope="module")
def start_model(tmp_path_factory):
    """A seeded PyTorch tiny model both trainers start from (init_from)."""
    return str(save_transformer(build_model(LAYOUT, seed=0), LAYOUT, tmp_path_factory.mktemp("start") / "m"))


def fixed_batch(rows: int, accum: int = 1):
    g = np.random.default_rng(0)
    text = g.integers(4, 436, (accum, rows // accum, 24)).astype(np.int32)
    images = g.integers(0, 1024, (accum, rows // accum, 256)).astype(np.int32)
    return text, images


def run_steps(devices, parallel: str, text, images, steps: int = 2):
    """`steps` optimizer steps on a mesh of `devices`; returns (state, per-step losses)."""
    cfg = TransformerTrainConfig(steps=10, warmup_steps=1, lr=3e-3, parallel=parallel)
    mesh = sh.make_mesh(devices)
    optimizer = make_optimizer(cfg)
    abstract = jax.eval_shape(lambda: init_state(init_params(LAYOUT), optimizer))
    shardings = sh.state_shardings(abstract, mesh, parallel)
    state = jax.jit(lambda: init_state(init_params(LAYOUT, 0), optimizer), out_shardings=shardings)()
    step = jit_train_step(LAYOUT, optimizer, 0.0, jnp.float32, shardings, sh.batch_sharding(mesh))
    history = []
    for _ in range(steps):
        state, metrics = step(state, sh.global_batch(text, mesh), sh.global_batch(images, mesh))
        history.append(float(metrics["loss"]))
    return state, history


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_an_8_device_mesh_trains_like_one_device(parallel):
    assert len(jax.devices()) == 8, "tests/conftest.py sets XLA_FLAGS for 8 CPU devices"
    text, images = fixed_batch(8)
    one, one_losses = run_steps(jax.devices()[:1], parallel, text, images)
    eight, eight_losses = run_steps(jax.devices(), parallel, text, images)
    # fp32 reduction order over 8 devices: a few ulp of a loss of ~7 (ulp 4.8e-7); measured 9.5e-7
    np.testing.assert_allclose(eight_losses, one_losses, atol=1e-5)
    # Adam's g/(|g|+eps) turns a gradient's rounding difference dg into up to lr*dg/eps where g ~ 0:
    # 2 steps x 3e-3 x 4.4e-10 (max dg measured) / 1e-8 = 2.6e-4; measured 3.9e-6 here (Zen 4),
    # 1.16e-5 on Zen 3; a wrong or missing all-reduce flips updates: 2*lr = 6e-3
    for a, b in zip(jax.tree.leaves(one["params"]), jax.tree.leaves(eight["params"])):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=5e-4)
    kernel = eight["params"]["layers_0"]["mlp"]["up_proj"]["kernel"]  # (64, 160)
    local_shape = kernel.addressable_shards[0].data.shape
    if parallel == "fsdp":  # each device holds an eighth of the weight and of its AdamW moments
        assert local_shape == (64, 20)  # the largest dimension that 8 divides
        mu = eight["opt_state"][1][0].mu["layers_0"]["mlp"]["up_proj"]["kernel"]
        assert mu.addressable_shards[0].data.shape == (64, 20)
    else:
        assert local_shape == (64, 160)


def test_gradient_accumulation_matches_one_big_batch():
    text, images = fixed_batch(8, accum=1)
    whole, whole_losses = run_steps(jax.devices()[:1], "ddp", text, images)
    split, split_losses = run_steps(jax.devices()[:1], "ddp", text.reshape(2, 4, -1), images.reshape(2, 4, -1))
    np.testing.assert_allclose(split_losses, whole_losses, atol=1e-5)  # summation order; measured 9.5e-7
    # Adam's g/(|g|+eps) turns a gradient's rounding difference dg into up to lr*dg/eps where g ~ 0:
    # 2 steps x 3e-3 x 4.4e-10 (max dg measured) / 1e-8 = 2.6e-4; measured 2.1e-5; a wrong sum gives 2*lr = 6e-3
    for a, b in zip(jax.tree.leaves(whole["params"]), jax.tree.leaves(split["params"])):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=5e-4)


def train_both(token_shards, start: str, tmp_path: Path) -> tuple[Path, Path]:
    """Both trainers from the same start weights, config and batches; asserts they give the
    same losses and end weights; returns (torch final/, jax final/)."""
    torch_final = train_transformer(tiny_cfg(token_shards, tmp_path / "torch", f"init_from={start}"),
                                    is_verbose=False)
    jax_final = train_transformer_jax(tiny_cfg(token_shards, tmp_path / "jax", f"init_from={start}"),
                                      is_verbose=False, devices=jax.devices()[:1])
    # two fp32 implementations (kernels, op order) of a loss ~7; measured 1.4e-6; a schedule bug moves it ~1e-2
    np.testing.assert_allclose(losses(tmp_path / "jax"), losses(tmp_path / "torch"), atol=2e-4)
    a, _ = load_tensors(torch_final / "model.safetensors")
    b, _ = load_tensors(jax_final / "model.safetensors")
    assert a.keys() == b.keys()
    # Adam's lr*dg/eps where g ~ 0, over the 4 steps' lr sum 9.2e-3 with dg <~ 8e-10: 7e-4; measured 1.3e-5
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=2e-3, rtol=0)
    return torch_final, jax_final


def test_follows_the_pytorch_trainer_step_for_step(token_shards, start_model, tmp_path):
    """Same start weights, same config, same batches: the same losses and end weights."""
    torch_final, jax_final = train_both(token_shards, start_model, tmp_path)
    val = json.loads((jax_final / "eval.json").read_text())["val_loss"]
    # the same val rows on weights within the bound above; measured 0.0
    assert val == pytest.approx(json.loads((torch_final / "eval.json").read_text())["val_loss"], abs=1e-3)


def test_resumes_exactly_from_an_orbax_checkpoint(token_shards, tmp_path):
    devices = jax.devices()[:2]  # a 2-device FSDP mesh: the checkpoint holds sharded arrays
    cfg = lambda run: tiny_cfg(token_shards, tmp_path / run, "parallel=fsdp")  # noqa: E731
    train_transformer_jax(cfg("a"), is_verbose=False, devices=devices)
    assert sorted(p.name for p in (tmp_path / "a" / "orbax").iterdir()) == ["2", "4"]
    train_transformer_jax(cfg("b"), is_verbose=False, devices=devices)
    import shutil

    shutil.rmtree(tmp_path / "b" / "orbax" / "4")  # killed after the checkpoint of step 2
    shutil.rmtree(tmp_path / "b" / "final")
    train_transformer_jax(cfg("b"), is_verbose=False, devices=devices)
    a, _ = load_tensors(tmp_path / "a" / "final" / "model.safetensors")
    b, _ = load_tensors(tmp_path / "b" / "final" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    records = [json.loads(l) for l in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3, 4]
    assert losses(tmp_path / "b") == losses(tmp_path / "a")

    # Any checkpoint exports to the PyTorch format: the last one is the final model.
    from mini_t2i.cli import main

    assert main(["export-jax", str(tmp_path / "a"), "--out", str(tmp_path / "exported")]) in (0, None)
    exported, _ = load_tensors(tmp_path / "exported" / "model.safetensors")
    assert all(torch.equal(a[k], exported[k]) for k in a)
    assert main(["export-jax", str(tmp_path / "a"), "--step", "3", "--out", str(tmp_path / "x")]) == 2


def test_batch_must_split_over_the_devices(token_shards, tmp_path):
    with pytest.raises(ValueError, match="divisible by grad_accum x devices = 1 x 8"):
        train_transformer_jax(tiny_cfg(token_shards, tmp_path, "batch_size=4"), is_verbose=False)


def test_cli_trains_with_jax_and_generate_uses_the_export(token_shards, tmp_path):
    """`mini-t2i train transformer --backend jax` on all 8 devices, then the PyTorch pipeline."""
    from mini_t2i.cli import main

    run = tmp_path / "run"
    args = [f"tokens={token_shards['train']}", f"val_tokens={token_shards['val']}", "model.preset=tiny",
            f"run_dir={run}", "steps=2", "batch_size=8", "warmup_steps=1", "eval_every=0", "val_count=4",
            "sample_count=2", "checkpoint_every=2", "parallel=fsdp"]
    assert main(["train", "transformer", "--backend", "jax", "--config", str(REPO / "configs/transformer_tiny.yaml"),
                 *args]) in (0, None)
    assert (run / "samples" / "step_00000002.png").is_file()
    assert json.loads((run / "final" / "eval.json").read_text())["val_loss"] > 0
    pipe = tmp_path / "pipe"
    assert main(["pipeline", "assemble", f"transformer={run / 'final'}", f"out={pipe}", "pipeline.name=jax-tiny",
                 "pipeline.num_candidates=1"]) in (0, None)
    out = tmp_path / "images"
    assert main(["generate", "a red circle", "--model", str(pipe), "--num-images", "2", "--out", str(out)]) in (0, None)
    assert len(list(out.glob("0*.png"))) == 2  # plus grid.png


def test_the_jax_trainer_follows_the_pytorch_trainer_on_blocks(token_shards, tmp_path):
    """Same start weights and batches: the same losses and end weights; the export samples."""
    from mini_t2i.transformer.model import load_transformer
    from mini_t2i.transformer.sampler import sample_image_tokens

    layout = TransformerConfig(preset="tiny", image_order="blocks").with_layout(436, 24, 1024, 16)
    start = str(save_transformer(build_model(layout, seed=0), layout, tmp_path / "start"))
    _, jax_final = train_both(token_shards, start, tmp_path)
    model, cfg = load_transformer(jax_final)
    assert cfg.image_order == "blocks" and json.loads((jax_final / "eval.json").read_text())["val_loss"] > 0
    text = torch.randint(4, 436, (2, cfg.text_len))
    assert sample_image_tokens(model, cfg, text, [0, 1], top_k=8).shape == (2, 256)
