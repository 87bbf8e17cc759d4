"""Where pipeline folders are: a path, a model shipped in the package, or a cached Hub repo."""

from __future__ import annotations

from pathlib import Path

PIPELINE_FILE = "pipeline.yaml"
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "pretrained"
DEFAULT_MODEL = "shapes64"


def shipped_models() -> list[str]:
    """Names of the pipelines that ship inside the package (mini_t2i/pretrained)."""
    return sorted(p.parent.name for p in SHIPPED_DIR.glob(f"*/{PIPELINE_FILE}"))


def resolve_model(name_or_path: str | Path | None) -> Path:
    """A pipeline folder from a path, a shipped name (`shapes64`), or a Hugging Face Hub id
    already in the local cache (nothing is downloaded when HF_HUB_OFFLINE=1)."""
    name = str(name_or_path or DEFAULT_MODEL)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / PIPELINE_FILE).is_file():
            raise FileNotFoundError(f"{path} is not a pipeline folder (no {PIPELINE_FILE}); make one with "
                                    "TextToImagePipeline.save_pretrained or `mini-t2i pipeline assemble`")
        return path
    if (SHIPPED_DIR / name / PIPELINE_FILE).is_file():
        return SHIPPED_DIR / name
    if name.count("/") == 1 and not path.exists():
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(repo_id=name))
        except Exception as exc:  # offline, unknown repo, no network: all end here
            raise FileNotFoundError(f"model {name!r} is neither a folder, a shipped model "
                                    f"({', '.join(shipped_models())}) nor a reachable Hub repo ({exc})") from None
    raise FileNotFoundError(f"model {name!r} is neither a pipeline folder nor a shipped model; "
                            f"shipped: {', '.join(shipped_models()) or 'none'}")
