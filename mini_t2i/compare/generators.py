"""The two kinds of model behind one interface, so the harness treats them alike.

    gen = AutoregressiveGenerator(pipe, guidance_scale=None, ...)
    images = gen.generate(text_ids, seeds, gen.settings(), batch_size=32)    # (N, S, S, 3) uint8

Each generator maps (N, text_len) caption ids and N seeds to N images, with the
same caption ids (the autoregressive pipeline's tokenizer) for both. `network` is
the module whose calls are the sequential network evaluations: the transformer for
the autoregressive model (one call per image token), the denoiser for diffusion
(one call per sampling step). Neither generator reranks: the harness scores both
with one shared reranker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch


class _Generator:
    """What both kinds share: default sampling settings, overridden per call."""

    defaults: dict

    def settings(self, **overrides) -> dict:
        """The defaults with `overrides` for the keys this kind has (others are ignored)."""
        return {**self.defaults, **{k: v for k, v in overrides.items() if k in self.defaults}}


class AutoregressiveGenerator(_Generator):
    """A TextToImagePipeline without its reranking: transformer samples codes, the VQ decodes."""

    kind = "autoregressive"

    def __init__(self, pipe, **sampling) -> None:
        self.pipe = pipe
        self.defaults = pipe.sampling_settings(**{k: sampling.get(k) for k in
                                                  ("guidance_scale", "temperature", "top_k", "top_p")})

    @property
    def image_size(self) -> int:
        return self.pipe.image_size

    @property
    def network(self) -> torch.nn.Module:
        return self.pipe.transformer

    def sweeps(self) -> tuple[str, ...]:
        return ("guidance_scale",)

    def parameters(self) -> dict[str, int]:
        named = list(self.pipe.transformer.named_parameters())
        total = sum(p.numel() for _, p in named)
        # input tables and output heads: lm_head (raster), head (blocks), the embed_tokens of every stack
        embeddings = sum(p.numel() for n, p in named if "embed_tokens" in n or n in ("lm_head.weight", "head.weight"))
        return {"total": total, "non_embedding": total - embeddings}

    def generate(self, text_ids: torch.Tensor, seeds: Sequence[int], settings: dict, batch_size: int,
                 progress: bool = False) -> np.ndarray:
        images, _ = self.pipe.generate_candidates(text_ids, seeds, batch_size=batch_size, progress=progress,
                                                  with_scores=False, **settings)
        return images


class DiffusionGenerator(_Generator):
    """The diffusion baseline (mini_t2i.diffusion): DDIM / DPM-Solver with guidance."""

    kind = "diffusion"

    def __init__(self, model, num_steps: int = 25, guidance_scale: float = 3.0, scheduler: str = "ddim") -> None:
        self.model = model
        self.defaults = {"num_steps": num_steps, "guidance_scale": guidance_scale, "scheduler": scheduler}

    @property
    def image_size(self) -> int:
        return self.model.config.image_size

    @property
    def network(self) -> torch.nn.Module:
        return self.model.denoiser

    def sweeps(self) -> tuple[str, ...]:
        return ("guidance_scale", "num_steps")

    def parameters(self) -> dict[str, int]:
        from mini_t2i.diffusion.model import parameter_counts

        return parameter_counts(self.model)

    def generate(self, text_ids: torch.Tensor, seeds: Sequence[int], settings: dict, batch_size: int,
                 progress: bool = False) -> np.ndarray:
        from tqdm.auto import tqdm

        from mini_t2i.diffusion.sampler import sample_images

        starts = range(0, len(seeds), batch_size)
        out = [sample_images(self.model, text_ids[s:s + batch_size], list(seeds[s:s + batch_size]), **settings)
               for s in tqdm(starts, desc="diffusion", unit="batch", disable=not progress or len(starts) < 2)]
        return np.concatenate(out)


def check_same_text_layout(pipe, diffusion_model, diffusion_path: str | Path) -> None:
    """Both models must read the same caption ids: same vocabulary size and text length,
    and, when the diffusion run recorded its text tokenizer, the same tokenizer files."""
    import yaml

    cfg = diffusion_model.config
    tok = pipe.tokenizer
    if (cfg.text_vocab_size, cfg.text_len) != (tok.vocab_size, tok.text_len):
        raise ValueError(f"the diffusion model reads {cfg.text_vocab_size} text ids x {cfg.text_len} and the "
                         f"autoregressive pipeline's tokenizer {tok.vocab_size} x {tok.text_len}: train the baseline "
                         "with the pipeline's text tokenizer (text_tokenizer in its config)")
    stage = yaml.safe_load((Path(diffusion_path) / "config.yaml").read_text(encoding="utf-8")) or {}
    recorded = stage.get("text_tokenizer") if isinstance(stage, dict) else None
    if recorded and Path(recorded).is_dir() and (Path(recorded) / "tokenizer.json").is_file():
        probe = ["a red circle above a blue square", "three green stars", "a large yellow diamond"]
        from mini_t2i.text.tokenizer import TextTokenizer

        if not torch.equal(TextTokenizer.from_pretrained(recorded).encode(probe), tok.encode(probe)):
            raise ValueError(f"the diffusion model was trained with the text tokenizer {recorded}, which encodes "
                             "captions differently from the autoregressive pipeline's: retrain it with that one")


def load_generators(cfg) -> tuple[AutoregressiveGenerator, DiffusionGenerator, object]:
    """(autoregressive generator, diffusion generator, shared reranker) from a CompareConfig."""
    from dataclasses import asdict

    from mini_t2i.diffusion.model import DiffusionModel
    from mini_t2i.pipeline.pipeline import TextToImagePipeline

    pipe = TextToImagePipeline.from_pretrained(cfg.autoregressive, device=cfg.device)
    autoregressive = AutoregressiveGenerator(pipe, **asdict(cfg.autoregressive_sampling))
    model = DiffusionModel.from_pretrained(cfg.diffusion, device=cfg.device)
    check_same_text_layout(pipe, model, cfg.diffusion)
    if model.config.image_size != pipe.image_size:
        raise ValueError(f"the models draw {pipe.image_size} px (autoregressive) and {model.config.image_size} px "
                         "(diffusion) images; compare models of the same resolution")
    diffusion = DiffusionGenerator(model, **asdict(cfg.diffusion_sampling))
    if cfg.reranker:
        from mini_t2i.rerank.model import Reranker

        reranker = Reranker.from_pretrained(cfg.reranker, device=cfg.device)
    else:
        reranker = pipe.reranker
    if reranker is None:
        raise ValueError(f"{cfg.autoregressive} has no reranker: give `reranker` (a rerank folder); the CLIP "
                         "score and best-of-N need one")
    return autoregressive, diffusion, reranker
