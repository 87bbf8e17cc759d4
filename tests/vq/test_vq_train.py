"""VQ training: a step lowers the loss, the tiny config runs end to end, resume is exact,
and pre-tokenization writes what the tokenizer encodes."""

from pathlib import Path

import numpy as np
import pytest
import torch

from mini_t2i.config import load_config
from mini_t2i.vq.model import VQModel
from mini_t2i.vq.train import VQTrainConfig, batch_for_step, make_optimizer, train_step, train_vq

CONFIGS = Path(__file__).parent.parent.parent / "configs"


def tiny_cfg(tmp_path, *overrides):
    return load_config(VQTrainConfig, CONFIGS / "vq_tiny.yaml",
                       [f"run_dir={tmp_path / 'run'}", f"cache_dir={tmp_path / 'cache'}", *overrides])


def test_training_steps_lower_the_loss_on_a_fixed_batch():
    cfg = load_config(VQTrainConfig, CONFIGS / "vq_tiny.yaml", ["steps=1000", "warmup_steps=1", "lr=0.003", "model.restart_every=0"])
    torch.manual_seed(0)
    model = VQModel(cfg.model)
    opt = make_optimizer(model, cfg)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(8, 3, 1, 1, generator=g) * 2 - 1).expand(8, 3, 32, 32).contiguous()  # flat colours
    first = train_step(model, opt, x, cfg, step=0)["l1"]
    for step in range(1, 60):  # 30 steps were enough at 2 threads but not at 1: leave a margin
        last = train_step(model, opt, x, cfg, step=step)["l1"]
    assert last < 0.5 * first  # measured 0.19 x first at 1 thread, 0.25 x at 2


def test_schedule_and_batches_are_pure_functions_of_step():
    cfg = VQTrainConfig(steps=1000, warmup_steps=100, lr=1e-3, min_lr_ratio=0.1)
    # float64 formulas (approx's rel 1e-6); step 999 is 1/900 short of the cosine's end: rel 2.7e-5 off 1e-4
    assert cfg.learning_rate(0) == pytest.approx(1e-5)
    assert cfg.learning_rate(99) == pytest.approx(1e-3)
    assert cfg.learning_rate(999) == pytest.approx(1e-4, rel=1e-3)
    images = np.random.default_rng(0).integers(0, 255, (50, 64, 64, 3), dtype=np.uint8)
    assert torch.equal(batch_for_step(images, cfg, 7), batch_for_step(images, cfg, 7))
    assert not torch.equal(batch_for_step(images, cfg, 7), batch_for_step(images, cfg, 8))


def test_tiny_config_trains_evaluates_and_saves(tmp_path):
    final = train_vq(tiny_cfg(tmp_path), is_verbose=False)
    assert (final / "model.safetensors").is_file() and (final / "config.yaml").is_file()
    import json

    metrics = json.loads((final / "eval.json").read_text())
    assert metrics["count"] == 16 and 0 < metrics["usage"] <= 1 and metrics["psnr"] > 0
    assert metrics["checker_ground_truth"]["count"] == 16  # Shapes World val has metadata
    assert (tmp_path / "run" / "checkpoints" / "step_00000004" / "training_state.safetensors").is_file()
    assert (tmp_path / "run" / "samples" / "step_00000004.png").is_file()
    VQModel.from_pretrained(final)


def test_resume_is_exact(tmp_path):
    """4 steps straight == 2 steps, stop, resume for 2 more: bitwise equal weights."""
    straight = VQModel.from_pretrained(train_vq(tiny_cfg(tmp_path / "a"), is_verbose=False))
    train_vq(tiny_cfg(tmp_path / "b", "steps=2"), is_verbose=False)
    resumed = VQModel.from_pretrained(train_vq(tiny_cfg(tmp_path / "b", "steps=4"), is_verbose=False))
    a, b = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


GAN = ["perceptual_weight=0.1", "disc_weight=0.5", "disc_start=2", "disc_channels=8", "log_every=1"]


def test_the_vqgan_losses_switch_on_and_resume_exactly(tmp_path):
    """Perceptual loss from step 0, the discriminator from disc_start; one checkpoint holds
    the tokenizer and the discriminator, so 2 + 2 resumed steps equal 4 straight ones."""
    import json

    from mini_t2i.checkpoint import load_tensors

    straight = VQModel.from_pretrained(train_vq(tiny_cfg(tmp_path / "a", *GAN), is_verbose=False))
    rows = [json.loads(l) for l in (tmp_path / "a" / "run" / "metrics.jsonl").read_text().splitlines()]
    train = {r["step"]: r for r in rows if r["split"] == "train"}
    assert "perceptual" in train[1] and "d_loss" not in train[2] and "d_loss" in train[3] and "g_loss" in train[4]
    assert train[3]["gan_weight"] >= 0
    train_vq(tiny_cfg(tmp_path / "b", *GAN, "steps=2"), is_verbose=False)
    resumed = VQModel.from_pretrained(train_vq(tiny_cfg(tmp_path / "b", *GAN, "steps=4"), is_verbose=False))
    a, b = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ca, _ = load_tensors(tmp_path / "a" / "run" / "checkpoints" / "step_00000004" / "model.safetensors")
    cb, _ = load_tensors(tmp_path / "b" / "run" / "checkpoints" / "step_00000004" / "model.safetensors")
    assert any(k.startswith("disc.") for k in ca) and all(torch.equal(ca[k], cb[k]) for k in ca)
    with pytest.raises(ValueError, match="disc_weight=-1"):
        tiny_cfg(tmp_path, "disc_weight=-1")


def test_the_perceptual_distance_is_zero_for_equal_images_and_grows_with_blur():
    from mini_t2i.vq.adversarial import PerceptualLoss

    loss = PerceptualLoss()
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(2, 3, 32, 32, generator=g) > 0.5).float() * 2 - 1  # sharp random blocks
    blur = [torch.nn.functional.avg_pool2d(x, k, 1, k // 2) for k in (3, 7)]
    assert loss(x, x).item() == 0 and 0 < loss(x, blur[0]).item() < loss(x, blur[1]).item()
    assert not any(p.requires_grad for p in loss.net.parameters())


def test_pretokenize_writes_the_tokens_the_tokenizer_encodes(tmp_path):
    from mini_t2i.data.config import DataConfig
    from mini_t2i.data.pretokenize import PretokenizeConfig, load_token_shards, pretokenize
    from mini_t2i.data.sources import iter_examples
    from mini_t2i.pixels import tensor_from_uint8

    final = train_vq(tiny_cfg(tmp_path, "steps=1"), is_verbose=False)
    data = DataConfig(source="shapes", split="val", count=10, image_size=32)
    out = pretokenize(PretokenizeConfig(data=data, vq_model=str(final), out_dir=str(tmp_path / "tok"),
                                        batch_size=4), is_verbose=False)
    ds, info = load_token_shards(out)
    assert len(ds) == 10 and info["grid_size"] == 8 and info["codebook_size"] == 64
    row = ds[3]
    assert ds.features["image_tokens"].feature.dtype == "uint16"  # stored as uint16 on disk
    assert row["image_tokens"].shape == (64,)
    example = list(iter_examples(data))[3]
    assert row["text"] == example.text and row["meta"]
    model = VQModel.from_pretrained(final)
    x = tensor_from_uint8(torch.from_numpy(np.array(example.image))[None])
    assert np.array_equal(model.encode(x).reshape(-1).numpy(), row["image_tokens"])
    assert not (tmp_path / "tok.tmp").exists()
