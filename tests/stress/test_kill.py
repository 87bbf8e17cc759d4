"""Training killed with SIGKILL at random moments resumes to bitwise the same weights
(the quick form: 13 kills over all five trainers; the long form: python -m mini_t2i.stress.kill)."""

from pathlib import Path

import pytest

from mini_t2i.stress.kill import kill_and_resume

REPO = Path(__file__).resolve().parents[2]


# max_delay about spans one start's training (after its config.yaml is written), so the
# kills land before the first checkpoint and between checkpoints, not after the last step.
# Measured on a 2-core CPU: VQ and reranker train ~1 s, the transformer ~5 s, diffusion
# ~1 s; the JAX run spends its first ~3 s compiling the train step, then ~2.5 s training.
@pytest.mark.parametrize("stage, config, overrides, kills, max_delay", [
    ("vq", "configs/vq_tiny.yaml", ["steps=24", "checkpoint_every=2", "log_every=2"], 3, 1.5),
    ("rerank", "configs/rerank_tiny.yaml", ["steps=24", "checkpoint_every=2", "eval_every=0", "log_every=2"], 3,
     1.5),
    ("transformer", "configs/transformer_tiny.yaml", ["steps=40", "checkpoint_every=3", "eval_every=0",
                                                      "sample_count=0", "log_every=2"], 3, 3.0),
    ("diffusion", "configs/diffusion_tiny.yaml", ["steps=16", "batch_size=64", "checkpoint_every=2",
                                                  "eval_every=0", "log_every=2"], 2, 0.9),
    ("transformer-jax", "configs/transformer_tiny.yaml", ["steps=12", "checkpoint_every=2", "eval_every=0",
                                                          "sample_count=0", "log_every=2"], 2, 5.0),
])
def test_killed_training_resumes_to_the_same_weights(stage, config, overrides, kills, max_delay, token_shards,
                                                     tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    if stage.startswith("transformer"):
        overrides = overrides + [f"tokens={token_shards['train']}", f"val_tokens={token_shards['val']}"]
    result = kill_and_resume(stage, config, overrides, tmp_path, kills=kills, seed=1, max_delay=max_delay)
    assert result["kills"] == kills  # each one landed while the run was still going
    assert result["weight_files"] == ["model.safetensors"]  # every stage's final/ holds one weight file
    assert result["identical"], result
