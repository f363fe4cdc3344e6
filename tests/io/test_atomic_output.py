"""atomic_output: the user's file is replaced only by a complete one, and a vanished output
folder is an error (issue 31)."""

import os
import shutil

import pytest

from srgan_fast.io.paths import OutputFolderGone, atomic_output


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name)


def test_success_replaces(tmp_path):
    dst = tmp_path / "out.mp4"
    dst.write_bytes(b"old")
    with atomic_output(dst) as tmp:
        assert tmp.parent == dst.parent and tmp.suffix == ".mp4" and tmp != dst
        tmp.write_bytes(b"new")
        assert dst.read_bytes() == b"old"  # not before the block ends
    assert dst.read_bytes() == b"new"
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("exc", [RuntimeError("encoder flush"), OSError(28, "No space left on device"),
                                 KeyboardInterrupt()])  # fmt: skip
def test_failure_keeps_previous_file(tmp_path, exc):
    dst = tmp_path / "out.png"
    dst.write_bytes(b"previous bytes")
    with pytest.raises(type(exc)):
        with atomic_output(dst) as tmp:
            tmp.write_bytes(b"half")
            raise exc
    assert dst.read_bytes() == b"previous bytes"
    assert _leftovers(tmp_path) == []


def test_folder_removed_while_writing_is_an_error(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    dst = folder / "clip.mkv"
    with pytest.raises(OutputFolderGone, match="removed while writing") as e:
        with atomic_output(dst) as tmp:
            tmp.write_bytes(b"frames")
            shutil.rmtree(folder)
    assert e.value.filename == str(dst)
    assert not folder.exists()


def test_temp_file_removed_while_writing_is_an_error(tmp_path):
    dst = tmp_path / "x.json"
    with pytest.raises(OutputFolderGone, match="was removed"):
        with atomic_output(dst) as tmp:
            tmp.write_text("{}")
            os.unlink(tmp)
    assert not dst.exists()


def test_suffix_override(tmp_path):
    with atomic_output(tmp_path / "model.onnx", suffix=".tmp") as tmp:
        assert tmp.name.endswith(".partial.tmp")
        tmp.write_bytes(b"x")
    assert (tmp_path / "model.onnx").read_bytes() == b"x"
