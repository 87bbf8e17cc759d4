"""The diffusion baseline: a small text-conditioned DiT in pixel space, from diffusers' blocks.

    model = DiffusionModel(DiffusionConfig(preset="mini").with_layout(436, 24, 64), seed=0)
    eps = model(noisy, timesteps, text_ids)       # (B, 3, S, S) -> (B, 3, S, S)

Two parts, both trained from scratch on the same captions and text tokenizer as the
autoregressive model:

- a text encoder: transformers' `CLIPTextModel` over our token ids (pad/bos/eos set to
  ours), whose last hidden states (B, L, D) are the condition;
- a denoiser: diffusers' `PixArtTransformer2DModel` (a DiT with adaLN-single timestep
  conditioning and cross-attention to the text), patchifying the 64 px image.

The noise schedule is DDPM's (`make_scheduler`); training predicts v (or the noise, with
prediction_type="epsilon"), sampling uses DDIM or DPM-Solver (mini_t2i.diffusion.sampler). The empty caption stands for "no
condition", exactly as in the autoregressive model, so classifier-free guidance and
caption dropout mean the same thing in both.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar, Literal

import torch
from torch import nn

from mini_t2i.presets import PatchModelConfig
from mini_t2i.text.special_ids import BOS_ID, EOS_ID, PAD_ID

# name: (DiT layers, hidden size, heads, patch size); the text encoder has `text_num_layers`
# layers of the same width. "mini" is sized beside the autoregressive mini preset (docs).
PRESETS: dict[str, tuple[int, int, int, int]] = {
    "tiny": (1, 32, 2, 16),  # tests
    "mini": (4, 160, 4, 4),  # 64 px -> 16x16 patches, as the AR model's 16x16 tokens
    "small": (8, 256, 8, 4),
    "base": (12, 512, 8, 4),
}
SCHEDULERS = ("ddpm", "ddim", "dpm")


@dataclass
class DiffusionConfig(PatchModelConfig):
    """The DiT and its text encoder; shape and layout fields in PatchModelConfig."""
    PRESETS: ClassVar[dict[str, tuple[int, int, int, int]]] = PRESETS
    KIND: ClassVar[str] = "diffusion"
    TRAINER: ClassVar[str] = "mini_t2i.diffusion.train"

    text_num_layers: int = 2  # layers of the text encoder
    num_train_timesteps: int = 1000
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "squaredcos_cap_v2"
    # What the network predicts. "v_prediction" (v = sqrt(a) eps - sqrt(1 - a) x0) weighs the
    # image error about equally at every noise level; "epsilon" weighs it by the signal-to-noise
    # ratio, near 0 at high noise, so with the cosine schedule an epsilon model can denoise
    # fine at every step yet never learn the layout a sample starts from (docs/diffusion.md).
    prediction_type: Literal["epsilon", "v_prediction"] = "v_prediction"


def make_scheduler(cfg: DiffusionConfig, kind: str = "ddpm"):
    """The noise schedule as a diffusers scheduler: "ddpm" (training, ancestral sampling),
    "ddim" (deterministic, few steps) or "dpm" (DPM-Solver++ multistep, fewest steps)."""
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    if kind not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {kind!r}; choose one of {', '.join(SCHEDULERS)}")
    ddpm = DDPMScheduler(num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule,
                         prediction_type=cfg.prediction_type, clip_sample=False)
    if kind == "ddim":  # clip the predicted image to the pixel range at each step, as DDPM's sampler did
        return DDIMScheduler.from_config(ddpm.config, set_alpha_to_one=False, clip_sample=True)
    if kind == "dpm":
        return DPMSolverMultistepScheduler.from_config(ddpm.config)
    return ddpm


class DiffusionModel(nn.Module):
    """Text encoder + DiT denoiser; see the module doc."""

    def __init__(self, cfg: DiffusionConfig, seed: int | None = None) -> None:
        super().__init__()
        from diffusers import PixArtTransformer2DModel
        from transformers import CLIPTextConfig, CLIPTextModel

        cfg.check_layout()
        if seed is not None:
            torch.manual_seed(seed)
        layers, hidden, heads, patch = cfg.shape
        self.config = cfg
        text_config = CLIPTextConfig(vocab_size=cfg.text_vocab_size, hidden_size=hidden, intermediate_size=4 * hidden,
                                     num_hidden_layers=cfg.text_num_layers, num_attention_heads=heads,
                                     max_position_embeddings=cfg.text_len, hidden_act="gelu", pad_token_id=PAD_ID,
                                     bos_token_id=BOS_ID, eos_token_id=EOS_ID)
        text_config._attn_implementation = "sdpa"
        self.text_encoder = CLIPTextModel(text_config)
        self.denoiser = PixArtTransformer2DModel(
            num_attention_heads=heads, attention_head_dim=hidden // heads, in_channels=3, out_channels=3,
            num_layers=layers, cross_attention_dim=hidden, caption_channels=hidden, sample_size=cfg.image_size,
            patch_size=patch, norm_type="ada_norm_single", use_additional_conditions=False)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode_text(self, text_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) ids -> ((B, L, D) hidden states, (B, L) mask of real tokens)."""
        mask = text_ids != PAD_ID
        hidden = self.text_encoder(input_ids=text_ids, attention_mask=mask.long()).last_hidden_state
        return hidden, mask

    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor, text_ids: torch.Tensor,
                text: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The predicted noise: noisy (B, 3, S, S), timesteps (B,), text_ids (B, L) ->
        (B, 3, S, S). `text`: `encode_text`'s output, to reuse it across sampling steps."""
        hidden, mask = text if text is not None else self.encode_text(text_ids)
        return self.denoiser(noisy, encoder_hidden_states=hidden, timestep=timesteps,
                             encoder_attention_mask=mask.to(noisy.dtype),
                             added_cond_kwargs={"resolution": None, "aspect_ratio": None}).sample

    # ------------------------------------------------------------------ files

    def save_pretrained(self, path, stage_config=None, half_precision: bool = False) -> Path:
        """Write model.safetensors and config.yaml (this config, or the stage config holding
        it under `model`), each atomically. `half_precision` stores fp16 weights (half the
        size, as the shipped pipelines do; loading casts back to fp32)."""
        from mini_t2i.checkpoint import save_tensors
        from mini_t2i.config import save_config

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = self.state_dict()
        if half_precision:
            state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        save_tensors(state, path / "model.safetensors")
        if stage_config is not None:
            stage_config = replace(stage_config, model=self.config)
        save_config(stage_config if stage_config is not None else self.config, path / "config.yaml")
        return path

    @classmethod
    def from_pretrained(cls, path, device: str | torch.device = "cpu") -> "DiffusionModel":
        """Load a diffusion folder (a run's final/ or a checkpoint) in eval mode on `device`."""
        from mini_t2i.checkpoint import CheckpointError, load_state_dict_strict, load_tensors

        path = Path(path)
        if not (path / "config.yaml").is_file() or not (path / "model.safetensors").is_file():
            raise CheckpointError(f"{path} is not a diffusion model folder (config.yaml + model.safetensors); "
                                  "train one with `mini-t2i train diffusion`")
        model = cls(DiffusionConfig.from_folder(path))
        tensors, _ = load_tensors(path / "model.safetensors")
        load_state_dict_strict(model, {k: v.float() for k, v in tensors.items()}, str(path / "model.safetensors"))
        return model.to(device).eval()


def parameter_counts(model: DiffusionModel) -> dict[str, int]:
    """Parameters in all, and without the embedding tables (token and position embeddings
    of the text encoder, the DiT's patch embedding): the count to match across models."""
    total = sum(p.numel() for p in model.parameters())
    embeddings = sum(p.numel() for n, p in model.named_parameters() if "embedding" in n or "pos_embed" in n)
    return {"total": total, "non_embedding": total - embeddings}
