"""The training skeleton every trainer stands on (mini_t2i/training.py) and the atomic writes."""

import json
from dataclasses import dataclass

import pytest
import torch

from mini_t2i.atomic import atomic_folder
from mini_t2i.config import load_config
from mini_t2i.training import RunConfig, RunLog, save_final, step_generator, warmup_cosine


def test_step_generator_is_the_documented_stream_and_distinct_per_seed_and_step():
    # The stream every trainer drew its batches from before the skeleton: seed * 1_000_003 + step.
    expected = torch.Generator().manual_seed(3 * 1_000_003 + 17)
    assert torch.equal(torch.rand(4, generator=step_generator(3, 17)), torch.rand(4, generator=expected))
    assert not torch.equal(torch.rand(4, generator=step_generator(0, 1)), torch.rand(4, generator=step_generator(1, 0)))


def test_run_config_checks_its_fields_and_plans_the_schedule():
    cfg = RunConfig(steps=100, stop_after=40, warmup_steps=10, lr=1e-3, min_lr_ratio=0.1, log_every=25,
                    eval_every=20, checkpoint_every=30)
    assert cfg.end_step == 40 and RunConfig(steps=100).end_step == 100
    assert cfg.learning_rate(50) == warmup_cosine(50, 1e-3, 10, 100, 0.1)  # planned for `steps`, not stop_after
    assert [d for d in range(1, 41) if cfg.is_log_step(d)] == [25, 40]  # and the last step
    assert [d for d in range(1, 41) if cfg.is_eval_step(d)] == [20]  # the end's evaluation is the final one
    assert [d for d in range(1, 41) if cfg.is_checkpoint_step(d)] == [30, 40]
    for bad in ({"steps": 0}, {"stop_after": 101}, {"log_every": 0}, {"eval_every": -1}, {"keep_checkpoints": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            RunConfig(**{"steps": 100, **bad})


def test_every_trainer_config_extends_the_run_config():
    from mini_t2i.diffusion.train import DiffusionTrainConfig
    from mini_t2i.rerank.train import RerankTrainConfig
    from mini_t2i.transformer.config import TransformerTrainConfig
    from mini_t2i.vq.train import VQTrainConfig

    for cls in (VQTrainConfig, RerankTrainConfig, DiffusionTrainConfig, TransformerTrainConfig):
        assert issubclass(cls, RunConfig)
        cfg = load_config(cls, None, ["stop_after=5", "init_from=somewhere", "precision=fp32"])
        assert (cfg.end_step, cfg.init_from, cfg.precision) == (5, "somewhere", "fp32")


def test_run_log_trims_on_resume_and_measures_rates(tmp_path):
    log = RunLog(tmp_path)
    for step in (1, 2, 3, 4):
        log.count(10)
        log.write_train(step, 0.1, {"loss": 1.0 / step}, "images")
    log.write({"step": 4, "split": "val", "val_loss": 0.5})
    assert [r["step"] for r in log.records("train")] == [1, 2, 3, 4] and log.records("val")[0]["val_loss"] == 0.5
    assert all(r["images_per_s"] > 0 for r in log.records("train"))
    resumed = RunLog(tmp_path, start=2)  # resumed from the step-2 checkpoint: 3 and 4 will be written again
    assert [r["step"] for r in resumed.records()] == [1, 2]
    assert RunLog(tmp_path, start=2, is_main=False).records() == resumed.records()  # only the main process trims
    RunLog(tmp_path / "other", is_main=False).write({"step": 1, "split": "train"})
    assert not (tmp_path / "other" / "metrics.jsonl").exists()


def test_save_final_writes_the_model_and_eval_json_or_nothing(tmp_path):
    def write(folder):
        (folder / "model.bin").write_text("new")

    final = save_final(tmp_path, write, {"step": 3, "val_loss": 0.25})
    assert (final / "model.bin").read_text() == "new" and json.loads((final / "eval.json").read_text())["step"] == 3

    def broken(folder):
        (folder / "model.bin").write_text("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        save_final(tmp_path, broken, {"step": 4})
    assert (final / "model.bin").read_text() == "new"  # the previous final/ is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]  # no temp folder left behind


def test_atomic_folder_replaces_a_folder_and_clears_a_killed_write(tmp_path):
    target = tmp_path / "out"
    (tmp_path / "out.tmp").mkdir()
    (tmp_path / "out.tmp" / "stale").write_text("left by a killed write")
    with atomic_folder(target) as tmp:
        assert list(tmp.iterdir()) == []  # the leftover is gone
        (tmp / "a").write_text("1")
    with atomic_folder(target) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_renamed_config_key_still_loads(tmp_path):
    """Folders saved before the transformer's image_grid became grid_size (the VQ's name) load."""
    from mini_t2i.transformer.config import TransformerConfig

    old = tmp_path / "transformer.yaml"
    old.write_text("preset: tiny\ntext_vocab_size: 436\ntext_len: 24\ncodebook_size: 1024\nimage_grid: 16\n")
    assert load_config(TransformerConfig, old).grid_size == 16


@dataclass
class _Child(RunConfig):
    steps: int = 7  # a trainer overrides a default
    extra: int = 1


def test_a_trainer_config_overrides_defaults_and_keeps_the_checks():
    assert _Child().steps == 7 and _Child().extra == 1
    with pytest.raises(ValueError, match="stop_after"):
        _Child(stop_after=8)
