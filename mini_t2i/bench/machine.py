"""What this machine can do at most: matmul FLOP/s and memory bandwidth, measured.

Every speed the suite reports is set against these: achieved GFLOP/s as a fraction of the
fp32 matmul peak (batched sampling, training: compute-bound), achieved bytes/s as a
fraction of the read bandwidth (batch-1 decoding: every weight is read once per token).
"""

from __future__ import annotations

import time

import torch


def best_seconds(fn, repeats: int = 1, warmup: bool = True) -> float:
    """Best wall seconds of fn() over `repeats` runs, after one warm-up run (unless warmup is
    False: a slow reference timed once, cold). GPU work is synchronised, so it is timed to the end."""
    def call():
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    if warmup:
        call()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_gflops(dtype: torch.dtype = torch.float32, size: int = 2048, repeats: int = 3,
                  device: str = "cpu") -> float:
    """Best GFLOP/s of a (size x size) @ (size x size) matmul: 2 size^3 FLOPs."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)

    return 2 * size ** 3 / best_seconds(lambda: torch.mm(a, b), repeats) / 1e9


def memory_gb_s(megabytes: int = 512, repeats: int = 3, device: str = "cpu") -> dict[str, float]:
    """Read bandwidth (a sum over a large fp32 tensor: 4 bytes read per element) and copy
    bandwidth (read + write), in GB/s."""
    n = megabytes * 2 ** 20 // 4
    x = torch.ones(n, device=device)
    y = torch.empty_like(x)
    read = best_seconds(lambda: x.sum(), repeats)
    copy = best_seconds(lambda: y.copy_(x), repeats)
    return {"read": 4 * n / read / 1e9, "copy": 2 * 4 * n / copy / 1e9}


def measure_machine(quick: bool = False, device: str = "cpu") -> dict:
    """fp32 (and bf16) matmul peaks and memory bandwidth; quick: smaller sizes, seconds."""
    import platform

    size, mb = (1024, 128) if quick else (2048, 512)
    fp32 = matmul_gflops(torch.float32, size, device=device)
    # bf16 on small sizes only: on CPUs without bf16 units it is 10-100x slower than fp32.
    bf16 = matmul_gflops(torch.bfloat16, 512 if device == "cpu" else size, repeats=2, device=device)
    memory = memory_gb_s(mb, device=device)
    return {"device": device, "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "fp32_matmul_gflops": fp32, "bf16_matmul_gflops": bf16,
            "bf16_is_fast": bf16 > fp32, "memory_read_gb_s": memory["read"], "memory_copy_gb_s": memory["copy"]}
