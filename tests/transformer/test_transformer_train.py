import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mini_t2i.checkpoint import load_tensors
from mini_t2i.config import load_config
from mini_t2i.transformer.model import build_model, load_transformer
from mini_t2i.transformer.config import TransformerTrainConfig
from mini_t2i.transformer.data import batch_rows, load_token_data, micro_batches
from mini_t2i.transformer.train import make_optimizer, train_step, train_transformer

from conftest import TEXT_TOKENIZER, VQ_MODEL

REPO = Path(__file__).resolve().parents[2]


def tiny_cfg(shards, run_dir, *overrides):
    base = [f"tokens={shards['train']}", f"val_tokens={shards['val']}", f"text_tokenizer={REPO / TEXT_TOKENIZER}",
            f"vq_model={REPO / VQ_MODEL}", "model.preset=tiny", f"run_dir={run_dir}", "steps=4", "batch_size=4",
            "warmup_steps=2", "lr=0.003", "eval_every=0", "val_count=4", "sample_count=2", "log_every=1",
            "checkpoint_every=2", "num_threads=1"]
    return load_config(TransformerTrainConfig, None, base + list(overrides))


def test_training_steps_lower_the_loss_on_a_fixed_batch(token_shards, tokenizer, tmp_path):
    cfg = tiny_cfg(token_shards, tmp_path, "warmup_steps=1", "steps=100")
    data = load_token_data(cfg.tokens, tokenizer)
    model_cfg = cfg.model.with_layout(tokenizer.vocab_size, tokenizer.text_len, data.codebook_size, data.grid_size)
    model = build_model(model_cfg, seed=0)
    optimizer = make_optimizer(model, cfg)
    batches = micro_batches(cfg, data, 0, 0, 1)
    losses = [train_step(model, optimizer, model_cfg, batches, cfg, 1, torch.device("cpu"))["loss"] for _ in range(4)]
    assert losses[-1] < losses[0] - 0.05, losses  # measured a drop of 0.87


def test_batches_depend_on_seed_and_step_only_and_split_evenly(token_shards, tokenizer, tmp_path):
    cfg = tiny_cfg(token_shards, tmp_path, "batch_size=8")
    data = load_token_data(cfg.tokens, tokenizer)
    rows, dropped = batch_rows(cfg, 5, len(data))
    assert torch.equal(rows, batch_rows(cfg, 5, len(data))[0]) and not torch.equal(rows, batch_rows(cfg, 6, len(data))[0])
    whole = micro_batches(cfg, data, 5, 0, 1)
    cfg2 = tiny_cfg(token_shards, tmp_path, "batch_size=8", "grad_accum=2")
    split = micro_batches(cfg2, data, 5, 0, 2) + micro_batches(cfg2, data, 5, 1, 2)  # 2 ranks x 2 micro-batches
    assert [len(t) for t, _ in split] == [2, 2, 2, 2]
    assert torch.equal(torch.cat([t for t, _ in split]), whole[0][0])
    assert torch.equal(torch.cat([i for _, i in split]), whole[0][1])
    share = torch.cat([batch_rows(tiny_cfg(token_shards, tmp_path, "batch_size=64"), s, 100)[1] for s in range(100)])
    # caption dropout ~10 %: 6400 seeded draws, sigma 0.004, so +-5 sigma; measured 0.098
    assert 0.08 < share.float().mean().item() < 0.12


def test_dropped_captions_become_the_empty_caption(token_shards, tokenizer, tmp_path):
    cfg = tiny_cfg(token_shards, tmp_path, "caption_dropout=0.5", "batch_size=16")
    data = load_token_data(cfg.tokens, tokenizer)
    rows, dropped = batch_rows(cfg, 3, len(data))
    (text, _), = micro_batches(cfg, data, 3, 0, 1)
    assert dropped.any() and not dropped.all()
    assert (text[dropped][:, :2] == torch.tensor([2, 3])).all() and (text[dropped][:, 2:] == 0).all()
    assert torch.equal(text[~dropped], data.text_ids[rows[~dropped]])


def test_grad_accumulation_matches_one_big_batch(token_shards, tokenizer, tmp_path):
    grads = []  # compare gradients: Adam's first step amplifies rounding where a gradient is ~0
    for accum in (1, 2):
        cfg = tiny_cfg(token_shards, tmp_path, f"grad_accum={accum}")
        data = load_token_data(cfg.tokens, tokenizer)
        model_cfg = cfg.model.with_layout(tokenizer.vocab_size, tokenizer.text_len, data.codebook_size, data.grid_size)
        model = build_model(model_cfg, seed=0)
        train_step(model, make_optimizer(model, cfg), model_cfg, micro_batches(cfg, data, 0, 0, 1), cfg, 0,
                   torch.device("cpu"))
        grads.append([p.grad for p in model.parameters()])
    for a, b in zip(*grads):  # fp32 summation order of grads <= 0.14; measured 3.0e-8, 0.0044 of the tolerance
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_training_saves_a_loadable_model_and_resumes_exactly(token_shards, tmp_path):
    cfg = tiny_cfg(token_shards, tmp_path / "a")
    final = train_transformer(cfg, is_verbose=False)
    model, model_cfg = load_transformer(final)
    assert model_cfg.grid_size == 16 and model_cfg.codebook_size == 1024
    assert json.loads((final / "eval.json").read_text())["val_loss"] > 0
    ckpts = sorted(p.name for p in (tmp_path / "a" / "checkpoints").glob("step_*"))
    assert ckpts == ["step_00000002", "step_00000004"]
    assert (tmp_path / "a" / "samples" / "step_00000004.png").is_file()
    records = [json.loads(l) for l in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3, 4]

    # Interrupted after step 2: keep only that checkpoint, then resume to step 4.
    run_b = tmp_path / "b"
    train_transformer(tiny_cfg(token_shards, run_b), is_verbose=False)
    import shutil

    shutil.rmtree(run_b / "checkpoints" / "step_00000004")
    shutil.rmtree(run_b / "final")
    (run_b / "checkpoints" / "latest").write_text("step_00000002")
    train_transformer(tiny_cfg(token_shards, run_b), is_verbose=False)
    a, _ = load_tensors(tmp_path / "a" / "checkpoints" / "step_00000004" / "model.safetensors")
    b, _ = load_tensors(run_b / "checkpoints" / "step_00000004" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(l)["step"] for l in (run_b / "metrics.jsonl").read_text().splitlines()
             if json.loads(l)["split"] == "train"]
    assert steps == [1, 2, 3, 4]  # the log was trimmed to the checkpoint, not duplicated


def test_batch_size_must_split_over_micro_batches(token_shards, tmp_path):
    with pytest.raises(ValueError, match="divisible"):
        train_transformer(tiny_cfg(token_shards, tmp_path, "batch_size=5", "grad_accum=2"), is_verbose=False)


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_torchrun_two_processes_train_like_one(token_shards, tmp_path, parallel):
    """Two gloo processes on this CPU, each with half of every batch, end at the weights of one process."""
    overrides = [f"tokens={token_shards['train']}", f"val_tokens={token_shards['val']}",
                 f"text_tokenizer={REPO / TEXT_TOKENIZER}", f"vq_model={REPO / VQ_MODEL}", "model.preset=tiny",
                 "steps=2", "batch_size=4", "warmup_steps=1", "eval_every=0", "val_count=2", "sample_count=0",
                 "checkpoint_every=2", "num_threads=1", f"parallel={parallel}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "mini_t2i.cli", "train", "transformer", f"run_dir={tmp_path / 'two'}", *overrides]
    # a hang guard only: ~10 s here, a loaded 2-core machine can be many times slower
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    train_transformer(load_config(TransformerTrainConfig, None, [f"run_dir={tmp_path / 'one'}", *overrides]),
                      is_verbose=False)
    two, _ = load_tensors(tmp_path / "two" / "checkpoints" / "step_00000002" / "model.safetensors")
    one, _ = load_tensors(tmp_path / "one" / "checkpoints" / "step_00000002" / "model.safetensors")
    assert two.keys() == one.keys()
    # Adam's g/(|g|+eps) turns the all-reduce's rounding difference dg into up to lr*dg/eps where g ~ 0:
    # 2 steps x 1e-3 x 7.9e-10 (max dg measured) / 1e-8 = 1.6e-4; measured 9.5e-6 (0.83 of the old atol=1e-5);
    # a wrong or missing all-reduce flips updates: 2*lr = 2e-3
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=1e-4, atol=2e-4)


def test_stop_after_ends_early_on_the_full_schedule(token_shards, tmp_path):
    from mini_t2i.training import warmup_cosine

    final = train_transformer(tiny_cfg(token_shards, tmp_path, "steps=8", "stop_after=3"), is_verbose=False)
    records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3]
    # planned for 8 steps; the same float64 formula (rel 1e-6 default, far above 1e-16 rounding)
    assert train[-1]["lr"] == pytest.approx(warmup_cosine(2, 0.003, 2, 8, 0.1))
    assert json.loads((final / "eval.json").read_text())["step"] == 3
    with pytest.raises(ValueError, match="stop_after=9 must be in"):
        tiny_cfg(token_shards, tmp_path, "steps=8", "stop_after=9")
