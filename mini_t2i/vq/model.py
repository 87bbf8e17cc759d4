"""The VQ image tokenizer: a convolutional encoder, a vector quantizer, a decoder.

    image (B, 3, H, W) in [-1, 1]
      -> encoder      (B, code_dim, h, w)      h = H / downsample
      -> quantizer    tokens (B, h, w) int64, codes (B, code_dim, h, w)
      -> decoder      image (B, 3, H, W)

Designed for training on a 2-core CPU (the binding constraint, see docs/vq.md): the
first step is a lossless pixel-unshuffle, so no convolution ever runs at full
resolution, and the widest layers run at the lowest resolutions.

The quantizer keeps its codebook alive the ViT-VQGAN way: codes are low-dimensional
and l2-normalised (lookup by cosine similarity, so no code can drift far from the
encoder's outputs), and codes that go unused are restarted on random encoder
outputs of the current batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class VQModelConfig:
    image_size: int = 64  # side of the square input image, in pixels
    downsample: int = 4  # f: token grid side = image_size / downsample; a power of 2, >= 2
    channels: list[int] = field(default_factory=lambda: [64, 128])  # width per level, one per factor of 2
    num_res_blocks: int = 2  # residual blocks per level, in encoder and decoder alike
    codebook_size: int = 512  # number of image tokens (the transformer's image vocabulary)
    code_dim: int = 8  # dimension of the l2-normalised codes
    commitment: float = 0.25  # beta: weight of ||z_e - sg(z_q)||^2, as in VQ-VAE
    restart_every: int = 50  # steps between dead-code restarts (0 = never)
    restart_threshold: float = 0.03  # a code whose usage EMA (uses per step) is below this is dead

    def __post_init__(self) -> None:
        f = self.downsample
        if f < 2 or f & (f - 1):
            raise ValueError(f"downsample={f} must be a power of two >= 2 (e.g. 4, 8 or 16)")
        if self.image_size % f:
            raise ValueError(f"image_size={self.image_size} must be divisible by downsample={f}")
        levels = int(math.log2(f))
        if len(self.channels) != levels:
            raise ValueError(
                f"channels has {len(self.channels)} entries but downsample={f} needs {levels} (one per factor of 2)"
            )
        if self.codebook_size < 2 or self.codebook_size > 65536:
            raise ValueError(f"codebook_size={self.codebook_size} must be in [2, 65536] (tokens are stored as uint16)")

    @property
    def grid_size(self) -> int:
        """Side of the token grid, h = w = image_size / downsample."""
        return self.image_size // self.downsample


class ResBlock(nn.Module):
    """x + conv(silu(conv(silu(x)))), no normalisation (costly on CPU); the second conv
    starts at zero so each block starts as the identity and training is stable without it."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class Encoder(nn.Module):
    def __init__(self, cfg: VQModelConfig):
        super().__init__()
        ch = cfg.channels
        # Level 0 runs at H/2: pixel-unshuffle turns (3, H, W) into (12, H/2, W/2) losslessly.
        self.stem = nn.Conv2d(3 * 4, ch[0], 3, padding=1)
        self.levels = nn.ModuleList()
        self.downs = nn.ModuleList()
        for i, c in enumerate(ch):
            self.levels.append(nn.Sequential(*[ResBlock(c) for _ in range(cfg.num_res_blocks)]))
            if i + 1 < len(ch):
                self.downs.append(nn.Conv2d(c, ch[i + 1], 4, stride=2, padding=1))
        self.out = nn.Conv2d(ch[-1], cfg.code_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(F.pixel_unshuffle(x, 2))  # (B, ch0, H/2, W/2)
        for i, level in enumerate(self.levels):
            x = level(x)
            if i < len(self.downs):
                x = self.downs[i](x)  # (B, ch[i+1], H/2^(i+2), W/2^(i+2))
        return self.out(F.silu(x))  # (B, code_dim, h, w)


class Decoder(nn.Module):
    def __init__(self, cfg: VQModelConfig):
        super().__init__()
        ch = list(reversed(cfg.channels))
        self.inp = nn.Conv2d(cfg.code_dim, ch[0], 3, padding=1)
        self.levels = nn.ModuleList()
        self.ups = nn.ModuleList()
        for i, c in enumerate(ch):
            self.levels.append(nn.Sequential(*[ResBlock(c) for _ in range(cfg.num_res_blocks)]))
            if i + 1 < len(ch):
                # Nearest upsampling then a 3x3 conv: no checkerboard, unlike a strided transpose conv.
                self.ups.append(nn.Conv2d(c, ch[i + 1], 3, padding=1))
        # Back to full resolution through pixel-shuffle: (12, H/2, W/2) -> (3, H, W).
        self.out = nn.Conv2d(ch[-1], 3 * 4, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.inp(z)  # (B, ch[-1], h, w)
        for i, level in enumerate(self.levels):
            x = level(x)
            if i < len(self.ups):
                x = self.ups[i](F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return F.pixel_shuffle(self.out(F.silu(x)), 2)  # (B, 3, H, W)


class VectorQuantizer(nn.Module):
    """Nearest l2-normalised code by cosine similarity, straight-through gradients,
    and restarts of dead codes on encoder outputs."""

    def __init__(self, cfg: VQModelConfig):
        super().__init__()
        self.config = cfg
        self.codebook = nn.Parameter(F.normalize(torch.randn(cfg.codebook_size, cfg.code_dim), dim=1))
        # Uses per training step of each code, as an EMA: saved with the weights so that
        # restarts after a resume happen exactly as they would have.
        self.register_buffer("usage", torch.ones(cfg.codebook_size))

    def normalized_codebook(self) -> torch.Tensor:
        return F.normalize(self.codebook, dim=1)  # (K, d)

    def lookup(self, z: torch.Tensor) -> torch.Tensor:
        """z: (N, d), already l2-normalised -> nearest code index (N,)."""
        return (z @ self.normalized_codebook().t()).argmax(dim=1)

    def forward(self, z_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z_e: (B, d, h, w) -> (z_q straight-through (B, d, h, w), tokens (B, h, w), loss)."""
        B, d, h, w = z_e.shape
        z = F.normalize(z_e.permute(0, 2, 3, 1).reshape(-1, d), dim=1)  # (B*h*w, d)
        tokens = self.lookup(z)  # (B*h*w,)
        z_q = self.normalized_codebook()[tokens]  # (B*h*w, d)
        # Codebook term pulls codes to the encoder; commitment pulls the encoder to its codes.
        loss = F.mse_loss(z_q, z.detach()) + self.config.commitment * F.mse_loss(z, z_q.detach())
        z_st = z + (z_q - z).detach()  # straight-through: forward z_q, backward identity
        if self.training:
            self._track_usage(tokens, z.detach())
        z_st = z_st.reshape(B, h, w, d).permute(0, 3, 1, 2)  # (B, d, h, w)
        return z_st, tokens.reshape(B, h, w), loss

    @torch.no_grad()
    def _track_usage(self, tokens: torch.Tensor, z: torch.Tensor) -> None:
        counts = torch.bincount(tokens, minlength=self.config.codebook_size).float()
        self.usage.mul_(0.99).add_(counts, alpha=0.01)
        self._last_z = z  # candidates for the next restart

    @torch.no_grad()
    def restart_dead_codes(self, generator: torch.Generator | None = None) -> int:
        """Move every code whose usage fell below the threshold onto a random recent encoder
        output (plus a little noise, so restarted codes differ). Returns how many moved."""
        z = getattr(self, "_last_z", None)
        dead = (self.usage < self.config.restart_threshold).nonzero().squeeze(1)
        if z is None or dead.numel() == 0:
            return 0
        pick = torch.randint(0, z.shape[0], (dead.numel(),), generator=generator)
        noise = 0.01 * torch.randn(dead.numel(), z.shape[1], generator=generator)
        self.codebook.data[dead] = F.normalize(z[pick] + noise, dim=1)
        self.usage[dead] = 1.0  # give a restarted code time to be used before judging it again
        return int(dead.numel())


class VQModel(nn.Module):
    """Images <-> token grids. `encode(images) -> tokens (B, h, w)`, `decode(tokens) -> images`."""

    def __init__(self, cfg: VQModelConfig):
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.quantizer = VectorQuantizer(cfg)
        self.decoder = Decoder(cfg)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """images (B, 3, H, W) in [-1, 1] -> (reconstruction (B, 3, H, W), tokens (B, h, w), vq loss)."""
        self._check_images(images)
        z_q, tokens, vq_loss = self.quantizer(self.encoder(images))
        return self.decoder(z_q), tokens, vq_loss

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) float in [-1, 1] -> tokens (B, h, w) int64."""
        self._check_images(images)
        _, tokens, _ = self.quantizer(self.encoder(images))
        return tokens

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, h, w) integer -> images (B, 3, H, W) float in [-1, 1] (clamped)."""
        g = self.config.grid_size
        if tokens.dim() != 3 or tokens.shape[1:] != (g, g):
            raise ValueError(f"tokens must have shape (B, {g}, {g}) for this tokenizer, got {tuple(tokens.shape)}")
        if tokens.min() < 0 or tokens.max() >= self.config.codebook_size:
            raise ValueError(f"token ids must be in [0, {self.config.codebook_size}); got {int(tokens.min())}..{int(tokens.max())}")
        z_q = self.quantizer.normalized_codebook()[tokens.long()]  # (B, h, w, d)
        return self.decoder(z_q.permute(0, 3, 1, 2)).clamp(-1, 1)

    def save_pretrained(self, path, stage_config=None) -> None:
        """Write ``model.safetensors`` and ``config.yaml`` (the stage config when given,
        which holds this model's config under ``model``) into the folder `path`."""
        from pathlib import Path

        from mini_t2i.checkpoint import save_tensors
        from mini_t2i.config import save_config

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_tensors(self.state_dict(), path / "model.safetensors")
        save_config(stage_config if stage_config is not None else self.config, path / "config.yaml")

    @classmethod
    def from_pretrained(cls, path) -> "VQModel":
        """Load a tokenizer folder (a training run's ``final/`` or one of its checkpoints)."""
        from pathlib import Path

        import yaml

        from mini_t2i.checkpoint import CheckpointError, load_state_dict_strict, load_tensors
        from mini_t2i.config import config_from_dict

        path = Path(path)
        if not (path / "config.yaml").is_file():
            raise CheckpointError(f"{path} has no config.yaml; pass a VQ tokenizer folder (e.g. runs/vq/final)")
        data = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8")) or {}
        if isinstance(data, dict) and isinstance(data.get("model"), dict):
            data = data["model"]  # a stage config: the model's part
        model = cls(config_from_dict(VQModelConfig, data))
        tensors, _ = load_tensors(path / "model.safetensors")
        load_state_dict_strict(model, tensors, str(path / "model.safetensors"))
        return model.eval()

    def _check_images(self, images: torch.Tensor) -> None:
        s = self.config.image_size
        if images.dim() != 4 or images.shape[1:] != (3, s, s):
            raise ValueError(f"images must have shape (B, 3, {s}, {s}) for this tokenizer, got {tuple(images.shape)}")
