"""JAX is an optional extra: the base install never imports it, and its absence is explained."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_the_pipeline_and_the_torch_trainer_never_import_jax(tiny_pipeline_dir):
    done = run(
        "import sys\n"
        "from mini_t2i.cli import build_parser\n"
        "from mini_t2i.transformer.train import TransformerTrainConfig\n"
        "from mini_t2i.pipeline.pipeline import TextToImagePipeline\n"
        f"pipe = TextToImagePipeline.from_pretrained({str(tiny_pipeline_dir)!r})\n"
        "pipe('a red circle', num_images=1, num_candidates=1, seed=0)\n"
        "build_parser().parse_args(['train', 'transformer', '--backend', 'jax'])\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'flax', 'optax', 'orbax'))\n"
        "assert not loaded, loaded\n")
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_missing_jax_names_the_extra_to_install():
    done = run("import sys\nsys.modules['optax'] = None  # as if not installed\n"
               "import mini_t2i.transformer_jax\n")
    assert done.returncode != 0
    assert "pip install -e '.[jax]'" in done.stderr and "optax is missing" in done.stderr
