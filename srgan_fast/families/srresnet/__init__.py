"""SRResNet / the SRGAN generator (Ledig et al., CVPR 2017): the paper's own network, the project's
family `srresnet`.

arch.py      the plain PyTorch generator and discriminator (the reference everything is compared to)
plan.py      the generator compiled into fused ops (`compile_generator`)
convert.py   another codebase's checkpoint of the same network, matched layer by layer
"""

from __future__ import annotations

from .. import Family, register_family
from .arch import (
    PRESETS,
    Discriminator,
    Generator,
    GeneratorConfig,
    count_parameters,
    expected_shapes,
    output_to_unit,
    to_unit_range,
)
from .plan import compile_generator

__all__ = [
    "Generator",
    "GeneratorConfig",
    "Discriminator",
    "PRESETS",
    "expected_shapes",
    "to_unit_range",
    "output_to_unit",
    "count_parameters",
    "compile_generator",
]

register_family(
    Family(
        "srresnet",
        GeneratorConfig,
        Generator,
        compile_generator,
        expected_shapes=expected_shapes,
        convert_name="srresnet",
        convert="srgan_fast.families.srresnet.convert:convert_srresnet",
        describe=lambda c: (f"{c.get('num_blocks')} blocks x {c.get('channels')}", c.get("scale")),
    )
)
