"""ONNX export: dynamic batch/H/W, [0, 1] float I/O, checked in ONNX Runtime against the engine."""

import numpy as np
import pytest
import torch

from srgan_fast.cli import main
from srgan_fast.families.srresnet.arch import Generator
from srgan_fast.families.srvgg_compact import CompactConfig, SRVGGNetCompact
from srgan_fast.weights import save_generator

ort = pytest.importorskip("onnxruntime")
from srgan_fast.weights import onnx as ex  # noqa: E402


def _compact():
    torch.manual_seed(5)
    m = SRVGGNetCompact(CompactConfig(num_feat=8, num_conv=2)).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(2.0)
    return m


def test_bundled_model_round_trip_within_fp32_rounding(tmp_path):
    path, diff = ex.export("srresnet_x4", tmp_path / "srresnet_x4.onnx")
    assert path.exists() and 0 <= diff <= 1e-4
    sess = ex.onnx_session(path)
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert out.name == "output"
    assert inp.name == "input" and inp.type == "tensor(float)"
    assert [isinstance(d, str) for d in inp.shape] == [True, False, True, True]  # dynamic N, H, W
    y = sess.run(None, {"input": np.random.rand(3, 3, 5, 7).astype(np.float32)})[0]
    assert y.shape == (3, 3, 20, 28) and y.min() >= 0 and y.max() <= 1 and y.std() > 0.01


def test_compact_and_fp16_exports(tmp_path):
    m = _compact()
    path, diff = ex.export(m, tmp_path / "c.onnx", opset=13)
    assert diff <= 1e-4
    x = torch.rand(1, 3, 6, 5)
    y = ex.onnx_session(path).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        want = m(x).clamp(0, 1).numpy()  # compact models: [0, 1] output, only clamped
    assert np.abs(y - want).max() <= 1e-5
    g = Generator("tiny_x4")
    path16, diff16 = ex.export(g, tmp_path / "g16.onnx", fp16=True)
    assert ex.onnx_session(path16).get_inputs()[0].type == "tensor(float16)"
    assert 0 < diff16 <= ex.TOLERANCE["fp16"]


def test_cli_export_prints_diff_and_refuses_beyond_tolerance(tmp_path, capsys, monkeypatch):
    torch.manual_seed(1)
    f = save_generator(Generator("tiny_x4"), tmp_path / "tiny.safetensors")
    assert main(["export", str(f), str(tmp_path / "t.onnx"), "--opset", "14"]) == 0
    assert "max abs diff" in capsys.readouterr().out
    good = (tmp_path / "t.onnx").read_bytes()
    monkeypatch.setattr(ex, "check_onnx", lambda model, path: 0.5)
    assert main(["export", str(f), str(tmp_path / "bad.onnx")]) == 2
    assert "tolerance" in capsys.readouterr().err and not (tmp_path / "bad.onnx").exists()
    # a failed export over a good file keeps the good file, and leaves no temporary behind
    assert main(["export", str(f), str(tmp_path / "t.onnx")]) == 2
    assert (tmp_path / "t.onnx").read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == [
        "t.onnx", "tiny.safetensors"]  # fmt: skip
    assert main(["export", str(f), str(tmp_path / "x.onnx"), "--opset", "9"]) == 2
