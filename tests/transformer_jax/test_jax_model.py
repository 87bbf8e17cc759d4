"""The Flax transformer is the PyTorch one: same logits, same loss, on the same weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from mini_t2i.transformer.config import TransformerConfig
from mini_t2i.transformer.model import build_model, compute_loss
from mini_t2i.transformer_jax.convert import flax_from_torch
from mini_t2i.transformer_jax.model import FlaxTransformer, compute_loss as jax_loss, init_params

# An odd shape on purpose: 3 layers, head_dim 32, a non-default RoPE base.
ODD = TransformerConfig(preset="tiny", num_layers=3, hidden_size=96, num_heads=3, rope_theta=500.0).with_layout(
    436, 24, 64, 4)


@pytest.fixture(scope="module")
def torch_and_flax():
    model = build_model(ODD, seed=0).eval()
    return model, flax_from_torch(model.state_dict(), ODD)


def test_logits_match_pytorch_on_the_same_weights(torch_and_flax):
    model, params = torch_and_flax
    ids = torch.randint(0, ODD.vocab_size, (3, ODD.sequence_length - 1), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(input_ids=ids).logits.numpy()  # (3, 39, vocab)
    got = np.asarray(FlaxTransformer(ODD).apply({"params": params}, jnp.asarray(ids.numpy())))
    assert got.shape == expected.shape
    # two fp32 implementations, 3 layers of K<=384 reductions on logits <= 0.8; measured 4.3e-7 (1 and 2 threads)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    kept = np.asarray(FlaxTransformer(ODD).apply({"params": params}, jnp.asarray(ids.numpy()), 16))
    # lm_head on 16 rows vs 39 (other matmul blocking): <= K*u*sum|x*W| = 96 x 6e-8 x 1.2 = 7e-6; measured 2.4e-7
    np.testing.assert_allclose(kept, got[:, -16:], atol=1e-5)


def test_loss_with_text_loss_matches_pytorch(torch_and_flax, tokenizer):
    model, params = torch_and_flax
    text = tokenizer.encode(["a red circle", "two blue squares left of a green star"])
    images = torch.randint(0, ODD.codebook_size, (2, ODD.image_len), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        loss, metrics = compute_loss(model, ODD, text, images, text_loss_weight=0.125)
    got, got_metrics = jax_loss(params, ODD, jnp.asarray(text.numpy()), jnp.asarray(images.numpy()), 0.125)
    # fp32 log-softmax means of a loss ~4.9 (ulp 4.8e-7): 1e-5 is 20 ulp; measured 0.0
    assert float(got) == pytest.approx(loss.item(), abs=1e-5)
    assert float(got_metrics["text_loss"]) == pytest.approx(metrics["text_loss"], abs=1e-5)
    assert float(got_metrics["image_loss"]) == pytest.approx(metrics["image_loss"], abs=1e-5)


def test_the_model_is_causal():
    params = init_params(ODD, seed=1)
    ids = jax.random.randint(jax.random.PRNGKey(0), (1, 30), 0, ODD.vocab_size)
    changed = ids.at[0, 20].set((ids[0, 20] + 1) % ODD.vocab_size)
    apply = jax.jit(FlaxTransformer(ODD).apply)
    a, b = apply({"params": params}, ids), apply({"params": params}, changed)
    np.testing.assert_array_equal(np.asarray(a[:, :20]), np.asarray(b[:, :20]))  # the past cannot see position 20
    assert not np.allclose(np.asarray(a[:, 20:]), np.asarray(b[:, 20:]))  # measured a 0.45 change


def test_bf16_compute_keeps_fp32_weights_and_gradients(torch_and_flax):
    _, params = torch_and_flax
    ids = jnp.arange(2 * ODD.sequence_length).reshape(2, -1) % ODD.text_vocab_size
    text, images = ids[:, :ODD.text_len], ids[:, ODD.text_len:ODD.text_len + ODD.image_len] % ODD.codebook_size
    fp32 = jax.jit(lambda p: jax_loss(p, ODD, text, images)[0])(params)
    (bf16, _), grads = jax.jit(jax.value_and_grad(lambda p: jax_loss(p, ODD, text, images, 0.0, jnp.bfloat16),
                                                  has_aux=True))(params)
    # bf16's 2^-8 relative rounding of a loss ~4.2 is 1.6e-2 per op; measured 5.9e-5; a broken cast gives O(1)
    assert bf16.dtype == jnp.float32 and abs(float(bf16) - float(fp32)) < 0.05
    assert {g.dtype for g in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}


def test_dropout_is_refused_with_the_fix():
    from mini_t2i.transformer_jax.model import check_supported

    with pytest.raises(ValueError, match="model.dropout=0"):
        check_supported(TransformerConfig(preset="tiny", dropout=0.1).with_layout(436, 24, 64, 4))


def test_gradients_match_pytorch_and_pad_takes_none(torch_and_flax, tokenizer):
    """Padded captions: torch's embedding has padding_idx=0, so row 0 gets no gradient."""
    model, params = torch_and_flax
    model.zero_grad()
    text = tokenizer.encode(["a red circle", "three green stars above a white square"])  # mostly PAD
    images = torch.randint(0, ODD.codebook_size, (2, ODD.image_len), generator=torch.Generator().manual_seed(2))
    compute_loss(model, ODD, text, images)[0].backward()
    grads = jax.grad(lambda p: jax_loss(p, ODD, jnp.asarray(text.numpy()), jnp.asarray(images.numpy()))[0])(params)
    from mini_t2i.transformer_jax.convert import torch_from_flax

    got = torch_from_flax(grads, ODD)
    # fp32 sums over ~80 tokens of grads <= 0.35: sqrt(K) x 6e-8 x 0.35 = 2e-7; measured 1.8e-7, max 0.08 of the
    # tolerance (cancelling entries reach rel 2.5e-4, inside atol)
    for name, p in model.named_parameters():
        torch.testing.assert_close(got[name], p.grad, atol=1e-6, rtol=1e-4)
    assert not got["model.embed_tokens.weight"][0].any()
    assert not init_params(ODD)["embed_tokens"]["embedding"][0].any()  # and it starts at zero
