"""What `mini-t2i compare` runs: the two models, the prompts and every sweep, as one typed config.

    cfg = load_config(CompareConfig, "configs/compare_shapes64.yaml", ["count=50"])

Both models see the same prompts (the first `count` scenes of each Shapes World split,
picked by `seed`) with the same image seeds (prompt i, candidate j -> seed i * N + j)
and the same best-of-N: `num_candidates` samples per prompt, of which the shared
reranker keeps one (1 = no reranking for either).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional


@dataclass
class AutoregressiveSampling:
    # None = the pipeline's own default (its pipeline.yaml)
    guidance_scale: Optional[float] = None
    temperature: Optional[float] = None
    top_k: Optional[int] = None
    top_p: Optional[float] = None


@dataclass
class DiffusionSampling:
    num_steps: int = 25
    guidance_scale: float = 3.0
    scheduler: Literal["ddim", "dpm", "ddpm"] = "ddim"


@dataclass
class CompareConfig:
    # A pipeline (name of a shipped one, or a folder): transformer + VQ + reranker.
    autoregressive: str = "shapes64"
    # A diffusion folder (model.safetensors + config.yaml), e.g. a run's final/.
    diffusion: str = "mini_t2i/pretrained/diffusion_shapes64"
    # The reranker that scores and picks for both models: a rerank folder, or "" for the
    # autoregressive pipeline's own.
    reranker: str = ""
    splits: list[str] = field(default_factory=lambda: ["test_iid", "test_heldout"])
    count: int = 200  # prompts per split
    seed: int = 0  # picks the splits' scenes (seed + 1: the second real set for the FID floor)
    num_candidates: int = 1  # best-of-N for both models; 1 = no reranking
    autoregressive_sampling: AutoregressiveSampling = field(default_factory=AutoregressiveSampling)
    diffusion_sampling: DiffusionSampling = field(default_factory=DiffusionSampling)
    # Diversity: this many test_iid prompts, each sampled this many times.
    diversity_prompts: int = 16
    diversity_samples: int = 8
    # Quality against sampling steps (diffusion) and guidance (both), on the first
    # `sweep_count` test_iid prompts, one sample each.
    sweep_count: int = 100
    step_sweep: list[int] = field(default_factory=lambda: [5, 10, 25, 50])
    guidance_sweep: list[float] = field(default_factory=lambda: [1.0, 2.0, 3.0, 5.0])
    # Speed: seconds per image at each batch size (best of `speed_repeats` after a warm-up).
    speed_batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 32])
    speed_repeats: int = 2
    kid_subset_size: int = 100
    batch_size: int = 32  # generation batch for the quality runs
    device: str = "cpu"
    num_threads: int = 0  # torch threads on CPU; 0 = torch's default
    out_dir: str = "runs/compare"  # compare.json, compare.md, compare.png

    def __post_init__(self) -> None:
        positive = {"count": self.count, "num_candidates": self.num_candidates, "batch_size": self.batch_size,
                    "speed_repeats": self.speed_repeats, "diversity_samples": self.diversity_samples,
                    "kid_subset_size": self.kid_subset_size}
        for key, value in positive.items():
            if value < 1:
                raise ValueError(f"{key}={value} must be >= 1")
        if self.diversity_samples < 2 and self.diversity_prompts:
            raise ValueError("diversity_samples must be >= 2 (the spread of one sample is undefined)")
        if self.sweep_count > self.count:
            raise ValueError(f"sweep_count={self.sweep_count} > count={self.count}: the sweeps reuse the first "
                             "test_iid prompts, so make count >= sweep_count")
        if (self.step_sweep or self.guidance_sweep) and "test_iid" not in self.splits:
            raise ValueError("the step and guidance sweeps run on test_iid: add it to `splits` or empty the sweeps")
        if any(s < 1 for s in self.step_sweep) or any(g < 1 for g in self.guidance_sweep):
            raise ValueError("step_sweep needs steps >= 1 and guidance_sweep scales >= 1 (1 = no guidance)")
        if not self.speed_batch_sizes or min(self.speed_batch_sizes) < 1:
            raise ValueError("speed_batch_sizes needs at least one batch size >= 1")
