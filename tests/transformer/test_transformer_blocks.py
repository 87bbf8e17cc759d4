"""Block-factorized autoregression (image_order="blocks"): exact order, causal model, a fast
decoder equal to the model's forward, and the sampler's promises (seeds, prefix, guidance)."""

import pytest
import torch

from mini_t2i.transformer.blocks import sequence_order, to_raster_order, to_sequence_order
from mini_t2i.transformer.config import TransformerConfig, config_parameter_count
from mini_t2i.transformer.decoder import BlockDecoder, BlockReferenceDecoder, ImageTokenDecoder
from mini_t2i.transformer.model import build_model, compute_loss, load_transformer, parameter_count, save_transformer
from mini_t2i.transformer.sampler import sample_image_tokens, stream_image_tokens

# 2 main layers and 2 depth layers over a 4x4 grid of 64 codes in 2x2 blocks (4 blocks).
CFG = TransformerConfig(preset="tiny", image_order="blocks", depth_layers=2, rope_theta=500.0).with_layout(
    436, 24, 64, 4)
GEN = torch.Generator().manual_seed(0)
TEXT = torch.randint(4, 436, (3, CFG.text_len), generator=GEN)
CODES = torch.randint(0, 64, (3, CFG.image_len), generator=GEN)


@pytest.fixture(scope="module")
def model():
    return build_model(CFG, seed=0).eval()


def test_the_block_order_walks_each_2x2_block_in_turn_and_inverts():
    assert sequence_order(CFG).tolist() == [0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15]
    raster = torch.arange(64).view(1, 64) % 64
    big = TransformerConfig(preset="tiny", image_order="blocks").with_layout(436, 24, 64, 8)
    assert torch.equal(to_raster_order(big, to_sequence_order(big, raster)), raster)
    with pytest.raises(ValueError, match="multiple of block_size"):
        TransformerConfig(preset="tiny", image_order="blocks", block_size=3).with_layout(436, 24, 64, 4).check_layout()


def test_code_0_is_a_trained_code_in_the_depth_table(model):
    assert model.depth.embed_tokens.padding_idx is None and model.depth.embed_tokens.weight[0].abs().sum() > 0
    assert model.model.embed_tokens.padding_idx == 0  # the caption's PAD, as in the raster model


def test_parameter_count_and_main_length(model):
    assert parameter_count(model) == config_parameter_count(CFG)
    assert CFG.main_length == CFG.text_len + 4 - 1  # one position per block, the last never read


def test_the_model_is_causal_in_sequence_order(model):
    """Changing the codes from sequence position p on leaves the logits of positions <= p
    unchanged (the factorisation is exact), and changes a later one."""
    codes = to_sequence_order(CFG, CODES)
    with torch.no_grad():
        before = model(TEXT, codes)
        for p in (1, 4, 9):  # inside a block, at a block's start, inside a later block
            changed = codes.clone()
            changed[:, p:] = (changed[:, p:] + 1) % 64
            after = model(TEXT, changed)
            # the same fp32 computation on the same inputs up to p: measured 0.0
            torch.testing.assert_close(after[:, :p + 1], before[:, :p + 1])
            assert (after[:, p + 1:] - before[:, p + 1:]).abs().max() > 1e-3


def test_loss_is_the_cross_entropy_of_every_code_and_trains(model):
    loss, metrics = compute_loss(model, CFG, TEXT, CODES)
    assert abs(metrics["image_loss"] - float(torch.log(torch.tensor(64.0)))) < 0.5  # near-uniform at init
    loss.backward()
    unused = {n for n, p in model.named_parameters() if p.grad is None}
    assert unused == set(), unused  # every weight is trained (the main one's lm-head-less model included)
    assert model.depth.layers[0].mlp.down_proj.weight.grad.abs().sum() > 0
    assert model.model.layers[0].mlp.down_proj.weight.grad.abs().sum() > 0
    model.zero_grad()
    with pytest.raises(ValueError, match="image_order=raster"):
        compute_loss(model, CFG, TEXT, CODES, text_loss_weight=0.125)


def test_the_fast_decoder_gives_the_model_logits_at_every_position(model):
    codes = to_sequence_order(CFG, CODES)
    ids = torch.cat([TEXT, codes + CFG.image_offset], dim=1)
    with torch.no_grad():
        expected = model(TEXT, codes)  # (3, 16, 64)
    for prefill_codes in (0, 4):  # the caption alone, and the caption with one whole block
        fast, reference = BlockDecoder(model, CFG, max_batch=4), BlockReferenceDecoder(model, CFG, max_batch=4)
        evaluations = ImageTokenDecoder.evaluations
        got = [fast.prefill(ids[:, :CFG.text_len + prefill_codes])]
        slow = [reference.prefill(ids[:, :CFG.text_len + prefill_codes])]
        for p in range(CFG.text_len + prefill_codes, ids.shape[1] - 1):
            got.append(fast.decode(ids[:, p:p + 1]))
            slow.append(reference.decode(ids[:, p:p + 1]))
        assert ImageTokenDecoder.evaluations == evaluations + len(got)
        # cached one-row vs full-sequence fp32 kernels on logits <= 0.7, as the raster decoder's test
        torch.testing.assert_close(torch.stack(got, 1), expected[:, prefill_codes:], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(torch.stack(slow, 1), expected[:, prefill_codes:], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="whole blocks"):
        BlockDecoder(model, CFG, max_batch=4).prefill(ids[:, :CFG.text_len + 3])


def test_sampling_keeps_seeds_prefix_and_matches_the_reference(model):
    for guidance in (1.0, 2.0):
        batched = sample_image_tokens(model, CFG, TEXT, [5, 6, 7], guidance_scale=guidance, top_k=8)
        alone = sample_image_tokens(model, CFG, TEXT[1:2], [6], guidance_scale=guidance, top_k=8)
        slow = sample_image_tokens(model, CFG, TEXT, [5, 6, 7], guidance_scale=guidance, top_k=8, use_cache=False)
        assert torch.equal(batched[1:2], alone) and torch.equal(batched, slow)
    for rows in (1, 2, 3):  # a partial block row (1, 3) is forced in the loop, a whole one prefilled
        prefix = CODES[:, :rows * 4]
        out = sample_image_tokens(model, CFG, TEXT, [5, 6, 7], prefix=prefix)
        assert torch.equal(out[:, :rows * 4], prefix)
    assert torch.equal(sample_image_tokens(model, CFG, TEXT, [5, 6, 7], prefix=CODES), CODES)


def test_streaming_yields_whole_raster_rows_and_ends_with_the_sample(model):
    parts = list(stream_image_tokens(model, CFG, TEXT, [5, 6, 7], top_k=8, yield_every=4))
    final = sample_image_tokens(model, CFG, TEXT, [5, 6, 7], top_k=8)
    assert [p.shape[1] for p in parts] == [2, 8, 10, 16]  # 1 block: half a row...; 2 blocks: 2 rows
    assert torch.equal(parts[-1], final)
    for part in parts[:-1]:
        assert torch.equal(part, final[:, :part.shape[1]])


def test_a_saved_block_model_loads_as_one(model, tmp_path):
    loaded, cfg = load_transformer(save_transformer(model, CFG, tmp_path / "m"))
    assert type(loaded) is type(model) and cfg == CFG
    assert torch.equal(sample_image_tokens(loaded, cfg, TEXT, [1, 2, 3], top_k=8),
                       sample_image_tokens(model, CFG, TEXT, [1, 2, 3], top_k=8))
