"""Issue 31: a cached exported ONNX graph (<cache>/onnx/*.onnx, backends/onnxruntime.py) is used
only after a check: it carries the digest of what it was made from (weights, structure, export
options, versions) and its own sha256; it is read only if it is a regular file of a bounded
size. Anything else (another model's graph in its place, a damaged file, a FIFO, /dev/zero) is
ignored with one line and exported again, and the output is the right model's."""

from __future__ import annotations

import os
import shutil
import threading
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from srgan_fast.families.srresnet.arch import Generator, GeneratorConfig
from srgan_fast.plan import compile_plan
from srgan_fast.weights import save_generator
from tests.conftest import cli

pytest.importorskip("onnxruntime")
from srgan_fast.backends import onnxruntime as ort_backend  # noqa: E402


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SRGAN_FAST_CACHE_DIR", str(tmp_path / "cache"))
    ort_backend._EXPORTS.clear()  # each run below is "a new process": nothing in memory
    yield
    ort_backend._EXPORTS.clear()


def _model(path, seed):
    torch.manual_seed(seed)
    return save_generator(Generator("tiny_x4"), path)


def _graphs():
    folder = ort_backend._disk_dir()
    return sorted(folder.glob("*.onnx")) if folder.is_dir() else []


def _upscale(capsys, src, dst, model):
    ort_backend._EXPORTS.clear()
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        rc, _, err = cli(capsys, "upscale", src, "-o", dst, "--model", model, "--backend", "onnxruntime", "-q")
    assert rc == 0, err
    return [str(w.message) for w in said if issubclass(w.category, RuntimeWarning)]


def test_another_models_graph_in_the_cache_is_rebuilt_not_run(tmp_path, capsys):
    """The issue's repro: model B's cached graph copied over model A's; the next run of A used to
    run B silently (output byte-identical to B's)."""
    a, b = _model(tmp_path / "a.safetensors", 1), _model(tmp_path / "b.safetensors", 2)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (9, 11, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    assert _upscale(capsys, tmp_path / "x.png", tmp_path / "a1.png", a) == []
    (graph_a,) = _graphs()
    assert _upscale(capsys, tmp_path / "x.png", tmp_path / "b.png", b) == []
    (graph_b,) = [g for g in _graphs() if g != graph_a]
    want_a = graph_a.read_bytes()
    shutil.copyfile(graph_b, graph_a)  # the swap

    said = _upscale(capsys, tmp_path / "x.png", tmp_path / "a2.png", a)
    assert len(said) == 1 and str(graph_a) in said[0] and "another model" in said[0], said
    assert "exporting again" in said[0]
    assert (tmp_path / "a2.png").read_bytes() == (tmp_path / "a1.png").read_bytes()
    assert (tmp_path / "a2.png").read_bytes() != (tmp_path / "b.png").read_bytes()
    assert graph_a.read_bytes() == want_a  # rebuilt in place: the next run finds the right one
    assert _upscale(capsys, tmp_path / "x.png", tmp_path / "a3.png", a) == []


def _plan(seed=1):
    torch.manual_seed(seed)
    return compile_plan(Generator("tiny_x4").eval())


def _export_counting(monkeypatch):
    calls = []
    real = ort_backend._export
    monkeypatch.setattr(ort_backend, "_export", lambda m: calls.append(1) or real(m))
    return calls


def _flip_a_weight(path):
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x40  # inside the graph (its initializers), not the metadata at the end
    path.write_bytes(bytes(raw))


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _unsigned(path):
    """A graph as the cache wrote it before digests: no metadata of ours."""
    path.write_bytes(ort_backend._unsigned(path.read_bytes())[0])


def _fifo(path):
    path.unlink()
    os.mkfifo(path)


def _device(path):
    # /dev/null, not the issue's /dev/zero: the same refusal (a device), but a regression that
    # reads it anyway fails here instead of filling the test machine's memory
    path.unlink()
    path.symlink_to("/dev/null")


def _folder(path):
    path.unlink()
    path.mkdir()


def _too_big(path):
    with open(path, "ab") as f:
        f.truncate(ort_backend._size_bound([t for op in _plan().ops for t in _tensors(op)]) + 1)


def _tensors(op):
    from dataclasses import fields

    return [v for f in fields(op) for v in ort_backend._tensors(getattr(op, f.name))]


@pytest.mark.parametrize(
    "spoil,why",
    [
        (_flip_a_weight, "damaged|not an ONNX graph"),
        (_truncate, "damaged|not an ONNX graph"),
        (_unsigned, "says nothing of what it was made from"),
        (_fifo, "is a FIFO"),
        (_device, "is a device"),
        (_folder, "is a folder"),
        (_too_big, "more than the"),
    ],
    ids=["flipped-byte", "truncated", "no-digest", "fifo", "device", "folder", "too-big"],
)
def test_a_cached_graph_that_fails_the_check_is_ignored_with_one_line(monkeypatch, spoil, why):
    from srgan_fast.backends.onnxruntime import OrtRunner

    plan = _plan()
    x = torch.rand(1, 7, 9, 3, generator=torch.Generator().manual_seed(0))
    want = OrtRunner(plan, torch.device("cpu"), torch.float32)(x, False)
    (path,) = _graphs()
    spoil(path)
    ort_backend._EXPORTS.clear()
    calls = _export_counting(monkeypatch)
    done = []
    # a FIFO must not hang the read: the runner is built in a thread that must finish at once
    t = threading.Thread(target=lambda: done.append(OrtRunner(plan, torch.device("cpu"), torch.float32)), daemon=True)
    with pytest.warns(RuntimeWarning, match=why) as said:
        t.start()
        t.join(60)
    assert done, "building the runner hung on the cached file"
    assert len([w for w in said if "ONNX graph cache" in str(w.message)]) == 1
    assert calls == [1]  # exported again
    assert torch.equal(done[0](x, False), want)
    if spoil is not _folder:  # a folder in its place is left alone (never removed); the rest is replaced
        ort_backend._EXPORTS.clear()
        digest = ort_backend.made_from("plan " + ort_backend.plan_key(plan))
        assert ort_backend._read_cached(path, digest, 1 << 30) is not None


def test_the_digest_covers_weights_structure_options_and_versions(monkeypatch):
    import srgan_fast

    a = _plan(1)

    def digest(plan=a, graph="plan"):
        return ort_backend.made_from(f"{graph} " + ort_backend.plan_key(plan))

    first = digest()
    assert digest(_plan(2)) != first  # the weights
    torch.manual_seed(1)
    other = Generator(GeneratorConfig(num_blocks=3, channels=16, scale=4)).eval()
    assert digest(compile_plan(other)) != first  # the structure
    assert digest(graph="model") != first  # which graph: the plan's or the plain model's
    monkeypatch.setattr(ort_backend, "OPSET", ort_backend.OPSET + 1)
    assert digest() != first  # the export's options
    monkeypatch.undo()
    monkeypatch.setattr(torch, "__version__", "0.0.0")
    assert digest() != first  # the exporter's version
    monkeypatch.undo()
    monkeypatch.setattr(srgan_fast, "__version__", "0.0.0")
    assert digest() != first  # and the code that drives it
    monkeypatch.undo()
    assert digest() == first


def test_the_graph_carries_its_digest_where_onnx_runtime_sees_it():
    import onnxruntime as ort

    plan = _plan()
    blob = ort_backend.export_plan_onnx(plan)
    meta = ort.InferenceSession(blob, providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    assert meta["srgan_fast.made_from"] == ort_backend.made_from("plan " + ort_backend.plan_key(plan))
    assert ort_backend._check_cached(blob, meta["srgan_fast.made_from"]) is None
