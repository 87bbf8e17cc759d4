"""decode_weights="fp16" / "int8" (/ "fused"): smaller weights in the fast decoder (quantize.py)."""

import dataclasses

import pytest
import torch

from mini_t2i.transformer.fused import fused_available
from mini_t2i.transformer.model import build_model
from mini_t2i.transformer.quantize import Fp16Linear, Int8Linear, linear_of
from mini_t2i.transformer.sampler import sample_image_tokens

from conftest import captions, design_and_codes, stepped_logits

# Relative error bounds of one matmul (output norm), measured on random weights and inputs:
# int8 ~0.010-0.011 (weights and activations rounded to 8 bits), fp16 ~3e-4. Of the decoders'
# logits: fused 3.0-3.2e-4 on the tiny model (fp16 weights and KV cache; fbgemm's fp16 2.8-2.9e-4).
INT8_ERROR, FP16_ERROR, FUSED_ERROR = 0.02, 2e-3, 2e-3


@pytest.mark.parametrize("kind,bound", [(Int8Linear, INT8_ERROR), (Fp16Linear, FP16_ERROR)])
def test_packed_matmuls_are_close_to_fp32_and_each_row_is_independent_of_the_batch(kind, bound):
    g = torch.Generator().manual_seed(0)
    w, x = torch.randn(96, 64, generator=g) * 0.05, torch.randn(5, 7, 64, generator=g)
    lin = kind(w)
    y, ref = lin(x), x @ w.T
    assert y.shape == (5, 7, 96) and y.dtype == torch.float32
    assert ((y - ref).norm() / ref.norm()).item() < bound
    # A row's output does not depend on the rows beside it (a seed's image is the same alone or
    # in a batch, guided or not). int8: bit for bit by construction (per-row scales, exact int32
    # sums), on every CPU. fp16: measured bit for bit on AMD EPYC, but fbgemm may pick another
    # kernel per row count on other CPUs, so only fp32 rounding of the sums is allowed there.
    for i in range(5):
        if kind is Int8Linear:
            assert torch.equal(lin(x[i:i + 1]), y[i:i + 1])
        else:
            torch.testing.assert_close(lin(x[i:i + 1]), y[i:i + 1], rtol=1e-5, atol=1e-6)


def test_a_packed_copy_is_made_once_and_again_after_the_weight_changes():
    w = torch.nn.Parameter(torch.randn(32, 16))
    first = linear_of(w, weights_as="int8")
    assert linear_of(w, weights_as="int8") is first
    assert linear_of(w, rows=slice(0, 8), weights_as="int8") is not first  # another slice, another copy
    with torch.no_grad():
        w.mul_(2)  # an optimizer step, say
    second = linear_of(w, weights_as="int8")
    assert second is not first
    x = torch.randn(3, 16)
    assert torch.allclose(second(x), 2 * first(x), rtol=0.05, atol=1e-3)
    with pytest.raises(ValueError, match="decode_weights='int4'.*fp32, fp16, int8"):
        linear_of(w, weights_as="int4")


@pytest.mark.parametrize("image_order", ["raster", "blocks"])
def test_decoders_with_small_weights_follow_the_fp32_logits(small_layout, tokenizer, image_order):
    cfg, model, ids, steps = design_and_codes(small_layout, tokenizer, image_order, 6)
    bounds = {"fp16": FP16_ERROR, "int8": 4 * INT8_ERROR}  # errors add up over the layers
    if fused_available()[0]:
        bounds["fused"] = FUSED_ERROR
    ref = stepped_logits(model, cfg, ids, steps, "fp32")  # (7, 3, V)
    for weights, bound in bounds.items():
        logits = stepped_logits(model, cfg, ids, steps, weights)
        assert ((logits - ref).norm() / ref.norm()).item() < bound, weights


@pytest.mark.parametrize("weights", ["int8", "fused"])
@pytest.mark.parametrize("image_order", ["raster", "blocks"])
def test_exact_formats_give_each_seed_the_same_image_whatever_the_batch(small_layout, tokenizer, image_order, weights):
    # int8 (per-row scales, exact integer sums) and fused (the same FMAs per row at any batch) keep
    # rows apart bit for bit; fused's identical prefill rows (the empty captions) run once.
    if weights == "fused" and not fused_available()[0]:
        pytest.skip(fused_available()[1])
    cfg = dataclasses.replace(small_layout, image_order=image_order)
    model = build_model(cfg, seed=0).eval()
    ids, seeds = captions(tokenizer, 4), [5, 6, 7, 8]
    batch = sample_image_tokens(model, cfg, ids, seeds, guidance_scale=2.0, top_k=16, decode_weights=weights)
    for i in (0, 3):
        alone = sample_image_tokens(model, cfg, ids[i:i + 1], seeds[i:i + 1], guidance_scale=2.0, top_k=16,
                                    decode_weights=weights)
        assert torch.equal(alone[0], batch[i])
    with pytest.raises(ValueError, match="use_cache=True"):
        sample_image_tokens(model, cfg, ids[:1], [0], use_cache=False, decode_weights=weights)


def test_auto_decode_weights_follow_the_cpu_flags():
    from mini_t2i.transformer.quantize import auto_decode_weights, cpu_has_int8_dot

    zen3 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma bmi2\n"  # AVX2 only: no int8 dot products
    zen4 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16\n"
    sapphire = "processor\t: 0\nflags\t\t: avx2 avx512f amx_bf16 amx_tile amx_int8\n"
    assert not cpu_has_int8_dot(zen3) and cpu_has_int8_dot(zen4) and cpu_has_int8_dot(sapphire)
    assert not cpu_has_int8_dot("no flags line at all")
    assert auto_decode_weights("cpu", zen3, fused=False) == "fp16"
    assert auto_decode_weights("cpu", zen4, fused=False) == auto_decode_weights("cpu", sapphire, fused=False) == "int8"
    assert auto_decode_weights("cpu", zen3, fused=True) == auto_decode_weights("cpu", zen4, fused=True) == "fused"
    assert auto_decode_weights("cuda", zen4, fused=True) == "fp32"  # the packed copies are CPU kernels


def test_few_rows_linear_is_f_linear_at_every_row_count():
    from mini_t2i.transformer.quantize import FewRowsLinear, cpu_is_avx2_only

    w = torch.randn(48, 32)
    lin = FewRowsLinear(w)
    for rows in (1, 2, 3, 4, 9):  # both layouts: <= FEW_ROWS through w_t, more through w
        x = torch.randn(rows, 1, 32)
        # fp32 sums of 32 products in another order: measured 5e-7 here
        torch.testing.assert_close(lin(x), torch.nn.functional.linear(x, w), rtol=0, atol=1e-5)
    assert cpu_is_avx2_only("flags\t: sse2 avx2 fma\n") and not cpu_is_avx2_only("flags\t: avx2 avx512f\n")
    assert not cpu_is_avx2_only("flags\t: neon asimd\n")  # an Arm CPU keeps F.linear
