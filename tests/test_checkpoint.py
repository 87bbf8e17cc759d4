"""Checkpoints: atomic, safetensors only, clear errors on bad files."""

import pickle

import pytest
import torch

from mini_t2i.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_state,
    load_state_dict_strict,
    load_tensors,
    save_state,
    save_tensors,
    write_checkpoint_dir,
)


def test_tensors_round_trip(tmp_path):
    t = {"a": torch.randn(3, 4), "b": torch.arange(5, dtype=torch.int64)}
    save_tensors(t, tmp_path / "w.safetensors", metadata={"k": "v"})
    back, meta = load_tensors(tmp_path / "w.safetensors")
    assert meta == {"k": "v"}
    assert all(torch.equal(t[k], back[k]) for k in t)
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temp file left behind


def test_pickle_is_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    with pytest.raises(CheckpointError, match="pickle"):
        load_tensors(path)
    torch.save({"a": torch.zeros(2)}, tmp_path / "t.pt")
    with pytest.raises(CheckpointError, match="never loads"):
        load_tensors(tmp_path / "t.pt")


def test_truncated_and_missing(tmp_path):
    save_tensors({"a": torch.randn(100)}, tmp_path / "w.safetensors")
    data = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_tensors(tmp_path / "cut.safetensors")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_tensors(tmp_path / "nope.safetensors")


def test_strict_loading_names_the_mismatch():
    model = torch.nn.Linear(3, 2)
    with pytest.raises(CheckpointError, match="wrong shapes"):
        load_state_dict_strict(model, {"weight": torch.zeros(2, 4), "bias": torch.zeros(2)}, "x")
    with pytest.raises(CheckpointError, match="missing"):
        load_state_dict_strict(model, {"weight": torch.zeros(2, 3)}, "x")


def test_optimizer_state_round_trip(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = {"step": 7, "optimizer": opt.state_dict(), "rng": torch.get_rng_state(), "pos": (1, 2)}
    save_state(state, tmp_path / "s.safetensors")
    back = load_state(tmp_path / "s.safetensors")
    assert back["step"] == 7 and back["pos"] == (1, 2) and torch.equal(back["rng"], state["rng"])
    opt2 = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=1e-2)
    opt2.load_state_dict(back["optimizer"])
    s1, s2 = opt.state_dict()["state"][0], opt2.state_dict()["state"][0]
    assert torch.equal(s1["exp_avg"], s2["exp_avg"]) and torch.equal(s1["step"], s2["step"])


def test_checkpoint_dirs_keep_last_and_latest(tmp_path):
    for step in (10, 20, 30):
        write_checkpoint_dir(tmp_path, step, {"a.txt": lambda p, s=step: p.write_text(str(s))}, keep_last=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["latest", "step_00000020", "step_00000030"]
    assert latest_checkpoint(tmp_path).name == "step_00000030"
    # A half-written directory (killed before the rename) is never taken as the latest.
    (tmp_path / "checkpoints" / "step_00000040.tmp").mkdir()
    (tmp_path / "checkpoints" / "latest").unlink()
    assert latest_checkpoint(tmp_path).name == "step_00000030"


def test_a_kill_while_old_checkpoints_are_deleted_leaves_none_half_visible(tmp_path, monkeypatch):
    """write_checkpoint_dir removes old checkpoints by renaming them out of sight first: a
    kill inside the delete (simulated by an rmtree that dies half way) leaves only complete
    checkpoints visible."""
    import shutil
    from pathlib import Path

    from mini_t2i import atomic
    from mini_t2i.checkpoint import finished_checkpoints, write_checkpoint_dir

    def files(step):
        return {"a.txt": lambda p: p.write_text(str(step)), "b.txt": lambda p: p.write_text(str(step))}

    for step in (1, 2):
        write_checkpoint_dir(tmp_path, step, files(step), keep_last=2)

    def dies_half_way(path, ignore_errors=False):  # deletes one file, then the process "dies"
        if Path(path).is_dir():
            sorted(Path(path).iterdir())[0].unlink()
            raise KeyboardInterrupt("killed mid-delete")

    monkeypatch.setattr(atomic.shutil, "rmtree", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        write_checkpoint_dir(tmp_path, 3, files(3), keep_last=2)
    monkeypatch.setattr(atomic.shutil, "rmtree", shutil.rmtree)
    visible = finished_checkpoints(tmp_path)
    assert [p.name for p in visible] == ["step_00000002", "step_00000003"]
    assert all(sorted(f.name for f in p.iterdir()) == ["a.txt", "b.txt"] for p in visible)
