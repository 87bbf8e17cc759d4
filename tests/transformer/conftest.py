import pytest

from mini_t2i.transformer.model import TransformerConfig, build_model

TEXT_TOKENIZER = "mini_t2i/pretrained/text_shapes"
VQ_MODEL = "mini_t2i/pretrained/vq_shapes64"


@pytest.fixture(scope="session")
def tokenizer():
    from mini_t2i.text.tokenizer import TextTokenizer

    return TextTokenizer.from_pretrained(TEXT_TOKENIZER)


@pytest.fixture(scope="session")
def small_layout(tokenizer):
    """The tiny preset over the real text vocabulary and a 4x4 grid of 64 codes: fast to sample."""
    return TransformerConfig(preset="tiny").with_layout(tokenizer.vocab_size, tokenizer.text_len, 64, 4)


@pytest.fixture(scope="session")
def small_model(small_layout):
    return build_model(small_layout, seed=0).eval()


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


def captions(tokenizer, n):
    texts = ["a red circle", "two blue squares", "a green triangle left of a yellow star", "three purple circles"]
    return tokenizer.encode([texts[i % len(texts)] for i in range(n)])
