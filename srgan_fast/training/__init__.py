"""Reference PyTorch trainer for SRResNet / SRGAN (installed as `srgan_fast.training`).

`python -m srgan_fast.training --preset srresnet_x4` or `srgan-fast train --preset srresnet_x4`.
"""

from .config import PRESETS, TrainConfig, apply_overrides, from_preset
from .trainer import train

__all__ = ["TrainConfig", "PRESETS", "from_preset", "apply_overrides", "train"]
