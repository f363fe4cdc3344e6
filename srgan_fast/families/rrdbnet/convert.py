"""The rrdbnet checkpoint converter and key-layout detector."""

from __future__ import annotations

import re

import torch

from ...weights import WeightsError, check_state, unnest_state
from .. import refuse_options
from .arch import _KEY, RRDBNet, RRDBNetConfig

_ESRGAN_NEW = [  # xinntao/ESRGAN's RRDBNet_arch.py names
    (re.compile(r"RRDB_trunk\.(\d+)\.RDB([123])\.conv([1-5])\.(weight|bias)"), r"body.\1.rdb\2.conv\3.\4"),
    (re.compile(r"trunk_conv\.(weight|bias)"), r"conv_body.\1"),
    (re.compile(r"upconv([12])\.(weight|bias)"), r"conv_up\1.\2"),
    (re.compile(r"HRconv\.(weight|bias)"), r"conv_hr.\1"),
    (re.compile(r"(conv_first|conv_last)\.(weight|bias)"), r"\1.\2"),
]
_ESRGAN_OLD = [  # the original sequential "model.N" layout (model.1.sub.B is the trunk conv)
    (re.compile(r"model\.0\.(weight|bias)"), r"conv_first.\1"),
    (re.compile(r"model\.1\.sub\.(\d+)\.RDB([123])\.conv([1-5])\.0\.(weight|bias)"), r"body.\1.rdb\2.conv\3.\4"),
    (re.compile(r"model\.3\.(weight|bias)"), r"conv_up1.\1"),
    (re.compile(r"model\.6\.(weight|bias)"), r"conv_up2.\1"),
    (re.compile(r"model\.8\.(weight|bias)"), r"conv_hr.\1"),
    (re.compile(r"model\.10\.(weight|bias)"), r"conv_last.\1"),
]
_OLD_TRUNK = re.compile(r"model\.1\.sub\.(\d+)\.(weight|bias)")


def _layout(state: dict) -> str | None:
    keys = set(state)
    if "conv_first.weight" in keys and any(k.startswith("body.") and ".rdb" in k for k in keys):
        return "basicsr"
    if "conv_first.weight" in keys and any(k.startswith("RRDB_trunk.") for k in keys):
        return "esrgan"
    if "model.0.weight" in keys and any(k.startswith("model.1.sub.") and ".RDB" in k for k in keys):
        return "esrgan-old"
    return None


def _rename(state: dict, layout: str) -> tuple[dict[str, torch.Tensor], dict[str, str], list[str]]:
    """(state under BasicSR names, our key -> source key, source keys that map nowhere)."""
    if layout == "basicsr":
        return dict(state), {k: k for k in state}, []
    rules = _ESRGAN_NEW if layout == "esrgan" else _ESRGAN_OLD
    new, origin, stray = {}, {}, []
    for k, v in state.items():
        for pat, rep in rules:
            if pat.fullmatch(k):
                ours = pat.sub(rep, k)
                break
        else:
            m = _OLD_TRUNK.fullmatch(k) if layout == "esrgan-old" else None
            if m is None:
                stray.append(k)
                continue
            ours = f"conv_body.{m.group(2)}"  # the trunk conv: model.1.sub.<num_block>
        new[ours], origin[ours] = v, k
    return new, origin, stray


def rrdbnet_state_from_checkpoint(obj) -> tuple[dict[str, torch.Tensor], RRDBNetConfig, dict[str, str]]:
    """The state dict (BasicSR names), config and our key -> source key of an RRDBNet checkpoint in
    any of the three layouts (possibly under `params_ema` (preferred) / `params`). The config is
    read off the shapes; anything else is refused, listing what did not match."""
    state = unnest_state(obj)
    if not state:
        raise WeightsError("no state dict found in the checkpoint")
    layout = _layout(state)
    if layout is None:
        raise WeightsError(
            "not an RRDBNet checkpoint: expected BasicSR/Real-ESRGAN names (conv_first, body.N.rdbR.convC, "
            "conv_body, conv_up1, conv_up2, conv_hr, conv_last), ESRGAN's (conv_first, RRDB_trunk.N.RDBR.convC, "
            "trunk_conv, upconv1, upconv2, HRconv, conv_last) or the original model.0 .. model.10 layout"
        )
    new, origin, stray = _rename(state, layout)
    stray += [k for k in new if not _KEY.fullmatch(k)]
    if layout == "esrgan-old":  # the trunk conv is model.1.sub.<num_block>, once
        trunks = sorted({int(m.group(1)) for k in state if (m := _OLD_TRUNK.fullmatch(k))})
        n_blocks = len({int(k.split(".")[3]) for k in state if k.startswith("model.1.sub.") and ".RDB" in k})
        if trunks != [n_blocks]:
            raise WeightsError(
                f"not a supported RRDBNet checkpoint (original layout): the trunk conv must be model.1.sub.{n_blocks} "
                f"(after {n_blocks} RRDBs), found it at model.1.sub.{trunks or '(none)'}"
            )
    needed = ("conv_first.weight", "body.0.rdb1.conv1.weight", "conv_last.weight", "conv_up2.weight")
    absent = [k for k in needed if k not in new or new[k].dim() != 4]
    if stray or absent:
        raise WeightsError(
            f"not a supported RRDBNet checkpoint ({layout} layout)"
            + (f"; unexpected keys ({len(stray)}): {', '.join(stray[:10])}" if stray else "")
            + (f"; missing: {', '.join(absent)}" if absent else "")
            + (
                "; (an x8 ESRGAN has a third upsampling conv, which is not supported)"
                if stray and layout != "basicsr"
                else ""
            )  # fmt: skip
        )
    w0, wg, wl = new["conv_first.weight"], new["body.0.rdb1.conv1.weight"], new["conv_last.weight"]
    feat, cin, cout = int(w0.shape[0]), int(w0.shape[1]), int(wl.shape[0])
    blocks = sorted({int(k.split(".")[1]) for k in new if k.startswith("body.")})
    if blocks != list(range(len(blocks))):
        raise WeightsError(f"RRDB blocks must be body.0 .. body.N-1 without gaps; found indices {blocks[:40]}")
    # BasicSR's x2 / x1 models pixel-unshuffle the input: conv_first reads 4x / 16x the output channels
    scale = {cout: 4, 4 * cout: 2, 16 * cout: 1}.get(cin, 4)
    try:
        cfg = RRDBNetConfig(num_in_ch=cin if scale == 4 else cout, num_out_ch=cout, num_feat=feat,
                            num_block=len(blocks), num_grow_ch=int(wg.shape[0]), scale=scale)  # fmt: skip
    except ValueError as e:
        raise WeightsError(f"not a supported RRDBNet checkpoint: {e}") from None
    with torch.device("meta"):  # names and shapes only: nothing allocated
        check_state(RRDBNet(cfg), new, "checkpoint")
    return new, cfg, origin


def _convert(state, config=None, output_range=None, act=None):
    """The family's `convert`: a checkpoint in any of the three layouts, renamed to BasicSR's keys."""
    refuse_options(config, output_range, act, a_model="an RRDBNet", models="RRDBNet's", acts="LeakyReLU 0.2")
    new, cfg, origin = rrdbnet_state_from_checkpoint(state)
    return new, cfg, origin, {}
