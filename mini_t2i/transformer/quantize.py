"""Smaller weights for the decode path: the same matmuls reading half or a quarter of the bytes.

A decode step at batch 1-8 is bound by reading the weights (decoder.py), so reading fewer
bytes is the lever that llama.cpp-style CPU decoders pull. `linear_of(..., weights=)` gives
the decoder one of four matmuls for a (out, in) weight:

- "fp32": `F.linear` over the model's own tensor (MKL/oneDNN); on an AVX2-only CPU, for 1-3
  rows, a GEMM against a transposed (in, out) copy, which MKL reads 2.4x faster there
  (FewRowsLinear);
- "fp16": fbgemm's fp16-weight GEMM (`torch.ops.quantized.linear_dynamic_fp16`): weights
  stored in half precision, activations and sums in fp32;
- "fused": fp16 weights in fused.py's packed layout through its C GEMV; with it, decoder.CachedLlama
  runs its whole forward as one C call (fused.py);
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

from mini_t2i.transformer.config import DECODE_WEIGHT_CHOICES, DECODE_WEIGHTS
from mini_t2i.transformer.cpu import cpu_flags

# CPU flags (/proc/cpuinfo) of int8 dot-product instructions. Without them torch._int_mm has no
# fast kernel: on a 2-core AMD EPYC Zen 3 (AVX2 only) a 1 x 512 x 1536 int8 matmul took 837 us
# against 99 us in fp32, and shapes64's 8 candidates 12.3 s against 1.5 s (docs/speed.md).
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")

_CACHE_ATTRIBUTE = "_mini_t2i_packed"  # the packed copies live on the weight tensor itself


def check_decode_weights(weights: str, allow_auto: bool = False) -> str:
    choices = DECODE_WEIGHT_CHOICES if allow_auto else DECODE_WEIGHTS
    if weights not in choices:
        raise ValueError(f"decode_weights={weights!r}: choose one of {', '.join(choices)}")
    return weights


def cpu_has_int8_dot(cpuinfo: str | None = None) -> bool:
    """Whether this CPU has int8 dot-product instructions (VNNI or AMX), from /proc/cpuinfo's
    flags (False where they cannot be read)."""
    return any(flag in cpu_flags(cpuinfo) for flag in INT8_DOT_FLAGS)


def auto_decode_weights(device: torch.device | str = "cpu", cpuinfo: str | None = None,
                        fused: bool | None = None, cfg=None) -> str:
    """What "auto" means on `device`: fp32 off the CPU; on a CPU "fused" where its C step runs
    (fused.py: an x86 CPU with AVX2, F16C and FMA, a C compiler or a build already made, and a
    model whose widths fit; fastest at every batch measured, and the fp32 pictures within
    noise, docs/speed.md), else int8 where the CPU has int8 dot products (VNNI, AMX), else fp16
    (fbgemm's fp16 GEMM, which draws the fp32 pictures: 597 of 600 equal). A fixed rule, never a
    timing, so a machine always draws the same images. fused: whether the fused step runs
    (None: build it to see, for `cfg`'s widths where a TransformerConfig is given)."""
    if torch.device(device).type != "cpu":
        return "fp32"
    if fused is None:
        from mini_t2i.transformer.fused import fused_runs

        fused = fused_runs(cfg)[0]
    if fused:
        return "fused"
    return "int8" if cpu_has_int8_dot(cpuinfo) else "fp16"


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


class FewRowsLinear:
    """x (..., in) -> (..., out) fp32 over two layouts of one weight: x @ w_t with w_t (in, out)
    for at most FEW_ROWS rows, F.linear over w (out, in) for more. On an AVX2-only CPU (2-core
    AMD EPYC Zen 3, 1 thread, the peers' shapes, docs/speed.md) MKL's GEMM for a few rows
    against w (out, in) reads 4-8 GB/s; against w_t 10-19 GB/s: 2.4x faster at 1-3 rows, 1.3x
    slower from 4 rows on."""

    FEW_ROWS = 3

    def __init__(self, weight: torch.Tensor) -> None:
        self.w = weight.detach().float().contiguous()  # (out, in)
        self.w_t = self.w.t().contiguous()  # (in, out)
        self.in_features = weight.shape[1]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        lead, x2 = x.shape[:-1], x.reshape(-1, self.in_features)
        if x2.shape[0] <= self.FEW_ROWS:
            return torch.mm(x2, self.w_t).view(*lead, -1)
        return F.linear(x2, self.w).view(*lead, -1)


def cpu_is_avx2_only(cpuinfo: str | None = None) -> bool:
    """An x86 CPU with AVX2 and without AVX-512 (e.g. AMD EPYC Zen 3), where FewRowsLinear was
    measured to pay; other CPUs keep F.linear (on an Intel AMX host it already reads 73 % of the
    bandwidth at batch 1)."""
    flags = cpu_flags(cpuinfo)
    return "avx2" in flags and "avx512f" not in flags


def packed_linear(*weights: torch.Tensor, rows: slice = slice(None), weights_as: str = "int8"):
    """The packed copy (Int8Linear, Fp16Linear, or FewRowsLinear for "fp32") of `weights` stacked along the output
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
        if weights_as == "fused":
            from mini_t2i.transformer.fused import FusedLinear  # builds fused_step.c on first use
            cache[stamp] = FusedLinear(w)
        else:
            cache[stamp] = {"int8": Int8Linear, "fp16": Fp16Linear, "fp32": FewRowsLinear}[weights_as](w)
    return cache[stamp]


def linear_of(*weights: torch.Tensor, rows: slice = slice(None), weights_as: str = "fp32"):
    """x (..., in) -> x @ W[rows].T for W the weights stacked along the output dimension, stored
    as `weights_as` (DECODE_WEIGHTS). The fast decoders call only these. fp32 on an AVX2-only
    CPU is a FewRowsLinear (two layouts, picked by the number of rows), elsewhere F.linear."""
    if check_decode_weights(weights_as) != "fp32" or (weights[0].device.type == "cpu" and cpu_is_avx2_only()):
        return packed_linear(*weights, rows=rows, weights_as=weights_as)
    with torch.no_grad():
        w = (torch.cat(weights) if len(weights) > 1 else weights[0])[rows].contiguous()
    return lambda x: F.linear(x, w)
