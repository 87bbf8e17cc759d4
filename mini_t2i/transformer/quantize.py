"""Smaller weights for the decode path: the same matmuls reading half or a quarter of the bytes.

A decode step at batch 1-8 is bound by reading the weights (decoder.py), so reading fewer
bytes is the lever that llama.cpp-style CPU decoders pull. `linear_of(..., weights=)` gives
the decoder one of three matmuls for a (out, in) weight:

- "fp32": `F.linear` over the model's own tensor (MKL/oneDNN);
- "fp16": fbgemm's fp16-weight GEMM (`torch.ops.quantized.linear_dynamic_fp16`): weights
  stored in half precision, activations and sums in fp32;
- "int8": weights quantized once per output channel, symmetric, w ~= s_w[o] * q[o, i] with
  q in [-127, 127]; activations quantized per row the same way at every call; an int8 x int8
  matmul with exact int32 sums (`torch._int_mm`), rescaled by s_x[row] * s_w[o]. Per-row
  activation scales and exact integer sums make every row's result independent of the
  other rows of the batch, bit for bit: a seed gives the same image alone or in a batch of 8,
  guided or not. (fbgemm's dynamic int8 linear scales the whole batch at once, which ties
  each image to its batch-mates; `torch._weight_int8pack_mm` was slower here.)

Measured speeds and the quality check are in docs/speed.md. The packed copies are made on
first use and kept per weight tensor (weakly, so they go with the model); a weight changed
in place since (its version counter moved) is packed again, so a model sampled during
training never decodes with stale weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DECODE_WEIGHTS = ("fp32", "fp16", "int8")

_CACHE_ATTRIBUTE = "_mini_t2i_packed"  # the packed copies live on the weight tensor itself


def check_decode_weights(weights: str) -> str:
    if weights not in DECODE_WEIGHTS:
        raise ValueError(f"decode_weights={weights!r}: choose one of {', '.join(DECODE_WEIGHTS)}")
    return weights


class Int8Linear:
    """x (..., in) float -> (..., out) fp32, about x @ w.T with w (out, in) in int8 (module doc);
    the error is the 8-bit rounding of weights and activations, ~1 % of the output's norm."""

    def __init__(self, weight: torch.Tensor) -> None:
        w = weight.detach().float().cpu()
        self.scale = (w.abs().amax(dim=1) / 127).clamp_min(1e-12)  # (out,); a zero row stays zero
        self.q_t = torch.round(w / self.scale[:, None]).clamp(-127, 127).to(torch.int8).t().contiguous()  # (in, out)
        self.in_features = w.shape[1]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        lead, x = x.shape[:-1], x.reshape(-1, self.in_features).float()
        x_scale = (x.abs().amax(dim=1, keepdim=True) / 127).clamp_min(1e-12)  # (M, 1) per row
        x_q = torch.round(x / x_scale).to(torch.int8)  # |x / x_scale| <= 127 by construction
        y = torch._int_mm(x_q, self.q_t).float() * x_scale * self.scale  # (M, out), exact int32 sums
        return y.view(*lead, -1)


class Fp16Linear:
    """x (..., in) float -> (..., out) fp32 through fbgemm's fp16-weight GEMM."""

    def __init__(self, weight: torch.Tensor) -> None:
        self.packed = torch.ops.quantized.linear_prepack_fp16(weight.detach().float().cpu().contiguous(), None)
        self.in_features = weight.shape[1]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        y = torch.ops.quantized.linear_dynamic_fp16(x.reshape(-1, self.in_features).float().contiguous(), self.packed)
        return y.view(*lead, -1)


def packed_linear(*weights: torch.Tensor, rows: slice = slice(None), weights_as: str = "int8"):
    """The packed copy (Int8Linear or Fp16Linear) of `weights` stacked along the output
    dimension (one matrix, or q|k|v as one), output rows `rows` of it; made once and reused
    while none of the weights has changed."""
    key = weights[0]
    stamp = (weights_as, tuple(w._version for w in weights), len(weights), rows.start, rows.stop)
    cache = getattr(key, _CACHE_ATTRIBUTE, None)
    if cache is None:
        cache = {}
        setattr(key, _CACHE_ATTRIBUTE, cache)
    if stamp not in cache:
        if key.device.type != "cpu":
            raise ValueError(f"decode_weights={weights_as!r} runs on the CPU; the model is on {key.device}: "
                             "use decode_weights='fp32' there")
        w = (torch.cat(weights) if len(weights) > 1 else weights[0])[rows]
        for old in [s for s in cache if s[0] == weights_as]:  # a changed weight's old copy goes
            del cache[old]
        cache[stamp] = Int8Linear(w) if weights_as == "int8" else Fp16Linear(w)
    return cache[stamp]


def linear_of(*weights: torch.Tensor, rows: slice = slice(None), weights_as: str = "fp32"):
    """x (..., in) -> x @ W[rows].T for W the weights stacked along the output dimension, stored
    as `weights_as` (DECODE_WEIGHTS). The fast decoders call only these."""
    if check_decode_weights(weights_as) != "fp32":
        return packed_linear(*weights, rows=rows, weights_as=weights_as)
    with torch.no_grad():
        w = (torch.cat(weights) if len(weights) > 1 else weights[0])[rows].contiguous()
    return lambda x: F.linear(x, w)
