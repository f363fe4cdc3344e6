"""A run that wrote nothing does not exit 0 (issue 31): `upscale --on-error skip` where every
input fails says so in one line and exits 2, as its --help says."""

import numpy as np
from PIL import Image

from srgan_fast.cli import build_parser, main


def test_on_error_skip_with_every_input_failing_exits_2(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.png").write_bytes(b"not a png")
    Image.fromarray(np.zeros((64, 80, 3), np.uint8)).save(src / "b.png")
    out = tmp_path / "out"
    rc = main(["upscale", str(src), "-o", str(out), "-q", "--max-pixels", "1000", "--on-error", "skip"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.strip().splitlines()[-1] == "srgan-fast upscale: error: every input was skipped; nothing was written"
    assert "2 of 2 input(s) skipped" in err
    assert not out.exists() or not any(out.iterdir())


def test_the_help_says_which_code():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    help_text = sub.choices["upscale"].format_help()
    assert "exit 2 when every input was skipped" in " ".join(help_text.split())


def test_convert_of_non_finite_weights_names_the_input_and_its_key(tmp_path, capsys):
    import torch

    from srgan_fast.families.srresnet import Generator

    state = Generator("tiny_x4").state_dict()
    state["conv_first.bias"][3] = float("nan")
    src = tmp_path / "theirs.pth"
    torch.save(state, src)
    dst = tmp_path / "out" / "mine.safetensors"
    rc = main(["convert", str(src), str(dst)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert str(src) in err[0] and "'conv_first.bias' holds 1 NaN/Inf value(s)" in err[0], err
    assert "converting" not in err[0]  # never the temporary file's name
    assert not dst.exists() and not [p for p in dst.parent.glob("*")] if dst.parent.exists() else True


def test_a_warning_is_one_line_naming_the_command():
    """Python shows a warning with its source line under it (two lines, one of them code); the
    program shows one line, as its errors (issue 31's messages pass). In a child: pytest records
    warnings itself."""
    import subprocess
    import sys

    code = (
        "import sys, warnings\n"
        "import srgan_fast.cli.models as models\n"
        "from srgan_fast.cli import main\n"
        "def warns(args):\n"
        "    warnings.warn('the cache was damaged; measuring again', RuntimeWarning)\n"
        "    return 0\n"
        "models.run = warns\n"
        "rc = main(['models'])\n"
        "assert warnings.formatwarning.__name__ != 'one_line'\n"  # restored for the caller
        "sys.exit(rc)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "srgan-fast models: warning: the cache was damaged; measuring again\n"
