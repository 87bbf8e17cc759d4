"""Kill training with SIGKILL at random moments; it must resume to the very same weights.

    python -m mini_t2i.stress.kill --stage transformer --config configs/transformer_tiny.yaml --kills 20 \
        tokens=data/tokens/shapes64_tiny val_tokens=data/tokens/shapes64_tiny_val steps=60
    python -m mini_t2i.stress.kill --stage vq --config configs/vq_tiny.yaml --kills 20 steps=40
    python -m mini_t2i.stress.kill --stage diffusion --config configs/diffusion_tiny.yaml --kills 8 --max-delay 2 \
        steps=120 batch_size=64 checkpoint_every=2 eval_every=0
    python -m mini_t2i.stress.kill --stage transformer-jax --config configs/transformer_tiny.yaml --kills 8 \
        --max-delay 10 tokens=data/tokens/shapes64_tiny val_tokens=data/tokens/shapes64_tiny_val steps=40 \
        checkpoint_every=2 eval_every=0 sample_count=0

Stages: vq, rerank, transformer, diffusion (`mini-t2i train <stage>`) and transformer-jax
(`mini-t2i train transformer --backend jax`, orbax checkpoints in run_dir/orbax/<step>).

A reference run trains uninterrupted. The same config is then started in another run_dir
and killed (SIGKILL: no handler, no cleanup) at a random moment, up to max_delay seconds
after that start's training has begun, restarted, killed again, ... `kills` times, then
left to finish. After every kill the run_dir must hold only complete checkpoints (every
file of every checkpoint reads, and `latest` names one of them; for orbax: every finished
step restores). At the end every weight file of the final model must be bitwise equal to
the reference's. Both runs use one CPU thread: float sums of the same numbers in another
order would differ, which is not what this tests.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

# The `mini-t2i train` arguments of each stage.
STAGES = {"vq": ["vq"], "rerank": ["rerank"], "transformer": ["transformer"], "diffusion": ["diffusion"],
          "transformer-jax": ["transformer", "--backend", "jax"]}
ORBAX_DONE = "commit_success.txt"  # orbax's atomicity_types.COMMIT_SUCCESS_FILE


def _command(stage: str, config: str, run_dir: Path, overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "mini_t2i.cli", "train", *STAGES[stage], "--config", config, *overrides,
            f"run_dir={run_dir}", "num_threads=1"]


def _env(stage: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    if stage == "transformer-jax":
        # One CPU device for every run, whatever the caller has (tests/conftest.py asks for 8):
        # the device count is the mesh, so it decides how the gradient sums are split.
        env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
    return env


def _spawn(stage: str, command: list[str], **kwargs) -> subprocess.Popen:
    proc = subprocess.Popen(command, env=_env(stage), text=True, **kwargs)
    if stage == "transformer-jax" and hasattr(os, "sched_setaffinity"):
        # One thread for XLA: jax 0.10's CPU runtime accepts --xla_cpu_multi_thread_eigen=false
        # and intra_op_parallelism_threads=1 but ignores them (a matmul loop still used 1.8 s
        # of CPU per 0.9 s of wall time); one CPU does limit it. Set here, not in preexec_fn
        # (unsafe in a threaded parent): XLA sizes its thread pools seconds later, after imports.
        with contextlib.suppress(ProcessLookupError):  # it already ended: communicate() says why
            os.sched_setaffinity(proc.pid, {max(os.sched_getaffinity(0))})
    return proc


def _orbax_steps(root: Path) -> list[int]:
    """The finished orbax steps under root, each restored. orbax 0.12 on a local disk
    (AtomicRenameTemporaryPath) writes step N into `N.orbax-checkpoint-tmp`, writes
    commit_success.txt into it last, then renames it to `N`; CheckpointManager lists only
    names without the tmp suffix, and a stale tmp folder is removed when that step is saved
    again. So a folder named N without commit_success.txt would be a half-written step shown
    as finished. (Old steps are deleted in place, not renamed first: a kill inside that
    rmtree could leave a half-deleted N, which the restores below would report.)"""
    import orbax.checkpoint as ocp

    visible = sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())
    for step in visible:
        if not (root / str(step) / ORBAX_DONE).is_file():
            raise AssertionError(f"{root / str(step)} is visible as finished but has no {ORBAX_DONE}")
    # read_only: the checker must never clean up or delete what the trainer would resume from.
    # orbax warns "directory is read only" at every open; that is the point, so quiet it here.
    options = ocp.CheckpointManagerOptions(read_only=True, create=False, save_interval_steps=0)
    absl_log = logging.getLogger("absl")
    level = absl_log.level
    absl_log.setLevel(logging.ERROR)
    try:
        with ocp.CheckpointManager(root.absolute(), options=options) as manager:
            steps = sorted(manager.all_steps())
            if steps != visible:
                raise AssertionError(f"orbax lists steps {steps}, the folder shows {visible}")
            for step in steps:  # the trainer resumes from the latest; any of them must be usable
                state = manager.restore(step, args=ocp.args.StandardRestore())
                if int(state["step"]) != step:
                    raise AssertionError(f"{root / str(step)} holds the state of step {int(state['step'])}")
    finally:
        absl_log.setLevel(level)
    return steps


def check_checkpoints(run_dir: Path) -> list[int]:
    """Every complete checkpoint of run_dir reads; returns their steps. Raises if a visible
    checkpoint is partial (a .tmp folder is a write in progress, never read). Both layouts:
    checkpoints/step_N (mini_t2i.checkpoint) and orbax/N (the JAX trainer)."""
    from mini_t2i.checkpoint import finished_checkpoints, latest_checkpoint, load_tensors

    if (run_dir / "orbax").is_dir():
        return _orbax_steps(run_dir / "orbax")
    done = finished_checkpoints(run_dir)
    for ckpt in done:
        for name in ("model.safetensors", "training_state.safetensors", "config.yaml"):
            if not (ckpt / name).is_file():
                raise AssertionError(f"{ckpt} is visible but has no {name}")
        for file in ckpt.glob("*.safetensors"):
            load_tensors(file)  # raises CheckpointError when truncated
    latest = latest_checkpoint(run_dir)
    if done and latest not in done:
        raise AssertionError(f"latest points at {latest}, not at a complete checkpoint")
    return [int(p.name[len("step_"):]) for p in done]


def _config_stamp(run_dir: Path) -> tuple | None:
    """Which config.yaml run_dir holds: every trainer (the JAX one too) rewrites it, through
    a new file renamed over the old, after set-up and before its first step."""
    try:
        stat = (run_dir / "config.yaml").stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def _started(run_dir: Path, before: tuple | None) -> bool:
    """This start's training has begun: config.yaml is not the one from before it started
    (that of an earlier start does not count, else every kill after the first would land
    while Python is still importing)."""
    stamp = _config_stamp(run_dir)
    return stamp is not None and stamp != before


def kill_and_resume(stage: str, config: str, overrides: list[str], work_dir: str | Path, kills: int = 5,
                    seed: int = 0, max_delay: float = 4.0, timeout: float = 600.0) -> dict:
    """Run the reference, then the killed-and-resumed run; returns what happened. max_delay
    should about span one start's training (seconds after config.yaml is written), so kills
    land both before the first checkpoint and between checkpoints."""
    from mini_t2i.checkpoint import load_tensors

    work_dir = Path(work_dir)
    rng = random.Random(seed)
    reference, killed = work_dir / "reference", work_dir / "killed"
    proc = _spawn(stage, _command(stage, config, reference, overrides), stdout=subprocess.DEVNULL,
                  stderr=subprocess.PIPE)
    stderr = proc.communicate(timeout=timeout)[1]
    if proc.returncode:
        raise RuntimeError(f"the reference run failed: {stderr[-2000:]}")
    delays, after_steps, kills_done, starts = [], [], 0, 0
    while True:
        starts += 1
        if starts > 2 * kills + 10:  # the runs keep ending first: delays that long never kill
            raise RuntimeError(f"{starts - 1} starts for {kills_done} kills: lower max_delay={max_delay}")
        before = _config_stamp(killed)
        proc = _spawn(stage, _command(stage, config, killed, overrides), stdout=subprocess.DEVNULL,
                      stderr=subprocess.PIPE)
        if kills_done < kills:
            deadline = time.time() + timeout
            while proc.poll() is None and not _started(killed, before) and time.time() < deadline:
                time.sleep(0.01)  # fine-grained: a tiny run's first checkpoint comes ~0.1 s after the start
            delay = rng.uniform(0, max_delay)
            time.sleep(delay)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.communicate()  # reaps it and closes the stderr pipe
                kills_done += 1
                delays.append(round(delay, 2))
                steps = check_checkpoints(killed)
                after_steps.append(steps[-1] if steps else 0)
                continue
        stderr = proc.communicate(timeout=timeout)[1]
        if proc.returncode:
            raise RuntimeError(f"a resumed run failed: {stderr[-2000:]}")
        if kills_done >= kills:
            break
    files = sorted(p.name for p in (reference / "final").glob("*.safetensors"))
    identical = files == sorted(p.name for p in (killed / "final").glob("*.safetensors"))
    for name in files if identical else []:
        a, _ = load_tensors(reference / "final" / name)
        b, _ = load_tensors(killed / "final" / name)
        identical &= a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)
    # killed_after_step: the newest complete checkpoint when each kill landed (0: before the first).
    return {"stage": stage, "kills": kills_done, "starts": starts, "delays_s": delays,
            "killed_after_step": after_steps, "checkpoints_left": len(check_checkpoints(killed)),
            "weight_files": files, "identical": identical}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", required=True, choices=list(STAGES))
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
