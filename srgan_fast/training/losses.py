"""Content losses of the SRGAN paper. Kept here, never in the model file.

`VGG54`: MSE between VGG19 feature maps phi_5,4 (after the ReLU of conv5_4, before the 5th
max-pool) of the SR and HR images, with maps rescaled by 1/12.75 as in the paper. The
weights come from a local torchvision-format file (no download at run time).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VGG54", "find_vgg19_weights"]

# torchvision's vgg19 "features" layout up to relu5_4 (indices 0..35); "M" = max-pool
_VGG19 = [
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    512,
]
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def find_vgg19_weights(path: str = "") -> Path:
    """The VGG19 weights file: `path`, else the torch hub cache; FileNotFoundError if neither."""
    if path:
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"VGG19 weights {p} not found")
        return p
    hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
    cands = sorted(hub.glob("vgg19-*.pth")) + sorted(hub.glob("vgg19*.safetensors"))
    if not cands:
        raise FileNotFoundError(
            "content_loss=vgg54 needs VGG19 ImageNet weights in torchvision's format and none were "
            f"found (looked in {hub}); pass --set vgg_weights=PATH, or use --set content_loss=mse "
            "(the paper's SRGAN-MSE)"
        )
    return cands[0]


def _load_state(p: Path) -> dict:
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p))
    # torchvision ships .pth zips of plain tensors: weights_only refuses anything else
    return torch.load(str(p), map_location="cpu", weights_only=True)


class VGG54(nn.Module):
    def __init__(self, weights: str = "", scale: float = 1.0 / 12.75):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in _VGG19:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)
        if weights != "random":
            state = _load_state(find_vgg19_weights(weights))
            state = {k: v for k, v in state.items() if k.startswith("features.")}
            own = self.state_dict()
            missing = [k for k in own if k not in state]
            if missing:
                raise ValueError(f"VGG19 weights lack {missing[:4]}...: not a torchvision vgg19 file")
            self.load_state_dict({k: state[k] for k in own})
        self.requires_grad_(False)
        self.eval()
        self.scale = scale
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    def feats(self, x_pm1: torch.Tensor) -> torch.Tensor:
        x = ((x_pm1 + 1.0) * 0.5 - self.mean) / self.std
        return self.features(x) * self.scale

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.feats(hr)
        return F.mse_loss(self.feats(sr), target)
