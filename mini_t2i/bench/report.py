"""What every benchmark ends with: print its table, write its JSON."""

from __future__ import annotations

import json
from pathlib import Path


def write_report(report: dict, table: str, out: str | Path) -> Path:
    """Print `table` and write `report` to `out` as JSON (folders made as needed)."""
    print(table)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return out
