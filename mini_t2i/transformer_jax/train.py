"""Train the transformer with JAX: any number of devices and hosts, exported for PyTorch.

    mini-t2i train transformer --backend jax --config configs/transformer_shapes64.yaml [key=value ...]
    XLA_FLAGS=--xla_force_host_platform_device_count=8 mini-t2i train transformer --backend jax ...  # 8 CPU "devices"

The same YAML config as the PyTorch trainer (TransformerTrainConfig), the same pre-tokenized
shards, the same batches: the rows and caption dropout of step s come from
mini_t2i.transformer.data's batch_rows(seed, s), so a run is a pure function of (config,
step) and resumes exactly.
Checkpoints are orbax (run_dir/orbax/<step>: parameters, AdamW state and step, each array
saved from where it lives, so a pod slice writes in parallel and resumes on any mesh).
Evaluation and the final model go through the PyTorch model: run_dir/final is the same
folder the PyTorch trainer writes, which `mini-t2i pipeline assemble` and
`mini-t2i generate` read.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from mini_t2i.transformer.config import TransformerTrainConfig


def compute_dtype(cfg: TransformerTrainConfig, devices: list):
    """bf16 matmuls on GPUs and TPUs (fp32 master weights), fp32 on CPUs (no fast bf16 there)."""
    if cfg.precision == "bf16" or (cfg.precision == "auto" and devices[0].platform in ("gpu", "tpu")):
        return jnp.bfloat16
    return jnp.float32


def select_devices(device: str) -> list:
    """cfg.device -> the devices of the mesh: auto = JAX's default backend, or cpu / cuda (gpu) / tpu."""
    if device == "auto":
        return jax.devices()
    return jax.devices({"cuda": "gpu"}.get(device, device))


def local_batch(cfg: TransformerTrainConfig, data, step: int) -> tuple[np.ndarray, np.ndarray]:
    """This host's rows of step's global batch as (grad_accum, rows / grad_accum, tokens) int32
    arrays: the PyTorch trainer's micro-batches, with hosts in the place of its processes
    (hosts own contiguous blocks of the mesh's devices, as processes own rows there)."""
    from mini_t2i.transformer.data import micro_batches

    chunks = micro_batches(cfg, data, step, jax.process_index(), jax.process_count())  # [(text, images)] x accum
    text, images = (np.stack([c[i].numpy() for c in chunks]).astype(np.int32) for i in (0, 1))
    return text, images


def train_transformer_jax(cfg: TransformerTrainConfig, is_verbose: bool = True, devices: list | None = None) -> Path:
    """Train (or resume) a transformer with JAX over a mesh of `devices` (default: cfg.device's,
    all hosts'); returns run_dir/final, a PyTorch transformer folder."""
    import orbax.checkpoint as ocp
    from tqdm.auto import tqdm

    from mini_t2i.config import save_config
    from mini_t2i.training import RunLog, progress, save_final
    from mini_t2i.transformer.data import load_run_data
    from mini_t2i.transformer_jax import sharding as sh
    from mini_t2i.transformer_jax.model import check_supported, init_params
    from mini_t2i.transformer_jax.step import init_state, jit_train_step, make_optimizer

    sh.init_multihost(cfg.multihost)
    devices = devices if devices is not None else select_devices(cfg.device)
    mesh = sh.make_mesh(devices)
    n_dev = len(devices)
    if cfg.batch_size % (cfg.grad_accum * n_dev) or cfg.batch_size % jax.process_count():
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by grad_accum x devices = "
                         f"{cfg.grad_accum} x {n_dev}: every micro-batch is split evenly over the devices")
    is_main = jax.process_index() == 0
    is_verbose = is_verbose and is_main
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    train_data, val_data, model_cfg = load_run_data(cfg)
    init_weights = None
    if cfg.init_from:  # fine-tune a saved PyTorch transformer; its preset wins over cfg.model
        from mini_t2i.transformer.model import load_matching_transformer
        from mini_t2i.transformer_jax.convert import flax_from_torch

        torch_model, model_cfg = load_matching_transformer(cfg.init_from, model_cfg)
        init_weights = flax_from_torch(torch_model.state_dict(), model_cfg)
        del torch_model
    check_supported(model_cfg)
    dtype = compute_dtype(cfg, devices)
    optimizer = make_optimizer(cfg)

    # Shapes first (nothing allocated), then every array created directly on its devices.
    abstract_params = jax.eval_shape(lambda: init_params(model_cfg, cfg.seed))
    abstract_state = jax.eval_shape(lambda p: init_state(p, optimizer), abstract_params)
    shardings = sh.state_shardings(abstract_state, mesh, cfg.parallel)
    manager = ocp.CheckpointManager((run_dir / "orbax").absolute(), options=ocp.CheckpointManagerOptions(
        max_to_keep=cfg.keep_checkpoints, create=True))
    start = manager.latest_step() if cfg.resume and manager.latest_step() is not None else 0
    if start:
        target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state,
                              shardings)
        state = manager.restore(start, args=ocp.args.StandardRestore(target))
    else:
        if init_weights is not None:
            params = jax.device_put(init_weights, shardings["params"])
        else:
            params = jax.jit(lambda: init_params(model_cfg, cfg.seed), out_shardings=shardings["params"])()
        state = jax.jit(lambda p: init_state(p, optimizer), out_shardings=shardings)(params)
    step_fn = jit_train_step(model_cfg, optimizer, cfg.text_loss_weight, dtype, shardings, sh.batch_sharding(mesh))

    log = RunLog(run_dir, start, is_main=is_main)
    if is_main:
        save_config(cfg, run_dir / "config.yaml")
        save_config(model_cfg, run_dir / "transformer.yaml")  # the layout, for export_checkpoint
        n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract_params))
        if is_verbose:
            print(f"train rows: {len(train_data)}, val rows: {len(val_data)}; model {model_cfg.preset} "
                  f"{model_cfg.shape}: {n_params / 1e6:.2f}M parameters; JAX on {n_dev} {devices[0].platform} "
                  f"device(s), {jax.process_count()} host(s), parallel={cfg.parallel}, {jnp.dtype(dtype).name} compute"
                  + (f"; resumed from step {start}" if start else ""))
    evaluator = _Evaluator(cfg, model_cfg, val_data, run_dir, log) if is_main else None

    tokens_per_row = model_cfg.sequence_length - 1
    bar = progress(cfg, start, "transformer (jax)", is_verbose)
    for step in bar:
        text, images = local_batch(cfg, train_data, step)
        state, metrics = step_fn(state, sh.global_batch(text, mesh), sh.global_batch(images, mesh))
        log.count(cfg.batch_size * tokens_per_row)
        done = step + 1
        if cfg.is_log_step(done):
            losses = {k: float(v) for k, v in metrics.items()}  # waits for the step: the rate is honest
            rate = log.write_train(done, cfg.learning_rate(step), losses, "tokens")
            bar.set_postfix(loss=f"{losses['image_loss']:.4f}", tok_s=f"{rate:.0f}")
        if cfg.is_checkpoint_step(done):
            manager.save(done, args=ocp.args.StandardSave(state))
        if cfg.is_eval_step(done):
            params = sh.fetch(state["params"])
            if is_main:
                evaluator(params, done, is_verbose)
    manager.wait_until_finished()
    manager.close()

    final = run_dir / "final"
    params = sh.fetch(state["params"])
    if is_main:
        from mini_t2i.transformer.model import save_transformer
        from mini_t2i.transformer_jax.convert import torch_model_from_flax

        metrics = evaluator(params, cfg.end_step, is_verbose)
        torch_model = torch_model_from_flax(params, model_cfg)
        save_final(run_dir, lambda folder: save_transformer(torch_model, model_cfg, folder, stage_config=cfg),
                   {"step": cfg.end_step, "split": "val", **metrics})
        log.close()
    return final


def export_checkpoint(run_dir: str | Path, out: str | Path, step: int | None = None) -> Path:
    """Write the orbax checkpoint of `step` (default: the latest) of a JAX run as a PyTorch
    transformer folder, e.g. to sample from a run that is still going or was stopped."""
    import orbax.checkpoint as ocp

    from mini_t2i.config import load_config
    from mini_t2i.transformer.config import TransformerConfig
    from mini_t2i.transformer_jax.convert import export_to_torch

    run_dir = Path(run_dir)
    if not (run_dir / "transformer.yaml").is_file() or not (run_dir / "orbax").is_dir():
        raise FileNotFoundError(f"{run_dir} is not a JAX training run (no transformer.yaml and orbax/ checkpoints)")
    cfg = load_config(TransformerTrainConfig, run_dir / "config.yaml")
    model_cfg = load_config(TransformerConfig, run_dir / "transformer.yaml")
    with ocp.CheckpointManager((run_dir / "orbax").absolute()) as manager:
        steps = manager.all_steps()
        step = steps[-1] if step is None and steps else step
        if step not in steps:
            raise FileNotFoundError(f"{run_dir}/orbax has no checkpoint of step {step}; it has {sorted(steps)}")
        # Restore on this host's CPU, unsharded: the checkpoint's own shapes, no target needed.
        state = manager.restore(step, args=ocp.args.StandardRestore())
    return export_to_torch(jax.tree.map(np.asarray, state["params"]), model_cfg, out, stage_config=cfg)


class _Evaluator:
    """Val loss, sample grid and checker accuracy, computed by the PyTorch model on this
    host's CPU from a copy of the parameters: the numbers the PyTorch trainer logs."""

    def __init__(self, cfg: TransformerTrainConfig, model_cfg, val_data, run_dir: Path, log):
        import torch

        from mini_t2i.transformer.evaluate import EvalSet

        self.model_cfg, self.run_dir, self.log = model_cfg, run_dir, log
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        self.eval_set = EvalSet.build(val_data, cfg, torch.device("cpu"))

    def __call__(self, params: dict, step: int, is_verbose: bool) -> dict:
        from tqdm.auto import tqdm

        from mini_t2i.transformer.evaluate import evaluate_during_training
        from mini_t2i.transformer_jax.convert import torch_model_from_flax

        model = torch_model_from_flax(params, self.model_cfg)
        metrics = evaluate_during_training(model, self.model_cfg, self.eval_set, self.run_dir, step)
        self.log.write({"step": step, "split": "val", **metrics})
        if is_verbose:
            tqdm.write(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        return metrics
