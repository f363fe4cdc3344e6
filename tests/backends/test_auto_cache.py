"""Caches are read only when they are what they claim: a regular file of a sane size. A FIFO
in the calibration cache's place hung `upscale` forever, a symlink to /dev/zero filled memory
(issue 31); both are now ignored with one line, and the next write replaces them."""

import json
import os
import subprocess
import sys
import warnings

import pytest

from srgan_fast.backends import auto
from srgan_fast.io.paths import NotARegularFile, read_regular_file


def test_read_regular_file_reads_a_file_and_refuses_everything_else(tmp_path):
    f = tmp_path / "c.json"
    f.write_bytes(b"x" * 100)
    assert read_regular_file(f, 100) == b"x" * 100
    with pytest.raises(NotARegularFile, match="100 bytes, more than the 99"):
        read_regular_file(f, 99)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(NotARegularFile, match="is a FIFO"):
        read_regular_file(fifo, 100)  # returns at once: opened non-blocking, no writer needed
    zero = tmp_path / "zero"
    zero.symlink_to("/dev/zero")
    with pytest.raises(NotARegularFile, match="is a device"):
        read_regular_file(zero, 100)
    with pytest.raises(FileNotFoundError):
        read_regular_file(tmp_path / "absent", 100)


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "huge"])
def test_a_calibration_cache_that_is_not_a_small_regular_file_is_ignored_and_replaced(tmp_path, kind):
    path = tmp_path / auto.CACHE_FILE
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev_zero":
        path.symlink_to("/dev/zero")
    else:
        path.write_text(json.dumps({"k": "x" * auto.CACHE_MAX_BYTES}))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert auto._read_cache(path) == {}
    assert len(w) == 1 and "ignored: measuring again" in str(w[0].message), [str(x.message) for x in w]
    auto._write_cache(path, "key", {"backend": "torch"})
    assert path.is_file() and not path.is_symlink()
    assert json.loads(path.read_text()) == {"key": {"backend": "torch"}}


def test_upscale_with_a_fifo_as_calibration_cache_finishes(tmp_path):
    """The whole command, as the hostile user ran it: it used to hang at the cache read."""
    from PIL import Image

    from srgan_fast.families.srresnet import Generator
    from srgan_fast.weights import save_generator

    save_generator(Generator("tiny_x4"), tmp_path / "tiny.safetensors")  # calibrates in seconds
    cache = tmp_path / "cache"
    cache.mkdir()
    os.mkfifo(cache / auto.CACHE_FILE)
    Image.new("RGB", (12, 10), (90, 140, 200)).save(tmp_path / "in.png")
    env = dict(os.environ, SRGAN_FAST_CACHE_DIR=str(cache), SRGAN_FAST_CALIBRATE="1")
    env.pop("TRITON_INTERPRET", None)
    cmd = [sys.executable, "-m", "srgan_fast.cli", "upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "o.png")]
    r = subprocess.run(cmd + ["--model", str(tmp_path / "tiny.safetensors"), "-q"], env=env, capture_output=True,
                       text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "is a FIFO, not a regular file; ignored" in r.stderr
    assert Image.open(tmp_path / "o.png").size == (48, 40)
    assert (cache / auto.CACHE_FILE).is_file()  # replaced by the measured entry
