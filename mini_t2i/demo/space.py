"""Export the demo as a Hugging Face Space: a folder to push to a Space repo.

    python -m mini_t2i.demo.space --out space/      # then: cd space && git init && git push ...

The folder holds what Spaces runs for `sdk: gradio`: `app.py` (demo/app.py), `README.md`
(demo/README.md, whose front matter configures the Space), `requirements.txt` (this
package's dependencies, CPU torch) and a copy of the `mini_t2i` package with its shipped
models, so the Space needs nothing else. Run the folder's `python app.py` to try it first.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from mini_t2i.atomic import atomic_folder

REPO = Path(__file__).resolve().parents[2]
PACKAGE = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"  # as the README's setup: the CPU wheel from the index below
CPU_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"


def space_requirements() -> list[str]:
    """requirements.txt lines: pyproject's dependencies and the demo extra, torch pinned."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        raise ImportError("exporting the Space reads pyproject.toml with tomllib: use Python >= 3.11") from None

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    deps = [d for d in project["dependencies"] if not d.replace(" ", "").startswith("torch")]
    return [CPU_INDEX, TORCH, *deps, *project["optional-dependencies"]["demo"]]


def export_space(out: str | Path) -> Path:
    """Write the Space folder (see the module doc) through a temporary folder; returns it."""
    for needed in (REPO / "demo" / "app.py", REPO / "demo" / "README.md", REPO / "pyproject.toml"):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed} is missing: export the Space from a clone of the repository")
    out = Path(out)
    with atomic_folder(out) as tmp:
        shutil.copy2(REPO / "demo" / "app.py", tmp / "app.py")
        shutil.copy2(REPO / "demo" / "README.md", tmp / "README.md")
        (tmp / "requirements.txt").write_text("\n".join(space_requirements()) + "\n", encoding="utf-8")
        shutil.copytree(PACKAGE, tmp / "mini_t2i", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.tmp"))
        if (REPO / "NOTICE").is_file():
            shutil.copy2(REPO / "NOTICE", tmp / "NOTICE")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Export the demo as a Hugging Face Space folder.")
    parser.add_argument("--out", default="space", help="folder to write (replaced if it exists)")
    args = parser.parse_args(argv)
    out = export_space(args.out)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({size / 1e6:.1f} MB); push it to a Space repo (sdk: gradio) or run `python app.py` in it")


if __name__ == "__main__":
    main()
