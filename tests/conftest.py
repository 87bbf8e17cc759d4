"""Fixtures shared across test folders: a pipeline of seeded random tiny components, and
pre-tokenized Shapes World shards."""

import os

import pytest
import torch

# The JAX tests run sharded train steps on 8 CPU "devices". XLA reads this once, when jax
# first starts a backend, so it is set before any test imports jax; tests pick their devices.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

TEXT_TOKENIZER = "mini_t2i/pretrained/text_shapes"


def _transformers_imported_by(code: str) -> list[str]:
    """The transformers modules a fresh interpreter has imported after running `code`."""
    import subprocess
    import sys

    code += "\nimport sys; print(sorted(m for m in sys.modules if m.split('.')[0] == 'transformers'))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return eval(out.stdout.strip().splitlines()[-1])  # a printed list of str


@pytest.fixture(scope="session")
def transformers_imported_by():
    return _transformers_imported_by
VQ_MODEL = "mini_t2i/pretrained/vq_shapes64"


def make_tiny_pipeline(with_reranker: bool = True, seed: int = 0):
    """A pipeline of seeded random tiny components over the shipped text tokenizer: 32 px
    images as 4x4 grids of 64 codes, so a whole image is 16 tokens."""
    from mini_t2i.pipeline.pipeline import PipelineConfig, TextToImagePipeline
    from mini_t2i.text.tokenizer import TextTokenizer
    from mini_t2i.transformer.config import TransformerConfig
    from mini_t2i.transformer.model import build_model
    from mini_t2i.vq.model import VQModel, VQModelConfig

    tokenizer = TextTokenizer.from_pretrained(TEXT_TOKENIZER)
    cfg = TransformerConfig(preset="tiny").with_layout(tokenizer.vocab_size, tokenizer.text_len, 64, 4)
    transformer = build_model(cfg, seed=seed).eval()
    torch.manual_seed(seed)
    vq = VQModel(VQModelConfig(image_size=32, downsample=8, channels=[8, 8, 8], num_res_blocks=1,
                               codebook_size=64, code_dim=4)).eval()
    reranker = None
    if with_reranker:
        from mini_t2i.rerank.model import RerankConfig, Reranker

        reranker = Reranker(RerankConfig(preset="tiny").with_layout(tokenizer.vocab_size, tokenizer.text_len, 32),
                            seed=seed).eval()
    return TextToImagePipeline(tokenizer, transformer, cfg, vq, reranker,
                               PipelineConfig(name="tiny", num_candidates=4, top_k=0, batch_size=8))


@pytest.fixture(scope="session")
def tiny_pipeline_factory():
    return make_tiny_pipeline


@pytest.fixture(scope="session")
def tiny_pipeline():
    return make_tiny_pipeline()


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tiny_pipeline, tmp_path_factory):
    return tiny_pipeline.save_pretrained(tmp_path_factory.mktemp("pipe") / "tiny", half_precision=False)


@pytest.fixture(scope="session")
def token_shards(tmp_path_factory):
    """Pre-tokenized Shapes World train (24 rows) and val (8 rows) shards, made with the shipped 64 px VQ."""
    from mini_t2i.data.config import DataConfig
    from mini_t2i.data.pretokenize import PretokenizeConfig, pretokenize

    root = tmp_path_factory.mktemp("tokens")
    out = {}
    for split, count in (("train", 24), ("val", 8)):
        data = DataConfig(source="shapes", split=split, count=count, image_size=64)
        out[split] = str(pretokenize(PretokenizeConfig(data=data, vq_model=VQ_MODEL, out_dir=str(root / split),
                                                       batch_size=32), is_verbose=False))
    return out


@pytest.fixture(scope="session")
def tokenizer():
    from mini_t2i.text.tokenizer import TextTokenizer

    return TextTokenizer.from_pretrained(TEXT_TOKENIZER)
