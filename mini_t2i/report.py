"""What every measurement ends with (benchmarks, evaluations): print its table, write its JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

from mini_t2i.atomic import atomic_write_text


def mean_se(values) -> tuple[float, float]:
    """(mean, standard error of the mean) of a 1-d array of per-sample values; SE 0 for one value."""
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0


def write_report(report: dict, table: str, out: str | Path | None, is_verbose: bool = True) -> Path | None:
    """Print `table` (when is_verbose) and write `report` to `out` as JSON, atomically (folders
    made as needed; no file when `out` is None)."""
    if is_verbose:
        print(table)
    if out is None:
        return None
    out = Path(out)
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    if is_verbose:
        print(f"wrote {out}")
    return out
