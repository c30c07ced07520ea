"""eval.py under torchrun's environment: two Gloo (CPU) processes give byte-identical outputs to one process, the
work split is balanced, a killed rank ends the job naming it, and a rerun at another world size finishes the rest.

The ranks are started as subprocesses with the variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT), one thread each.
"""
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import eval as eval_cli
from dataset.output_guard import LOCK_FILE
from dataset.synthetic import PRESETS, make_videos
from dataset.synthetic_layouts import write_davis, write_youtube_valid
from tests.test_report_page import mask_measured

ROOT = Path(__file__).resolve().parents[1]
HEIGHT, WIDTH = 64, 112
RUN_TIMEOUT_S = 300
VOLATILE_FILES = {"summary.json", "timings.csv", LOCK_FILE}  # hold measured seconds, or the lock holder's pid


def _videos(count, frames, *, first_index=0, seed=0, late=False):
    difficulty = PRESETS["easy"]
    if late:
        difficulty = dataclasses.replace(difficulty, min_objects=2, max_objects=2, late_entry_probability=1.0)
    return make_videos(count, seed=seed, num_frames=frames, height=HEIGHT, width=WIDTH, difficulty=difficulty,
                       first_index=first_index)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_ranks(world_size: int, checkpoint: Path, arguments, overrides=()) -> list[subprocess.Popen]:
    port = _free_port()
    command = [sys.executable, str(ROOT / "eval.py"), "--model", str(checkpoint), "eval.device=cpu", *overrides,
               *map(str, arguments)]
    processes = []
    for rank in range(world_size):
        environment = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1",
                           MASTER_PORT=str(port), WORLD_SIZE=str(world_size), RANK=str(rank), LOCAL_RANK=str(rank),
                           TORCH_CPP_LOG_LEVEL="ERROR")
        processes.append(subprocess.Popen(command, env=environment, cwd=ROOT, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
    return processes


def _finish(processes) -> list[tuple[int, str, str]]:
    outcomes = []
    for process in processes:
        output, error = process.communicate(timeout=RUN_TIMEOUT_S)
        outcomes.append((process.returncode, output, error))
    return outcomes


def _run_ranks(world_size, checkpoint, arguments, overrides=(), main_status=0) -> dict:
    """Run the ranks to the end; rank 0 exits with `main_status` (1 when a video failed), the others with 0."""
    outcomes = _finish(_start_ranks(world_size, checkpoint, arguments, overrides))
    assert [code for code, _, _ in outcomes] == [main_status] + [0] * (world_size - 1), outcomes
    output_dir = Path(arguments[arguments.index("--output") + 1])
    assert "J&F" in outcomes[0][1] or "CodaLab" in outcomes[0][1]  # rank 0 prints the report
    assert all(not output for _, output, _ in outcomes[1:])  # the others print nothing
    return json.loads((output_dir / "summary.json").read_text())


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` except the measured ones, by relative path (completion markers and their
    seconds included only by name; the resolved config without the settings that may differ: output folder and
    I/O queue length; the report page without its measured values, so its pages and images must match too)."""
    files = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if not path.is_file() or path.name in VOLATILE_FILES:
            continue
        if relative.startswith(".progress/"):
            files[relative] = b""
        elif path.suffix == ".npz":  # its zip entries carry write times: compare the arrays
            with np.load(path) as scores:
                files[relative] = scores["prob"].tobytes() + scores["labels"].tobytes()
        elif relative == "report.html":
            files[relative] = mask_measured(path.read_text()).encode()
        elif relative == "config.yaml":
            resolved = yaml.safe_load(path.read_text())
            del resolved["eval"]["output"], resolved["eval"]["io_queue_frames"]
            files[relative] = yaml.safe_dump(resolved).encode()
        else:
            files[relative] = path.read_bytes()
    return files


def _zip_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in sorted(archive.namelist())}


def test_two_ranks_match_one_process_on_davis(tmp_path, recipe_checkpoint_path, one_torch_thread):
    root = tmp_path / "DAVIS2017"
    videos = {**_videos(1, 8), **_videos(2, 4, first_index=1, seed=1), **_videos(2, 3, first_index=3, seed=2)}
    write_davis(root / "trainval", {}, videos)
    (root / "trainval/JPEGImages/480p/synth0004/00001.jpg").write_bytes(b"truncated")  # fails on its rank
    common = ["--dataset", "D17", "--d17_path", root, "--size", -1]
    with pytest.warns(UserWarning, match="uses the 480p frames"):  # and without overlapped reading / writing
        single = eval_cli.main(["--model", str(recipe_checkpoint_path), "eval.device=cpu", "eval.io_queue_frames=0",
                                *map(str, common), "--output", str(tmp_path / "one")])
    assert single.world_size == 1 and single.fps_end_to_end > 0
    summary = _run_ranks(2, recipe_checkpoint_path, [*common, "--output", tmp_path / "two"], main_status=1)
    # Longest first: synth0000 (8) to rank 0; synth0001, synth0002 (4 each) to rank 1; synth0003 (3) to the
    # least loaded, a tie at 8 that goes to rank 0; synth0004 (3, broken) to rank 1. Its failure is reported by
    # name and costs no other video.
    assert summary["rank_frames"] == [11, 8] and summary["world_size"] == 2
    assert summary["processed"] == sorted(videos)[:4] and summary["frames"] == 19
    assert list(summary["failed"]) == list(single.failed) == ["synth0004"]
    assert "00001.jpg" in summary["failed"]["synth0004"] and "FAILED synth0004" in summary["report"]
    assert len(summary["peak_memory_mb_per_rank"]) == 2 and summary["fps_end_to_end"] > 0
    # One lock for the job, taken by rank 0: the ranks never refuse each other.
    assert (tmp_path / "two" / LOCK_FILE).is_file()
    one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert sorted(one) == sorted(two) and any(name.endswith(".png") for name in one)
    assert "report.html" in one and any(name.startswith("report/") for name in one)  # the same page
    assert any(name.endswith(".csv") for name in one)  # the metrics tables
    assert [name for name in one if one[name] != two[name]] == []
    assert single.scores == summary["scores"]


def test_two_ranks_match_one_process_on_youtube_vos(tmp_path, recipe_checkpoint_path, one_torch_thread):
    root = tmp_path / "YouTube"
    write_youtube_valid(root, {**_videos(1, 11, seed=4, late=True), **_videos(2, 6, first_index=1, seed=5)})
    common = ["--dataset", "Y19", "--y19_path", root, "--size", -1, "--save_scores"]
    single = eval_cli.main(["--model", str(recipe_checkpoint_path), "eval.device=cpu", *map(str, common),
                            "--output", str(tmp_path / "one" / "Y19_val")])
    summary = _run_ranks(2, recipe_checkpoint_path, [*common, "--output", tmp_path / "two" / "Y19_val"])
    assert summary["rank_frames"] == [11, 12]
    assert any(name.startswith("Scores/synth0001/") for name in _files(tmp_path / "two" / "Y19_val"))
    one, two = _files(tmp_path / "one" / "Y19_val"), _files(tmp_path / "two" / "Y19_val")
    zip_name = "Y19_val.zip"
    assert _zip_members(tmp_path / "one/Y19_val" / zip_name) == _zip_members(tmp_path / "two/Y19_val" / zip_name)
    del one[zip_name], two[zip_name]  # zip entries carry file times
    assert sorted(one) == sorted(two)
    assert [name for name in one if one[name] != two[name]] == []
    assert single.scores == summary["scores"]


def test_a_killed_rank_ends_the_job_and_another_world_size_finishes_it(tmp_path, recipe_checkpoint_path, one_torch_thread):
    root = tmp_path / "DAVIS2017"
    write_davis(root / "trainval", {}, _videos(6, 5, seed=7))
    common = ["--dataset", "D17", "--d17_path", root, "--size", -1]
    out = tmp_path / "out"
    processes = _start_ranks(2, recipe_checkpoint_path, [*common, "--output", out], ["eval.rank_timeout_s=3"])
    # Equal costs: rank 1 runs synth0001, synth0003, synth0005. Kill it once its first video is finished.
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not (out / ".progress/synth0001.json").is_file():
        assert time.monotonic() < deadline and processes[0].poll() is None
        time.sleep(0.05)
    processes[1].send_signal(signal.SIGKILL)
    (code, output, error), (killed, _, _) = _finish(processes)
    assert killed == -signal.SIGKILL
    assert code == 1 and output == ""
    assert error.strip().splitlines()[-1].startswith("error: rank 1 stopped responding"), error
    for path in out.rglob("*.png"):
        if not path.name.startswith("."):  # a killed write leaves only a hidden temporary file
            with Image.open(path) as image:
                image.load()
    finished = sorted(path.stem for path in (out / ".progress").glob("*.json"))
    assert "synth0001" in finished and "synth0005" not in finished

    summary = _run_ranks(3, recipe_checkpoint_path, [*common, "--output", out], ["eval.rank_timeout_s=3"])
    assert summary["skipped_finished"] == finished
    assert sorted(summary["processed"] + summary["skipped_finished"]) == [f"synth{i:04d}" for i in range(6)]
    assert [path for path in out.rglob(".*.tmp*")] == []  # unfinished videos were cleared before being redone
    with pytest.warns(UserWarning, match="uses the 480p frames"):
        eval_cli.main(["--model", str(recipe_checkpoint_path), "eval.device=cpu", "eval.rank_timeout_s=3",
                       *map(str, common), "--output", str(tmp_path / "reference")])
    reference, resumed = _files(tmp_path / "reference"), _files(out)
    assert sorted(reference) == sorted(resumed) and "report.html" in resumed  # a resumed run's page is a fresh one's
    assert [name for name in reference if reference[name] != resumed[name]] == []


def test_a_negative_io_queue_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"eval.io_queue_frames=-1: expected 0"):
        eval_cli.main(["--model", str(tmp_path / "none.pth"), "eval.io_queue_frames=-1", "--dataset", "G",
                       "--generic_path", str(tmp_path)])
