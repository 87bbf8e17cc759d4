import pytest

from mini_t2i.transformer.config import TransformerConfig
from mini_t2i.transformer.model import build_model

TEXT_TOKENIZER = "mini_t2i/pretrained/text_shapes"
VQ_MODEL = "mini_t2i/pretrained/vq_shapes64"


@pytest.fixture(scope="session")
def small_layout(tokenizer):
    """The tiny preset over the real text vocabulary and a 4x4 grid of 64 codes: fast to sample."""
    return TransformerConfig(preset="tiny").with_layout(tokenizer.vocab_size, tokenizer.text_len, 64, 4)


@pytest.fixture(scope="session")
def small_model(small_layout):
    return build_model(small_layout, seed=0).eval()


def captions(tokenizer, n):
    texts = ["a red circle", "two blue squares", "a green triangle left of a yellow star", "three purple circles"]
    return tokenizer.encode([texts[i % len(texts)] for i in range(n)])
