"""Reranker training: the loss, deterministic batches, checkpoints and exact resume."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from mini_t2i.checkpoint import load_tensors
from mini_t2i.config import load_config
from mini_t2i.rerank.model import Reranker
from mini_t2i.data.pairs import load_pairs
from mini_t2i.rerank.train import RerankTrainConfig, make_batch, make_optimizer, train_rerank, train_step

REPO = Path(__file__).resolve().parents[2]


def tiny_cfg(tmp_path, run="run", *overrides):
    base = [f"text_tokenizer={REPO / 'mini_t2i' / 'pretrained' / 'text_shapes'}", "model.preset=tiny",
            "data.count=48", "val_data.count=24", f"cache_dir={tmp_path / 'cache'}", f"run_dir={tmp_path / run}",
            "steps=4", "batch_size=8", "hard_negatives=2", "warmup_steps=1", "lr=0.003", "eval_every=0",
            "log_every=1", "checkpoint_every=2", "num_threads=1", "device=cpu"]
    return load_config(RerankTrainConfig, REPO / "configs" / "rerank_tiny.yaml", base + list(overrides))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from mini_t2i.text.tokenizer import TextTokenizer

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("rerank")
    cfg = tiny_cfg(tmp)
    tokenizer = TextTokenizer.from_pretrained(cfg.text_tokenizer)
    cfg.model = cfg.model.with_layout(tokenizer.vocab_size, tokenizer.text_len, 64)
    return tmp, cfg, tokenizer, load_pairs(cfg.data, cfg.cache_dir, tokenizer)


def test_batches_depend_on_seed_and_step_only(setup):
    _, cfg, tokenizer, data = setup
    a, b = make_batch(data, tokenizer, cfg, 3), make_batch(data, tokenizer, cfg, 3)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    pixels, text_ids, neg_ids, gen_pixels, owners = a
    assert len(gen_pixels) == 0 and pixels.shape == (8, 3, 64, 64) and text_ids.shape == (8, 24) and len(neg_ids) == 16
    assert owners.tolist() == sorted(owners.tolist()) and set(owners.tolist()) <= set(range(8))  # each one's image row
    assert not torch.equal(text_ids, make_batch(data, tokenizer, cfg, 4)[1])


def test_training_steps_lower_the_loss_on_a_fixed_batch(setup):
    _, cfg, tokenizer, data = setup
    model = Reranker(cfg.model, seed=0)
    optimizer = make_optimizer(model, cfg)
    batch = make_batch(data, tokenizer, cfg, 0)
    losses = [train_step(model, optimizer, batch, cfg, 1)["loss"] for _ in range(6)]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0] - 0.05, losses


def test_training_saves_a_loadable_model_and_resumes_exactly(tmp_path):
    final = train_rerank(tiny_cfg(tmp_path, "a"), is_verbose=False)
    model = Reranker.from_pretrained(final)
    assert model.config.text_vocab_size == 436 and model.config.text_len == 24
    metrics = json.loads((final / "eval.json").read_text())
    assert 0 <= metrics["rerank_top1"] <= 1 and "hard_negative_per_task" in metrics
    assert sorted(p.name for p in (tmp_path / "a" / "checkpoints").glob("step_*")) == ["step_00000002", "step_00000004"]

    # Interrupted after step 2: keep only that checkpoint, then resume to step 4.
    run_b = tmp_path / "b"
    train_rerank(tiny_cfg(tmp_path, "b"), is_verbose=False)
    shutil.rmtree(run_b / "checkpoints" / "step_00000004")
    shutil.rmtree(run_b / "final")
    (run_b / "checkpoints" / "latest").write_text("step_00000002")
    train_rerank(tiny_cfg(tmp_path, "b"), is_verbose=False)
    a, _ = load_tensors(tmp_path / "a" / "checkpoints" / "step_00000004" / "model.safetensors")
    b, _ = load_tensors(run_b / "checkpoints" / "step_00000004" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(l)["step"] for l in (run_b / "metrics.jsonl").read_text().splitlines()
             if json.loads(l)["split"] == "train"]
    assert steps == [1, 2, 3, 4]


def test_config_checks_image_size():
    with pytest.raises(Exception, match="image_size"):
        load_config(RerankTrainConfig, None, ["data.image_size=32"])


def _generated_folder(folder, texts, count=6):
    """A `generate --prompts` folder: noise images (the mechanics, not a generator's
    quality, are under test) for the first `count` training captions."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    for i, text in enumerate(texts[:count]):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / f"{i:05d}.png")
        lines.append(json.dumps({"file_name": f"{i:05d}.png", "text": text, "seed": i}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_generated_negatives_join_the_batch_with_their_real_images(setup, tmp_path):
    from dataclasses import replace

    from mini_t2i.rerank.generated import load_generated

    _, cfg, tokenizer, data = setup
    folder = _generated_folder(tmp_path / "gen", data.texts)
    samples = load_generated(folder, data.texts, 64)
    assert samples.images.shape == (6, 64, 64, 3) and [data.texts[r] for r in samples.rows] == data.texts[:6]
    data = replace(data, generated=samples)
    cfg = replace(cfg, generated=str(folder), generated_per_step=3)
    pixels, text_ids, _, gen_pixels, owners = make_batch(data, tokenizer, cfg, 5)
    assert pixels.shape[0] == 8 and gen_pixels.shape == (3, 3, 64, 64)
    own = data.text_ids[torch.from_numpy(samples.rows)]  # the samples' captions: 3 of them are in the batch
    assert sum(bool((text_ids == row).all(1).any()) for row in own) >= 3
    assert all(torch.equal(x, y) for x, y in zip(make_batch(data, tokenizer, cfg, 5),
                                                 (pixels, text_ids, _, gen_pixels, owners)))
    model = Reranker(cfg.model, seed=0)
    optimizer = make_optimizer(model, cfg)
    batch = (pixels, text_ids, _, gen_pixels, owners)
    losses = [train_step(model, optimizer, batch, cfg, 1)["loss"] for _ in range(4)]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0], losses
    (folder / "metadata.jsonl").write_text(json.dumps({"file_name": "00000.png", "text": "a unicorn"}) + "\n")
    with pytest.raises(ValueError, match="not training captions"):
        load_generated(folder, data.texts, 64)
    with pytest.raises(ValueError, match="generated_per_step"):
        tiny_cfg(tmp_path, "x", f"generated={folder}")


def test_init_from_fine_tunes_a_saved_reranker(tmp_path):
    source = train_rerank(tiny_cfg(tmp_path, "a", "steps=2"), is_verbose=False)
    cfg = tiny_cfg(tmp_path, "b", f"init_from={source}", "steps=1", "lr=0")
    tuned = Reranker.from_pretrained(train_rerank(cfg, is_verbose=False))
    original = Reranker.from_pretrained(source)
    assert all(torch.equal(a, b) for a, b in zip(tuned.clip.state_dict().values(), original.clip.state_dict().values()))
    with pytest.raises(ValueError, match="init_from"):
        train_rerank(tiny_cfg(tmp_path, "c", f"init_from={source}", "model.preset=mini"), is_verbose=False)


def test_the_matching_head_trains_and_resumes_exactly(tmp_path):
    """matcher_layers > 0: the loss has the matching head's term, scores are its logits, the
    head is saved and restored with the towers, and a run resumes bit for bit."""
    final = train_rerank(tiny_cfg(tmp_path, "a", "model.matcher_layers=1"), is_verbose=False)
    model = Reranker.from_pretrained(final)
    assert model.matcher is not None
    records = [json.loads(l) for l in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    assert all(0 < r["itm"] < 5 and 0 <= r["itm_acc"] <= 1 for r in train)
    tensors, _ = load_tensors(final / "model.safetensors")
    assert any(k.startswith("matcher.") for k in tensors) and any(k.startswith("vision_model.") for k in tensors)
    # resumed from step 2: the same weights as the straight run
    train_rerank(tiny_cfg(tmp_path, "b", "model.matcher_layers=1", "steps=4", "stop_after=2"), is_verbose=False)
    train_rerank(tiny_cfg(tmp_path, "b", "model.matcher_layers=1"), is_verbose=False)
    again, _ = load_tensors(tmp_path / "b" / "final" / "model.safetensors")
    assert all(torch.equal(tensors[k], again[k]) for k in tensors)


def test_mirror_negatives_add_the_mirrored_images_of_relation_captions(setup):
    from dataclasses import replace

    from mini_t2i.rerank.negatives import mirror_axes

    _, cfg, tokenizer, data = setup
    sides = 0
    for step in range(6):
        plain = make_batch(data, tokenizer, cfg, step)
        mirrored = make_batch(data, tokenizer, replace(cfg, mirror_negatives=True), step)
        assert all(torch.equal(a, b) for a, b in zip(plain[:3], mirrored[:3]))  # same pairs and caption changes
        named = sum(sum(mirror_axes(t)) for t in tokenizer.decode(plain[1]))  # one mirror per side named
        assert len(plain[3]) == 0 and len(mirrored[3]) == named
        sides += len(mirrored[3])
    assert sides > 0  # position captions occur: 1 in 6 scenes


def test_a_matching_head_can_start_on_a_trained_reranker(tmp_path):
    plain = train_rerank(tiny_cfg(tmp_path, "plain"), is_verbose=False)
    tuned = train_rerank(tiny_cfg(tmp_path, "tuned", "model.matcher_layers=1", f"init_from={plain}", "steps=2",
                                  "mirror_negatives=true"), is_verbose=False)
    assert Reranker.from_pretrained(tuned).matcher is not None
    # a training checkpoint loads as a reranker folder too (its keys carry the module's "clip.")
    checkpoint = tmp_path / "tuned" / "checkpoints"
    step = sorted(p for p in checkpoint.iterdir() if p.is_dir())[-1]
    from_checkpoint, final = Reranker.from_pretrained(step).weights(), Reranker.from_pretrained(tuned).weights()
    assert step.name.endswith("2") and set(from_checkpoint) == set(final)  # the last step's checkpoint: final's weights
    assert all(torch.equal(from_checkpoint[k], final[k]) for k in final)
    with pytest.raises(ValueError, match="init_from"):  # other towers: refused
        train_rerank(tiny_cfg(tmp_path, "bad", "model.num_layers=2", f"init_from={plain}", "steps=1"),
                     is_verbose=False)


def test_reconstructions_from_trains_on_the_vq_reconstructions(tmp_path):
    import numpy as np

    from mini_t2i.data.cache import build_image_cache, cache_folder
    from mini_t2i.vq.evaluate import reconstruct
    from mini_t2i.vq.model import VQModel, VQModelConfig

    torch.manual_seed(0)
    vq = VQModel(VQModelConfig(image_size=64, downsample=4, channels=[8, 8], codebook_size=16, code_dim=4)).eval()
    vq.save_pretrained(tmp_path / "vq")
    cfg = tiny_cfg(tmp_path, "r", f"reconstructions_from={tmp_path / 'vq'}", "steps=2")
    train_rerank(cfg, is_verbose=False)
    renders = build_image_cache(cfg.data, cfg.cache_dir, is_verbose=False).images
    cached = list(cache_folder(cfg.data, cfg.cache_dir).glob("recon-*.npy"))
    assert len(cached) == 1  # what the run trained on: the reconstructions of every training image
    assert np.array_equal(np.load(cached[0]), reconstruct(vq, np.asarray(renders))[0])


def test_style_negatives_join_the_batch_for_folder_captions(setup):
    from dataclasses import replace

    import numpy as np

    from mini_t2i.data.pairs import PairData
    from mini_t2i.rerank.negatives import folder_styles

    _, cfg, tokenizer, _ = setup
    names = ["red circle", "blue square", "green star", "pink cross"]
    styles = [None, "flat", "outline"]
    texts = [name if style is None else f"{name}, {style} style" for name in names for style in styles]  # 12
    images = np.random.default_rng(0).integers(0, 256, (len(texts), 64, 64, 3), dtype=np.uint8)
    data = PairData(images, tokenizer.encode(texts), texts, [None] * len(texts), styles=folder_styles(texts))
    cfg = replace(cfg, hard_negatives=0, style_negatives=2)
    a, b = make_batch(data, tokenizer, cfg, 3), make_batch(data, tokenizer, cfg, 3)
    unread = PairData(images, data.text_ids, texts, [None] * len(texts))  # styles not read beforehand
    assert all(torch.equal(x, y) for x, y in zip(a, make_batch(unread, tokenizer, cfg, 3)))
    assert all(torch.equal(x, y) for x, y in zip(a, b))  # still a pure function of (seed, step)
    pixels, text_ids, neg_ids, _, owners = a
    assert len(neg_ids) == 2 * len(pixels) and owners.tolist() == sorted(owners.tolist())
    assert torch.bincount(owners).tolist() == [2] * len(pixels)  # two changes of each image's caption
    assert not (neg_ids[:, None] == text_ids[owners][:, None]).all(-1).any()  # never the caption itself
    model = Reranker(cfg.model, seed=0)
    losses = train_step(model, make_optimizer(model, cfg), a, cfg, 1)
    assert torch.isfinite(torch.tensor(losses["loss"]))


def test_style_negatives_need_captions_of_two_styles(tmp_path):
    cfg = tiny_cfg(tmp_path, "run", "style_negatives=1", "hard_negatives=0")  # Shapes World: no style words
    with pytest.raises(ValueError, match="one style only"):
        train_rerank(cfg, is_verbose=False)
