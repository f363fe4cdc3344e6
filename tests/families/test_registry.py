"""Model families: one registry (srgan_fast.families) that the plan, the weights loader, convert
and the CLI read; a family added from outside needs no edit of theirs. Plugins reach the CLI."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from srgan_fast import families
from srgan_fast.engine import Engine
from srgan_fast.plan import INPUT, FusedOp, Plan, assign_buffers, compile_plan, fold_bn
from srgan_fast.weights import WeightsError, load_generator, save_generator

REPO = Path(__file__).resolve().parents[2]


def test_shipped_families_are_registered():
    fams = families.families()
    assert {"srresnet", "srvgg_compact"} <= set(fams)
    assert families.converter("compact").name == "srvgg_compact"
    assert families.converter("srresnet").name == "srresnet"
    with pytest.raises(ValueError, match="unknown model family 'nope'"):
        families.get_family("nope")
    with pytest.raises(TypeError, match="not a module of a registered model family"):
        families.family_of(nn.Conv2d(3, 3, 3))


def _package_imports():
    """srgan_fast module -> the srgan_fast modules importing it runs (relative imports anywhere in
    it, function bodies included; importing a.b.c runs the packages a.b and a.b.c too, except the
    top package, which is always loaded first)."""
    root = REPO / "srgan_fast"
    names = {}
    for p in root.rglob("*.py"):
        parts = ["srgan_fast", *p.relative_to(root).with_suffix("").parts]
        is_pkg = parts[-1] == "__init__"
        names[".".join(parts[:-1] if is_pkg else parts)] = (p, is_pkg)

    def with_parents(m):
        parts = m.split(".")
        return {".".join(parts[:i]) for i in range(2, len(parts) + 1)}

    out = {}
    for mod, (p, is_pkg) in names.items():
        deps = set()
        base = mod.split(".") if is_pkg else mod.split(".")[:-1]
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level >= 1:
                pkg = base[: len(base) - (node.level - 1)]
                target = ".".join(pkg + ([node.module] if node.module else []))
                for alias in node.names:  # `from . import x` may name a submodule
                    sub = f"{target}.{alias.name}"
                    deps |= with_parents(sub if sub in names else target)
        out[mod] = deps - {mod}
    return out


def test_no_import_cycle_between_plan_weights_and_families():
    deps = _package_imports()

    def reaches(a, b, seen=()):
        return b in deps.get(a, ()) or any(reaches(c, b, (*seen, a)) for c in deps.get(a, ()) if c not in seen)

    fam = "srgan_fast.families"
    assert deps[fam] <= {"srgan_fast.errors"}  # the registry sits below everything that uses it
    family_packages = [f"{fam}.{name}" for name in families.BUILTIN]
    for f in family_packages:
        assert f in deps, f"{f}: a built-in family without a package"
        assert not reaches("srgan_fast.plan", f), f"the generic plan imports the family {f}"
        assert not reaches(f"{f}.arch", "srgan_fast.plan"), f"{f}.arch (the plain module) imports the plan"
    assert not reaches("srgan_fast.plan", "srgan_fast.weights")
    assert not reaches("srgan_fast.weights", f"{fam}.srvgg_compact")
    assert not reaches(fam, fam)


# ---------------------------------------------------------------- a family added from outside


class _Cfg:
    family = "test_bicubicish"

    def __init__(self, num_feat=4, upscale=2):
        for name, v in (("num_feat", num_feat), ("upscale", upscale)):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= 64:
                raise ValueError(f"config {name}={v!r} is out of range")
        self.num_feat, self.upscale = num_feat, upscale

    scale = property(lambda self: self.upscale)
    in_channels = property(lambda self: 3)

    @classmethod
    def from_dict(cls, d):
        return cls(**d)

    def to_dict(self):
        return {"num_feat": self.num_feat, "upscale": self.upscale}


class _Net(nn.Module):
    """conv3x3 -> PixelShuffle: the smallest network the engine's ops express."""

    output_range = (0.0, 1.0)

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.conv = nn.Conv2d(3, 3 * config.upscale**2, 3, padding=1)

    def forward(self, x):
        return nn.functional.pixel_shuffle(self.conv(x), self.config.upscale)


def _compile(m):
    w, b = fold_bn(m.conv, None)
    ops = [FusedOp("tail", w, b, shuffle=True, shuffle_r=m.config.upscale, out_map=2, src=INPUT, dst="v0")]
    values = {INPUT: (3, 1), "v0": (3, m.config.upscale)}
    return Plan(m.config, ops, ops[0].macs_per_lr_pixel(), assign_buffers(ops, values), source=m)


@pytest.fixture
def toy_family():
    f = families.register_family(families.Family("test_bicubicish", _Cfg, _Net, _compile))
    yield f
    families._FAMILIES.pop(f.name)


def test_a_family_from_outside_saves_loads_compiles_and_runs(toy_family, tmp_path):
    torch.manual_seed(0)
    m = _Net(_Cfg(upscale=2)).eval()
    path = save_generator(m, tmp_path / "toy.safetensors")
    loaded = load_generator(path)
    assert isinstance(loaded, _Net) and loaded.config.to_dict() == {"num_feat": 4, "upscale": 2}
    plan = compile_plan(loaded)
    assert [op.kind for op in plan.ops] == ["tail"] and plan.halo == 1
    x = np.random.default_rng(0).random((1, 9, 7, 3), dtype=np.float32)
    got = Engine(loaded, backend="torch").upscale(x)
    with torch.no_grad():
        want = m(torch.from_numpy(x).permute(0, 3, 1, 2)).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    assert np.abs(got - want).max() <= 1e-5, np.abs(got - want).max()
    tiled = Engine(loaded, backend="torch", tile=3).upscale(x)
    assert np.abs(tiled - got).max() <= 1e-6


def test_a_family_config_is_bounded_before_anything_is_built(toy_family, tmp_path):
    path = save_generator(_Net(_Cfg()), tmp_path / "toy.safetensors")
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}
    meta["config"] = json.dumps({"num_feat": 10**6, "upscale": 2})
    save_file(state, str(tmp_path / "big.safetensors"), metadata=meta)
    with pytest.raises(WeightsError, match="num_feat=1000000 is out of range"):
        load_generator(tmp_path / "big.safetensors")


# ---------------------------------------------------------------- plugins reach the command


def _cli(args, tmp_path, plugin_src):
    (tmp_path / "my_plugin.py").write_text(plugin_src)
    env = dict(os.environ, SRGAN_FAST_PLUGINS="my_plugin", PYTHONPATH=str(tmp_path))
    env.pop("TRITON_INTERPRET", None)
    return subprocess.run([sys.executable, "-m", "srgan_fast.cli", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_a_plugin_backend_reaches_the_command(tmp_path):
    src = (
        "from srgan_fast.backends import Backend, TorchRunner, register_backend\n"
        "class Mine(TorchRunner):\n    name = 'mine'\n"
        "register_backend(Backend('mine', Mine, 'a plugin backend'))\n"
    )
    r = _cli(["upscale", "--help"], tmp_path, src)
    assert r.returncode == 0 and "mine" in r.stdout.split("--backend", 1)[1], r.stdout + r.stderr


def test_a_broken_plugin_is_one_line(tmp_path):
    r = _cli(["models"], tmp_path, "raise RuntimeError('boom')\n")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        "srgan-fast models: error: plugin 'my_plugin' (my_plugin) failed to load: RuntimeError: boom"
    ]


def test_the_built_in_families_come_first_in_their_listed_order_and_a_taken_name_is_refused(toy_family):
    names = list(families.families())
    assert families.BUILTIN == ("srresnet", "srvgg_compact", "msrresnet", "rrdbnet")
    assert names[: len(families.BUILTIN)] == list(families.BUILTIN)
    assert names[-1] == "test_bicubicish"
    srresnet = families.get_family("srresnet")
    impostor = families.Family("srresnet", _Cfg, _Net, _compile)
    with pytest.raises(families.DuplicateFamilyError, match="already registered.*replace=True"):
        families.register_family(impostor)
    assert families.get_family("srresnet") is srresnet  # untouched
    assert families.register_family(srresnet) is srresnet  # the same object again is no change
    try:
        assert families.register_family(impostor, replace=True) is impostor
        assert families.get_family("srresnet") is impostor
    finally:
        families.register_family(srresnet, replace=True)
    assert families.get_family("srresnet") is srresnet
