"""The msrresnet checkpoint converter and key-layout detector."""

from __future__ import annotations

import torch

from ...weights import WeightsError, check_state, unnest_state
from .. import refuse_options
from .arch import _KEY, MSRResNet, MSRResNetConfig


def msrresnet_state_from_checkpoint(obj) -> tuple[dict[str, torch.Tensor], MSRResNetConfig]:
    """The state dict and config of a BasicSR MSRResNet checkpoint (a dict of tensors under
    BasicSR's names, possibly under `params_ema` (preferred) or `params`). The config is read off
    the shapes; anything else is refused, listing what did not match."""
    state = unnest_state(obj)
    if not state:
        raise WeightsError("no state dict found in the checkpoint")
    stray = sorted(k for k in state if not _KEY.fullmatch(k))
    needed = ("conv_first.weight", "upconv1.weight", "conv_last.weight")
    absent = [k for k in needed if k not in state or state[k].dim() != 4]
    if stray or absent:
        raise WeightsError(
            "not a BasicSR MSRResNet checkpoint: expected conv_first, body.N.conv1/conv2, upconv1[, upconv2], "
            "conv_hr, conv_last (weight and bias each)"
            + (f"; unexpected keys ({len(stray)}): {', '.join(stray[:10])}" if stray else "")
            + (f"; missing: {', '.join(absent)}" if absent else "")
        )
    w0, wu, wl = state["conv_first.weight"], state["upconv1.weight"], state["conv_last.weight"]
    feat, cin = int(w0.shape[0]), int(w0.shape[1])
    if int(wu.shape[0]) == 9 * feat and "upconv2.weight" not in state:
        raise WeightsError(
            f"upconv1 has {wu.shape[0]} = 9 x {feat} outputs: an x3 MSRResNet (PixelShuffle(3)), which is not "
            "supported (the fused kernels pixel-shuffle by 2 and 4 only)"
        )
    blocks = sorted({int(k.split(".")[1]) for k in state if k.startswith("body.")})
    if blocks != list(range(len(blocks))):
        raise WeightsError(f"residual blocks must be body.0 .. body.N-1 without gaps; found indices {blocks[:40]}")
    try:
        cfg = MSRResNetConfig(num_in_ch=cin, num_out_ch=int(wl.shape[0]), num_feat=feat, num_block=len(blocks),
                              upscale=4 if "upconv2.weight" in state else 2)  # fmt: skip
    except ValueError as e:
        raise WeightsError(f"not a supported MSRResNet checkpoint: {e}") from None
    with torch.device("meta"):  # names and shapes only: nothing allocated
        check_state(MSRResNet(cfg), state, "checkpoint")
    return state, cfg


def _convert(state, config=None, output_range=None, act=None):
    """The family's `convert`: a BasicSR checkpoint, keys kept as they are."""
    refuse_options(config, output_range, act, a_model="an MSRResNet", models="MSRResNet's", acts="LeakyReLU 0.1, ReLU")
    new, cfg = msrresnet_state_from_checkpoint(state)
    return new, cfg, {k: k for k in new}, {}


def _looks_msrresnet(state: dict) -> bool:
    """BasicSR's MSRResNet names and nothing else: conv_first, body.N.conv1/2, upconv1[, upconv2],
    conv_hr, conv_last."""
    keys = set(state)
    core = {f"{n}.{p}" for n in ("conv_first", "upconv1", "conv_hr", "conv_last") for p in ("weight", "bias")}
    return core <= keys and all(_KEY.fullmatch(k) for k in keys)
