"""Kill training with SIGKILL at random moments; it must resume to the very same weights.

    python -m mini_t2i.stress.kill --stage transformer --config configs/transformer_tiny.yaml --kills 20 \
        tokens=data/tokens/shapes64_tiny val_tokens=data/tokens/shapes64_tiny_val steps=60
    python -m mini_t2i.stress.kill --stage vq --config configs/vq_tiny.yaml --kills 20 steps=40

A reference run trains uninterrupted. The same config is then started in another run_dir
and killed (SIGKILL: no handler, no cleanup) at a random moment after training has begun,
restarted, killed again, ... `kills` times, then left to finish. After every kill the
run_dir must hold only complete checkpoints (every file of every checkpoint reads, and
`latest` names one of them). At the end every weight file of the final model must be
bitwise equal to the reference's. Both runs use one CPU thread: float sums of the same
numbers in another order would differ, which is not what this tests.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path


def _command(stage: str, config: str, run_dir: Path, overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "mini_t2i.cli", "train", stage, "--config", config, *overrides,
            f"run_dir={run_dir}", "num_threads=1"]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TQDM_DISABLE": "1"}


def check_checkpoints(run_dir: Path) -> int:
    """Every complete checkpoint of run_dir reads; returns how many there are. Raises if a
    visible checkpoint is partial (a .tmp folder is a write in progress, never read)."""
    from mini_t2i.checkpoint import latest_checkpoint, load_tensors

    root = run_dir / "checkpoints"
    done = sorted(p for p in root.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp"))
    for ckpt in done:
        for name in ("model.safetensors", "training_state.safetensors", "config.yaml"):
            if not (ckpt / name).is_file():
                raise AssertionError(f"{ckpt} is visible but has no {name}")
        for file in ckpt.glob("*.safetensors"):
            load_tensors(file)  # raises CheckpointError when truncated
    latest = latest_checkpoint(run_dir)
    if done and latest not in done:
        raise AssertionError(f"latest points at {latest}, not at a complete checkpoint")
    return len(done)


def _started(run_dir: Path) -> bool:
    """Training has begun: the run's config.yaml exists (written after set-up, before step 1)."""
    return (run_dir / "config.yaml").is_file()


def kill_and_resume(stage: str, config: str, overrides: list[str], work_dir: str | Path, kills: int = 5,
                    seed: int = 0, max_delay: float = 4.0, timeout: float = 600.0) -> dict:
    """Run the reference, then the killed-and-resumed run; returns what happened."""
    from mini_t2i.checkpoint import load_tensors

    work_dir = Path(work_dir)
    rng = random.Random(seed)
    reference, killed = work_dir / "reference", work_dir / "killed"
    done = subprocess.run(_command(stage, config, reference, overrides), env=_env(), capture_output=True,
                          text=True, timeout=timeout)
    if done.returncode:
        raise RuntimeError(f"the reference run failed: {done.stderr[-2000:]}")
    delays, kills_done, starts = [], 0, 0
    while True:
        starts += 1
        proc = subprocess.Popen(_command(stage, config, killed, overrides), env=_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if kills_done < kills:
            deadline = time.time() + timeout
            while proc.poll() is None and not _started(killed) and time.time() < deadline:
                time.sleep(0.05)
            delay = rng.uniform(0, max_delay)
            time.sleep(delay)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills_done += 1
                delays.append(round(delay, 2))
                check_checkpoints(killed)
                continue
        stderr = proc.communicate(timeout=timeout)[1]
        if proc.returncode:
            raise RuntimeError(f"a resumed run failed: {stderr[-2000:]}")
        if kills_done >= kills:
            break
    files = sorted(p.name for p in (reference / "final").glob("*.safetensors"))
    identical = True
    for name in files:
        a, _ = load_tensors(reference / "final" / name)
        b, _ = load_tensors(killed / "final" / name)
        identical &= a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)
    return {"stage": stage, "kills": kills_done, "starts": starts, "delays_s": delays,
            "checkpoints_left": check_checkpoints(killed), "weight_files": files, "identical": identical}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", required=True, choices=["vq", "transformer", "rerank", "diffusion"])
    parser.add_argument("--config", required=True)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-delay", type=float, default=4.0, help="seconds after training starts, at most")
    parser.add_argument("--work-dir", default="runs/kill")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    result = kill_and_resume(args.stage, args.config, args.overrides, Path(args.work_dir) / args.stage, args.kills,
                             args.seed, args.max_delay)
    print(json.dumps(result, indent=2))
    if not result["identical"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
