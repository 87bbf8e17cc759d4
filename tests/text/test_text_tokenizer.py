"""The text tokenizer: fixed-length frame, normalisation, errors, and file round trips
(ours and transformers' loaders must give the same ids)."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
import torch

from mini_t2i.config import ConfigError, load_config
from mini_t2i.text.tokenizer import (
    TextTokenizer,
    TextTokenizerConfig,
    TextTokenizerStageConfig,
    train_text_tokenizer,
    train_text_tokenizer_from_config,
)

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO / "configs" / "text_tokenizer_tiny.yaml"
TEXT_LEN = 12

# A small deterministic caption set in the Shapes World grammar.
COLORS = ["red", "green", "blue", "yellow", "purple", "cyan"]
SHAPES = ["circle", "square", "triangle", "star"]
CAPTIONS = [f"a {c} {s}" for c in COLORS for s in SHAPES] + [
    f"a {c1} {s1} left of a {c2} {s2} on a black background"
    for c1, s1, c2, s2 in zip(COLORS, SHAPES * 2, reversed(COLORS), reversed(SHAPES * 2))
] + [f"there are three {c} {s}s" for c in COLORS for s in SHAPES[:2]]


@pytest.fixture(scope="module")
def tok() -> TextTokenizer:
    return train_text_tokenizer(CAPTIONS, TextTokenizerConfig(vocab_size=400, text_len=TEXT_LEN))


def test_special_ids_and_sizes(tok):
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    assert tok.text_len == TEXT_LEN
    assert 260 < tok.vocab_size <= 400  # 4 special + 256 bytes + the merges it found


def test_encode_frame_and_padding(tok):
    ids = tok.encode(["a red circle", "a blue star left of a green square"])
    assert ids.dtype == torch.long and ids.shape == (2, TEXT_LEN)
    for row in ids.tolist():
        assert row[0] == tok.bos_id
        end = row.index(tok.eos_id)
        assert all(i not in (tok.pad_id, tok.bos_id, tok.eos_id) for i in row[1:end])
        assert row[end + 1:] == [tok.pad_id] * (TEXT_LEN - end - 1)
    assert tok.encode("a red circle").shape == (1, TEXT_LEN)
    assert torch.equal(tok.encode("a red circle")[0], ids[0])


def test_round_trip(tok):
    texts = CAPTIONS[:5] + ["there are three cyan squares"]
    assert tok.decode(tok.encode(texts)) == texts
    assert tok.decode(tok.encode(texts)[0]) == texts[:1]  # a (T,) row decodes too
    # Characters never seen in training are bytes, not [UNK], and come back exactly.
    odd = "a café with a zigzag 🎨 赤"
    ids = tok.encode(odd)
    assert tok.unk_id not in ids.tolist()[0]
    long_tok = TextTokenizer(tok.backend, text_len=64)
    assert long_tok.decode(long_tok.encode(odd)) == [odd]


def test_truncation_keeps_eos(tok):
    text = "a red circle left of a blue square on a black background and a green star"
    assert tok.token_lengths(text)[0] > TEXT_LEN
    row = tok.encode(text)[0].tolist()
    assert row[0] == tok.bos_id and row[-1] == tok.eos_id and tok.pad_id not in row
    decoded = tok.decode(row)[0]
    assert text.startswith(decoded) and len(decoded) < len(text)


def test_lowercase_and_unicode_normalisation(tok):
    same = [
        "a red circle",
        "A RED Circle",
        "  a   red\tcircle \n",  # whitespace runs fold to one space, ends stripped
        "ａ ｒｅｄ ｃｉｒｃｌｅ",  # full-width letters (NFKC)
    ]
    ids = tok.encode(same)
    assert all(torch.equal(ids[0], row) for row in ids)
    composed = unicodedata.normalize("NFC", "a café circle")
    decomposed = unicodedata.normalize("NFD", "a café circle")
    assert composed != decomposed
    assert torch.equal(tok.encode(composed), tok.encode(decomposed))
    assert tok.normalize("A  Ｃafé ") == "a café"

    cased = train_text_tokenizer(CAPTIONS, TextTokenizerConfig(vocab_size=400, text_len=TEXT_LEN, lowercase=False))
    assert not torch.equal(cased.encode("RED circle"), cased.encode("red circle"))


def test_bad_captions_raise(tok):
    for empty in ("", "   ", "\t\n"):
        with pytest.raises(ValueError, match="the caption is empty"):
            tok.encode(empty)
    with pytest.raises(ValueError, match="caption 1 is empty"):
        tok.encode(["a red circle", "  "])
    with pytest.raises(TypeError, match="caption 1 is a int"):
        tok.encode(["a red circle", 3])
    with pytest.raises(TypeError, match="str or a list of str"):
        tok.encode(b"a red circle")
    with pytest.raises(ValueError, match="empty list"):
        tok.encode([])
    with pytest.raises(ValueError, match="not a text id"):
        tok.decode([[tok.bos_id, tok.vocab_size]])  # e.g. an image token in the joint vocabulary
    with pytest.raises(TypeError, match="training text 1"):
        train_text_tokenizer(["a red circle", None], TextTokenizerConfig())


def test_absurdly_long_caption_is_cut_with_a_warning(tok):
    with pytest.warns(UserWarning, match="characters"):
        ids = tok.encode("a red circle " * 1000)
    assert ids.shape == (1, TEXT_LEN) and ids[0, -1] == tok.eos_id


def test_save_load_matches_transformers(tok, tmp_path):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.json").is_file() and (tmp_path / "tokenizer_config.json").is_file()
    long = "a red circle left of a blue square on a black background, twice over"
    texts = CAPTIONS + ["A RED Circle", "a café 🎨", long]
    expected = tok.encode(texts)

    ours = TextTokenizer.from_pretrained(tmp_path)
    assert ours.text_len == TEXT_LEN and ours.vocab_size == tok.vocab_size
    assert torch.equal(ours.encode(texts), expected)

    for loader in (PreTrainedTokenizerFast, AutoTokenizer):
        hf = loader.from_pretrained(str(tmp_path), local_files_only=True)
        assert (hf.pad_token_id, hf.bos_token_id, hf.eos_token_id) == (0, 2, 3)
        out = hf(texts, padding="max_length", truncation=True, max_length=TEXT_LEN, return_tensors="pt")
        assert torch.equal(out["input_ids"], expected), loader.__name__
        assert torch.equal(out["attention_mask"].bool(), expected != tok.pad_id)
        assert hf.batch_decode(out["input_ids"][:3], skip_special_tokens=True) == tok.decode(expected[:3])


def test_from_pretrained_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "tokenizer.json")):
        TextTokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{ not json")
    with pytest.raises(ValueError, match="tokenizer.json: not a readable"):
        TextTokenizer.from_pretrained(tmp_path)


def test_config_driven_training_writes_files(tmp_path, capsys):
    cfg = load_config(TextTokenizerStageConfig, TINY_CONFIG, [f"out_dir={tmp_path / 'tok'}", "tokenizer.text_len=16"])
    out = train_text_tokenizer_from_config(cfg, captions=CAPTIONS)
    assert {p.name for p in out.iterdir()} >= {"tokenizer.json", "tokenizer_config.json", "config.yaml"}
    assert load_config(TextTokenizerStageConfig, out / "config.yaml") == cfg  # the saved config loads back
    assert TextTokenizer.from_pretrained(out).text_len == 16
    summary = capsys.readouterr().out
    assert "vocab_size" in summary and "truncated" in summary


def test_cli_trains_on_shapes_captions(tmp_path, capsys):
    from mini_t2i.cli import main

    assert main(["train", "text-tokenizer", "--config", str(TINY_CONFIG), f"out_dir={tmp_path}", "data.count=60"]) == 0
    out = tmp_path
    tok = TextTokenizer.from_pretrained(out)
    assert tok.text_len == 24
    assert "60 captions" in capsys.readouterr().out


def test_unknown_or_bad_config_keys_fail_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match="tokenizer.vocab_sise"):
        load_config(TextTokenizerStageConfig, TINY_CONFIG, ["tokenizer.vocab_sise=512"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("tokenizer: {vocab_size: 512, lowercas: true}\n")
    with pytest.raises(ConfigError, match="tokenizer.lowercas"):
        load_config(TextTokenizerStageConfig, bad)
    with pytest.raises(ConfigError, match="vocab_size=100"):
        load_config(TextTokenizerStageConfig, None, ["tokenizer.vocab_size=100"])
    with pytest.raises(ConfigError, match="text_len=2"):
        load_config(TextTokenizerStageConfig, None, ["tokenizer.text_len=2"])
