import json

import numpy as np
import pytest
import torch
from PIL import Image

from srgan_fast.cli import main
from srgan_fast.families.srresnet.arch import Generator
from srgan_fast.quality.metrics import imresize
from srgan_fast.reference import upscale_reference
from srgan_fast.weights import load_generator, save_generator


@pytest.fixture()
def tiny_model(tmp_path):
    torch.manual_seed(3)
    return save_generator(Generator("tiny_x4"), tmp_path / "tiny.safetensors")


def _img(path, h=9, w=11, mode="RGB"):
    a = np.random.default_rng(0).integers(0, 256, (h, w, 4 if mode == "RGBA" else 3), dtype=np.uint8)
    Image.fromarray(a, mode).save(path)
    return a


def test_upscale_file_matches_reference(tmp_path, tiny_model, capsys):
    a = _img(tmp_path / "in.png")
    assert (
        main(
            [
                "upscale",
                str(tmp_path / "in.png"),
                "-o",
                str(tmp_path / "out.png"),
                "--model",
                str(tiny_model),
                "-q",
            ]
        )
        == 0
    )
    out = np.array(Image.open(tmp_path / "out.png"))
    want = upscale_reference(load_generator(tiny_model), a)
    assert out.shape == (36, 44, 3) and np.array_equal(out, want)


def test_upscale_folder_keeps_alpha(tmp_path, tiny_model):
    (tmp_path / "in").mkdir()
    _img(tmp_path / "in" / "a.png")
    rgba = _img(tmp_path / "in" / "b.png", mode="RGBA")
    assert (
        main(
            [
                "upscale",
                str(tmp_path / "in"),
                "-o",
                str(tmp_path / "o"),
                "--model",
                str(tiny_model),
                "-q",
            ]
        )
        == 0
    )
    b = np.array(Image.open(tmp_path / "o" / "b.png"))
    assert b.shape == (36, 44, 4)
    # alpha (random per pixel, so any other resize differs) is resized on its own with MATLAB
    # bicubic, value for value; the RGB part is upscaled as if there were no alpha
    alpha = rgba[..., 3]
    want_alpha = imresize(alpha, output_shape=(36, 44))
    assert np.array_equal(b[..., 3], want_alpha), np.abs(b[..., 3].astype(int) - want_alpha).max()
    assert not np.array_equal(want_alpha, np.array(Image.fromarray(alpha).resize((44, 36), Image.BICUBIC)))
    assert np.array_equal(b[..., :3], upscale_reference(load_generator(tiny_model), rgba[..., :3]))
    assert (tmp_path / "o" / "a.png").exists()


@pytest.mark.parametrize(
    "args,msg",
    [
        (["upscale", "{tmp}/missing.png", "-o", "{tmp}/o.png"], "no such file"),
        (["upscale", "{tmp}/bad.png", "-o", "{tmp}/o.png"], "not an image"),
        (
            ["upscale", "{tmp}/in.png", "-o", "{tmp}/o.png", "--model", "{tmp}/bad.png"],
            "not a safetensors",
        ),
        (
            ["upscale", "{tmp}/in.png", "-o", "{tmp}/o.png", "--model", "nosuchmodel"],
            "unknown model",
        ),
        (["upscale", "{tmp}/in.png", "-o", "{tmp}/o.png", "--device", "tpu"], "unknown device"),
        (["upscale", "{tmp}/in.png", "-o", "{tmp}/o.png", "--dtype", "fp8"], "unknown dtype"),
    ],
)
def test_upscale_errors_are_clear(tmp_path, args, msg, capsys, tiny_model):
    _img(tmp_path / "in.png")
    (tmp_path / "bad.png").write_text("garbage")
    argv = [a.format(tmp=tmp_path) for a in args]
    if "--model" not in argv:
        argv += ["--model", str(tiny_model)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err


def test_cuda_device_without_gpu_is_a_clear_error(tmp_path, tiny_model, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    _img(tmp_path / "in.png")
    assert (
        main(
            [
                "upscale",
                str(tmp_path / "in.png"),
                "-o",
                str(tmp_path / "o.png"),
                "--model",
                str(tiny_model),
                "--device",
                "cuda",
            ]
        )
        == 2
    )
    assert "no CUDA GPU" in capsys.readouterr().err


def test_models_lists_bundled(capsys):
    assert main(["models", "--json"]) == 0
    models = json.loads(capsys.readouterr().out)
    default = next(m for m in models if m["name"] == "srresnet_x4")
    assert default["config"]["scale"] == 4 and default["config"]["num_blocks"] == 16
    assert default["card"]["eval"]["Set5"]["psnr"] > 31.0


def test_every_flag_has_help():
    from srgan_fast.cli import build_parser

    p = build_parser()
    for sub in p._subparsers._group_actions[0].choices.values():
        for a in sub._actions:
            assert a.help, f"{sub.prog} {a.option_strings or a.dest} has no help"


def test_pass_through_commands_take_their_own_options(capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "--help"])
    assert e.value.code == 0 and "--preset" in capsys.readouterr().out
    assert main(["train", "--preset", "tiny", "--set", "iters=3", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["iters"] == 3


def test_bench_runs_and_checks_parity(tmp_path, capsys):
    rc = main(
        [
            "bench",
            "--device",
            "cpu",
            "--preset",
            "12x10",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--methods",
            "eager NCHW",
            "engine",
            "--out",
            str(tmp_path),
            "--plot",
            str(tmp_path / "p.png"),
        ]
    )
    assert rc == 0
    rows = [json.loads(x) for x in (tmp_path / "bench_engine.jsonl").read_text().splitlines()]
    methods = ["eager NCHW", "engine torch", "engine native", "engine onnxruntime", "engine onnxruntime_model"]
    methods.append("engine auto")
    assert [r["method"] for r in rows] == methods
    assert all(r["psnr_vs_fp32_db"] > 100 for r in rows[1:])  # every engine row matches fp32 eager
    assert rows[0]["speedup_vs_eager_fp32"] == 1.0 and rows[1]["tflops"] > 0
    assert rows[5]["engine_backend"] == "native"  # auto with the calibration off (tests/conftest.py): the static rule
    assert (tmp_path / "p.png").stat().st_size > 1000
    assert "| engine torch | fp32 | 12x10 |" in capsys.readouterr().out


def test_upscale_many_files_skip_or_fail_on_unreadable(tmp_path, tiny_model, capsys):
    (tmp_path / "in").mkdir()
    _img(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "b.png").write_text("broken")
    _img(tmp_path / "in" / "c.png", h=5, w=7)
    args = ["upscale", str(tmp_path / "in"), "-o", str(tmp_path / "o"), "--model", str(tiny_model), "-q"]
    assert main(args) == 2  # fail (default): stops with the file named
    assert "b.png" in capsys.readouterr().err
    assert main(args + ["--on-error", "skip", "--batch", "2"]) == 0
    out, err = capsys.readouterr()
    assert "skipped" in err and "b.png" in err and "1 of 3" in err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.png", "c.png"]
    assert out.split() == [str(tmp_path / "o" / "a.png"), str(tmp_path / "o" / "c.png")]
