"""The Flax block-factorized transformer is the PyTorch BlockLlama: same logits, loss and
gradients on the same weights; the converter maps it both ways (the trainer on blocks:
test_jax_train.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from mini_t2i.transformer.blocks import to_sequence_order
from mini_t2i.transformer.config import TransformerConfig
from mini_t2i.transformer.model import build_model, compute_loss
from mini_t2i.transformer_jax.blocks import FlaxBlockTransformer
from mini_t2i.transformer_jax.convert import flax_from_torch, torch_from_flax
from mini_t2i.transformer_jax.model import compute_loss as jax_loss, init_params

# 3 main layers, 2 depth layers, head_dim 32, a non-default RoPE base, 2x2 blocks of a 4x4 grid.
ODD = TransformerConfig(preset="tiny", num_layers=3, hidden_size=96, num_heads=3, rope_theta=500.0,
                        image_order="blocks", depth_layers=2).with_layout(436, 24, 64, 4)


@pytest.fixture(scope="module")
def torch_and_flax():
    model = build_model(ODD, seed=0).eval()
    return model, flax_from_torch(model.state_dict(), ODD)


def _batch(seed: int):
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(4, 436, (3, ODD.text_len), generator=g)
    text[:, 9:] = 0  # padded captions, as the tokenizer writes them
    return text, torch.randint(0, 64, (3, ODD.image_len), generator=g)


def test_logits_and_loss_match_pytorch(torch_and_flax):
    model, params = torch_and_flax
    text, images = _batch(0)
    codes = to_sequence_order(ODD, images)
    with torch.no_grad():
        expected = model(text, codes).numpy()  # (3, 16, 64)
        loss, _ = compute_loss(model, ODD, text, images)
    got = np.asarray(FlaxBlockTransformer(ODD).apply({"params": params}, jnp.asarray(text.numpy()),
                                                     jnp.asarray(codes.numpy())))
    # two fp32 implementations, 3 + 2 layers of K <= 384 reductions on logits <= 0.5; measured 1.9e-7
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    got_loss, metrics = jax_loss(params, ODD, jnp.asarray(text.numpy()), jnp.asarray(images.numpy()))
    # fp32 log-softmax means of a loss ~4.2 (ulp 4.8e-7): 1e-5 is 20 ulp
    assert float(got_loss) == pytest.approx(loss.item(), abs=1e-5) == float(metrics["image_loss"])


def test_gradients_match_pytorch_and_only_the_caption_pad_is_frozen(torch_and_flax):
    model, params = torch_and_flax
    model.zero_grad()
    text, images = _batch(1)
    compute_loss(model, ODD, text, images)[0].backward()
    grads = torch_from_flax(jax.grad(lambda p: jax_loss(p, ODD, jnp.asarray(text.numpy()),
                                                        jnp.asarray(images.numpy()))[0])(params), ODD)
    # as the raster model's gradient test: fp32 sums of small gradients, measured 1.8e-7 there
    for name, p in model.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, atol=1e-6, rtol=1e-4)
    assert not grads["model.embed_tokens.weight"][0].any()  # the caption's PAD, as torch's padding_idx
    assert init_params(ODD)["depth"]["embed_tokens"]["embedding"][0].any()  # code 0 is a code like others
    model.zero_grad()


def test_the_converter_maps_both_ways_exactly(torch_and_flax):
    model, _ = torch_and_flax
    params = init_params(ODD, seed=3)
    state = torch_from_flax(params, ODD)
    assert set(state) == set(model.state_dict())
    back = flax_from_torch(state, ODD)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(back)):
        np.testing.assert_array_equal(np.asarray(a), b)
