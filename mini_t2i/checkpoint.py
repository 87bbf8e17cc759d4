"""Checkpoints: safetensors only, written atomically, loaded with clear errors.

A training checkpoint is a directory ``<run>/checkpoints/step_00001000/`` with
  - ``model.safetensors``           the weights,
  - ``config.yaml``                 the resolved stage config,
  - ``training_state.safetensors``  optimizer tensors, RNG states; its metadata
                                    holds the JSON-able rest (step, data position,
                                    optimizer hyper-parameters).
The directory is first written as ``step_XXXXXXXX.tmp`` (every file fsynced) and
then renamed, and ``<run>/checkpoints/latest`` is replaced atomically, so a kill at
any moment leaves either the previous checkpoint or the new one, never half of one.
Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from mini_t2i.atomic import atomic_folder, atomic_write_bytes, remove_folder


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, not safetensors, or does not fit the model."""


def save_tensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Save a flat dict of tensors as safetensors, atomically."""
    from safetensors.torch import save

    # safetensors refuses shared or non-contiguous storage: give it plain copies.
    plain = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    atomic_write_bytes(path, save(plain, metadata=metadata))


def load_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Load a safetensors file; returns (tensors, metadata). Never unpickles."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {str(path)!r} does not exist")
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05") or head[:2] == b"PK":
        raise CheckpointError(
            f"{path} is a pickle/torch.save file, which mini-t2i never loads (it can run code). "
            "Convert it to safetensors with safetensors.torch.save_file on a machine you trust."
        )
    try:
        tensors = {}
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    except Exception as exc:  # safetensors raises several types for a bad header
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({exc}); it may be truncated or corrupt: "
            "use an earlier checkpoint or re-export it"
        ) from None
    return tensors, metadata


def key_mismatch(expected, tensors) -> list[str]:
    """What differs between the expected key names and a file's tensors: ["missing [...]",
    "unexpected [...]"] (the first five of each), or [] when the key sets are equal."""
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    return [f"{what} {keys[:5]}{' ...' if len(keys) > 5 else ''}"
            for what, keys in (("missing", missing), ("unexpected", unexpected)) if keys]


def load_state_dict_strict(module: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Load weights into `module`, failing on any missing, unexpected or mis-shaped key."""
    own = module.state_dict()
    parts = key_mismatch(own, tensors)
    bad_shape = [f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(own[k].shape)}"
                 for k in own if k in tensors and tensors[k].shape != own[k].shape]
    if parts or bad_shape:
        if bad_shape:
            parts.append(f"wrong shapes {bad_shape[:3]}")
        raise CheckpointError(
            f"{source} does not match the model built from its config ({'; '.join(parts)}); "
            "is the config.yaml beside it the one it was trained with?"
        )
    module.load_state_dict(tensors, strict=True)


# --- optimizer and RNG state -------------------------------------------------------------


def _split_tensors(obj: Any, prefix: str, out: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in a nested structure by a reference string, collecting them."""
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[_split_tensors(k, f"{prefix}.k{i}", out), _split_tensors(v, f"{prefix}.{i}", out)]
                             for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        items = [_split_tensors(v, f"{prefix}.{i}", out) for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix} in a checkpoint")


def _join_tensors(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__tuple__" in obj:
            return tuple(_join_tensors(v, tensors) for v in obj["__tuple__"])
        return {_join_tensors(k, tensors): _join_tensors(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_join_tensors(v, tensors) for v in obj]
    return obj


def save_state(state: dict, path: str | os.PathLike) -> None:
    """Save a nested training state (optimizer state dict, RNG states, counters) as safetensors."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split_tensors(state, "s", tensors)
    save_tensors(tensors, path, metadata={"state": json.dumps(skeleton)})


def load_state(path: str | os.PathLike) -> dict:
    tensors, metadata = load_tensors(path)
    if "state" not in metadata:
        raise CheckpointError(f"{path} has no training state in its metadata; it is not a training_state file")
    return _join_tensors(json.loads(metadata["state"]), tensors)


# --- checkpoint directories --------------------------------------------------------------


def checkpoint_dir(run_dir: str | os.PathLike, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:08d}"


def finished_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """A run's complete checkpoint folders, oldest first: exactly step_NNNNNNNN (a name with
    a ".tmp" suffix is a write, a swap or a delete in progress, never read)."""
    root = Path(run_dir) / "checkpoints"
    return sorted(p for p in root.glob("step_*") if p.is_dir() and re.fullmatch(r"step_\d{8}", p.name))


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    root = Path(run_dir) / "checkpoints"
    pointer = root / "latest"
    if pointer.is_file():
        target = root / pointer.read_text().strip()
        if target.is_dir():
            return target
    # The pointer is written last; fall back to the newest finished directory.
    done = finished_checkpoints(run_dir)
    return done[-1] if done else None


def write_checkpoint_dir(run_dir: str | os.PathLike, step: int, files: dict[str, Any], keep_last: int = 2) -> Path:
    """Write a checkpoint directory atomically.

    `files` maps a file name to a callable ``write(path)``; each is written into a
    temp directory, which is renamed into place, then ``latest`` is updated and
    all but the newest `keep_last` checkpoints are removed.
    """
    final = checkpoint_dir(run_dir, step)
    with atomic_folder(final) as tmp:
        for name, write in files.items():
            write(tmp / name)
    atomic_write_bytes(final.parent / "latest", final.name.encode())
    older = [p for p in finished_checkpoints(run_dir) if p != final]
    for old in older[: max(0, len(older) - (keep_last - 1))]:
        remove_folder(old)  # renamed out of sight first: a kill mid-delete leaves no half checkpoint
    return final


def save_training_checkpoint(run_dir: str | os.PathLike, step: int, module: torch.nn.Module, optimizer,
                             config: Any, keep_last: int = 2) -> Path:
    """The checkpoint of a one-process training run: model.safetensors (`module`'s state),
    config.yaml (`config`) and training_state.safetensors (step and optimizer), atomically."""
    from mini_t2i.config import save_config

    state = {"step": step, "optimizer": optimizer.state_dict()}
    return write_checkpoint_dir(run_dir, step, {
        "model.safetensors": lambda p: save_tensors(module.state_dict(), p),
        "config.yaml": lambda p: save_config(config, p),
        "training_state.safetensors": lambda p: save_state(state, p),
    }, keep_last=keep_last)


def resume_training_checkpoint(run_dir: str | os.PathLike, module: torch.nn.Module, optimizer) -> int:
    """Load the latest `save_training_checkpoint` of run_dir into `module` and `optimizer`;
    returns its step (0 when there is none)."""
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        return 0
    tensors, _ = load_tensors(ckpt / "model.safetensors")
    load_state_dict_strict(module, tensors, str(ckpt / "model.safetensors"))
    state = load_state(ckpt / "training_state.safetensors")
    optimizer.load_state_dict(state["optimizer"])
    return int(state["step"])
