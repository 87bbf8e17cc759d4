import pytest
import torch
import torch.nn.functional as F

from mini_t2i.checkpoint import CheckpointError
from mini_t2i.text.special_ids import empty_caption
from mini_t2i.transformer.config import PRESETS, TransformerConfig, preset_parameter_count
from mini_t2i.transformer.model import (build_model, compute_loss, image_logits, load_transformer, parameter_count,
                                        save_transformer, sequence_ids)

from conftest import captions


@pytest.mark.parametrize("preset", ["tiny", "mini"])
def test_preset_parameter_counts_match_the_built_model(preset, tokenizer):
    cfg = TransformerConfig(preset=preset).with_layout(tokenizer.vocab_size, 24, 1024, 16)
    assert parameter_count(build_model(cfg)) == preset_parameter_count(preset, tokenizer.vocab_size)


def test_presets_grow_and_unknown_preset_is_refused():
    counts = [preset_parameter_count(p) for p in PRESETS]
    assert counts == sorted(counts)
    with pytest.raises(ValueError, match="unknown transformer preset 'huge'"):
        TransformerConfig(preset="huge")
    with pytest.raises(ValueError, match="layout not set"):
        build_model(TransformerConfig(preset="tiny"))


def test_vocabulary_layout(small_layout):
    cfg = small_layout
    assert cfg.image_offset == cfg.text_vocab_size
    assert cfg.vocab_size % 64 == 0 and cfg.vocab_size >= cfg.text_vocab_size + cfg.codebook_size
    assert cfg.sequence_length == cfg.text_len + 16
    ids = sequence_ids(cfg, torch.zeros(1, cfg.text_len, dtype=torch.long), torch.tensor([[0, 63] + [1] * 14]))
    assert ids[0, cfg.text_len].item() == cfg.image_offset and ids[0, cfg.text_len + 1].item() == cfg.image_offset + 63
    assert empty_caption(cfg.text_len)[:3].tolist() == [2, 3, 0]


def test_causality_later_tokens_never_change_earlier_logits(small_layout, small_model, tokenizer):
    cfg = small_layout
    ids = sequence_ids(cfg, captions(tokenizer, 2), torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0)))
    changed = ids.clone()
    cut = cfg.text_len + 7
    changed[:, cut:] = cfg.image_offset + (changed[:, cut:] - cfg.image_offset + 5) % 64
    with torch.no_grad():
        a, b = small_model(input_ids=ids).logits, small_model(input_ids=changed).logits
    # masked positions weigh exactly 0 and the shapes are the same: measured 0.0; 1e-5 allows kernel reassociation
    torch.testing.assert_close(a[:, :cut], b[:, :cut], rtol=0, atol=1e-5)
    assert (a[:, cut:] - b[:, cut:]).abs().max() > 1e-3  # and later positions do see them (measured 0.84)


def test_loss_is_cross_entropy_over_the_image_vocabulary(small_layout, small_model, tokenizer):
    cfg = small_layout
    text = captions(tokenizer, 3)
    image = torch.randint(0, 64, (3, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        loss, metrics = compute_loss(small_model, cfg, text, image)
        logits = small_model(input_ids=sequence_ids(cfg, text, image)).logits
    expected = F.cross_entropy(image_logits(cfg, logits[:, cfg.text_len - 1:-1]).reshape(-1, 64), image.reshape(-1))
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)  # ~20 ulp of a loss ~4.2; measured 0.0
    assert set(metrics) == {"image_loss"}
    with torch.no_grad():
        both, metrics = compute_loss(small_model, cfg, text, image, text_loss_weight=0.125)
    # fp32 sum vs float64 sum of the same two losses: a few ulp (1.2e-7 rel); measured 0.0
    assert both.item() == pytest.approx(metrics["image_loss"] + 0.125 * metrics["text_loss"], rel=1e-5)


def test_save_and_load_give_the_same_logits(small_layout, small_model, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    save_transformer(small_model, small_layout, tmp_path / "m")
    loaded, cfg = load_transformer(tmp_path / "m")
    assert cfg == small_layout
    ids = sequence_ids(cfg, captions(tokenizer, 2), torch.randint(0, 64, (2, 16)))
    with torch.no_grad():
        expected = small_model(input_ids=ids).logits
        assert torch.equal(loaded(input_ids=ids).logits, expected)
        auto = AutoModelForCausalLM.from_pretrained(tmp_path / "m")  # plain transformers, no mini_t2i code
        torch.testing.assert_close(auto(input_ids=ids).logits, expected)  # same Llama code, fp32 defaults; measured 0
    assert auto.config.mini_t2i["codebook_size"] == 64


def test_load_refuses_folders_without_safetensors(small_layout, small_model, tmp_path):
    save_transformer(small_model, small_layout, tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").rename(tmp_path / "m" / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_transformer(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="not a saved transformer"):
        load_transformer(tmp_path / "nothing")


def test_corrupt_weights_give_a_clear_error(small_layout, small_model, tmp_path):
    save_transformer(small_model, small_layout, tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cannot load the transformer"):
        load_transformer(tmp_path / "m")
