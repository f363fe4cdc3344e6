"""Model families: the one registry that the plan, the weights loader, `convert` and the CLI read.

A family is an architecture the engine runs: its config class (what a weights file's metadata
holds; `from_dict` checks types and bounds before anything is built), its module class, the
function compiling a module into a Plan of fused ops, and how foreign checkpoints of it are
recognised and converted. Adding a family is one module that defines these and calls
`register_family` (see docs/architecture.md); plan.py, weights.py, convert.py and cli.py
need no edit.

One folder per family: `families/<name>/` holds `arch.py` (config, module, shapes), `plan.py`
(the module compiled into fused ops), `convert.py` (foreign checkpoints and their detector) and
an `__init__.py` that registers the family. The shipped ones are listed in `BUILTIN`, in
detection order (`detect_family` asks them in that order; srresnet, whose converter maps any
layout of the paper's network, is the fallback); every lookup imports them first, so callers
never need to. A name is registered once: a second family of the same name is refused unless
it says `replace=True`. This module imports nothing of the package at import time, so it sits
below every module that uses it (no import cycles).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = [
    "Family",
    "register_family",
    "families",
    "get_family",
    "family_of",
    "converter",
    "convert_fn",
    "detect_family",
    "check_limits",
    "FamilyConfig",
    "BUILTIN",
    "DuplicateFamilyError",
]

# The shipped families, in detection order: each name is a folder of this package whose
# __init__ registers the family of that name (imported on first lookup).
BUILTIN = ("srresnet", "srvgg_compact", "msrresnet", "rrdbnet")


@dataclass(frozen=True)
class Family:
    name: str  # the weights file's "family" metadata value ("srresnet" when a file has none)
    config: type  # config class: from_dict(d) (validated, bounded), to_dict(), .scale, .in_channels
    module: type  # nn.Module class built from a config; `output_range` says what its output spans
    compile: Callable[[Any], Any]  # module -> Plan
    # every tensor's name -> shape for a config, building nothing big (default: built on the meta device)
    expected_shapes: Callable[[Any], dict[str, tuple[int, ...]]] | None = None
    # `srgan-fast convert --family NAME`, and the converter: (state, config=, output_range=, act=)
    # -> (our state dict, config, our key -> source key, extra model-card entries)
    convert_name: str | None = None
    convert: Callable[..., tuple] | str | None = None  # or "module:function", imported when used
    detect: Callable[[dict], bool] | None = None  # does a foreign state dict look like this family?
    describe: Callable[[dict], tuple[str, int]] | None = None  # config dict -> ("16 blocks x 64", scale)

    def shapes(self, config) -> dict[str, tuple[int, ...]]:
        if self.expected_shapes is not None:
            return self.expected_shapes(config)
        import torch

        with torch.device("meta"):  # shapes only: no memory
            return {k: tuple(v.shape) for k, v in self.module(config).state_dict().items()}


_FAMILIES: dict[str, Family] = {}


def check_limits(config, limits: dict[str, int]) -> None:
    """Each named field of a family config is an integer no larger than its limit, or a
    ValueError naming it: checked before anything is built (a metadata claim costs nothing)."""
    for name, top in limits.items():
        v = getattr(config, name)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"config {name}={v!r} is out of range: an integer is needed")
        if v > top:
            raise ValueError(f"config {name}={v} is out of range: at most {top}")


class FamilyConfig:
    """Base of a family's config (a frozen dataclass whose __post_init__ checks its values):
    `from_dict` takes a JSON object with known fields only, `to_dict` gives one back."""

    @classmethod
    def from_dict(cls, d: dict):
        if not isinstance(d, dict):
            raise ValueError(f"a {cls.__name__} is a JSON object, got {type(d).__name__}")
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


class DuplicateFamilyError(ValueError):
    """A family was registered under a name that is taken (pass replace=True to mean it)."""


def register_family(family: Family, *, replace: bool = False) -> Family:
    """Add a family; everything that lists or loads families sees it. A taken name is refused
    (DuplicateFamilyError) unless `replace=True`: a plugin cannot shadow `srresnet` by accident."""
    old = _FAMILIES.get(family.name)
    if old is not None and old is not family and not replace:
        raise DuplicateFamilyError(
            f"a model family named {family.name!r} is already registered ({old.module.__module__}."
            f"{old.module.__name__}); pass replace=True to replace it"
        )
    _FAMILIES[family.name] = family
    return family


def _load_builtin() -> None:
    for name in BUILTIN:
        importlib.import_module(f"{__name__}.{name}")


def families() -> dict[str, Family]:
    """Every family: the built-ins in BUILTIN's order, then the others in registration order."""
    _load_builtin()
    order = [n for n in BUILTIN if n in _FAMILIES] + [n for n in _FAMILIES if n not in BUILTIN]
    return {n: _FAMILIES[n] for n in order}


def get_family(name: str) -> Family:
    """The family named `name` (a weights file's metadata), or a ValueError listing the known ones."""
    fams = families()
    if name not in fams:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(fams)}")
    return fams[name]


def family_of(module) -> Family:
    """The family of a model instance, or a TypeError."""
    for f in families().values():
        if isinstance(module, f.module):
            return f
    raise TypeError(f"{type(module).__name__} is not a module of a registered model family")


def converter(convert_name: str) -> Family:
    """The family `srgan-fast convert --family convert_name` converts, or a ValueError."""
    fams = [f for f in families().values() if f.convert_name and f.convert is not None]
    for f in fams:
        if f.convert_name == convert_name:
            return f
    raise ValueError(f"family must be auto, {', '.join(f.convert_name for f in fams)}, got {convert_name!r}")


def detect_family(state: dict) -> Family:
    """The family a foreign state dict looks like: the first whose `detect` says so, else srresnet
    (the paper's network, whose converter maps any key layout and says what did not match)."""
    for f in families().values():
        if f.detect is not None and f.convert is not None and f.detect(state):
            return f
    return get_family("srresnet")


def convert_fn(family: Family) -> Callable[..., tuple]:
    """The family's converter, imported if given as "module:function"."""
    fn = family.convert
    if isinstance(fn, str):
        mod, _, attr = fn.partition(":")
        fn = getattr(importlib.import_module(mod), attr)
    if fn is None:
        raise ValueError(f"family {family.name!r} has no checkpoint converter")
    return fn
