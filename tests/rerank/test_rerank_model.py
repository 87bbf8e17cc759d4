"""The reranker model: EOS pooling, score shapes and invariants, save/load, clear errors."""

from pathlib import Path

import numpy as np
import pytest
import torch

from mini_t2i.checkpoint import CheckpointError
from mini_t2i.rerank.model import Reranker, RerankConfig, count_parameters
from mini_t2i.text.special_ids import EOS_ID

REPO = Path(__file__).resolve().parents[2]
TEXT_TOKENIZER = REPO / "mini_t2i" / "pretrained" / "text_shapes"
CAPTIONS = ["a red circle", "two blue squares", "a green star left of a yellow circle", "three purple circles",
            "a cyan cross and a pink diamond"]


@pytest.fixture(scope="module")
def tokenizer():
    from mini_t2i.text.tokenizer import TextTokenizer

    return TextTokenizer.from_pretrained(TEXT_TOKENIZER)


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.set_num_threads(1)
    cfg = RerankConfig(preset="tiny").with_layout(tokenizer.vocab_size, tokenizer.text_len, 64)
    return Reranker(cfg, seed=0).eval()


def images(n, seed=0, size=64):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_text_tower_pools_at_our_eos(model, tokenizer):
    ids = tokenizer.encode(CAPTIONS)
    assert model.clip.config.text_config.eos_token_id == EOS_ID == tokenizer.eos_id
    out = model.clip.text_model(input_ids=ids)
    eos_pos = (ids == EOS_ID).int().argmax(1)
    assert torch.equal(out.pooler_output, out.last_hidden_state[torch.arange(len(ids)), eos_pos])
    # Ids after EOS (pads, or anything) never change the embedding: the text tower is causal.
    noisy = ids.clone()
    after = torch.arange(ids.shape[1])[None] > eos_pos[:, None]
    noisy[after] = torch.randint(4, tokenizer.vocab_size, (int(after.sum()),))
    # masked positions weigh exactly 0, so only kernel reassociation could differ; measured 0.0 (scale 0.52)
    torch.testing.assert_close(model.text_embeds(noisy), model.text_embeds(ids), rtol=0, atol=1e-6)
    changed = ids.clone()
    changed[:, 1] = (changed[:, 1] + 1) % tokenizer.vocab_size  # a word before EOS does change it
    assert not torch.allclose(model.text_embeds(changed), model.text_embeds(ids), atol=1e-4)  # measured 0.37


def test_score_broadcasts_one_caption_and_matches_the_matrix(model, tokenizer):
    x = images(6)
    one = tokenizer.encode(CAPTIONS[2])  # (1, text_len)
    s = model.score(x, one)
    # a cosine of fp32 unit vectors exceeds 1 by at most a few ulp (6e-8)
    assert s.shape == (6,) and s.dtype == torch.float32 and (s.abs() <= 1 + 1e-5).all()
    torch.testing.assert_close(s, model.score(x, one.repeat(6, 1)))  # fp32 defaults (atol 1e-5); measured 4.5e-8
    ids = tokenizer.encode(CAPTIONS[:5] + CAPTIONS[:1])
    matrix = model.score_matrix(x, ids)
    assert matrix.shape == (6, 6)
    torch.testing.assert_close(torch.diagonal(matrix), model.score(x, ids))  # fp32 defaults; measured 1.5e-8


def test_scores_do_not_depend_on_the_batch_size_and_resize_larger_images(model, tokenizer):
    x = images(7, seed=1)
    ids = tokenizer.encode(CAPTIONS[0])
    # batched vs unbatched fp32 kernels on cosines <= 1; measured 6.7e-8 (1 and 2 threads)
    torch.testing.assert_close(model.score(x, ids, batch_size=2), model.score(x, ids), rtol=0, atol=1e-5)
    # Flat 16 px blocks (like Shapes World's flat colours): resizing 128 -> 64 keeps them.
    blocks = np.repeat(np.repeat(images(7, seed=3, size=4), 16, axis=1), 16, axis=2)  # (7, 64, 64, 3)
    big = np.repeat(np.repeat(blocks, 2, axis=1), 2, axis=2)  # (7, 128, 128, 3)
    # antialiased bilinear blends 1/8 of the next block at block edges (a filter effect, not rounding):
    # measured 3.4e-3 on 1 and 2 threads; another image moves the scores by 5.6e-2
    torch.testing.assert_close(model.score(big, ids), model.score(blocks, ids), rtol=0, atol=1e-2)
    assert model.training is False


def test_bad_text_ids_are_refused_with_the_reason(model, tokenizer):
    ids = tokenizer.encode(CAPTIONS[:2])
    with pytest.raises(ValueError, match="EOS"):
        model.score(images(2), ids.masked_fill(ids == EOS_ID, 5))
    with pytest.raises(ValueError, match="text_len"):
        model.score(images(2), ids[:, :10])
    with pytest.raises(ValueError, match="1 row or one per image"):
        model.score(images(3), ids)


def test_save_load_round_trip_gives_identical_scores(model, tokenizer, tmp_path):
    model.save_pretrained(tmp_path / "r")
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["config.yaml", "model.safetensors"]
    loaded = Reranker.from_pretrained(tmp_path / "r")
    assert (loaded.config.text_len, loaded.config.text_vocab_size, loaded.config.image_size) == (24, 436, 64)
    x, ids = images(5, seed=2), tokenizer.encode(CAPTIONS)
    assert torch.equal(loaded.score(x, ids), model.score(x, ids))


def test_missing_or_corrupt_files_raise_clear_errors(model, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        Reranker.from_pretrained(tmp_path / "nowhere")
    model.save_pretrained(tmp_path / "r")
    weights = tmp_path / "r" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        Reranker.from_pretrained(tmp_path / "r")
    weights.unlink()
    with pytest.raises(CheckpointError, match="does not exist"):
        Reranker.from_pretrained(tmp_path / "r")
    (tmp_path / "r" / "config.yaml").unlink()
    with pytest.raises(CheckpointError, match="no config.yaml"):
        Reranker.from_pretrained(tmp_path / "r")


def test_presets_and_layout_checks():
    assert count_parameters(RerankConfig(preset="tiny").with_layout(436, 24, 64)) < 100_000
    with pytest.raises(ValueError, match="layout not set"):
        Reranker(RerankConfig(preset="tiny"))
    with pytest.raises(ValueError, match="multiple of patch_size"):
        RerankConfig(preset="tiny", image_size=72)


def test_the_matching_head_reads_the_pair_and_scores_in_its_place(tmp_path, tokenizer):
    """With matcher_layers, `score` is the head's logit of each (image, caption); the cosine
    stays available; the head sees the image (other patches, other logit) and every caption
    token up to EOS; a folder round trip keeps it; a head in the file but not the config is refused."""
    from mini_t2i.pixels import pixels_from_uint8

    cfg = RerankConfig(preset="tiny", matcher_layers=1).with_layout(436, 24, 64)
    model = Reranker(cfg, seed=0).eval()
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    ids = tokenizer.encode(["a red circle", "two blue squares", "a green star above a red circle"])
    logits = model.score(images, ids)
    assert logits.shape == (3,) and not torch.allclose(logits, model.cosine(images, ids))
    torch.testing.assert_close(model.score(images, ids, use_head=False), model.cosine(images, ids))  # same call
    with pytest.raises(ValueError, match="no matching head"):
        Reranker(RerankConfig(preset="tiny").with_layout(436, 24, 64)).score(images, ids, use_head=True)
    with torch.no_grad():
        x = pixels_from_uint8(images, 64)
        _, patches = model.image_features(x)
        torch.testing.assert_close(model.match_logits(patches, ids), logits)  # the same pass, fp32: measured 0.0
        other = model.match_logits(patches.flip(0), ids)
    assert (other - logits).abs().max() > 1e-6
    loaded = Reranker.from_pretrained(model.save_pretrained(tmp_path / "m"))
    torch.testing.assert_close(loaded.score(images, ids), logits)  # same weights, same computation: measured 0.0
    (tmp_path / "m" / "config.yaml").write_text((tmp_path / "m" / "config.yaml").read_text().replace(
        "matcher_layers: 1", "matcher_layers: 0"))
    with pytest.raises(CheckpointError, match="matching head"):
        Reranker.from_pretrained(tmp_path / "m")


def test_a_new_head_starts_from_the_text_towers_token_tables():
    cfg = RerankConfig(preset="tiny", matcher_layers=1).with_layout(436, 24, 64)
    model = Reranker(cfg, seed=0)
    clip_embeddings = model.clip.text_model.embeddings
    model.matcher.copy_text_embeddings(clip_embeddings)
    ours = model.matcher.encoder.embeddings
    assert torch.equal(ours.word_embeddings.weight, clip_embeddings.token_embedding.weight)
    assert torch.equal(ours.position_embeddings.weight, clip_embeddings.position_embedding.weight)
    assert ours.word_embeddings.weight.data_ptr() != clip_embeddings.token_embedding.weight.data_ptr()  # copies
