"""configs/common.py, the shared leaf: atomic writes with normal permissions, the palette, device resolution."""
import os
import stat
import subprocess
import sys

import pytest
import torch

from configs import common


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_atomic_output_gives_a_normal_files_mode_under_the_umask(tmp_path, umask_022):
    target = tmp_path / "nested" / "result.png"
    with common.atomic_output(target) as temporary:
        assert temporary.parent == target.parent and temporary.suffix == ".png"
        temporary.write_bytes(b"data")
        assert not target.exists()  # nothing under the final name before the rename
    assert target.read_bytes() == b"data"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    common.atomic_write_text(tmp_path / "table.csv", "a,b\n")
    assert stat.S_IMODE((tmp_path / "table.csv").stat().st_mode) == 0o644


def test_atomic_output_respects_a_stricter_umask(tmp_path):
    previous = os.umask(0o077)
    try:
        common.atomic_write_text(tmp_path / "private.txt", "x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "private.txt").stat().st_mode) == 0o600


def test_atomic_output_leaves_nothing_behind_on_error_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "summary.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with common.atomic_output(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["summary.json"]


def test_umask_is_read_without_changing_it(umask_022):
    assert common._umask() == 0o022
    assert os.umask(0o022) == 0o022


def test_davis_palette_is_the_bit_interleaved_voc_map():
    colours = [tuple(common.DAVIS_PALETTE[3 * i: 3 * i + 3]) for i in range(4)]
    assert colours == [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0)]
    assert len(common.DAVIS_PALETTE) == 3 * common.PALETTE_COLOURS


def test_resolve_device_names_what_is_wrong(monkeypatch):
    monkeypatch.setattr(common.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(common, "_mps_available", lambda: False)
    with pytest.raises(ValueError, match="device 'cuda' asked for, but CUDA is not available here"):
        common.resolve_device("cuda")
    with pytest.raises(ValueError, match="device 'mps' asked for, but MPS is not available here"):
        common.resolve_device("mps")
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        common.resolve_device("gpu0")
    assert common.resolve_device("auto") == torch.device("cpu")
    assert common.resolve_device(None, default=torch.device("cpu")) == torch.device("cpu")
    assert common.resolve_device("cpu") == torch.device("cpu")


def test_run_cli_prints_one_line_for_expected_failures_and_keeps_tracebacks_for_bugs(capsys):
    def fails_expectedly(arguments):
        raise FileNotFoundError(f"checkpoint {arguments[0]!r} not found;\n  download it first")

    assert common.run_cli(fails_expectedly, ["saves/x.pth"]) == 1
    error = capsys.readouterr().err
    assert error == "error: checkpoint 'saves/x.pth' not found; download it first\n"
    with pytest.raises(FileNotFoundError):
        common.run_cli(fails_expectedly, ["saves/x.pth", "--debug"])
    with pytest.raises(ZeroDivisionError):
        common.run_cli(lambda arguments: 1 / 0, [])
    assert common.run_cli(lambda arguments: None, []) == 0
    assert common.run_cli(lambda arguments: 3, []) == 3
    assert common.run_cli(lambda arguments: len(arguments), ["a", "--debug"]) == 1


BIG_CHILD_MB = 800
BIG_CHILD = f"buffer = bytearray({BIG_CHILD_MB} * 2**20)"
CHILD = ("import sys; print('out line'); sys.stderr.write('x' * 10000 + 'error: last line'); "
         "b = bytearray(200 * 2**20); sys.exit(int(sys.argv[1]))")


def test_run_child_keeps_output_status_and_the_childs_own_peak_memory(tmp_path, capfd):
    """Mutations checked: reading stderr before stdout in captured mode, keeping the head of stderr instead of its
    tail, reporting ru_maxrss without RSS_UNIT_BYTES, and reporting the caller's own peak instead of the child's
    each fail."""
    captured = common.run_child([sys.executable, "-c", CHILD, "0"], output=common.OUTPUT_CAPTURED, cwd=tmp_path)
    assert captured.returncode == 0 and captured.output.startswith("out line\n")
    assert captured.output.endswith("error: last line")
    if hasattr(os, "wait4"):
        # The child's own peak, not its caller's: Linux counts the caller's RSS at the spawn in the child's peak, so
        # the caller is a small process of its own (pytest may hold gigabytes by now; importing torch takes about
        # 500 MB) and the child holds more than that.
        small_caller = ("import sys; from configs import common; "
                        f"print(common.run_child([sys.executable, '-c', {BIG_CHILD!r}], "
                        "output=common.OUTPUT_CAPTURED).peak_memory_mb)")
        child_peak = float(subprocess.run([sys.executable, "-c", small_caller], capture_output=True, text=True,
                                          check=True).stdout)
        assert BIG_CHILD_MB <= child_peak < BIG_CHILD_MB + 100

    teed = common.run_child([sys.executable, "-c", CHILD, "3"], output=common.STDERR_TEED)
    assert teed.returncode == 3 and teed.output.endswith("error: last line")
    assert len(teed.output) == common.CHILD_TAIL_BYTES
    assert capfd.readouterr().err.endswith("error: last line")  # shown live as well

    with pytest.raises(subprocess.CalledProcessError):
        common.run_child([sys.executable, "-c", CHILD, "1"], output=common.OUTPUT_CAPTURED, check=True)
    with pytest.raises(ValueError, match="output 'loud' is invalid"):
        common.run_child([sys.executable, "-c", ""], output="loud")
    assert common.project_command("eval.py", "--help")[1:] == [str(common.REPOSITORY / "eval.py"), "--help"]


def test_docstring_example_runs():
    import doctest

    results = doctest.testmod(common)
    assert results.attempted > 0 and results.failed == 0
