"""The pieces of distributed evaluation: the balanced work split, overlapped reading and writing, and the rank
group that exchanges the split and results through the job's store and names a rank that dies."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from dataset.eval_datasets import EvalVideo
from dataset.image_io import write_image
from dataset.overlapped_io import BackgroundWriter, read_ahead
from dataset.work_split import VideoWork, split_work, video_work
from inference.evaluation.distributed import launched_distributed, rank_device

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------ work split


def test_split_balances_frames_times_pixels_not_round_robin():
    # Round robin over names would give rank 0 both long videos (a, c): 200 + 180 frames against 20.
    work = {"a": VideoWork(200, 100), "b": VideoWork(10, 100), "c": VideoWork(180, 100), "d": VideoWork(10, 100)}
    split = split_work(["a", "b", "c", "d"], work, 2)
    assert split.shares == (("a",), ("b", "c", "d"))  # each share keeps the given order
    assert split.frames == (200, 200) and split.costs == (20000, 20000)
    assert "rank 1: 3 videos, 200 frames, 50.0 %" in split.describe()


def test_split_counts_pixels_and_is_deterministic():
    # Half the frames at four times the pixels is twice the work.
    work = {"big": VideoWork(50, 400), "small1": VideoWork(100, 100), "small2": VideoWork(100, 100)}
    split = split_work(["small1", "big", "small2"], work, 2)
    assert split.shares == (("big",), ("small1", "small2"))
    assert split.frames == (50, 200)
    # Equal costs: ties go by name to the lowest rank; the same answer whatever order the names come in.
    equal = {name: VideoWork(5, 10) for name in "dcba"}
    assert split_work(list("abcd"), equal, 3).shares == (("a", "d"), ("b",), ("c",))
    assert split_work(list("dcba"), equal, 3).shares == (("d", "a"), ("b",), ("c",))


def test_split_more_ranks_than_videos_and_unopened_videos():
    split = split_work(["x", "broken"], {"x": VideoWork(3, 2)}, 3)
    assert split.shares == (("x",), ("broken",), ()) and split.frames == (3, 0, 0)
    with pytest.raises(ValueError, match="world size 0"):
        split_work(["x"], {}, 0)
    with pytest.raises(ValueError, match="unique"):
        split_work(["x", "x"], {}, 2)


def test_video_work_reads_the_first_frame_header(tmp_path):
    frames = []
    for index in range(3):
        frames.append(tmp_path / f"{index:05d}.jpg")
        write_image(frames[-1], np.zeros((60, 100, 3), np.uint8))
    video = EvalVideo("v", tuple(frames), {}, None, None)
    assert video_work(video, lambda height, width: (height, width)) == VideoWork(3, 6000)
    assert video_work(video, lambda height, width: (height // 2, width // 2)) == VideoWork(3, 30 * 50)
    (tmp_path / "00000.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="00000.jpg is not a readable image"):
        video_work(video, lambda height, width: (height, width))


# ------------------------------------------------------------------------------------------------ read ahead


def test_read_ahead_keeps_order_and_stays_bounded():
    produced = []

    def source():
        for index in range(20):
            produced.append(index)
            yield index

    consumed = []
    for item in read_ahead(source(), depth=3):
        time.sleep(0.01)  # let the reader run ahead as far as it may
        assert len(produced) - len(consumed) <= 3 + 2  # the queue, the item in hand, the one being put
        consumed.append(item)
    assert consumed == list(range(20))
    assert list(read_ahead(iter(range(5)), depth=0)) == list(range(5))
    with pytest.raises(ValueError, match="depth -1"):
        next(read_ahead([], -1))


def test_read_ahead_raises_the_source_error_in_place_and_stops_early():
    def failing():
        yield 1
        yield 2
        raise FileNotFoundError("frame 00002.jpg does not exist")

    seen = []
    with pytest.raises(FileNotFoundError, match="00002.jpg"):
        for item in read_ahead(failing(), depth=4):
            seen.append(item)
    assert seen == [1, 2]

    closed = threading.Event()

    def endless():
        try:
            index = 0
            while True:
                yield index
                index += 1
        finally:
            closed.set()

    threads = threading.active_count()
    for item in read_ahead(endless(), depth=2):
        if item == 3:
            break
    assert closed.wait(5) and threading.active_count() == threads  # the reader stopped and closed its source


# ------------------------------------------------------------------------------------------------ writer


def test_background_writer_writes_in_order_and_bounds_the_queue():
    written, pending_peak, gate = [], [], threading.Event()
    with BackgroundWriter(max_pending=2) as background:
        def write(value):
            gate.wait(5)
            written.append(value)

        submitter = threading.Thread(target=lambda: [background.submit(write, value) for value in range(6)])
        submitter.start()
        time.sleep(0.3)
        pending_peak.append(6 - len(written))
        assert submitter.is_alive()  # blocked: the queue holds 2, one write is in progress
        gate.set()
        submitter.join(5)
        background.flush()
        assert written == list(range(6))
    with BackgroundWriter(0) as synchronous:
        synchronous.submit(written.append, "now")
        assert written[-1] == "now"


def test_background_writer_raises_the_first_error_in_the_caller_and_drops_later_writes():
    written = []

    def fail(name):
        raise OSError(f"no space left writing {name}")

    background = BackgroundWriter(max_pending=4)
    background.submit(written.append, "a")
    background.submit(fail, "b.png")
    background.submit(written.append, "c")  # queued behind the failure: never written
    with pytest.raises(OSError, match="b.png"):
        background.flush()
    assert written == ["a"]
    background.flush()  # reported once; the writer is usable again
    background.submit(written.append, "d")
    background.submit(fail, "e.png")
    with pytest.raises(OSError, match="e.png"):
        background.close()
    assert written == ["a", "d"]
    with pytest.raises(ValueError, match="write queue length -1"):
        BackgroundWriter(-1)


# ------------------------------------------------------------------------------------------------ rank group


def test_rank_device_and_launch_detection(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not launched_distributed()
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert launched_distributed()
    assert rank_device("cpu", 1).type == "cpu"
    with pytest.raises(ValueError, match="every rank would use that one device"):
        rank_device("cuda:1", 1)


RANK_SCRIPT = """
import os, sys, time
from inference.evaluation.distributed import RankGroup, RankFailedError
victim = int(sys.argv[1])
try:
    with RankGroup.join("cpu", 2.0) as group:
        mine = group.share_split([["a", "b"], ["c"], []][:group.world_size] if group.is_main else None)
        print("SHARE", group.rank, mine, flush=True)
        if group.rank == victim:
            time.sleep(0.5)
            os.kill(os.getpid(), 9)
        if victim == -2 and group.rank == 1:
            raise OSError("disk full")
        for _ in range(10 if victim < 0 else 100):
            time.sleep(0.1)
            group.check()
        print("RESULTS", group.gather_results({"rank": group.rank, "videos": mine}), flush=True)
except RankFailedError as error:
    print("FAILED", error, flush=True)
    sys.exit(3)
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run_ranks(world_size: int, victim: int) -> list[subprocess.CompletedProcess]:
    port = _free_port()
    processes = []
    for rank in range(world_size):
        environment = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1",
                           MASTER_PORT=str(port), WORLD_SIZE=str(world_size), RANK=str(rank), LOCAL_RANK=str(rank),
                           TORCH_CPP_LOG_LEVEL="ERROR")
        processes.append(subprocess.Popen([sys.executable, "-c", RANK_SCRIPT, str(victim)], env=environment,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    results = []
    for process in processes:
        output, _ = process.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, output))
    return results


def test_rank_group_shares_the_split_and_gathers_results():
    outputs = _run_ranks(3, victim=-1)
    assert [result.returncode for result in outputs] == [0, 0, 0], [result.stdout for result in outputs]
    assert "SHARE 1 ['c']" in outputs[1].stdout and "SHARE 2 []" in outputs[2].stdout
    assert ("RESULTS [{'rank': 0, 'videos': ['a', 'b']}, {'rank': 1, 'videos': ['c']}, "
            "{'rank': 2, 'videos': []}]") in outputs[0].stdout
    assert "RESULTS None" in outputs[1].stdout


def test_a_killed_rank_is_named_by_the_others_and_nothing_hangs():
    outputs = _run_ranks(3, victim=1)
    assert outputs[1].returncode == -signal.SIGKILL
    for rank in (0, 2):
        assert outputs[rank].returncode == 3, outputs[rank].stdout
        assert "FAILED rank 1 stopped responding (no heartbeat for 2 s" in outputs[rank].stdout
    killed_host = _run_ranks(2, victim=0)  # rank 0 hosts the store here (no torchrun agent)
    assert killed_host[1].returncode == 3
    assert "lost the job's store" in killed_host[1].stdout and "rank 0" in killed_host[1].stdout


def test_a_rank_that_raises_is_named_by_the_others():
    outputs = _run_ranks(2, victim=-2)
    assert outputs[1].returncode == 1 and "OSError: disk full" in outputs[1].stdout  # its own traceback
    assert outputs[0].returncode == 3
    assert "FAILED rank 1 failed: OSError: disk full" in outputs[0].stdout


def test_read_ahead_video_and_write_behind_wrap_the_real_classes(tmp_path):
    from dataset.overlapped_io import ReadAheadVideo, WriteBehind
    from dataset.writers import ResultWriter

    frames = []
    for index in range(4):
        frames.append(tmp_path / "in" / f"{index:05d}.jpg")
        write_image(frames[-1], np.full((8, 12, 3), index * 40, np.uint8))
    video = EvalVideo("v", tuple(frames), {}, None, None)
    ahead = ReadAheadVideo(video, depth=2)
    assert len(ahead) == 4 and ahead.name == "v" and ahead.frame_paths == video.frame_paths
    writer = ResultWriter(tmp_path / "out", "davis")
    with BackgroundWriter(max_pending=2) as background:
        behind = WriteBehind(writer, background)
        for frame in ahead.frames():
            behind.write_mask("v", frame.name, (frame.image[..., 0] > 60).astype(np.uint8), None)
        behind.flush()
        assert sorted(path.name for path in (tmp_path / "out/v").iterdir()) == [f"{i:05d}.png" for i in range(4)]
