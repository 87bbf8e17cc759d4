"""What this CPU is, from /proc/cpuinfo: its flags and model name, read once per process.

The decode formats are chosen by these (quantize.auto_decode_weights: a fixed rule, never a
timing), and the fused step's build is named by them (fused.py: -march=native compiles for
this CPU). () and "" where /proc/cpuinfo cannot be read (not Linux).
"""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def _this_cpuinfo() -> str:
    """This machine's /proc/cpuinfo, once per process (the CPU does not change under it)."""
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def cpu_flags(cpuinfo: str | None = None) -> tuple[str, ...]:
    """The first `flags` line of `cpuinfo` (a /proc/cpuinfo text), or this machine's flags."""
    text = _this_cpuinfo() if cpuinfo is None else cpuinfo
    return next((tuple(line.split(":", 1)[1].split()) for line in text.splitlines() if line.startswith("flags")), ())


def cpu_model(cpuinfo: str | None = None) -> str:
    """The first `model name` of `cpuinfo`, or this machine's ("" where there is none)."""
    text = _this_cpuinfo() if cpuinfo is None else cpuinfo
    return next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")
