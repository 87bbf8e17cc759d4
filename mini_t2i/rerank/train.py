"""Train the CLIP reranker (stage 3) on image-caption pairs.

    mini-t2i train rerank --config configs/rerank_shapes64.yaml [key=value ...]
    python train/train_rerank.py --config configs/rerank_shapes64.yaml [key=value ...]

The loss is CLIP's symmetric InfoNCE with a learnable temperature, plus, for Shapes
World, hard-negative captions (mini_t2i.rerank.negatives) as extra columns of the
image -> text softmax, and optionally the generator's own samples for training
captions as extra columns of the text -> image softmax (mini_t2i.rerank.generated;
usually to fine-tune a trained reranker, `init_from`). The images come from the
decoded-image cache (uint8 memmap, mini_t2i.data.cache) and the captions are
tokenised once, so a step costs only the model. No augmentation: in Shapes World position and colour are what captions say.

The batch of step s, hard negatives included, is a pure function of (seed, s); the
checkpoint holds the weights, AdamW's state and the step, so a run killed at any
point resumes to the same weights bit for bit on the same machine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mini_t2i.checkpoint import resume_training_checkpoint, save_training_checkpoint
from mini_t2i.config import save_config
from mini_t2i.data.config import DataConfig, check_image_sizes
from mini_t2i.data.pairs import PairData, start_pair_run
from mini_t2i.pixels import pixels_from_uint8
from mini_t2i.rerank.model import Reranker, RerankConfig
from mini_t2i.training import RunConfig, RunLog, copy_weights, progress, save_final, step_generator, use_bf16


@dataclass
class RerankTrainConfig(RunConfig):
    data: DataConfig = field(default_factory=lambda: DataConfig(source="shapes", split="train", count=50000))
    val_data: DataConfig = field(default_factory=lambda: DataConfig(source="shapes", split="val", count=600))
    text_tokenizer: str = "mini_t2i/pretrained/text_shapes"  # the tokenizer whose ids the reranker reads
    model: RerankConfig = field(default_factory=RerankConfig)
    run_dir: str = "runs/rerank"
    cache_dir: str = "data/cache"  # decoded-image caches, shared with the other stages
    steps: int = 800
    batch_size: int = 128  # image-caption pairs per step (each one's in-batch negatives)
    warmup_steps: int = 50
    weight_decay: float = 0.1  # on matrices only, not on norms, biases or the temperature
    eval_every: int = 200  # val reranking accuracy (0 = only at the end)
    checkpoint_every: int = 100
    hard_negatives: int = 3  # perturbed captions per image (Shapes World metadata only; 0 = off)
    # Folder captions ("<name>, <style> style", the real-data builders'): this many captions per
    # image with the style swapped for another of the training folder's (added, or dropped), as
    # extra image -> text columns beside the hard negatives (negatives.style_negative_captions).
    style_negatives: int = 0
    generated: str = ""  # a `generate --prompts` folder of generator samples for training captions (generated.py)
    generated_per_step: int = 0  # of those per step, each with its caption's real image as a positive
    max_logit_scale: float = 4.6052  # log(100): CLIP's clamp on the learnable temperature
    matcher_weight: float = 1.0  # weight of the matching head's loss (model.matcher_layers > 0)
    # Each image whose caption says left/right (above/below) also enters, mirrored across that
    # axis, as a negative image for every caption (negatives.mirrored_negatives): the same
    # objects with the relation reversed, the one thing a relation word is about.
    mirror_negatives: bool = False
    # Each image also enters shifted so that its content runs out of the frame
    # (negatives.cut_by_frame_negatives), as a negative image for every caption: a generator's
    # objects cut by the border should lose to whole ones.
    frame_negatives: bool = False
    # A VQ folder: the training images are replaced by their reconstructions through it (cached
    # beside the image cache, mini_t2i/vq/reconstructions.py), so the reranker learns on what it
    # scores, decoded images; with `generated`, a real image and a sample then differ only in
    # what the generator got wrong, not in the tokenizer's artifacts. Val stays on renders.
    reconstructions_from: str = ""
    # init_from: a saved reranker of the same model config to fine-tune

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_size < 2:
            raise ValueError("batch_size must be >= 2 (contrastive learning needs negatives)")
        if self.hard_negatives < 0 or self.style_negatives < 0:
            raise ValueError(f"hard_negatives={self.hard_negatives} and style_negatives={self.style_negatives} "
                             "must be >= 0 (0 = off)")
        if bool(self.generated) != (self.generated_per_step > 0) or self.generated_per_step > self.batch_size:
            raise ValueError(f"generated={self.generated!r} and generated_per_step={self.generated_per_step}: set "
                             "both (a samples folder and 1..batch_size per step) or neither")
        check_image_sizes(self.model.image_size, data=self.data, val_data=self.val_data)


def make_batch(data: PairData, tokenizer, cfg: RerankTrainConfig, step: int):
    """The batch of `step`, a pure function of (seed, step): pixels (B, 3, S, S),
    text_ids (B, L), the hard-negative text_ids (M, L), M <= B * (hard_negatives +
    style_negatives), the
    negative images (G, 3, S, S): generated_per_step generator samples (their captions'
    real images are among the B), with mirror_negatives the mirrored images, with
    frame_negatives the images shifted out of the frame, and
    (M,) the batch row of each hard negative's image."""
    from mini_t2i.rerank.negatives import hard_negative_captions

    g = step_generator(cfg.seed, step)
    rows = torch.randperm(len(data.text_ids), generator=g)[: cfg.batch_size].numpy()
    size = cfg.model.image_size
    gen_pixels = torch.zeros(0, 3, size, size)
    if cfg.generated_per_step:
        picked = torch.randperm(len(data.generated.rows), generator=g)[: cfg.generated_per_step].numpy()
        rows = np.concatenate([data.generated.rows[picked], rows[: cfg.batch_size - len(picked)]])
        gen_pixels = pixels_from_uint8(data.generated.images[np.sort(picked)], size)
    rows = np.sort(rows)  # sorted: memmap reads
    images = np.asarray(data.images[rows])
    pixels = pixels_from_uint8(images, size)
    if cfg.mirror_negatives:
        from mini_t2i.rerank.negatives import mirrored_negatives

        mirrored = mirrored_negatives(images, [data.texts[r] for r in rows])
        if len(mirrored):
            gen_pixels = torch.cat([gen_pixels, pixels_from_uint8(mirrored, size)])
    if cfg.frame_negatives:
        from mini_t2i.rerank.negatives import cut_by_frame_negatives

        cut = cut_by_frame_negatives(images, np.random.default_rng([cfg.seed, step, 2]))
        if len(cut):
            gen_pixels = torch.cat([gen_pixels, pixels_from_uint8(cut, size)])
    rng = np.random.default_rng([cfg.seed, step])
    changed = [(i, c) for i, r in enumerate(rows) for c in hard_negative_captions(data.metas[r], cfg.hard_negatives, rng)]
    if cfg.style_negatives:
        from mini_t2i.rerank.negatives import folder_styles, style_negative_captions

        if data.styles is None:  # train_rerank reads them once; a caller of make_batch alone may not have
            data.styles = folder_styles(data.texts)
        changed += [(i, c) for i, r in enumerate(rows)
                    for c in style_negative_captions(data.texts[r], data.styles, cfg.style_negatives, rng)]
        changed.sort(key=lambda pair: pair[0])  # each image's changes together (the matching head's lists)
    owners = torch.tensor([i for i, _ in changed], dtype=torch.long)
    neg_ids = (tokenizer.encode([c for _, c in changed]) if changed
               else torch.zeros(0, data.text_ids.shape[1], dtype=torch.long))
    return pixels, data.text_ids[torch.from_numpy(rows)], neg_ids, gen_pixels, owners


def contrastive_loss(model: Reranker, pixels: torch.Tensor, text_ids: torch.Tensor, neg_ids: torch.Tensor,
                     gen_pixels: torch.Tensor | None = None, neg_owners: torch.Tensor | None = None,
                     matcher_weight: float = 1.0, generator: torch.Generator | None = None) -> dict:
    """CLIP's symmetric InfoNCE, with the hard negatives as extra image -> text columns
    and the generated images as extra text -> image columns.

    A column whose caption is token for token image i's own caption is not a negative
    for image i (Shapes World repeats short captions), so it is masked out. Generated
    images are negatives for every caption, their own included: a real image should
    beat the generator's attempt at it.
    """
    b = len(pixels)
    img, patches = model.image_features(pixels)  # (B, D), (B, 1 + P, d)
    all_ids = torch.cat([text_ids, neg_ids])  # (B + M, L)
    txt = model.text_embeds(all_ids)  # (B + M, D)
    logits = model.clip.logit_scale.exp() * img @ txt.T  # (B, B + M)
    same = (text_ids[:, None, :] == all_ids[None, :, :]).all(-1)  # (B, B + M)
    same[torch.arange(b), torch.arange(b)] = False  # the positive stays
    logits = logits.masked_fill(same, float("-inf"))
    labels = torch.arange(b, device=logits.device)
    loss_i2t = F.cross_entropy(logits, labels)
    t2i = logits[:, :b].T  # (B, B): caption -> real images
    if gen_pixels is not None and len(gen_pixels):
        gen = model.image_embeds(gen_pixels)  # (G, D)
        t2i = torch.cat([t2i, model.clip.logit_scale.exp() * txt[:b] @ gen.T], dim=1)  # (B, B + G)
    loss_t2i = F.cross_entropy(t2i, labels)
    with torch.no_grad():
        acc = (logits.argmax(1) == labels).float().mean()
    out = {"loss": (loss_i2t + loss_t2i) / 2, "i2t": loss_i2t.detach(), "t2i": loss_t2i.detach(), "acc": acc}
    if model.matcher is not None:
        itm = matching_loss(model, patches, text_ids, neg_ids, neg_owners, logits.detach(), same, generator)
        out["itm"], out["itm_acc"] = itm["loss"].detach(), itm["acc"]
        out["loss"] = out["loss"] + matcher_weight * itm["loss"]
    return out


def matching_loss(model: Reranker, patches: torch.Tensor, text_ids: torch.Tensor, neg_ids: torch.Tensor,
                  neg_owners: torch.Tensor | None, sims: torch.Tensor, same: torch.Tensor,
                  generator: torch.Generator | None, other_images: int = 3) -> dict:
    """The matching head's loss: two softmaxes over its logits, one per image and one per caption.

    - Each image reads its caption against all its caption changes (the hard negatives: one
      detail changed) and one other caption of the batch; a softmax over that list.
    - Each caption reads its image against `other_images` other images of the batch; a
      softmax over those.
    The in-batch ones are drawn in proportion to the contrastive similarity, so the head
    learns on the pairs the cosine finds hardest (ALBEF's and BLIP's hard-negative mining).
    A list, not ALBEF's binary loss: with one positive per list and a fresh head, the binary
    loss sat at "no" for every pair (docs/rerank.md); the lists are the two comparisons
    reranking and the diagnostic make. sims (B, B + M) the contrastive logits, same (B, B + M)
    the columns with the row's own caption text (never a negative)."""
    b, device = len(patches), patches.device
    own_text = same[:, :b] | torch.eye(b, dtype=torch.bool, device=device)  # (B, B) image x caption
    in_batch = sims[:, :b].masked_fill(own_text, float("-inf"))  # (B, B)
    weights = in_batch.softmax(dim=1).nan_to_num(0.0) + 1e-9  # a row with no other caption draws any
    other_text = torch.multinomial(weights, 1, generator=generator).squeeze(1)  # (B,) a caption for each image
    k = min(other_images, b - 1)
    image_weights = in_batch.T.softmax(dim=1).nan_to_num(0.0) + 1e-9  # (B captions, B images)
    other_image = torch.multinomial(image_weights, k, generator=generator)  # (B, k) images for each caption

    # One matcher call for every (image, caption) pair of both lists: R rows.
    owners = neg_owners.to(device) if neg_owners is not None else torch.zeros(0, dtype=torch.long, device=device)
    rows = torch.arange(b, device=device)
    image_rows = torch.cat([rows, owners, rows, other_image.flatten()])
    captions = torch.cat([text_ids, neg_ids, text_ids[other_text], text_ids.repeat_interleave(k, 0)])
    logits = model.match_logits(patches[image_rows], captions)  # (R,)
    pos, neg, other, img = logits.split([b, len(owners), b, b * k])

    # Per image: [own caption, other caption, its changes...] padded into (B, 2 + max changes).
    per_image = torch.full((b, 2 + _most_per_owner(owners, b)), float("-inf"), device=device, dtype=logits.dtype)
    per_image[:, 0], per_image[:, 1] = pos, other
    if len(owners):
        slot = torch.arange(len(owners), device=device) - torch.searchsorted(owners, owners)  # rank within owner
        per_image[owners, 2 + slot] = neg.masked_fill((neg_ids == text_ids[owners]).all(-1), float("-inf"))
    drop = (text_ids[other_text] == text_ids).all(-1)  # a drawn caption with the same text is no negative
    per_image[:, 1] = per_image[:, 1].masked_fill(drop, float("-inf"))
    per_caption = torch.cat([pos[:, None], img.view(b, k)], dim=1)  # (B, 1 + k)
    per_caption[:, 1:] = per_caption[:, 1:].masked_fill(own_text.T.gather(1, other_image), float("-inf"))
    target = torch.zeros(b, dtype=torch.long, device=device)
    loss = (F.cross_entropy(per_image, target) + F.cross_entropy(per_caption, target)) / 2
    with torch.no_grad():  # the share of images whose own caption tops their list
        acc = (per_image.argmax(1) == 0).float().mean()
    return {"loss": loss, "acc": acc}


def _most_per_owner(owners: torch.Tensor, b: int) -> int:
    return int(torch.bincount(owners, minlength=b).max()) if len(owners) else 0


def make_optimizer(model: Reranker, cfg: RerankTrainConfig) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embedding" not in n)]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)


def train_step(model: Reranker, optimizer: torch.optim.Optimizer, batch, cfg: RerankTrainConfig, step: int) -> dict:
    """One optimizer step on `batch` (make_batch's output); returns the losses as floats."""
    for group in optimizer.param_groups:
        group["lr"] = cfg.learning_rate(step)
    device = model.device
    pixels, text_ids, neg_ids, gen_pixels, owners = (t.to(device) for t in batch)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16(cfg.precision, device)):
        out = contrastive_loss(model, pixels, text_ids, neg_ids, gen_pixels, owners, cfg.matcher_weight,
                               step_generator(cfg.seed + 1, step))
    optimizer.zero_grad(set_to_none=True)
    out["loss"].backward()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    with torch.no_grad():  # CLIP clamps the temperature at 100 so the logits stay well scaled
        model.clip.logit_scale.clamp_(0, cfg.max_logit_scale)
    return {k: v.item() for k, v in out.items()} | {"logit_scale": model.clip.logit_scale.exp().item()}


def train_rerank(cfg: RerankTrainConfig, is_verbose: bool = True) -> Path:
    """Train (or resume) a reranker; returns the folder of the final model
    (``run_dir/final``: model.safetensors, config.yaml, eval.json), which
    `Reranker.from_pretrained` loads."""
    from tqdm.auto import tqdm

    from mini_t2i.rerank.evaluate import evaluate_rerank

    device, run_dir, cfg, tokenizer, train_data, val_data = start_pair_run(cfg, is_verbose)
    if cfg.reconstructions_from:
        from mini_t2i.data.cache import cache_folder
        from mini_t2i.vq.reconstructions import cached_reconstructions

        train_data.images = cached_reconstructions(train_data.images, cfg.reconstructions_from,
                                                   cache_folder(cfg.data, cfg.cache_dir), is_verbose)
    if cfg.generated:
        from mini_t2i.rerank.generated import load_generated

        train_data.generated = load_generated(cfg.generated, train_data.texts, cfg.model.image_size)
    if cfg.style_negatives:
        from mini_t2i.rerank.negatives import folder_styles

        train_data.styles = folder_styles(train_data.texts)
        if len(train_data.styles) < 2:
            raise ValueError(f"style_negatives={cfg.style_negatives}, but {cfg.data.path or cfg.data.source}'s captions "
                             "have one style only (captions of the form '<name>, <style> style'); set style_negatives=0")
    if is_verbose:
        print(f"train pairs: {len(train_data.texts)}, val pairs: {len(val_data.texts)}")

    model = Reranker(cfg.model, seed=cfg.seed).to(device)
    if cfg.init_from:  # a reranker of the same towers; a matching head may be added to one without
        source = Reranker.from_pretrained(cfg.init_from)
        copy_weights(source, model, cfg.init_from, same=lambda a, b: replace(a, matcher_layers=0) == replace(
            b, matcher_layers=0) and a.matcher_layers in (0, b.matcher_layers), fresh=("matcher.",))
        if model.matcher is not None and source.matcher is None:  # a new head reads words as CLIP does
            model.matcher.copy_text_embeddings(model.clip.text_model.embeddings)
    optimizer = make_optimizer(model, cfg)
    start = resume_training_checkpoint(run_dir, model, optimizer) if cfg.resume else 0
    log = RunLog(run_dir, start)
    if start and is_verbose:
        print(f"resumed from step {start}")
    save_config(cfg, run_dir / "config.yaml")

    def evaluate(step: int, full: bool) -> dict:
        metrics = evaluate_rerank(model, val_data, tokenizer, seed=cfg.seed, full=full)
        log.write({"step": step, "split": "val", **metrics})
        return metrics

    model.train()
    bar = progress(cfg, start, "rerank", is_verbose)
    for step in bar:
        batch = make_batch(train_data, tokenizer, cfg, step)
        losses = train_step(model, optimizer, batch, cfg, step)
        log.count(len(batch[0]))
        done = step + 1
        if cfg.is_log_step(done):
            rate = log.write_train(done, cfg.learning_rate(step), losses, "images")
            bar.set_postfix(loss=f"{losses['loss']:.3f}", acc=f"{losses['acc']:.2f}", img_s=f"{rate:.0f}")
        if cfg.is_eval_step(done):
            m = evaluate(done, full=False)
            model.train()
            if is_verbose:
                tqdm.write(f"step {done}: rerank top-1 of 8 {m['rerank_top1']:.3f}")
        if cfg.is_checkpoint_step(done):
            save_training_checkpoint(run_dir, done, model, optimizer, cfg, cfg.keep_checkpoints)

    metrics = evaluate(cfg.end_step, full=True)
    final = save_final(run_dir, lambda folder: model.save_pretrained(folder, stage_config=cfg), metrics)
    log.close()
    if is_verbose:
        print(json.dumps(metrics, indent=2))
    return final
