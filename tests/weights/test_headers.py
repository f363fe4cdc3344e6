"""Tests for mutations that survived the suite (issue 21's follow-up mutation run)."""

import time

import pytest

from srgan_fast.weights import WeightsError, load_generator, read_header


def test_a_header_over_the_format_limit_is_refused_unread(tmp_path):
    """A safetensors file whose header claims more than the format's 100 MiB (and whose file is
    that long: a sparse file) is refused from its length field, before the header is read or
    parsed (a mutation dropping the limit survived: the header then failed later as 'not JSON')."""
    from srgan_fast import weights

    n = weights._MAX_HEADER + 1
    p = tmp_path / "big.safetensors"
    with open(p, "wb") as f:
        f.write(n.to_bytes(8, "little") + b"{")
        f.truncate(8 + n)  # sparse: no 100 MiB written
    t0 = time.perf_counter()
    for fn in (read_header, load_generator):
        with pytest.raises(WeightsError, match=rf"safetensors header of {n} bytes is over the format's limit"):
            fn(p)
    assert time.perf_counter() - t0 < 1.0
