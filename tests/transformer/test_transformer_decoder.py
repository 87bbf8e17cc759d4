"""The fast decode path is the Llama forward: same logits at every position."""

import pytest
import torch

from mini_t2i.transformer.decoder import ImageTokenDecoder, ReferenceDecoder
from mini_t2i.transformer.config import TransformerConfig
from mini_t2i.transformer.model import build_model, image_logits

# 3 layers, head_dim 32 and a RoPE base other than the default, over a 4x4 grid of 64 codes.
CFG = TransformerConfig(preset="tiny", num_layers=3, hidden_size=96, num_heads=3, rope_theta=500.0).with_layout(
    436, 24, 64, 4)


@pytest.fixture(scope="module")
def model():
    return build_model(CFG, seed=0).eval()


def test_prefill_and_decode_match_the_full_forward_at_every_position(model):
    ids = torch.randint(0, CFG.vocab_size, (3, CFG.sequence_length), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = image_logits(CFG, model(input_ids=ids).logits)  # (3, L, codebook)
    decoder = ImageTokenDecoder(model, CFG, max_batch=4)
    got = [decoder.prefill(ids[:, :CFG.text_len + 5])]  # a caption and a 5-token prefix at once
    for p in range(CFG.text_len + 5, CFG.sequence_length - 1):
        got.append(decoder.decode(ids[:, p:p + 1]))
    got = torch.stack(got, dim=1)  # (3, positions, codebook)
    # cached one-row vs full-sequence fp32 kernels (K <= 384) on logits <= 0.7; measured 3.0e-7 (1 and 2 threads)
    torch.testing.assert_close(got, expected[:, CFG.text_len + 4:-1], atol=1e-5, rtol=1e-5)


def test_a_new_prefill_starts_over_and_the_cache_size_is_enforced(model):
    decoder = ImageTokenDecoder(model, CFG, max_batch=2)
    ids = torch.randint(4, 436, (2, CFG.text_len))
    first = decoder.prefill(ids)
    decoder.decode(torch.full((2, 1), CFG.image_offset))
    # nothing left over from the last sequence: the same computation again, fp32 defaults; measured 0.0
    torch.testing.assert_close(decoder.prefill(ids), first)
    with pytest.raises(ValueError, match="exceeds the cache"):
        decoder.prefill(torch.randint(4, 436, (3, CFG.text_len)))
    decoder.prefill(torch.randint(4, 436, (1, CFG.sequence_length)))
    with pytest.raises(ValueError, match="sequence is complete"):
        decoder.decode(torch.full((1, 1), CFG.image_offset))


def test_the_reference_decoder_has_the_same_interface_and_logits(model):
    ids = torch.randint(0, CFG.vocab_size, (2, CFG.text_len + 3), generator=torch.Generator().manual_seed(1))
    fast, reference = ImageTokenDecoder(model, CFG, max_batch=2), ReferenceDecoder(model, CFG, max_batch=2)
    before = ReferenceDecoder.evaluations
    torch.testing.assert_close(reference.prefill(ids[:, :-1]), fast.prefill(ids[:, :-1]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(reference.decode(ids[:, -1:]), fast.decode(ids[:, -1:]), atol=1e-5, rtol=1e-5)
    assert ReferenceDecoder.evaluations == before + 2
    with pytest.raises(ValueError, match="exceeds"):
        reference.prefill(torch.randint(4, 436, (3, CFG.text_len)))
    reference.prefill(torch.randint(4, 436, (1, CFG.sequence_length)))
    with pytest.raises(ValueError, match="sequence is complete"):
        reference.decode(torch.full((1, 1), CFG.image_offset))


def test_rowcol_positions_decode_as_the_full_forward_and_round_trip(tmp_path):
    """image_positions="rowcol" (a bake-off variant): the fast decoder adds the same row and
    column embeddings as the model's forward, so cached and uncached sampling agree, and a
    saved model loads back into the same class with the same tokens."""
    from mini_t2i.transformer.config import TransformerConfig
    from mini_t2i.transformer.model import build_model, load_transformer, save_transformer
    from mini_t2i.transformer.sampler import sample_image_tokens

    cfg = TransformerConfig(preset="tiny", image_positions="rowcol").with_layout(436, 24, 64, 4)
    model = build_model(cfg, seed=0).eval()
    with torch.no_grad():  # large tables, so that a decoder that ignored them would sample other tokens
        model.image_rows.weight.mul_(50)
        model.image_cols.weight.mul_(50)
    text = torch.randint(4, 436, (3, 24))
    text[:, 0] = 2
    cached = sample_image_tokens(model, cfg, text, [1, 2, 3], guidance_scale=1.5, top_k=8)
    assert torch.equal(cached, sample_image_tokens(model, cfg, text, [1, 2, 3], guidance_scale=1.5, top_k=8,
                                                   use_cache=False))
    loaded, loaded_cfg = load_transformer(save_transformer(model, cfg, tmp_path / "m"))
    assert type(loaded) is type(model) and loaded_cfg.image_positions == "rowcol"
    assert torch.equal(sample_image_tokens(loaded, loaded_cfg, text, [1, 2, 3], guidance_scale=1.5, top_k=8), cached)
    rope = build_model(TransformerConfig(preset="tiny").with_layout(436, 24, 64, 4), seed=0)
    assert type(rope).__name__ == "LlamaForCausalLM"  # the default stays transformers' own class
