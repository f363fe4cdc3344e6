"""An address check for the Triton interpreter: every load and store a kernel makes (mask on)
must lie inside the storage of one of the tensors it was launched with.

The interpreter reads CPU memory straight through the pointers, so a kernel that reads past a
tensor (a dropped mask, a row index not clamped) gets whatever lies beside it on the heap, and
results usually still match: lanes that are never stored, or zero operands times garbage. On a
GPU that is an illegal address (or a silent wrong read); compute-sanitizer would say so, the
interpreter does not. conftest.py installs `install()` for every test when TRITON_INTERPRET=1,
so every kernel test doubles as a bounds check (mutations N4/N6 of issue 21 survived without it).

Tensor descriptors (TMA) are bounds-checked by the interpreter itself (out-of-box reads pad).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

_RANGES: list[tuple[int, int]] = []  # (first byte, one past the last) of each launch argument's storage
_INSTALLED = False


class OutOfBoundsAccess(AssertionError):
    """A kernel touched memory outside every tensor it was given."""


def _storages(arg, out):
    if isinstance(arg, (tuple, list)):
        for a in arg:
            _storages(a, out)
    elif hasattr(arg, "base") and hasattr(arg, "block_shape"):  # TensorDescriptor
        _storages(arg.base, out)
    elif hasattr(arg, "untyped_storage"):
        s = arg.untyped_storage()
        out.append((s.data_ptr(), s.data_ptr() + s.nbytes()))


def check(ptrs: np.ndarray, mask: np.ndarray, itemsize: int, what: str) -> None:
    p = np.asarray(ptrs, dtype=np.uint64)
    m = np.broadcast_to(np.asarray(mask, dtype=bool), p.shape)
    p = p[m]
    if p.size == 0:
        return
    ok = np.zeros(p.shape, dtype=bool)
    for lo, hi in _RANGES:
        ok |= (p >= lo) & (p + itemsize <= hi)
    if not ok.all():
        bad = p[~ok]
        near = min(_RANGES, key=lambda r: min(abs(int(bad[0]) - r[0]), abs(int(bad[0]) - r[1])), default=None)
        where = f"; nearest tensor bytes [{near[0]:#x}, {near[1]:#x})" if near else ""
        raise OutOfBoundsAccess(
            f"out-of-bounds {what}: {bad.size} of {p.size} unmasked addresses outside every launch "
            f"argument, first {int(bad[0]):#x}{where}"
        )


def install() -> bool:
    """Patch the interpreter (idempotent). False when Triton or its interpreter is absent."""
    global _INSTALLED
    if _INSTALLED:
        return True
    try:
        from triton.runtime import interpreter as it
    except Exception:  # no triton, or one without the interpreter
        return False
    builder, executor = it.InterpreterBuilder, it.GridExecutor
    hooks = [(builder, "create_masked_load"), (builder, "create_masked_store"), (executor, "_init_args_hst"),
             (it, "_get_np_dtype")]  # fmt: skip
    if not all(hasattr(obj, name) for obj, name in hooks):
        return False
    init, load, store = executor._init_args_hst, builder.create_masked_load, builder.create_masked_store

    def _init_args_hst(self, args_dev, kwargs):
        args_hst, kwargs_hst = init(self, args_dev, kwargs)
        ranges: list[tuple[int, int]] = []
        _storages(list(args_hst) + list(kwargs_hst.values()), ranges)
        _RANGES[:] = ranges
        return args_hst, kwargs_hst

    def create_masked_load(self, ptrs, mask, *a, **k):
        check(ptrs.data, mask.data, np.dtype(it._get_np_dtype(ptrs.get_element_ty())).itemsize, "load")
        return load(self, ptrs, mask, *a, **k)

    def create_masked_store(self, ptrs, value, mask, *a, **k):
        check(ptrs.data, mask.data, np.dtype(it._get_np_dtype(ptrs.get_element_ty())).itemsize, "store")
        return store(self, ptrs, value, mask, *a, **k)

    executor._init_args_hst = _init_args_hst
    builder.create_masked_load = create_masked_load
    builder.create_masked_store = create_masked_store
    _INSTALLED = True
    return True


# ---------------------------------------------------------------- the check's own tests

needs_interpreter = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1", reason="the address check is for the Triton interpreter"
)


@pytest.fixture(scope="module")
def copy_kernel():
    triton = pytest.importorskip("triton")
    import triton.language as tl

    if not install():
        pytest.skip("this triton's interpreter has no create_masked_load/_init_args_hst to patch")

    @triton.jit
    def _copy(x_ptr, y_ptr, n, EXTRA: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        v = tl.load(x_ptr + offs, mask=offs < n + EXTRA, other=0.0)  # EXTRA > 0: reads past the end
        tl.store(y_ptr + offs, v, mask=offs < n)

    return _copy


@needs_interpreter
def test_in_bounds_kernel_passes_the_check(copy_kernel):
    import torch

    x = torch.arange(10, dtype=torch.float32)
    y = torch.zeros(10)
    copy_kernel[(1,)](x, y, 10, EXTRA=0, BLOCK=16)
    assert torch.equal(x, y)
    # a view inside a larger storage may be read anywhere in that storage (not a memory error)
    big = torch.arange(32, dtype=torch.float32)
    copy_kernel[(1,)](big[4:14], y, 10, EXTRA=2, BLOCK=16)
    assert torch.equal(y, big[4:14])


@needs_interpreter
def test_a_read_past_the_end_is_refused(copy_kernel):
    import torch

    x = torch.arange(10, dtype=torch.float32)
    y = torch.zeros(10)
    # the extra lanes are never stored: the output is right, only the address check can see it
    with pytest.raises(Exception, match="out-of-bounds load: 1 of 11 unmasked addresses"):
        copy_kernel[(1,)](x, y, 10, EXTRA=1, BLOCK=16)


# ---------------------------------------------------------------- kernel cases the check needs

# (batch, H, W, Cin, Cout, K, prelu, skip, shuffle, out_map, u8 in, u8 out): a skip whose channel
# count is not a multiple of BLOCK_N, so the last N block's skip load must be masked by channel
# too (its masked lanes of the last pixel lie past the end of the skip tensor)
PARTIAL_N_SKIP = [
    (1, 5, 7, 40, 40, 3, True, True, False, False, False, False),
    (2, 3, 4, 16, 24, 1, False, True, False, False, False, False),
]


@pytest.mark.parametrize("case", PARTIAL_N_SKIP, ids=["c40_prelu_skip", "c24_k1_skip"])
def test_conv2d_fused_skip_in_a_partial_channel_block(case):
    pytest.importorskip("srgan_fast.kernels.conv2d_fused")
    import torch

    from ..conftest import TRITON_DEVICE
    from .test_conv2d_fused import GPU_LIKE, _check

    _check(case, torch.float32, TRITON_DEVICE, config=GPU_LIKE)
