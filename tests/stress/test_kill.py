"""Training killed with SIGKILL at random moments resumes to bitwise the same weights
(the quick form: 10 kills over three stages; the long form: python -m mini_t2i.stress.kill)."""

from pathlib import Path

import pytest

from mini_t2i.stress.kill import kill_and_resume

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("stage, config, overrides, kills", [
    ("vq", "configs/vq_tiny.yaml", ["steps=24", "checkpoint_every=2", "log_every=2"], 3),
    ("rerank", "configs/rerank_tiny.yaml", ["steps=24", "checkpoint_every=2", "eval_every=0", "log_every=2"], 3),
    ("transformer", "configs/transformer_tiny.yaml", ["steps=40", "checkpoint_every=3", "eval_every=0",
                                                      "sample_count=0", "log_every=2"], 4),
])
def test_killed_training_resumes_to_the_same_weights(stage, config, overrides, kills, token_shards, tmp_path,
                                                     monkeypatch):
    monkeypatch.chdir(REPO)
    if stage == "transformer":
        overrides = overrides + [f"tokens={token_shards['train']}", f"val_tokens={token_shards['val']}"]
    result = kill_and_resume(stage, config, overrides, tmp_path, kills=kills, seed=1, max_delay=3.0)
    assert result["kills"] == kills  # each one landed while training ran
    assert result["weight_files"] == ["model.safetensors"]
    assert result["identical"], result
