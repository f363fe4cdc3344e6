"""The calibration cache is trusted only after a check (issue 31): read only when it is a regular
file of a sane size holding a JSON object, each entry only when its digest (of its key, what it
was made from, and its content) matches. Anything else -- a FIFO (hung `upscale` forever), a
symlink to /dev/zero (filled memory), a folder, garbage, an oversized file, an entry edited,
damaged or moved -- is ignored with one line and measured again; writes replace the file whole
(io.paths.atomic_output) under a lock, so two processes calibrating at once keep both entries."""

import json
import os
import subprocess
import sys
import textwrap
import time
import warnings

import pytest
import torch

from srgan_fast.backends import Backend, Runner, auto
from srgan_fast.io.paths import NotARegularFile, read_regular_file

CPU = torch.device("cpu")


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


def _read_in_child(path) -> dict:
    """`auto._read_cache(path)` in a child process under a time limit and an address-space limit
    of what it has after its imports + 256 MiB: a FIFO that hangs the read fails the test by the
    timeout, a /dev/zero that is read without bound by MemoryError, never by taking the machine."""
    code = textwrap.dedent(f"""
        import json, resource, sys, warnings
        from srgan_fast.backends import auto
        def vm():
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize:"))
        limit = vm() + (256 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            got = auto._read_cache(auto.Path({str(path)!r}))
        grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0
        print(json.dumps({{"got": got, "said": [str(x.message) for x in w], "grew_kb": grew}}))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


KINDS = ["fifo", "dev_zero", "huge", "folder", "garbage", "not_utf8", "not_an_object"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_calibration_cache_that_is_not_a_small_json_file_is_ignored_with_one_line_and_replaced(tmp_path, kind):
    path = tmp_path / auto.CACHE_FILE
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev_zero":
        path.symlink_to("/dev/zero")
    elif kind == "huge":
        path.write_text(json.dumps({"k": "x" * auto.CACHE_MAX_BYTES}))
    elif kind == "folder":
        path.mkdir()
    elif kind == "garbage":
        path.write_text('{"key": {"backend": "torch"')  # cut short, as by a crash mid-write
    elif kind == "not_utf8":
        path.write_bytes(b"\xff\xfe\x00garbage")
    else:
        path.write_text('["torch"]')
    if kind in ("fifo", "dev_zero"):  # a hang or unbounded memory must fail the test, not stop it
        r = _read_in_child(path)
        got, said = r["got"], r["said"]
        assert r["grew_kb"] < 64 << 10, r
    else:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            got = auto._read_cache(path)
        said = [str(x.message) for x in w]
    assert got == {}
    assert len(said) == 1 and "ignored: measuring again" in said[0] and str(path) in said[0], said
    auto._write_cache(path, "key", {"backend": "torch"})
    if kind == "folder":  # the user's folder stays; the choice holds for this engine only
        assert path.is_dir() and not list(path.iterdir())
    else:
        assert path.is_file() and not path.is_symlink()
        signed = {"backend": "torch", "digest": auto._digest("key", {"backend": "torch"})}
        assert json.loads(path.read_text()) == {"key": signed}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([auto.CACHE_FILE, f".{auto.CACHE_FILE}.lock"])


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


# ---- entries: each signed by a digest of its key and content, checked on load


class _Clock:
    t = 0.0

    def __call__(self):
        return self.t


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    """AutoCpu between two fake backends on a fake clock ("fast" wins), with its own cache."""
    monkeypatch.setenv("SRGAN_FAST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SRGAN_FAST_CALIBRATE", raising=False)
    clock = _Clock()

    def make(name, cost):
        class Fake(Runner):
            def __call__(self, x, out_u8):
                clock.t += cost
                return x

        return Backend(name, Fake, "fake", devices=("cpu",), auto_devices=("cpu",))

    backends = [make("slow", 2.0), make("fast", 1.0)]
    monkeypatch.setattr(auto, "_candidates", lambda device: backends)
    from srgan_fast.families.srvgg_compact import CompactConfig, random_compact
    from srgan_fast.plan import compile_plan

    plan = compile_plan(random_compact(CompactConfig(num_feat=8, num_conv=2, upscale=2), seed=1))

    def choose():
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            _, _, choice = auto.AutoCpu(plan, CPU, torch.float32, clock=clock).choose(64, 64)
        return choice, [str(x.message) for x in w]

    return choose


def _entries():
    return json.loads(auto.cache_path().read_text())


@pytest.mark.parametrize("how", ["edited", "unsigned", "moved"])
def test_an_entry_whose_digest_does_not_match_is_ignored_with_one_line_and_measured_again(fakes, how):
    choice, said = fakes()
    assert choice.backend == "fast" and choice.how == "measured" and said == []
    ((key, entry),) = _entries().items()
    assert entry["digest"] == auto._digest(key, entry)
    assert fakes()[0].how == "cached"  # (signed as it should be: trusted)
    if how == "edited":  # by hand, or a bit flipped on disk: the slower backend named as the choice
        bad = {key: dict(entry, backend="slow")}
    elif how == "unsigned":  # written by an older srgan_fast
        bad = {key: {k: v for k, v in entry.items() if k != "digest"}}
    else:  # another model's (or machine's) entry, with its own valid digest, under this key
        other = key.replace("float32", "float16")
        bad = {key: auto._signed(other, dict(entry, backend="slow"))}
    auto.cache_path().write_text(json.dumps(bad))
    choice, said = fakes()
    assert choice.backend == "fast" and choice.how == "measured", choice
    assert len(said) == 1 and "does not match its digest" in said[0] and "ignored: measuring again" in said[0], said
    ((key2, entry2),) = _entries().items()  # rewritten, signed
    assert key2 == key and entry2["digest"] == auto._digest(key, entry2) and entry2["backend"] == "fast"
    choice, said = fakes()
    assert choice.how == "cached" and said == []


# ---- writes: whole files, through atomic_output, under a lock


def test_writes_go_through_atomic_output_and_a_failed_write_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    from srgan_fast.io import paths

    path = tmp_path / auto.CACHE_FILE
    auto._write_cache(path, "a", {"backend": "torch"})
    before = path.read_bytes()
    used = []
    real = paths.atomic_output
    monkeypatch.setattr(paths, "atomic_output", lambda p, **k: used.append(p) or real(p, **k))

    def full_disk(self, *a, **k):
        with open(self, "w") as f:
            f.write("{")  # half written, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(auto.Path, "write_text", full_disk)
    auto._write_cache(path, "b", {"backend": "native"})  # the choice stands for this engine: no error
    assert used == [path] and path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([auto.CACHE_FILE, f".{auto.CACHE_FILE}.lock"])


def test_two_processes_calibrating_at_once_keep_every_entry(tmp_path):
    """Each process read, merged and replaced the file: without a lock, one's entries were lost
    whenever the other replaced the file between its read and its write."""
    path, n = tmp_path / auto.CACHE_FILE, 30
    code = textwrap.dedent(f"""
        import os, sys, time
        from srgan_fast.backends import auto
        me, go = sys.argv[1], {str(tmp_path / "go")!r}
        open(go + "." + me, "w").close()
        while not os.path.exists(go):
            time.sleep(0.005)
        for i in range({n}):
            auto._write_cache(auto.Path({str(path)!r}), f"{{me}} {{i}}", {{"backend": "torch", "i": i}})
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, me], stderr=subprocess.PIPE, text=True) for me in "ab"]
    try:
        for me in "ab":
            for _ in range(6000):  # (the children import torch first: seconds)
                if (tmp_path / f"go.{me}").exists():
                    break
                time.sleep(0.01)
        (tmp_path / "go").touch()
        for p in procs:
            assert p.wait(timeout=120) == 0, p.stderr.read()[-2000:]
    finally:
        for p in procs:
            p.kill() if p.poll() is None else None
    data = auto._read_cache(path)
    assert sorted(data) == sorted(f"{me} {i}" for me in "ab" for i in range(n)), f"{len(data)} of {2 * n} kept"
    assert all(e["digest"] == auto._digest(k, e) for k, e in data.items())
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]
