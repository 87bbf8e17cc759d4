"""The stage-2 transformer in Flax (linen), parameter for parameter the PyTorch one.

The PyTorch model is transformers' `LlamaForCausalLM` (mini_t2i/transformer/model.py);
this is the same network, written out so JAX can train it:

    ids (B, L) -> embed_tokens -> layers_0..layers_{n-1} -> norm -> lm_head -> logits (B, keep, vocab)
    layer:  h = x + self_attn(input_layernorm(x));  out = h + mlp(post_attention_layernorm(h))

matching Llama exactly: RMSNorm in fp32 with epsilon 1e-6 and the weight applied after the
cast back, RoPE in the "rotate half" convention (the two halves of each head, not
interleaved pairs), full multi-head attention (no grouped KV heads), SwiGLU MLP
down(silu(gate(x)) * up(x)) at 8/3 x hidden rounded to 32, no biases, untied embeddings,
and the PAD row of the embedding (id 0, torch's `padding_idx`) zero at init and never
given a gradient (captions are padded to a fixed length, so PAD is the most common input).
Module names mirror the PyTorch keys (convert.py maps one to the other).

Parameters are fp32 (master weights); `dtype` is the compute dtype (bf16 on accelerators):
matmuls run in it while norms, softmax and the loss stay fp32.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from mini_t2i.text.special_ids import PAD_ID  # LlamaConfig.pad_token_id: nn.Embedding's padding_idx
from mini_t2i.transformer.config import TransformerConfig
from mini_t2i.transformer_jax.layers import DecoderLayer, RMSNorm, _dense, _embedding_init


class FlaxTransformer(nn.Module):
    """The stage-2 transformer. __call__(ids (B, L), keep) -> fp32 logits (B, keep, vocab) of
    the last `keep` positions (0 = all): training needs only the image positions'."""
    cfg: TransformerConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, ids, keep: int = 0):
        layers, hidden, heads = self.cfg.shape
        x = nn.Embed(self.cfg.vocab_size, hidden, dtype=self.dtype, param_dtype=jnp.float32,
                     embedding_init=_embedding_init, name="embed_tokens")(ids)  # (B, L, d)
        # padding_idx: the PAD row passes its value but takes no gradient.
        x = jnp.where((ids == PAD_ID)[..., None], jax.lax.stop_gradient(x), x)
        for i in range(layers):
            x = DecoderLayer(hidden, heads, self.cfg.rope_theta, self.dtype, name=f"layers_{i}")(x)
        x = RMSNorm(self.dtype, name="norm")(x)
        if keep:
            x = x[:, -keep:]
        return _dense(self.cfg.vocab_size, self.dtype, "lm_head")(x).astype(jnp.float32)  # (B, keep, vocab)


def check_supported(cfg: TransformerConfig) -> None:
    cfg.check_layout()
    if cfg.dropout:
        raise ValueError(f"model.dropout={cfg.dropout}: the JAX backend trains without attention dropout; "
                         "set model.dropout=0 or use the PyTorch backend")
    if cfg.image_positions != "rope":
        raise ValueError(f"model.image_positions={cfg.image_positions!r} is a PyTorch-only bake-off variant so far; "
                         "use the PyTorch backend or model.image_positions=rope")


def init_params(cfg: TransformerConfig, seed: int = 0) -> dict:
    """Fresh fp32 parameters {name: ...} (normal(0.02) matrices, unit norms, as Llama initialises)."""
    check_supported(cfg)
    if cfg.image_order == "blocks":
        from mini_t2i.transformer_jax.blocks import init_block_params

        return init_block_params(cfg, seed)
    ids = jnp.zeros((1, cfg.sequence_length - 1), jnp.int32)
    # jitted: one compiled init instead of hundreds of small eager ops (seconds on a CPU)
    return jax.jit(lambda key: FlaxTransformer(cfg).init(key, ids, 1)["params"])(jax.random.PRNGKey(seed))


def compute_loss(params: dict, cfg: TransformerConfig, text_ids, image_tokens, text_loss_weight: float = 0.0,
                 dtype=jnp.float32) -> tuple[jax.Array, dict]:
    """The training loss, as mini_t2i.transformer.model.compute_loss computes it: image-token
    cross-entropy over the image part of the vocabulary, plus text_loss_weight x the caption's.
    text_ids (B, text_len), image_tokens (B, h*w) codes. Returns (loss, {"image_loss", ["text_loss"]})."""
    import optax

    if cfg.image_order == "blocks":
        from mini_t2i.transformer_jax.blocks import compute_block_loss

        return compute_block_loss(params, cfg, text_ids, image_tokens, text_loss_weight, dtype)
    ids = jnp.concatenate([text_ids, image_tokens.astype(text_ids.dtype) + cfg.image_offset], axis=1)  # (B, L)
    inputs = ids[:, :-1]  # position i predicts token i+1
    n_image = image_tokens.shape[1]
    keep = inputs.shape[1] if text_loss_weight > 0 else n_image
    logits = FlaxTransformer(cfg, dtype).apply({"params": params}, inputs, keep)  # (B, keep, vocab) fp32
    image_part = logits[:, -n_image:, cfg.image_offset:cfg.image_offset + cfg.codebook_size]  # (B, h*w, codes)
    image_loss = optax.softmax_cross_entropy_with_integer_labels(image_part, image_tokens).mean()
    metrics = {"image_loss": image_loss}
    loss = image_loss
    if text_loss_weight > 0:
        text_part = logits[:, :cfg.text_len - 1, :cfg.text_vocab_size]  # predicts text ids 1..text_len-1
        targets = text_ids[:, 1:]
        mask = (targets != 0).astype(jnp.float32)  # PAD = 0 is not a target, as ignore_index in torch
        per_token = optax.softmax_cross_entropy_with_integer_labels(text_part, targets)
        text_loss = (per_token * mask).sum() / jnp.maximum(mask.sum(), 1.0)
        metrics["text_loss"] = text_loss
        loss = loss + text_loss_weight * text_loss
    return loss, metrics
