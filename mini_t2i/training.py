"""What every trainer here shares: its run config, the schedule, step s's random stream,
the run log and the final folder. Each trainer keeps its own explicit loop on top:

    cfg: VQTrainConfig(RunConfig)                      # the shared run-control fields, typed
    log = RunLog(run_dir, start)                       # metrics.jsonl, trimmed to `start` on resume
    for step in progress(cfg, start, "vq", is_verbose):
        g = step_generator(cfg.seed, step)             # the batch of step s is a pure function of (seed, s)
        ... optimizer step at cfg.learning_rate(step) ...
        done = step + 1
        if cfg.is_log_step(done): log.write_train(done, cfg.learning_rate(step), losses, "images")
        if cfg.is_eval_step(done): ...
        if cfg.is_checkpoint_step(done): save_training_checkpoint(...)
    save_final(run_dir, lambda folder: model.save_pretrained(folder), metrics)   # final/ + eval.json, atomically

The trainers: vq/train.py, rerank/train.py, diffusion/train.py, transformer/train.py and
transformer_jax/train.py (the last two share TransformerTrainConfig). torch is imported
inside the functions that use it, so a config loads without it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal

if TYPE_CHECKING:
    import torch

# step_generator's multiplier: a prime above any step count a run has, so for steps below
# it, two (seed, step) pairs never give the same stream, and seed s + 1's steps never
# replay seed s's (seed + step alone would: (0, 1) and (1, 0) would draw the same batch).
STEP_SEED_STRIDE = 1_000_003


@dataclass
class RunConfig:
    """The run-control fields of every trainer; each trainer's config extends it with its
    data, model and loss fields and overrides the defaults that differ."""
    run_dir: str = "runs/run"  # checkpoints, metrics.jsonl, samples/, final/ (the trained model + eval.json)
    steps: int = 1000  # optimizer steps; the learning-rate schedule spans them
    stop_after: int = 0  # stop (and write final/) after this step, the schedule still planned for `steps`; 0 = steps
    batch_size: int = 32  # examples per optimizer step
    lr: float = 1e-3  # peak AdamW learning rate
    warmup_steps: int = 100  # linear warmup, then cosine decay to lr * min_lr_ratio at `steps`
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0  # AdamW's; each trainer says which parameters it applies to
    grad_clip: float = 1.0  # max global gradient norm (0 = off)
    seed: int = 0  # weights, and the batches of every step (step_generator)
    log_every: int = 25  # a train record in metrics.jsonl every this many steps (and at the last)
    eval_every: int = 500  # validation every this many steps (0 = only at the end)
    checkpoint_every: int = 250  # a resumable checkpoint every this many steps (and at the last)
    keep_checkpoints: int = 2  # the newest this many checkpoints are kept
    num_threads: int = 0  # torch CPU threads (0 = torch's default)
    device: str = "auto"  # auto | cpu | cuda
    resume: bool = True  # continue from run_dir's latest checkpoint if there is one
    init_from: str = ""  # a saved model of the same layout whose weights start the run (fine-tuning)
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on GPUs that have it, else fp32

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps={self.steps} and batch_size={self.batch_size} must be >= 1")
        if not 0 <= self.stop_after <= self.steps:
            raise ValueError(f"stop_after={self.stop_after} must be in [0, steps={self.steps}] (0 = run all steps)")
        if self.log_every < 1 or self.checkpoint_every < 1 or self.keep_checkpoints < 1:
            raise ValueError(f"log_every={self.log_every}, checkpoint_every={self.checkpoint_every} and "
                             f"keep_checkpoints={self.keep_checkpoints} must be >= 1")
        if self.eval_every < 0 or self.warmup_steps < 0:
            raise ValueError(f"eval_every={self.eval_every} and warmup_steps={self.warmup_steps} must be >= 0")

    @property
    def end_step(self) -> int:
        """The step this run stops after: stop_after, or steps."""
        return self.stop_after or self.steps

    def learning_rate(self, step: int) -> float:
        """The schedule at optimizer step `step` (0-based)."""
        return warmup_cosine(step, self.lr, self.warmup_steps, self.steps, self.min_lr_ratio)

    def is_log_step(self, done: int) -> bool:
        """After `done` steps: write a train record (every log_every, and at the end)."""
        return done % self.log_every == 0 or done == self.end_step

    def is_eval_step(self, done: int) -> bool:
        """After `done` steps: validate (every eval_every; the end's evaluation is the final one)."""
        return bool(self.eval_every) and done % self.eval_every == 0 and done < self.end_step

    def is_checkpoint_step(self, done: int) -> bool:
        """After `done` steps: write a checkpoint (every checkpoint_every, and at the end)."""
        return done % self.checkpoint_every == 0 or done == self.end_step


def progress(cfg: RunConfig, start: int, desc: str, is_verbose: bool):
    """The steps start .. cfg.end_step - 1 under a tqdm bar (silent unless is_verbose)."""
    from tqdm.auto import tqdm

    return tqdm(range(start, cfg.end_step), initial=start, total=cfg.end_step, desc=desc, disable=not is_verbose)


def warmup_cosine(step: int, lr: float, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """Linear warmup to lr over warmup_steps, then cosine decay to lr * min_lr_ratio at total_steps."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def step_generator(seed: int, step: int) -> "torch.Generator":
    """The random stream of optimizer step `step`: every random choice of a step's batch
    (rows, caption dropout, noise, flips) comes from it, so a batch is a pure function of
    (seed, step), resume is exact, and the process count does not matter."""
    import torch

    return torch.Generator().manual_seed(seed * STEP_SEED_STRIDE + step)


def use_bf16(precision: str, device: "torch.device") -> bool:
    """bf16 autocast for `precision` on `device`: "bf16" always, "auto" on GPUs with fast
    bf16 (on CPUs bf16 matmuls are slow or, without AMX, useless), "fp32" never."""
    import torch

    if precision == "bf16":
        return True
    return precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()


class RunLog:
    """A run's metrics: one JSON record a line in run_dir/metrics.jsonl, and TensorBoard
    scalars (run_dir/tensorboard) where tensorboard is installed. Opened at step `start`,
    it drops the records after it: a resumed run writes them again, once."""

    def __init__(self, run_dir: str | Path, start: int = 0, is_main: bool = True) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self.is_main = is_main
        self.writer = None
        if is_main:
            trim_jsonl(self.path, start)
            self.writer = _tensorboard(Path(run_dir) / "tensorboard", start)
        self._t0, self._count = time.perf_counter(), 0

    def count(self, n: int) -> None:
        """Add `n` items (images, tokens) processed; `rate` divides them by the time."""
        self._count += n

    def rate(self) -> float:
        """Items per second since the last call (or since the log opened); restarts the count."""
        now = time.perf_counter()
        rate = self._count / max(now - self._t0, 1e-9)
        self._t0, self._count = now, 0
        return rate

    def write_train(self, done: int, lr: float, losses: dict, unit: str) -> float:
        """Write the train record of step `done`: lr, `unit`s per second since the last
        record ("images", "tokens"), the losses. Returns the rate, for a progress bar."""
        rate = self.rate()
        self.write({"step": done, "split": "train", "lr": lr, f"{unit}_per_s": rate, **losses})
        return rate

    def write(self, record: dict) -> None:
        """Append `record` ({"step", "split", numbers...}); only the main process writes."""
        if not self.is_main:
            return
        append_jsonl(self.path, record)
        if self.writer is not None:
            for k, v in record.items():
                if k not in ("step", "split") and isinstance(v, (int, float)):
                    self.writer.add_scalar(f"{record.get('split', 'train')}/{k}", v, record["step"])

    def records(self, split: str | None = None) -> list[dict]:
        """The records so far (of one split)."""
        if not self.path.is_file():
            return []
        rows = [json.loads(line) for line in self.path.read_text().splitlines() if line]
        return [r for r in rows if split is None or r.get("split") == split]

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def copy_weights(source, model, path: str, same: Callable[[object, object], bool] | None = None,
                 fresh: tuple[str, ...] = ()) -> None:
    """Start `model` from the weights of `source`, the model saved at `path` (`init_from`).
    Their `.config`s must agree (`same(source.config, model.config)`; default: equal).
    Weights under the prefixes `fresh` (a part the source lacks, such as a new head) may be
    missing from the source and keep their initial values; any other difference is an error."""
    agree = same(source.config, model.config) if same is not None else source.config == model.config
    if not agree:
        raise ValueError(f"init_from={path} is a {source.config} model, not the configured {model.config}; "
                         "set model to match it")
    missing, unexpected = model.load_state_dict(source.state_dict(), strict=not fresh)
    if unexpected or any(not k.startswith(fresh) for k in missing):
        raise ValueError(f"init_from={path} does not match the model: missing {missing[:4]}, "
                         f"unexpected {unexpected[:4]}")


def save_final(run_dir: str | Path, write: Callable[[Path], object], metrics: dict) -> Path:
    """Write run_dir/final atomically: `write(folder)` saves the model into a temp folder,
    eval.json (`metrics`) goes beside it, and the folder is renamed into place."""
    from mini_t2i.atomic import atomic_folder

    final = Path(run_dir) / "final"
    with atomic_folder(final) as tmp:
        write(tmp)
        (tmp / "eval.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return final


def append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def trim_jsonl(path: Path, step: int) -> None:
    """Drop records written after the checkpoint a run resumes from (they will be written again)."""
    if path.is_file():
        lines = [l for l in path.read_text().splitlines() if l and json.loads(l).get("step", 0) <= step]
        path.write_text("".join(l + "\n" for l in lines))


def _tensorboard(log_dir: Path, start: int):
    """A TensorBoard writer when tensorboard is installed, else None (metrics.jsonl always).
    purge_step drops the events a resumed run will write again."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(log_dir), purge_step=start or None)
