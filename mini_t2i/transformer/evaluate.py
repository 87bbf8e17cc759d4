"""How good is a transformer: val loss, and the Shapes World checker on its samples.

    mini-t2i eval transformer --model runs/transformer_shapes64/final --split test_iid --count 300

One sample per prompt, no reranking: the honest number. The ceilings beside it are the
checker on the ground truth (1.0) and on the VQ tokenizer's reconstructions of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mini_t2i.pixels import images_from_tokens
from mini_t2i.transformer.config import TransformerConfig
from mini_t2i.transformer.model import compute_loss


@torch.no_grad()
def val_loss(model, cfg: TransformerConfig, text_ids: torch.Tensor, image_tokens: torch.Tensor,
             batch_size: int = 64, bf16: bool = False) -> float:
    """Mean image-token cross-entropy over (N, text_len) captions and (N, h*w) codes."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total = 0.0
    for start in range(0, len(text_ids), batch_size):
        text = text_ids[start:start + batch_size].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            _, metrics = compute_loss(model, cfg, text, image_tokens[start:start + batch_size].to(device))
        total += metrics["image_loss"] * len(text)
    model.train(was_training)
    return total / len(text_ids)


def sample_images(model, cfg: TransformerConfig, vq, text_ids: torch.Tensor, seeds, batch_size: int = 32, *,
                  guidance_scale: float = 1.0, guidance_schedule: str = "constant", temperature: float = 1.0,
                  top_k: int = 0, top_p: float = 1.0) -> tuple[np.ndarray, torch.Tensor]:
    """Sample and decode: (N, text_len) ids -> ((N, H, W, 3) uint8, (N, h*w) codes), in batches.
    The sampling arguments are those of `sample_image_tokens`, used as given (not checked)."""
    from mini_t2i.transformer.sampler import sample_image_tokens

    was_training = model.training
    model.eval()
    tokens = torch.cat([sample_image_tokens(model, cfg, text_ids[i:i + batch_size], seeds[i:i + batch_size],
                                            guidance_scale=guidance_scale, guidance_schedule=guidance_schedule,
                                            temperature=temperature, top_k=top_k, top_p=top_p)
                        for i in range(0, len(text_ids), batch_size)]).cpu()
    model.train(was_training)
    return images_from_tokens(vq, tokens), tokens


@dataclass
class EvalSet:
    """What periodic evaluation during training needs, built once."""
    text_ids: torch.Tensor  # (N, text_len) val captions for the loss
    image_tokens: torch.Tensor  # (N, h*w)
    sample_text_ids: torch.Tensor  # (S, text_len) captions to sample
    sample_metas: list | None  # Shapes World metadata of those, or None
    sample_tokens: torch.Tensor  # (S, h*w) their real tokens, for the grid
    vq: object
    top_k: int
    guidance_scale: float

    @classmethod
    def build(cls, data, cfg, device) -> "EvalSet":
        from mini_t2i.vq.model import VQModel

        vq = VQModel.from_pretrained(cfg.vq_model).to(device).eval()
        if (vq.config.grid_size, vq.config.codebook_size) != (data.grid_size, data.codebook_size):
            raise ValueError(f"vq_model {cfg.vq_model} ({vq.config.grid_size}x{vq.config.grid_size}, {vq.config.codebook_size} "
                             f"codes) is not the tokenizer of the shards ({data.grid_size}x{data.grid_size}, "
                             f"{data.codebook_size} codes)")
        images = torch.from_numpy(data.image_tokens.astype(np.int64))
        s = cfg.sample_count
        metas = data.metas[:s]
        from mini_t2i.shapes.files import is_shapes_meta

        return cls(data.text_ids[:cfg.val_count], images[:cfg.val_count], data.text_ids[:s],
                   metas if is_shapes_meta(metas) else None, images[:s], vq,
                   cfg.sample_top_k, cfg.sample_guidance_scale)


def evaluate_during_training(model, cfg: TransformerConfig, eval_set: EvalSet, run_dir: Path, step: int,
                             model_state: dict | None = None, bf16: bool = False) -> dict:
    """Val loss, a sample grid (real-token decodes above samples) in run_dir/samples, and the
    checker's accuracy on the samples when they are Shapes World prompts."""
    from mini_t2i.pixels import comparison_grid
    from mini_t2i.transformer.model import build_model

    if model_state is not None:  # FSDP: evaluate a gathered, unsharded copy
        device = eval_set.text_ids.device
        model = build_model(cfg).to(device)
        model.load_state_dict(model_state)
    metrics = {"val_loss": val_loss(model, cfg, eval_set.text_ids, eval_set.image_tokens, bf16=bf16)}
    if len(eval_set.sample_text_ids):
        seeds = list(range(len(eval_set.sample_text_ids)))
        samples, _ = sample_images(model, cfg, eval_set.vq, eval_set.sample_text_ids, seeds,
                                   top_k=eval_set.top_k, guidance_scale=eval_set.guidance_scale)
        real = images_from_tokens(eval_set.vq, eval_set.sample_tokens)
        (run_dir / "samples").mkdir(exist_ok=True)
        comparison_grid(real, samples).save(run_dir / "samples" / f"step_{step:08d}.png")
        if eval_set.sample_metas is not None:
            from mini_t2i.shapes.files import score_images

            metrics["sample_checker"] = score_images(list(samples), eval_set.sample_metas)["overall"]
    return metrics


def evaluate_on_shapes(model_path: str, split: str = "test_iid", count: int = 300, seed: int = 0,
                       batch_size: int = 32, guidance_scale: float = 1.0, temperature: float = 1.0,
                       top_k: int = 0, top_p: float = 1.0, text_tokenizer: str | None = None,
                       vq_model: str | None = None, out_dir: str | None = None, is_verbose: bool = True) -> dict:
    """Sample one image per prompt of a Shapes World split and score them with the checker,
    beside the ground-truth and reconstruction ceilings. Image i uses seed i. The text
    tokenizer and VQ default to those the model was trained with (its train_config.yaml)."""
    from mini_t2i.config import load_config
    from mini_t2i.data.config import DataConfig
    from mini_t2i.data.sources import iter_examples
    from mini_t2i.shapes.files import score_images
    from mini_t2i.transformer.config import TransformerTrainConfig
    from mini_t2i.transformer.data import load_caption_tokenizer
    from mini_t2i.transformer.model import load_transformer
    from mini_t2i.vq.evaluate import reconstruct
    from mini_t2i.vq.model import VQModel

    model, cfg = load_transformer(model_path)
    train_cfg_path = Path(model_path) / "train_config.yaml"
    train_cfg = load_config(TransformerTrainConfig, train_cfg_path) if train_cfg_path.is_file() else TransformerTrainConfig()
    tokenizer = load_caption_tokenizer(text_tokenizer or train_cfg.text_tokenizer)
    vq = VQModel.from_pretrained(vq_model or train_cfg.vq_model).eval()
    examples = list(iter_examples(DataConfig(source="shapes", split=split, count=count, seed=seed,
                                             image_size=vq.config.image_size)))
    metas = [e.meta for e in examples]
    text_ids = tokenizer.encode([e.text for e in examples])
    sampling = dict(guidance_scale=guidance_scale, temperature=temperature, top_k=top_k, top_p=top_p)
    samples, _ = sample_images(model, cfg, vq, text_ids, list(range(count)), batch_size, **sampling)
    real = np.stack([np.asarray(e.image, dtype=np.uint8) for e in examples])
    recons, _ = reconstruct(vq, real)
    result = {"split": split, "count": count, "sampling": sampling,
              "checker_samples": score_images(list(samples), metas),
              "checker_reconstructions": score_images(list(recons), metas),
              "checker_ground_truth": score_images(list(real), metas)}
    if out_dir:  # the image-folder layout `mini-t2i shapes score` reads
        from mini_t2i.shapes.files import write_image_dir

        out = write_image_dir(out_dir, list(samples), [e.text for e in examples], metas)
        (out / "eval.json").write_text(json.dumps(result, indent=2))
    if is_verbose:
        print(f"{split}: checker on samples {result['checker_samples']['overall']:.3f} | reconstructions "
              f"{result['checker_reconstructions']['overall']:.3f} | ground truth "
              f"{result['checker_ground_truth']['overall']:.3f}  ({count} prompts)")
        for task, r in result["checker_samples"]["tasks"].items():
            print(f"  {task:<12} {r['accuracy']:.3f}  (n={r['count']})")
    return result
