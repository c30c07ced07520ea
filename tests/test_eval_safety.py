"""eval.py never harms its inputs or another run (issue 28): every case through the command line, with its exact
one-line message, its exit status, and the input tree unchanged or the outputs complete.

Most cases run the command line in this process (`run_cli(eval._main_status)`, what `python eval.py` runs);
the ones about processes (the lock, kill -9, Ctrl-C) start real `eval.py` processes. Each test names in its
docstring the change to the code that was made by hand once to watch it fail.
"""
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import eval as eval_cli
from configs.common import run_cli
from configs.schema import InferenceConfig
from dataset.image_io import read_index_mask, write_image, write_index_mask
from dataset.output_guard import LOCK_FILE, OutputFolderBusyError, OutputLock, check_output_not_locked
from dataset.synthetic import PRESETS, make_videos
from dataset.synthetic_layouts import write_generic
from dataset.video_io import check_index_mask, edge_band_ids
from inference import InferenceCore, normalize_image, propagate

HEIGHT, WIDTH = 64, 112
REPOSITORY = Path(eval_cli.__file__).resolve().parent
PROCESS_TIMEOUT_S = 300
POLL_S = 0.02
SMOOTHED_ID_STEP = 7  # ids 1..4 spread to 7..28: smoothed, fewer than eval.max_objects ids (as in the issue)


def _dataset(root: Path, count: int = 2, frames: int = 3) -> Path:
    write_generic(root, make_videos(count, seed=0, num_frames=frames, height=HEIGHT, width=WIDTH,
                                    difficulty=PRESETS["easy"]), ground_truth=True)
    return root


def _tree(root: Path) -> dict[str, str]:
    """SHA-256 of every file under `root`, by relative path (symbolic links by their target)."""
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            files[path.relative_to(root).as_posix()] = f"link {os.readlink(path)}"
        elif path.is_file():
            files[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def _cli(capsys, model: Path, root: Path, output: Path, *arguments) -> tuple[int, str, str]:
    """eval.py's command line in this process on the generic layout `root`: (exit status, stdout, stderr)."""
    argv = ["--model", model, "--dataset", "G", "--generic_path", root, "--size", -1, "--output", output,
            "eval.device=cpu", *arguments]
    status = run_cli(eval_cli._main_status, [str(argument) for argument in argv],
                     expected=(OutputFolderBusyError,), interrupted_message=eval_cli.INTERRUPTED_MESSAGE)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0][len("error: "):]


# --------------------------------------------------------------------------------- 1. outputs never touch inputs


@pytest.mark.parametrize("where, relation, source", [
    ("JPEGImages", "is", "JPEGImages"),
    ("Annotations", "is", "Annotations"),
    ("GroundTruth", "is", "GroundTruth"),
    ("JPEGImages/synth0000/results", "lies inside", "JPEGImages"),
    (".", "contains", "JPEGImages"),
])
def test_an_output_folder_that_meets_an_input_is_refused_before_anything_is_written(tmp_path, capsys, where,
                                                                                      relation, source):
    """Mutation checked by hand: `check_output_outside_inputs` not called (the run deleted the frames, or scored
    its own predictions as ground truth, as the issue reports)."""
    root = _dataset(tmp_path / "data")
    before = _tree(root)
    output = root / where
    status, _, stderr = _cli(capsys, tmp_path / "unused.pth", root, output)
    assert status == 1
    assert _one_error_line(stderr) == (
        f"output folder {output} {relation} the input {root / source}; writing there would overwrite or delete what "
        "the run reads: pass --output naming a folder outside the dataset")
    assert _tree(root) == before


def test_outputs_reached_through_symbolic_links_or_beside_the_checkpoint_are_refused(tmp_path, capsys):
    """Mutation checked by hand: resolving without following links (`Path.absolute` for `Path.resolve`) lets the
    link to Annotations through; leaving the checkpoint out of the inputs lets its folder through."""
    root = _dataset(tmp_path / "data")
    (tmp_path / "link").symlink_to(root / "Annotations")
    before = _tree(root)
    status, _, stderr = _cli(capsys, tmp_path / "unused.pth", root, tmp_path / "link")
    assert status == 1 and _one_error_line(stderr) == (
        f"output folder {tmp_path / 'link'} (= {root / 'Annotations'}) is the input {root / 'Annotations'}; writing "
        "there would overwrite or delete what the run reads: pass --output naming a folder outside the dataset")
    (tmp_path / "saves").mkdir()
    model = tmp_path / "saves/model.pth"
    model.write_bytes(b"weights")
    status, _, stderr = _cli(capsys, model, root, tmp_path / "saves")
    assert status == 1 and _one_error_line(stderr) == (
        f"output folder {tmp_path / 'saves'} contains the input {model}; writing there would overwrite or delete "
        "what the run reads: pass --output naming a folder outside the dataset")
    assert _tree(root) == before and model.read_bytes() == b"weights"


def test_a_symlinked_video_folder_inside_the_output_is_refused(tmp_path, capsys, recipe_checkpoint_path):
    """Mutation checked by hand: `check_video_folders` not called; the run then wrote its predictions through the
    link into Annotations/synth0000 (the input tree changed)."""
    root = _dataset(tmp_path / "data")
    output = tmp_path / "out"
    output.mkdir()
    (output / "synth0000").symlink_to(root / "Annotations/synth0000")
    before = _tree(root)
    status, _, stderr = _cli(capsys, recipe_checkpoint_path, root, output)
    assert status == 1 and _one_error_line(stderr) == (
        f"output folder {output / 'synth0000'} is a symbolic link (to {root / 'Annotations/synth0000'}); eval.py "
        "writes only into folders it makes: remove the link or pass another --output")
    assert _tree(root) == before and not (output / "config.yaml").exists()


def test_a_dangling_symlink_output_and_size_0_stop_with_one_line_and_write_nothing(tmp_path, capsys):
    """Mutations checked by hand: without the dangling-link check the run failed at mkdir with '[Errno 17] File
    exists'; without EvalConfig.__post_init__, --size 0 failed in interpolation after config.yaml was written."""
    root = _dataset(tmp_path / "data")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    status, _, stderr = _cli(capsys, tmp_path / "unused.pth", root, tmp_path / "dangling")
    assert status == 1 and _one_error_line(stderr) == (
        f"output folder {tmp_path / 'dangling'} is a symbolic link to {tmp_path / 'nowhere'}, which does not exist; "
        "create that folder or pass another --output")
    status, _, stderr = _cli(capsys, tmp_path / "unused.pth", root, tmp_path / "out", "--size", 0)
    assert status == 1 and _one_error_line(stderr) == (
        "config key 'eval.size': got 0, expected -1 (native resolution) or a shorter side of at least 16 px")
    status, _, stderr = _cli(capsys, tmp_path / "unused.pth", root, tmp_path / "out", "eval.max_objects=0")
    assert status == 1 and _one_error_line(stderr) == "config key 'eval.max_objects': got 0, expected ≥ 1"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["dangling", "data"]


# ------------------------------------------------------------------------------ 3. finished from these inputs


def test_a_rerun_redoes_the_videos_whose_inputs_changed_and_says_so(tmp_path, capsys, caplog,
                                                                    recipe_checkpoint_path):
    """A file of the user's in a video's output folder survives the video being redone. Mutation checked by
    hand: eval.py taking no video as changed (`changed = {}`: finished means finished, whatever the inputs)
    keeps the old outputs of synth0001 and skips it."""
    root = _dataset(tmp_path / "data")
    output = tmp_path / "out"
    (output / "synth0001").mkdir(parents=True)
    (output / "synth0001/notes.txt").write_text("the user's own file, in a video's output folder")
    assert _cli(capsys, recipe_checkpoint_path, root, output)[0] == 0
    # The user fixes synth0001's input mask (its last object drawn larger).
    mask, palette = read_index_mask(root / "Annotations/synth0001/00000.png")
    mask[:8, :8] = mask.max()
    write_index_mask(root / "Annotations/synth0001/00000.png", mask, palette)
    caplog.set_level(logging.WARNING)
    status, report, _ = _cli(capsys, recipe_checkpoint_path, root, output)
    assert status == 0
    assert "video synth0001: its masks or ground truth changed since it was finished; it is redone" in caplog.text
    assert "1 videos processed, 1 already finished" in report
    assert "redone, their inputs changed since they were finished: synth0001" in report
    written, _ = read_index_mask(output / "synth0001/00000.png")
    assert np.array_equal(written, mask)  # the annotated frame is written back as now given
    summary = json.loads((output / "summary.json").read_text())
    assert summary["processed"] == summary["inputs_changed"] == ["synth0001"]
    assert (output / "synth0001/notes.txt").is_file()  # redoing a video deletes only what it wrote
    # A frame added to synth0000: its frames changed.
    write_image(root / "JPEGImages/synth0000/00003.jpg", np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    caplog.clear()
    status, report, _ = _cli(capsys, recipe_checkpoint_path, root, output)
    assert status == 0 and "video synth0000: its frames changed since it was finished; it is redone" in caplog.text
    assert sorted(path.name for path in (output / "synth0000").iterdir()) == [f"{i:05d}.png" for i in range(4)]
    status, report, _ = _cli(capsys, recipe_checkpoint_path, root, output)  # nothing changed: nothing redone
    assert status == 0 and "0 videos processed, 2 already finished" in report


# ------------------------------------------------------------------------ 4, 5. smoothed masks, duplicate stems


def _smoothed(mask: np.ndarray) -> np.ndarray:
    """`mask` with its ids spread out and resized with bilinear smoothing: what the issue's user made."""
    spread = (mask.astype(np.int64) * SMOOTHED_ID_STEP).astype(np.uint8)
    return np.asarray(Image.fromarray(spread).resize((WIDTH * 2, HEIGHT * 2), Image.BILINEAR)
                      .resize((WIDTH, HEIGHT), Image.BILINEAR))


def test_a_smoothed_mask_and_two_frames_with_one_stem_fail_their_video_in_one_line(tmp_path, capsys,
                                                                                    recipe_checkpoint_path):
    """Mutations checked by hand: `_read_input_mask` without `check_index_mask` ran the smoothed video with dozens
    of objects; without `_check_unique_stems` the two 00001 frames both ran and wrote one 00001.png."""
    root = tmp_path / "data"
    write_generic(root, make_videos(3, seed=3, num_frames=3, height=HEIGHT, width=WIDTH,
                                    difficulty=PRESETS["hard"]), ground_truth=True)
    smoothed_path = root / "Annotations/synth0001/00000.png"
    mask, _ = read_index_mask(smoothed_path)
    Image.fromarray(_smoothed(mask)).save(smoothed_path)
    duplicate = root / "JPEGImages/synth0002/00001.png"
    Image.open(root / "JPEGImages/synth0002/00001.jpg").save(duplicate)
    before = _tree(root)
    status, report, stderr = _cli(capsys, recipe_checkpoint_path, root, tmp_path / "out")
    assert status == 1 and "Traceback" not in stderr
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert summary["processed"] == ["synth0000"]
    bands = edge_band_ids(np.asarray(Image.open(smoothed_path)))
    ids = len(np.unique(np.asarray(Image.open(smoothed_path)))) - 1
    shown = ", ".join(map(str, bands[:5])) + (", ..." if len(bands) > 5 else "")
    assert ids <= 32  # within eval.max_objects: only the smoothing check can refuse it
    assert summary["failed"] == {
        "synth0001": f"mask {smoothed_path} is not an index mask of objects: {len(bands)} of its {ids} ids "
                     f"({shown}) are only thin bands along the edges of other ids, as "
                     "smoothing (bilinear resizing, anti-aliasing) makes; save the mask without smoothing "
                     "(nearest-neighbour resizing, an indexed PNG of object ids)",
        "synth0002": f"video 'synth0002' has two frames named 00001: {root / 'JPEGImages/synth0002/00001.jpg'} and "
                     f"{duplicate}; their outputs would both be 00001.png, so keep only one of them",
    }
    assert f"FAILED synth0002: video 'synth0002' has two frames named 00001" in report
    assert _tree(root) == before
    assert not (tmp_path / "out/synth0001").exists() and not (tmp_path / "out/synth0002").exists()


def test_index_masks_of_real_objects_thin_ones_included_are_not_taken_for_smoothed_ones():
    """Every preset of the synthetic generator (occluding, small, late objects), four 1-2 px wide objects (poles,
    a rope crossing a blob) and the golden fixture's masks pass; a smoothed one of the same masks is refused.
    Mutation checked by hand: counting a pixel as a band when any one other id is near (`between = largest >=
    smallest`) refuses the thin objects."""
    thin = np.zeros((HEIGHT, WIDTH), np.uint8)
    thin[20:50, 30:80] = 1
    thin[5:60, 10] = 2
    thin[5:60, 15:17] = 3
    thin[35, 5:100] = 4  # a rope across object 1
    thin[2, 20:110] = 5
    check_index_mask(thin, "thin objects")
    refused = 0
    for name, difficulty in PRESETS.items():
        videos = make_videos(6, seed=11, num_frames=12, height=HEIGHT, width=WIDTH, difficulty=difficulty)
        for video in videos.values():
            for index in range(0, video.num_frames, 3):
                _, mask = video.frame(index)
                check_index_mask(mask, f"{name} {video.seed} frame {index}")
                if len(np.unique(mask)) > 2:
                    with pytest.raises(ValueError, match="is not an index mask of objects"):
                        check_index_mask(_smoothed(mask), "smoothed")
                    refused += 1
    fixtures = sorted((Path(__file__).parent / "fixtures").glob("inference_video*/**/*.png"))
    for path in fixtures:
        check_index_mask(read_index_mask(path)[0], str(path))
    assert refused > 10 and fixtures


def test_the_python_api_has_the_object_limit_and_the_smoothed_mask_check(recipe_network):
    """Mutation checked by hand: `_check_new_objects` without its limit tracked 3 objects with max_objects=2."""
    mask = np.zeros((HEIGHT, WIDTH), np.int64)
    for object_id in (1, 2, 3):
        mask[10 * object_id:10 * object_id + 6, 5:40] = object_id
    frame = normalize_image(np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    core = InferenceCore(recipe_network, InferenceConfig(), max_objects=2)
    expected = ("the video given to InferenceCore has 3 objects (ids 1..3), more than max_objects=2; time and memory "
                "grow with each object, so check that its masks hold objects (not a class or instance map), or pass "
                "max_objects=3 to run it anyway")
    with pytest.raises(ValueError) as refused:
        core.step(frame, mask)
    assert str(refused.value) == expected
    with pytest.raises(ValueError) as refused:
        list(propagate(recipe_network, [np.zeros((HEIGHT, WIDTH, 3), np.uint8)], mask, InferenceConfig(),
                       max_objects=2))
    assert str(refused.value) == expected
    with pytest.raises(ValueError, match="^mask given on frame 0 is not an index mask of objects: "):
        InferenceCore(recipe_network, InferenceConfig()).step(frame, _smoothed(mask).astype(np.int64))
    assert InferenceCore(recipe_network, InferenceConfig(), max_objects=3).step(frame, mask).shape[0] == 4


def test_the_streaming_api_resizes_a_mask_a_few_pixels_off_and_warns_about_an_empty_one(recipe_network):
    """As the README says. Mutations checked by hand: the old size check (ValueError for a 2 px difference); no
    warning on an all-0 first mask."""
    frame = normalize_image(np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    mask = np.zeros((HEIGHT, WIDTH - 2), np.int64)
    mask[10:30, 10:40] = 5
    core = InferenceCore(recipe_network, InferenceConfig())
    with pytest.warns(UserWarning, match=f"^mask given on frame 0 is {WIDTH - 2}x{HEIGHT}, its frame {WIDTH}x{HEIGHT}: "
                                         "resized \\(nearest\\) to match$"):
        prob = core.step(frame, mask)
    assert prob.shape == (2, HEIGHT, WIDTH) and core.object_ids == [5]
    empty = InferenceCore(recipe_network, InferenceConfig())
    with pytest.warns(UserWarning, match="^the mask given on frame 0 holds no object \\(all 0\\): nothing is tracked "
                                         "until a mask with objects is given$"):
        empty.step(frame, np.zeros((HEIGHT, WIDTH), np.int64))


# --------------------------------------------------------------------------------------- 6. plain messages


class NotWeights:
    """Pickled into a .pth, it makes torch's weights-only loader fail with a message holding escape codes."""


def test_a_checkpoint_error_carries_no_terminal_escape_codes(tmp_path, capsys):
    """Mutation checked by hand: `plain_text` without the escape-code pattern printed torch's bold codes."""
    model = tmp_path / "model.pth"
    torch.save({"object": NotWeights()}, model)
    root = _dataset(tmp_path / "data", count=1)
    status, _, stderr = _cli(capsys, model, root, tmp_path / "out")
    message = _one_error_line(stderr)
    assert status == 1 and "\x1b" not in stderr
    assert message.startswith(f"cannot read checkpoint '{model}': truncated, corrupt or not a weights-only PyTorch "
                              "file (Weights only load failed.")
    assert "do those steps only if you trust the source of the checkpoint" in message


# ------------------------------------------------------------------------------- 2. one writer; kill; Ctrl-C


def test_the_lock_is_exclusive_names_its_holder_and_is_released_on_exit(tmp_path):
    """Both ways a second run meets the lock: the early look (`check_output_not_locked`, writing nothing) and
    taking it (`OutputLock`, for a run that started between the look and the taking). flock locks belong to an
    open file, so a second open in this process stands for a second process. Mutation checked by hand: LOCK_SH
    for LOCK_EX in OutputLock (two holders at once)."""
    check_output_not_locked(tmp_path / "absent")  # no folder, no lock file: free, and nothing is made
    assert not (tmp_path / "absent").exists()
    with OutputLock(tmp_path):
        holder = json.loads((tmp_path / LOCK_FILE).read_text())
        assert holder["pid"] == os.getpid()
        expected = (f"output folder {tmp_path} is in use by another eval.py run (pid {os.getpid()} on host "
                    f"{holder['host']}, started {holder['started']}); wait for it to end or pass another --output")
        with pytest.raises(OutputFolderBusyError) as refused:
            check_output_not_locked(tmp_path)
        assert str(refused.value) == expected
        with pytest.raises(OutputFolderBusyError) as refused:
            with OutputLock(tmp_path):
                pass
        assert str(refused.value) == expected
    check_output_not_locked(tmp_path)
    with OutputLock(tmp_path):  # released on exit: taken again
        pass


def _start(model: Path, root: Path, output: Path) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                   "TQDM_DISABLE": "1"}
    return subprocess.Popen([sys.executable, str(REPOSITORY / "eval.py"), "--model", str(model), "--dataset", "G",
                             "--generic_path", str(root), "--size", "-1", "--output", str(output),
                             "eval.device=cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=environment)


def _wait_for(condition, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + PROCESS_TIMEOUT_S
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(POLL_S)


def _holds_lock(output: Path, process: subprocess.Popen) -> bool:
    try:
        return json.loads((output / LOCK_FILE).read_text())["pid"] == process.pid
    except (OSError, ValueError, KeyError):
        return False


def _masks(output: Path) -> dict[str, bytes]:
    """Every result PNG, by relative path; each must open as an index mask."""
    masks = {}
    for path in sorted(output.glob("synth*/*.png")):
        read_index_mask(path)
        masks[path.relative_to(output).as_posix()] = path.read_bytes()
    return masks


def test_one_writer_per_folder_and_killed_or_interrupted_runs_leave_a_folder_a_rerun_completes(
        tmp_path, recipe_checkpoint_path):
    """Real processes. A holds the lock (paused with SIGSTOP so it surely runs while B starts): B refuses, naming
    A; A finishes. On another folder C is killed with SIGKILL mid-video: the rerun D starts (the OS released the
    lock) and is interrupted with SIGINT (exit 130, one line); E finishes, and its masks equal A's.
    Mutations checked by hand: no flock in OutputLock and check_output_not_locked (B ran beside A and exited 0);
    no KeyboardInterrupt handling in run_cli (a traceback, killed by SIGINT: status -2). That a video is marked
    finished only with every planned output on disk is checked in test_eval_datasets.py."""
    root = _dataset(tmp_path / "data", count=2, frames=4)
    reference = tmp_path / "reference"
    first = _start(recipe_checkpoint_path, root, reference)
    _wait_for(lambda: _holds_lock(reference, first), first)
    first.send_signal(signal.SIGSTOP)
    try:
        holder = json.loads((reference / LOCK_FILE).read_text())
        second = _start(recipe_checkpoint_path, root, reference)
        _, stderr = second.communicate(timeout=PROCESS_TIMEOUT_S)
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 1 and stderr.strip().splitlines() == [
        f"error: output folder {reference} is in use by another eval.py run (pid {first.pid} on host "
        f"{holder['host']}, started {holder['started']}); wait for it to end or pass another --output"]
    _, stderr = first.communicate(timeout=PROCESS_TIMEOUT_S)
    assert first.returncode == 0, stderr
    expected = _masks(reference)
    assert len(expected) == 8

    output = tmp_path / "out"
    killed = _start(recipe_checkpoint_path, root, output)
    _wait_for(lambda: (output / ".progress/synth0000.planned").is_file(), killed)
    killed.send_signal(signal.SIGSTOP)
    assert not (output / ".progress/synth0000.json").exists()  # really mid-video
    killed.kill()
    killed.communicate(timeout=PROCESS_TIMEOUT_S)

    interrupted = _start(recipe_checkpoint_path, root, output)
    _wait_for(lambda: (output / ".progress/synth0001.planned").is_file(), interrupted)
    interrupted.send_signal(signal.SIGSTOP)  # held mid-way through its second video while Ctrl-C arrives
    assert (output / ".progress/synth0000.json").is_file() and not (output / ".progress/synth0001.json").exists()
    interrupted.send_signal(signal.SIGINT)
    interrupted.send_signal(signal.SIGCONT)
    _, stderr = interrupted.communicate(timeout=PROCESS_TIMEOUT_S)
    assert interrupted.returncode == 130 and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == eval_cli.INTERRUPTED_MESSAGE
    assert (output / ".progress/synth0000.json").is_file()  # finished videos are kept

    rerun = _start(recipe_checkpoint_path, root, output)
    report, stderr = rerun.communicate(timeout=PROCESS_TIMEOUT_S)
    assert rerun.returncode == 0, stderr
    assert _masks(output) == expected
    assert not list(output.glob(".progress/*.planned")) and not list(output.glob("synth*/.*"))
