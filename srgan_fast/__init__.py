"""srgan_fast: SRGAN super-resolution with a fused inference engine that matches PyTorch.

Importing this package touches no GPU and compiles nothing; Triton and the native
extension are imported only when a backend that needs them is asked for.
"""

from . import _legacy  # noqa: F401  (first: installs the finder that serves the old module paths)
from .engine import BackendUnavailable, Engine, NonFiniteOutputError
from .families.srresnet import Discriminator, Generator, GeneratorConfig, to_unit_range
from .options import RunOptions
from .plan import Plan, compile_plan
from .weights import load_generator, save_generator

__version__ = "0.1.0"

__all__ = [
    "Engine",
    "NonFiniteOutputError",
    "BackendUnavailable",
    "RunOptions",
    "Plan",
    "compile_plan",
    "Generator",
    "GeneratorConfig",
    "Discriminator",
    "to_unit_range",
    "load_generator",
    "save_generator",
    "__version__",
]
