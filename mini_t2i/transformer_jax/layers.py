"""The Llama layers in Flax (linen), shared by the raster model (model.py) and the block
model (blocks.py): RMSNorm in fp32 with epsilon 1e-6 and the weight applied after the cast
back, rotate-half RoPE, full multi-head attention, SwiGLU at mlp_width, no biases, normal(0.02)
initialisation and the embedding's zero PAD row, exactly as transformers' Llama has them."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from mini_t2i.text.special_ids import PAD_ID  # LlamaConfig.pad_token_id: nn.Embedding's padding_idx
from mini_t2i.transformer.config import INIT_STD, RMS_NORM_EPS, mlp_width


def _embedding_init(key, shape, dtype=jnp.float32):
    """normal(0.02) with the PAD row zero, as torch initialises an embedding with padding_idx."""
    return nn.initializers.normal(INIT_STD)(key, shape, dtype).at[PAD_ID].set(0.0)


class RMSNorm(nn.Module):
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):  # (..., d)
        weight = self.param("weight", nn.initializers.ones, (x.shape[-1],), jnp.float32)
        x32 = x.astype(jnp.float32)
        x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + RMS_NORM_EPS)
        return (weight * x32.astype(self.dtype)).astype(self.dtype)


def rope_tables(length: int, head_dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
    """cos, sin (length, head_dim), fp32: frequency i repeats at i and i + head_dim/2."""
    inv_freq = 1.0 / theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)  # (head_dim/2,)
    freqs = jnp.arange(length, dtype=jnp.float32)[:, None] * inv_freq[None, :]  # (L, head_dim/2)
    angles = jnp.concatenate([freqs, freqs], axis=-1)  # (L, head_dim)
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x, cos, sin):
    """x (B, L, H, D) rotated by position: x cos + rotate_half(x) sin, rotate_half(a, b) = (-b, a)."""
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    cos, sin = cos[None, :, None, :].astype(x.dtype), sin[None, :, None, :].astype(x.dtype)
    return x * cos + rotated * sin


def _dense(features: int, dtype, name: str) -> nn.Dense:
    return nn.Dense(features, use_bias=False, dtype=dtype, param_dtype=jnp.float32,
                    kernel_init=nn.initializers.normal(INIT_STD), name=name)


class Attention(nn.Module):
    hidden: int
    heads: int
    rope_theta: float
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x):  # (B, L, d) -> (B, L, d)
        b, length, _ = x.shape
        head_dim = self.hidden // self.heads
        q, k, v = (_dense(self.hidden, self.dtype, n)(x).reshape(b, length, self.heads, head_dim)
                   for n in ("q_proj", "k_proj", "v_proj"))  # each (B, L, H, D)
        cos, sin = rope_tables(length, head_dim, self.rope_theta)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        # Causal softmax(q k^T / sqrt(D)) v; XLA's implementation (cuDNN/TPU kernels where they apply).
        out = jax.nn.dot_product_attention(q, k, v, is_causal=True)  # (B, L, H, D)
        return _dense(self.hidden, self.dtype, "o_proj")(out.reshape(b, length, self.hidden))


class MLP(nn.Module):
    hidden: int
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x):  # (B, L, d) -> (B, L, d)
        inner = mlp_width(self.hidden)
        gate = _dense(inner, self.dtype, "gate_proj")(x)
        up = _dense(inner, self.dtype, "up_proj")(x)
        return _dense(self.hidden, self.dtype, "down_proj")(nn.silu(gate) * up)


class DecoderLayer(nn.Module):
    hidden: int
    heads: int
    rope_theta: float
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x):  # (B, L, d)
        h = x + Attention(self.hidden, self.heads, self.rope_theta, self.dtype, name="self_attn")(
            RMSNorm(self.dtype, name="input_layernorm")(x))
        return h + MLP(self.hidden, self.dtype, name="mlp")(RMSNorm(self.dtype, name="post_attention_layernorm")(h))
