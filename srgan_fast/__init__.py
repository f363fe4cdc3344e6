"""srgan_fast: SRGAN super-resolution with a fused inference engine that matches PyTorch.

Importing this package touches no GPU, compiles nothing and imports nothing heavy: the names
below (and the submodules, `srgan_fast.weights` etc.) load on first use, so the `srgan-fast`
program can answer a Ctrl-C during its start (torch's import, about a second) with one line.
Triton and the native extension are imported only when a backend that needs them is asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from . import _legacy  # noqa: F401  (first: installs the finder that serves the old module paths)

__version__ = "0.1.0"

# public name -> the module that defines it
_NAMES = {
    "Engine": ".engine",
    "NonFiniteOutputError": ".engine",
    "BackendUnavailable": ".engine",
    "RunOptions": ".options",
    "Plan": ".plan",
    "compile_plan": ".plan",
    "Generator": ".families.srresnet",
    "GeneratorConfig": ".families.srresnet",
    "Discriminator": ".families.srresnet",
    "to_unit_range": ".families.srresnet",
    "load_generator": ".weights",
    "save_generator": ".weights",
}

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
]  # (= _NAMES and __version__: tests/contracts/test_public_api.py)

if TYPE_CHECKING:  # what the names are, for type checkers and editors
    from .engine import BackendUnavailable, Engine, NonFiniteOutputError
    from .families.srresnet import Discriminator, Generator, GeneratorConfig, to_unit_range
    from .options import RunOptions
    from .plan import Plan, compile_plan
    from .weights import load_generator, save_generator


def __getattr__(name: str):
    """A public name or a submodule (`srgan_fast.weights`), imported at its first use."""
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name], __name__), name)
    elif not name.startswith("__"):
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":  # the submodule exists and failed to import: say why
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_NAMES})
