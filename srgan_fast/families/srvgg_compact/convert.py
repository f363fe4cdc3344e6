"""The srvgg_compact checkpoint converter and key-layout detector."""

from __future__ import annotations

import math
import re

import torch

from ...weights import WeightsError, check_state, unnest_state
from .. import refuse_options
from .arch import CompactConfig, SRVGGNetCompact


def compact_state_from_checkpoint(obj, act_type: str | None = None) -> tuple[dict[str, torch.Tensor], CompactConfig]:
    """The state dict and config of a published-layout SRVGGNetCompact checkpoint (a dict of
    tensors `body.N.weight` / `body.N.bias`, possibly under `params_ema` (preferred) or
    `params`). The config is read off the shapes; `act_type` is needed only when the file has
    no PReLU weights (relu and leakyrelu have none, so the file cannot say which)."""
    state = unnest_state(obj)
    if not state:
        raise WeightsError("no state dict found in the checkpoint")
    idx = sorted({int(k.split(".")[1]) for k in state if k.startswith("body.") and k.split(".")[1].isdigit()})
    stray = sorted(k for k in state if not k.startswith("body."))
    convs = [i for i in idx if state.get(f"body.{i}.weight") is not None and state[f"body.{i}.weight"].dim() == 4]
    if stray or len(convs) < 2 or convs != list(range(0, 2 * len(convs) - 1, 2)):
        raise WeightsError(
            "not an SRVGGNetCompact checkpoint: expected convs at body.0, body.2, ..., activations between"
            + (f"; unexpected keys: {', '.join(stray[:10])}" if stray else "")
            + f"; conv indices found: {convs[:40]}"
        )
    w0, wl = state["body.0.weight"], state[f"body.{convs[-1]}.weight"]
    cin, feat = int(w0.shape[1]), int(w0.shape[0])
    rr = wl.shape[0] / cin
    r = round(math.sqrt(rr))
    if r * r != rr:
        raise WeightsError(f"last conv has {wl.shape[0]} outputs, not {cin} x r^2")
    has_prelu = "body.1.weight" in state
    if act_type is None:
        if not has_prelu:
            raise WeightsError("the checkpoint has no PReLU weights: say --act relu or --act leakyrelu")
        act_type = "prelu"
    cfg = CompactConfig(num_in_ch=cin, num_out_ch=cin, num_feat=feat, num_conv=len(convs) - 2, upscale=r,
                        act_type=act_type)  # fmt: skip
    check_state(SRVGGNetCompact(cfg), state, "checkpoint")
    return state, cfg


def _convert(state, config=None, output_range=None, act=None):
    """The family's `convert`: a published-layout checkpoint, keys kept as they are."""
    refuse_options(config, output_range, a_model="a compact model", models="compact models'", it="them")
    new, cfg = compact_state_from_checkpoint(state, act_type=act)
    return new, cfg, {k: k for k in new}, {}


def _looks_compact(state: dict) -> bool:
    """body.N weights and biases only, 3x3 convs, the last one C x r^2 outputs."""
    keys = list(state)
    if keys and all(re.fullmatch(r"body\.\d+\.(weight|bias)", k) for k in keys):
        ws = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 4]
        return bool(ws) and all(w.shape[-1] == 3 for w in ws) and ws[-1].shape[0] % (4 * ws[0].shape[1]) == 0
    return False
