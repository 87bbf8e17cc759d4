"""decode_weights="fused": fp16 weights and KV cache, and the whole stack forward as one compiled call.

At 1-16 rows a decode step should cost one read of the weights, but torch's step runs ~15
small ops a layer around its matmuls, and those (norms, RoPE, cache writes, attention of one
query, Python between them) kept the fp16 step at 35-47 % of the read-bandwidth bound on
every CPU measured (docs/speed.md). `fused_step.c` is the stack's forward (prefill and decode
alike) as plain loops over decoder.CachedLlama's cache (in fp16) and RoPE tables, with an
fp16-weight GEMV whose packed tiles stay in L1 while all rows read them, on a small pool of C
threads (torch's thread count) that split outputs, never sums.

The C file ships with the package and is compiled on first use by the host's C compiler
(`$CC`, else `cc`) with `-O3 -march=native` into `$MINI_T2I_CACHE` (else ~/.cache/mini_t2i),
named by a hash of the source, the flags and this CPU, written to a temporary file and
renamed into place; later processes load it in milliseconds. It needs an x86 CPU with AVX2,
F16C and FMA (every x86 server CPU since 2013). `fused_available()` says whether it runs
here and why not; asking for "fused" where it does not is an error naming the fix.

    lib = load_library()                           # ctypes.CDLL, built once per machine
    head = FusedLinear(weight)                     # x (..., in) -> (..., out) fp32, fp16 weights
    stack = FusedStack(layers, norm, keys, values, cos, sin, eps)   # CachedLlama's forward
    h = stack(x, start)                            # (B, T, d) at positions start.. -> (B, d)

Rows never mix, and threads never change a sum: a row's logits are the same bit for bit alone
or in a batch, at any thread count, and a position's in a prefill as alone (tested).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from mini_t2i.atomic import atomic_write_bytes
from mini_t2i.transformer.config import mlp_width
from mini_t2i.transformer.cpu import cpu_flags, cpu_model

SOURCE = Path(__file__).with_name("fused_step.c")
FLAGS = ("-O3", "-march=native", "-mavx2", "-mf16c", "-mfma", "-fPIC", "-shared", "-pthread", "-fno-math-errno")
NEEDED_CPU_FLAGS = ("avx2", "f16c", "fma")


class FusedUnavailable(RuntimeError):
    """decode_weights="fused" cannot run here; the message says why and what to use instead."""


def _cache_dir() -> Path:
    return Path(os.environ.get("MINI_T2I_CACHE") or Path.home() / ".cache" / "mini_t2i") / "fused"


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "cc"))


def _why_not() -> str | None:
    """None where this CPU can run the kernel, else the reason."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return f"the fused decode step is x86 code (AVX2, F16C, FMA); this machine is {platform.machine()}"
    missing = [flag for flag in NEEDED_CPU_FLAGS if flag not in cpu_flags()]
    if missing:
        return f"this CPU lacks {', '.join(missing)}, which the fused decode step needs"
    return None


def _unavailable(why: str) -> FusedUnavailable:
    return FusedUnavailable(f"decode_weights='fused' cannot run: {why}; use decode_weights='fp16' "
                            "(the same fp16 weights through torch)")


@functools.lru_cache(maxsize=1)
def load_library() -> ctypes.CDLL:
    """The compiled fused_step.c, built on first use on this machine (module doc)."""
    why = _why_not()
    if why:
        raise _unavailable(why)
    # The build depends on the source, the flags and the CPU that -march=native compiles for.
    key = hashlib.sha256(b"\0".join([SOURCE.read_bytes(), " ".join(FLAGS).encode(),
                                     " ".join((cpu_model(), *cpu_flags())).encode()])).hexdigest()[:16]
    path = _cache_dir() / f"fused_step-{key}.so"
    if not path.exists():
        _build(path)
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as error:  # a folder mounted noexec, say
        raise _unavailable(f"loading {path} failed ({error}); set MINI_T2I_CACHE to another folder") from error
    lib.gemv_f16.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
                             ctypes.c_void_p, ctypes.c_int]
    lib.gemv_f16.restype = None
    lib.chunk_width.restype = ctypes.c_int
    lib.scratch_floats.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    lib.scratch_floats.restype = ctypes.c_size_t
    lib.stack_forward.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                  ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    lib.stack_forward.restype = ctypes.c_int
    return lib


def _build(path: Path) -> None:
    """Compile SOURCE into a temporary folder, then write it to `path` all or nothing
    (atomic.atomic_write_bytes), so another process sees the whole library or none."""
    compiler = _compiler()
    if compiler is None:
        raise _unavailable(f"no C compiler: {os.environ.get('CC', 'cc')!r} is not on PATH (install gcc, or set CC)")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            built = Path(tmp) / path.name
            result = subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", str(built), "-lm"], capture_output=True,
                                    text=True)
            if result.returncode:
                raise _unavailable(f"compiling {SOURCE.name} failed ({compiler} {' '.join(FLAGS)}):\n"
                                   f"{result.stderr.strip()}\n")
            atomic_write_bytes(path, built.read_bytes())
    except OSError as error:
        raise _unavailable(f"the build folder {path.parent} is not writable ({error}); set MINI_T2I_CACHE to one "
                           "that is") from error


@functools.lru_cache(maxsize=1)
def fused_available() -> tuple[bool, str]:
    """(True, "") where decode_weights="fused" builds and loads here, else (False, the reason);
    asked once per process, so a failing build is not retried at every call."""
    try:
        load_library()
    except FusedUnavailable as error:
        return False, str(error)
    return True, ""


def fused_runs(cfg=None) -> tuple[bool, str]:
    """fused_available(), and where a TransformerConfig is given, whether its widths fit the
    kernel: hidden and MLP widths multiples of chunk_width() (16 with AVX-512, else 8; the
    presets' are multiples of 32), head size a multiple of 8 and at most 256."""
    ok, why = fused_available()
    if not ok or cfg is None:
        return ok, why
    _, hidden, heads = cfg.shape
    chunk, head = load_library().chunk_width(), hidden // heads
    if hidden % chunk or mlp_width(hidden) % chunk or head % 8 or head > 256:
        return False, (f"decode_weights='fused' cannot run this model: hidden {hidden}, MLP {mlp_width(hidden)} and "
                       f"head {head} must be multiples of {chunk}, {chunk} and 8 (head <= 256) here; "
                       "use decode_weights='fp16'")
    return True, ""


def pack_f16(weight: torch.Tensor) -> torch.Tensor:
    """(n, k) weight -> its fp16 copy in fused_step.c's packed layout: the first n // 4 * 4 rows
    as (n / 4, k / c, 4, c), four outputs' chunks of c inputs side by side (c = the library's
    chunk_width(): 16 with AVX-512, else 8), so the GEMV reads each tile of 4 outputs as one
    contiguous run (4x faster than plain rows on a 16 MB head here); the n % 4 last rows
    follow as they are. Flat, n * k halves."""
    n, k = weight.shape
    chunk = load_library().chunk_width()
    if k % chunk:
        raise ValueError(f"decode_weights='fused' needs input widths that are multiples of {chunk} here, got {k}")
    w = weight.detach().to("cpu", torch.float16)
    tiled = n // 4 * 4
    packed = w[:tiled].reshape(tiled // 4, 4, k // chunk, chunk).transpose(1, 2).reshape(-1)
    return torch.cat([packed, w[tiled:].reshape(-1)]).contiguous()


class FusedLinear:
    """x (..., in) float -> (..., out) fp32 = x @ w.T with w in fp16, through fused_step.c's GEMV."""

    def __init__(self, weight: torch.Tensor) -> None:
        self.lib = load_library()
        self.out_features, self.in_features = weight.shape
        self.w16 = pack_f16(weight)  # (out * in,) halves

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features).float().contiguous()  # (M, in)
        y = torch.empty(x2.shape[0], self.out_features)
        self.lib.gemv_f16(self.w16.data_ptr(), self.out_features, self.in_features, x2.data_ptr(), x2.shape[0],
                          y.data_ptr(), torch.get_num_threads())
        return y.view(*lead, -1)


_SIZES = ("layers", "hidden", "heads", "head_dim", "mlp", "max_batch", "max_len")
_POINTERS = ("norm1", "qkv", "o", "norm2", "gate_up", "down", "norm", "keys", "values", "cos", "sin")


class _StackStruct(ctypes.Structure):
    """fused_step.c's Stack, field for field."""
    _fields_ = ([(name, ctypes.c_int32) for name in _SIZES] + [("eps", ctypes.c_float)]
                + [(name, ctypes.c_void_p) for name in _POINTERS])


class FusedStack:
    """A Llama stack's forward over new positions, one C call (fused_step.c's stack_forward).

    layers: per layer (norm1 (d,), q|k|v, o, norm2 (d,), gate|up, down) with the norms fp32 and
    the matrices FusedLinear; keys, values (layers, max_batch, H, max_len, D) fp16, written at
    the positions run; cos, sin (max_len, D) fp32 RoPE tables."""

    def __init__(self, layers, norm: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                 cos: torch.Tensor, sin: torch.Tensor, eps: float) -> None:
        self.lib = load_library()
        n_layers, max_batch, heads, max_len, head_dim = keys.shape
        if keys.dtype != torch.float16 or values.dtype != torch.float16:
            raise ValueError("the fused stack's KV cache is fp16")
        f32 = lambda t: t.detach().to("cpu", torch.float32).contiguous()  # noqa: E731
        # The tensors and pointer arrays the struct points into, kept alive with it.
        self.keep = [[f32(n1), qkv.w16, o.w16, f32(n2), gu.w16, down.w16] for n1, qkv, o, n2, gu, down in layers]
        self.arrays = []
        self.hidden, mlp = self.keep[0][0].shape[0], layers[0][5].in_features
        self.norm, self.cos, self.sin = f32(norm), f32(cos), f32(sin)
        self.keys, self.values = keys, values

        def pointers(column: int):
            array = (ctypes.c_void_p * n_layers)(*[layer[column].data_ptr() for layer in self.keep])
            self.arrays.append(array)
            return ctypes.cast(array, ctypes.c_void_p)

        self.struct = _StackStruct(n_layers, self.hidden, heads, head_dim, mlp, max_batch, max_len, eps,
                                   *[pointers(c) for c in range(6)], self.norm.data_ptr(), keys.data_ptr(),
                                   values.data_ptr(), self.cos.data_ptr(), self.sin.data_ptr())
        self.scratch = torch.empty(0)  # grown to the largest call's need

    def __call__(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """x (B, T, d) the inputs at positions start..start+T-1 -> (B, d) the final normed hidden
        state of each row's last; the cache's keys and values at those positions are written."""
        batch, steps, _ = x.shape
        x = x.to(torch.float32).contiguous().clone()  # the C call overwrites it with the residual stream
        threads = torch.get_num_threads()  # torch's setting: the C pool runs as many threads as torch would
        need = self.lib.scratch_floats(ctypes.byref(self.struct), batch * steps, threads)
        if self.scratch.numel() < need:
            self.scratch = torch.empty(need)
        out = torch.empty(batch, self.hidden)
        if self.lib.stack_forward(ctypes.byref(self.struct), x.data_ptr(), batch, steps, start, out.data_ptr(),
                                  self.scratch.data_ptr(), threads):
            raise ValueError(f"the fused stack was given {batch} rows at positions {start}..{start + steps - 1}: "
                             f"its cache holds {self.struct.max_batch} rows and {self.struct.max_len} positions")
        return out
