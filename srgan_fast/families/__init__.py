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
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

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
    "refuse_options",
    "random_init",
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
    `from_dict` takes a JSON object with known fields only, `to_dict` gives one back, `from_name`
    looks a preset up in the class's `PRESETS` (assigned below the class, since it holds
    instances). `scale` and `in_channels` read BasicSR's field names (`upscale`, `num_in_ch`); a
    config whose fields have the engine's names (`scale`, `in_channels`) has them as they are."""

    PRESETS: ClassVar[Mapping[str, Any]] = {}  # preset name -> config (`from_name`)
    PRESET_KIND: ClassVar[str] = "model"  # what `from_name` calls a preset: "unknown <kind> preset ..."
    # `from_dict`'s message for anything but a JSON object ({cls}: the class's name, {got}: the type given)
    NOT_AN_OBJECT: ClassVar[str] = "a {cls} is a JSON object, got {got}"

    @classmethod
    def from_name(cls, name: str):
        try:
            return cls.PRESETS[name]
        except KeyError:
            known = ", ".join(sorted(cls.PRESETS))
            raise ValueError(f"unknown {cls.PRESET_KIND} preset {name!r}; known: {known}") from None

    @classmethod
    def from_dict(cls, d: dict):
        if not isinstance(d, dict):
            raise ValueError(cls.NOT_AN_OBJECT.format(cls=cls.__name__, got=type(d).__name__))
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def scale(self) -> int:
        return self.upscale

    @property
    def in_channels(self) -> int:
        return self.num_in_ch


def refuse_options(config=None, output_range=None, act=None, *, a_model: str, models: str, it: str = "it",
                   acts: str | None = None) -> None:  # fmt: skip
    """The start of a converter (`Family.convert`) whose family reads its config off the shapes
    and outputs [0, 1]: a ValueError for `config` (the paper's network's option), for `act`
    unless the family takes it (`acts`: its fixed activations, said in the message; None: `act`
    is the family's own) and for an `output_range` other than (0, 1). `a_model`: "an MSRResNet",
    `models`: the possessive ("MSRResNet's"), `it`: the pronoun for the output's default."""
    if config is not None:
        raise ValueError(f"--config is for the paper's network; {a_model}'s config is read off its shapes")
    if acts is not None and act is not None:
        raise ValueError(f"--act is for compact models; {models} activations are fixed ({acts})")
    if output_range is not None and tuple(output_range) != (0.0, 1.0):
        raise ValueError(f"{models} output is in [0, 1]: use --output-range 0,1 (the default for {it})")


def random_init(module, seed: int = 0, gain: float | Callable[[str], float] = 1.6, slope: float | None = None):
    """`module` (returned) with random weights scaled so activations stay O(1) (He-like): each
    Conv2d, in `named_modules` order, gets weight ~ N(0, gain / fan_in) (`gain` a number, or of
    the conv's name) and bias ~ N(0, 0.05^2); with `slope`, each PReLU slopes uniform in
    [0, slope). One generator seeded with `seed` draws them all, in that order (a seed gives the
    same weights bit for bit). For timing and parity tests: nothing downloaded."""
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, mod in module.named_modules():
            if isinstance(mod, nn.Conv2d):
                fan = mod.weight[0].numel()
                k = gain(name) if callable(gain) else gain
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * (k / fan) ** 0.5)
                mod.bias.copy_(torch.randn(mod.bias.shape, generator=g) * 0.05)
            elif slope is not None and isinstance(mod, nn.PReLU):
                mod.weight.copy_(torch.rand(mod.weight.shape, generator=g) * slope)
    return module


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
