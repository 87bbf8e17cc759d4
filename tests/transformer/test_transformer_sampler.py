import pytest
import torch

from mini_t2i.text.special_ids import empty_caption
from mini_t2i.transformer.model import sequence_ids
from mini_t2i.transformer.sampler import (
    filter_logits,
    pick_tokens,
    sample_image_tokens,
    seeded_uniforms,
    stream_image_tokens,
)

from conftest import captions

SETTINGS = [dict(), dict(top_k=8), dict(top_p=0.8, temperature=0.7), dict(guidance_scale=3.0, top_k=16)]


@pytest.mark.parametrize("options", SETTINGS)
def test_cached_and_uncached_decoding_give_the_same_tokens(small_layout, small_model, tokenizer, options):
    text = captions(tokenizer, 3)
    cached = sample_image_tokens(small_model, small_layout, text, [1, 2, 3], **options)
    uncached = sample_image_tokens(small_model, small_layout, text, [1, 2, 3], use_cache=False, **options)
    assert torch.equal(cached, uncached)


def test_cached_logits_match_a_full_forward(small_layout, small_model, tokenizer):
    from transformers import StaticCache

    cfg = small_layout
    ids = sequence_ids(cfg, captions(tokenizer, 2), torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(3)))
    with torch.no_grad():
        full = small_model(input_ids=ids).logits  # (2, L, V)
        cache = StaticCache(config=small_model.config, max_cache_len=cfg.sequence_length)
        steps = [small_model(input_ids=ids[:, :cfg.text_len], past_key_values=cache, use_cache=True).logits]
        for i in range(cfg.text_len, cfg.sequence_length):
            steps.append(small_model(input_ids=ids[:, i:i + 1], past_key_values=cache, use_cache=True).logits)
    # cached one-row vs full-sequence fp32 kernels on logits <= 0.7; measured 2.1e-7 (1 and 2 threads)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("options", [dict(), dict(guidance_scale=2.0, top_p=0.9)])
def test_an_image_is_the_same_whatever_batch_it_is_sampled_in(small_layout, small_model, tokenizer, options):
    text = captions(tokenizer, 4)
    seeds = [11, 12, 13, 14]
    together = sample_image_tokens(small_model, small_layout, text, seeds, **options)
    alone = torch.cat([sample_image_tokens(small_model, small_layout, text[i:i + 1], seeds[i:i + 1], **options)
                       for i in range(4)])
    pairs = torch.cat([sample_image_tokens(small_model, small_layout, text[i:i + 2], seeds[i:i + 2], **options)
                       for i in (0, 2)])
    assert torch.equal(together, alone) and torch.equal(together, pairs)


def test_seeds_decide_the_image(small_layout, small_model, tokenizer):
    text = captions(tokenizer, 1).repeat(3, 1)
    tokens = sample_image_tokens(small_model, small_layout, text, [5, 5, 6])
    assert torch.equal(tokens[0], tokens[1]) and not torch.equal(tokens[0], tokens[2])


def test_only_image_tokens_are_sampled_even_when_text_ids_are_likelier(small_layout, tokenizer):
    from mini_t2i.transformer.model import build_model

    model = build_model(small_layout, seed=1).eval()
    with torch.no_grad():
        model.lm_head.bias = None
        model.lm_head.weight[:small_layout.text_vocab_size] *= 1000  # text ids dominate the raw logits
    tokens = sample_image_tokens(model, small_layout, captions(tokenizer, 2), [0, 1], temperature=2.0)
    assert tokens.shape == (2, 16) and tokens.min() >= 0 and tokens.max() < small_layout.codebook_size


def test_guidance_scale_one_is_conditional_and_zero_is_unconditional(small_layout, small_model, tokenizer):
    text = captions(tokenizer, 2)
    plain = sample_image_tokens(small_model, small_layout, text, [7, 8])
    assert torch.equal(sample_image_tokens(small_model, small_layout, text, [7, 8], guidance_scale=1.0), plain)
    uncond = empty_caption(small_layout.text_len).expand(2, -1)
    assert torch.equal(sample_image_tokens(small_model, small_layout, text, [7, 8], guidance_scale=0.0),
                       sample_image_tokens(small_model, small_layout, uncond, [7, 8]))


def test_completion_keeps_the_prefix_and_continues_the_same_draws(small_layout, small_model, tokenizer):
    text = captions(tokenizer, 2)
    full = sample_image_tokens(small_model, small_layout, text, [3, 4])
    # Given its own first 6 tokens, the sampler must finish the image exactly as before.
    assert torch.equal(sample_image_tokens(small_model, small_layout, text, [3, 4], prefix=full[:, :6]), full)
    other = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(0))
    completed = sample_image_tokens(small_model, small_layout, text, [3, 4], prefix=other)
    assert torch.equal(completed[:, :8], other)
    assert torch.equal(sample_image_tokens(small_model, small_layout, text, [3, 4], prefix=full), full)


def test_stream_yields_growing_prefixes_of_the_final_grid(small_layout, small_model, tokenizer):
    text = captions(tokenizer, 2)
    parts = list(stream_image_tokens(small_model, small_layout, text, [1, 2], yield_every=4))
    assert [p.shape[1] for p in parts] == [4, 8, 12, 16]
    for p in parts:
        assert torch.equal(p, parts[-1][:, :p.shape[1]])
    assert torch.equal(parts[-1], sample_image_tokens(small_model, small_layout, text, [1, 2]))


def test_top_k_keeps_exactly_the_k_largest():
    logits = torch.randn(5, 100, generator=torch.Generator().manual_seed(0))
    kept = filter_logits(logits, top_k=7).isfinite()
    assert kept.sum(-1).tolist() == [7] * 5
    assert torch.equal(kept, logits >= logits.topk(7).values[:, -1:])


@pytest.mark.parametrize("top_p", [0.05, 0.5, 0.9, 0.999])
def test_top_p_keeps_the_smallest_set_reaching_p(top_p):
    logits = torch.randn(6, 50, generator=torch.Generator().manual_seed(1)) * 2
    probs = logits.softmax(-1)
    kept = filter_logits(logits, top_p=top_p).isfinite()
    for row in range(6):
        mass = probs[row][kept[row]].sum()
        # this sum and the filter's cumsum add <= 50 fp32 probabilities in other orders: <= 50 x 6e-8 = 3e-6 apart;
        # the closest row is 3.7e-5 above top_p
        assert mass >= top_p - 3e-6 and kept[row][probs[row].argmax()]
        smallest_kept = probs[row][kept[row]].min()
        assert mass - smallest_kept < top_p  # dropping any kept token would fall short
        dropped = probs[row][~kept[row]]
        assert dropped.numel() == 0 or dropped.max() <= smallest_kept  # kept = the most likely ones


def test_filters_compose():  # bad top_k / top_p are the pipeline's to refuse (tests/pipeline)
    logits = torch.randn(2, 30)
    both = filter_logits(logits, top_k=10, top_p=0.5).isfinite()
    assert (both <= filter_logits(logits, top_k=10).isfinite()).all()


def test_inverse_cdf_picks_never_land_on_filtered_tokens():
    logits = filter_logits(torch.randn(1, 40, generator=torch.Generator().manual_seed(2)), top_k=5).expand(1000, -1)
    u = torch.cat([torch.tensor([0.0, 1e-15, 1 - 1e-15]), torch.rand(997, generator=torch.Generator().manual_seed(3))])
    picks = pick_tokens(logits, u, temperature=1.0)
    assert logits[torch.arange(1000), picks].isfinite().all()
    assert len(picks.unique()) == 5  # and every kept token is reachable
    assert torch.equal(pick_tokens(logits[:3], u[:3], temperature=0.0), logits[:3].argmax(-1))


def test_seeded_uniforms_depend_only_on_the_seed():
    assert torch.equal(seeded_uniforms([4, 9], 10)[1], seeded_uniforms([9], 10)[0])


def test_bad_inputs_name_the_problem(small_layout, small_model, tokenizer):
    text = captions(tokenizer, 2)
    with pytest.raises(ValueError, match="one seed per image"):
        sample_image_tokens(small_model, small_layout, text, [1])
    with pytest.raises(ValueError, match="text_ids must be"):
        sample_image_tokens(small_model, small_layout, text[:, :5], [1, 2])
    with pytest.raises(ValueError, match="prefix codes"):
        sample_image_tokens(small_model, small_layout, text, [1, 2], prefix=torch.full((2, 3), 64))
    with pytest.raises(ValueError, match="prefix must be"):
        sample_image_tokens(small_model, small_layout, text, [1, 2], prefix=torch.zeros(1, 3, dtype=torch.long))


def test_a_rising_guidance_schedule_starts_unguided_and_ends_at_the_scale(small_model, small_layout, tokenizer):
    """guidance_schedule="rising": token p is drawn at 1 + (g - 1)(p + 1)/(h*w), so the first
    token is nearly unguided and the last is at the full scale."""
    from mini_t2i.transformer.sampler import guidance_at

    assert guidance_at(3.0, "rising", 0, 256) == 1 + 2 / 256 and guidance_at(3.0, "rising", 255, 256) == 3.0
    assert guidance_at(3.0, "constant", 0, 256) == 3.0
    text = captions(tokenizer, 2)
    rising = sample_image_tokens(small_model, small_layout, text, [3, 4], guidance_scale=3.0,
                                 guidance_schedule="rising")
    constant = sample_image_tokens(small_model, small_layout, text, [3, 4], guidance_scale=3.0)
    assert rising.shape == constant.shape and not torch.equal(rising, constant)
    # At g = 1 there is nothing to schedule: both are plain conditional sampling.
    assert torch.equal(sample_image_tokens(small_model, small_layout, text, [3, 4], guidance_schedule="rising"),
                       sample_image_tokens(small_model, small_layout, text, [3, 4]))
