"""The optimizer and the pure, jitted train step of the JAX trainer.

The optimizer is the PyTorch trainer's, term for term: global-norm clipping, then AdamW
(beta1 0.9, beta2 from the config, epsilon 1e-8, decoupled weight decay on matrices and
embeddings only), with the learning rate of `mini_t2i.training.warmup_cosine`. One call of
the step is one optimizer step over `grad_accum` micro-batches (a `lax.scan`, gradients
averaged), so the batch of a step is the same rows the PyTorch trainer sees.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import optax

from mini_t2i.transformer.config import TransformerConfig
from mini_t2i.transformer_jax.model import compute_loss


def lr_schedule(cfg) -> optax.Schedule:
    """warmup_cosine as a jnp function of the 0-based optimizer step."""
    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        warm = cfg.lr * (step + 1) / cfg.warmup_steps
        progress = jnp.minimum(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
        cosine = cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + jnp.cos(jnp.pi * progress)))
        return jnp.where(step < cfg.warmup_steps, warm, cosine)
    return schedule


def make_optimizer(cfg) -> optax.GradientTransformation:
    """clip_by_global_norm(grad_clip) then AdamW; weight decay where a parameter has >= 2 dims."""
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)  # noqa: E731
    adamw = optax.adamw(lr_schedule(cfg), b1=0.9, b2=cfg.beta2, eps=1e-8, weight_decay=cfg.weight_decay,
                        mask=decay_mask)
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), adamw) if cfg.grad_clip > 0 else adamw


def init_state(params: dict, optimizer: optax.GradientTransformation) -> dict:
    """The train state: {"step": int32, "params": fp32 tree, "opt_state": optax state}."""
    return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": optimizer.init(params)}


def train_step(state: dict, text_ids, image_tokens, *, model_cfg: TransformerConfig, optimizer,
               text_loss_weight: float, dtype) -> tuple[dict, dict]:
    """One optimizer step. text_ids (A, b, text_len), image_tokens (A, b, h*w): A micro-batches.
    Returns (new state, {"loss", "image_loss", ["text_loss"], "grad_norm"}) as scalars."""
    def grads_of(batch):
        text, images = batch
        (loss, metrics), grads = jax.value_and_grad(compute_loss, has_aux=True)(
            state["params"], model_cfg, text, images, text_loss_weight, dtype)
        return grads, {"loss": loss, **metrics}

    def accumulate(total, batch):
        grads, metrics = grads_of(batch)
        return jax.tree.map(jnp.add, total, grads), metrics

    accum = text_ids.shape[0]
    if accum == 1:
        grads, metrics = grads_of((text_ids[0], image_tokens[0]))
    else:
        zeros = jax.tree.map(jnp.zeros_like, state["params"])
        grads, metrics = jax.lax.scan(accumulate, zeros, (text_ids, image_tokens))
        grads = jax.tree.map(lambda g: g / accum, grads)
        metrics = jax.tree.map(jnp.mean, metrics)
    updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    metrics["grad_norm"] = optax.tree.norm(grads)  # before clipping, as torch's clip_grad_norm_ returns
    return {"step": state["step"] + 1, "params": params, "opt_state": opt_state}, metrics


def jit_train_step(model_cfg: TransformerConfig, optimizer, text_loss_weight: float, dtype, shardings, batch_sharding):
    """train_step compiled for the mesh: the state stays where `shardings` puts it (and is
    donated, so it is updated in place), batches arrive split over devices."""
    step = partial(train_step, model_cfg=model_cfg, optimizer=optimizer, text_loss_weight=text_loss_weight,
                   dtype=dtype)
    return jax.jit(step, in_shardings=(shardings, batch_sharding, batch_sharding),
                   out_shardings=(shardings, None), donate_argnums=0)

