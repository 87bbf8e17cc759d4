"""The block-factorized transformer (image_order="blocks") in Flax, parameter for parameter
the PyTorch `BlockLlama` (mini_t2i/transformer/blocks.py, which explains the design):

    model: embed_tokens (vocab, d), layers_0.., norm     the main Llama: caption + one position per block
    depth: embed_tokens (codebook, d), layers_0.., norm  the depth Llama inside a block (no PAD row)
    head:  kernel (d, codebook)

The layers are layers.py's DecoderLayer, as model.py's, so both Flax models share every numeric choice
(RMSNorm in fp32, rotate-half RoPE, SwiGLU) with Llama.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from mini_t2i.text.special_ids import PAD_ID
from mini_t2i.transformer.config import INIT_STD, TransformerConfig
from mini_t2i.transformer_jax.layers import DecoderLayer, RMSNorm, _dense, _embedding_init


class LlamaStack(nn.Module):
    """An embedding table, layers and the final norm; __call__ runs (B, L, d) input embeddings."""
    vocab: int
    layers: int
    hidden: int
    heads: int
    rope_theta: float
    dtype: jnp.dtype
    pad_row: bool  # the main table's PAD row is zero at init and never trained (torch's padding_idx)

    def setup(self):
        init = _embedding_init if self.pad_row else nn.initializers.normal(INIT_STD)
        self.embed_tokens = nn.Embed(self.vocab, self.hidden, dtype=self.dtype, param_dtype=jnp.float32,
                                     embedding_init=init)
        self.blocks = [DecoderLayer(self.hidden, self.heads, self.rope_theta, self.dtype, name=f"layers_{i}")
                       for i in range(self.layers)]
        self.norm = RMSNorm(self.dtype)

    def embed(self, ids):  # (B, ...) -> (B, ..., d)
        x = self.embed_tokens(ids)
        if self.pad_row:
            x = jnp.where((ids == PAD_ID)[..., None], jax.lax.stop_gradient(x), x)
        return x

    def __call__(self, x):  # (B, L, d) -> (B, L, d)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class FlaxBlockTransformer(nn.Module):
    """__call__(text_ids (B, text_len), codes (B, h*w) in sequence order) -> fp32 logits
    (B, h*w, codebook), position i predicting code i, as BlockLlama.forward."""
    cfg: TransformerConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        layers, hidden, heads = self.cfg.shape
        theta = self.cfg.rope_theta
        self.model = LlamaStack(self.cfg.vocab_size, layers, hidden, heads, theta, self.dtype, True)
        self.depth = LlamaStack(self.cfg.codebook_size, self.cfg.depth_layers, hidden, heads, theta, self.dtype, False)
        self.head = _dense(self.cfg.codebook_size, self.dtype, "head")

    def __call__(self, text_ids, codes):
        cfg = self.cfg
        batch, k2 = text_ids.shape[0], cfg.block_len
        blocks = codes.reshape(batch, -1, k2)  # (B, nb, k*k)
        places = jnp.arange(k2, dtype=blocks.dtype) * cfg.codebook_size
        block_inputs = self.model.embed(blocks[:, :-1] + places + cfg.image_offset).sum(axis=-2)  # (B, nb-1, d)
        x = jnp.concatenate([self.model.embed(text_ids), block_inputs], axis=1)
        h = self.model(x)[:, cfg.text_len - 1:]  # (B, nb, d)
        inner = jnp.concatenate([h[:, :, None], self.depth.embed(blocks[:, :, :-1]).astype(h.dtype)], axis=2)
        out = self.depth(inner.reshape(-1, k2, inner.shape[-1]))  # (B*nb, k*k, d)
        return self.head(out).astype(jnp.float32).reshape(batch, -1, cfg.codebook_size)


def block_order(cfg: TransformerConfig) -> jax.Array:
    """(h*w,) the raster index of each sequence position (blocks.sequence_order, as a jax array)."""
    from mini_t2i.transformer.blocks import sequence_order

    return jnp.asarray(sequence_order(cfg).numpy())


def init_block_params(cfg: TransformerConfig, seed: int = 0) -> dict:
    text = jnp.zeros((1, cfg.text_len), jnp.int32)
    codes = jnp.zeros((1, cfg.image_len), jnp.int32)
    return jax.jit(lambda key: FlaxBlockTransformer(cfg).init(key, text, codes)["params"])(jax.random.PRNGKey(seed))


def compute_block_loss(params: dict, cfg: TransformerConfig, text_ids, image_tokens, text_loss_weight: float = 0.0,
                       dtype=jnp.float32) -> tuple[jax.Array, dict]:
    """The loss of mini_t2i.transformer.blocks.compute_block_loss: image tokens (B, h*w, raster)
    reordered into blocks, cross-entropy of every code."""
    import optax

    if text_loss_weight > 0:
        raise ValueError("text_loss_weight > 0 needs image_order=raster: the block model does not predict captions")
    codes = image_tokens[:, block_order(cfg)]
    logits = FlaxBlockTransformer(cfg, dtype).apply({"params": params}, text_ids, codes.astype(text_ids.dtype))
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, codes).mean()
    return loss, {"image_loss": loss}
