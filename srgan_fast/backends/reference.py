"""Backend "reference": the plain PyTorch model the plan came from, unfused (the yardstick)."""

from __future__ import annotations

import copy

import torch

from ..plan import Plan
from .base import BackendUnavailable, Runner
from .registry import Backend


class ReferenceRunner(Runner):
    """The plain PyTorch model the plan was compiled from (NCHW, as trained): the yardstick.
    Never tiled automatically, so its output is the whole-frame reference."""

    name = "reference"
    slack = 3.0
    tileable = False

    def __init__(self, plan: Plan, device: torch.device, dtype: torch.dtype):
        if plan.source is None:
            raise BackendUnavailable(
                "backend 'reference' runs the plain PyTorch model, but this plan has none: it was given "
                "without it, or a transform changed its math (Plan.rewrite(..., exact=False)); pass the "
                "Generator (or a model name), or check the plan op by op with reference.run_plan_reference"
            )
        super().__init__(plan, device, dtype)
        # a copy: never change the caller's model in place
        self.model = copy.deepcopy(plan.source).to(self.device, dtype).eval()

    def __call__(self, x, out_u8):
        from ..families.srresnet.arch import output_to_unit
        from ..reference import reference_forward, to_uint8

        with torch.inference_mode():
            # frame by frame, as upscale_reference does: the same bits for every batch size
            ys = []
            for frame in x:
                y = reference_forward(self.model, frame, self.dtype)
                self.finite.update(y)
                y = output_to_unit(self.model, y.float())
                ys.append(to_uint8(y) if out_u8 else y)
            return torch.cat(ys).permute(0, 2, 3, 1)


BACKENDS = (
    Backend(
        "reference",
        ReferenceRunner,
        "the plain PyTorch model, unfused (the yardstick)",
    ),
)
