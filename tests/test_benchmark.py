"""scripts/speed/benchmark.py on tiny streamed videos: CSV rows, the late object, bounded memory counts, the scaling
study (long-term on/off, prefilled full memory, summary, plot, resume)."""
import csv
import sys

import pytest

from configs.schema import InferenceConfig
from inference.inference_core import InferenceCore
from scripts.speed import benchmark

HEIGHT, WIDTH = 64, 112
ELEMENTS_PER_FRAME = (HEIGHT // 16) * (WIDTH // 16)


def test_benchmark_streams_a_video_and_writes_per_frame_rows(tmp_path, recipe_checkpoint_path, capsys):
    output = tmp_path / "bench.csv"
    result = benchmark.main([
        "--frames", "14", "--height", str(HEIGHT), "--width", str(WIDTH), "--late_object_frame", "5",
        "--model", str(recipe_checkpoint_path), "--max_working_frames", "4", "--min_working_frames", "2",
        "--num_prototypes", "16", "--max_long_term_elements", "60", "--mem_every", "1", "--output", str(output),
    ])
    rows = list(csv.DictReader(open(output)))
    assert [int(row["frame"]) for row in rows] == list(range(14))
    assert tuple(rows[0]) == benchmark.COLUMNS
    assert [int(row["objects"]) for row in rows] == [1] * 5 + [2] * 9
    assert max(int(row["working_elements"]) for row in rows) <= 4 * ELEMENTS_PER_FRAME
    assert max(int(row["long_term_elements"]) for row in rows) <= 60
    assert int(rows[-1]["long_term_elements"]) > 0  # consolidation happened
    assert all(float(row["seconds"]) > 0 and float(row["rss_mb"]) > 0 for row in rows)
    assert result["fps"] > 0
    summary = capsys.readouterr().out
    assert summary.startswith("14 frames: median") and "frame 13:" in summary


def test_benchmark_rejects_a_late_object_outside_the_video():
    with pytest.raises(ValueError, match="late_object_frame 20 must be within 1..9"):
        benchmark.main(["--frames", "10", "--late_object_frame", "20"])


# ----------------------------------------------------------------------------------------------- scaling study
SMALL_MEMORY = ["--mem_every", "1", "--max_working_frames", "3", "--min_working_frames", "2", "--num_prototypes", "8",
                "--max_long_term_elements", "40"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _rows(path):
    return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(open(path))]


def test_scaling_study_runs_long_term_on_off_and_full_memory(tmp_path, recipe_checkpoint_path, monkeypatch):
    arguments = ["--scaling_study", str(tmp_path / "study"), "--study_frames", "6", "--height", str(HEIGHT),
                 "--width", str(WIDTH), "--full_memory_frames", "3", "--full_memory_height", str(HEIGHT),
                 "--full_memory_width", str(WIDTH), "--model", str(recipe_checkpoint_path), *SMALL_MEMORY]
    result = benchmark.main(arguments)
    study = tmp_path / "study"
    on, off, full = (_rows(study / f"{name}.csv") for name in (
        f"6f_{HEIGHT}x{WIDTH}_lt_on", f"6f_{HEIGHT}x{WIDTH}_lt_off", f"3f_{HEIGHT}x{WIDTH}_full_memory"))
    # Long-term off: working memory grows by one frame per memory frame (all but the last), nothing consolidated.
    assert [row["working_elements"] for row in off] == [ELEMENTS_PER_FRAME * (i + 1) for i in range(5)] + [
        5 * ELEMENTS_PER_FRAME]
    assert all(row["long_term_elements"] == 0 for row in off)
    # Long-term on: working memory within T_max frames, long-term memory used.
    assert max(row["working_elements"] for row in on) <= 3 * ELEMENTS_PER_FRAME
    assert on[-1]["long_term_elements"] > 0
    # Prefilled: from frame 0 the memory is at its bound (T_max − 1 working frames, LT_max long-term elements).
    assert full[0]["working_elements"] == 2 * ELEMENTS_PER_FRAME and full[0]["long_term_elements"] == 40
    assert all(row["long_term_elements"] <= 40 for row in full)
    assert all(row["objects"] == 2 for row in full)  # both objects from frame 0

    summary = list(csv.DictReader(open(study / "scaling_summary.csv")))
    assert [row["run"] for row in summary] == [f"6f_{HEIGHT}x{WIDTH}_lt_on", f"6f_{HEIGHT}x{WIDTH}_lt_off",
                                               f"3f_{HEIGHT}x{WIDTH}_full_memory"]
    assert tuple(summary[0]) == benchmark.SUMMARY_COLUMNS
    assert int(summary[1]["max_long_term_elements"]) == 0 and int(summary[0]["max_long_term_elements"]) > 0
    assert all(float(row["median_ms_last"]) > 0 and float(row["rss_mb_last"]) > 0 for row in summary)
    markdown = (study / "scaling_summary.md").read_text()
    assert markdown.startswith("| run | frames | size | long-term |") and "| on, prefilled |" in markdown
    assert result["plot"] == study / "scaling.png"
    assert (study / "scaling.png").read_bytes().startswith(PNG_SIGNATURE)

    # A rerun reuses the runs' CSVs instead of running them again.
    def no_process(*args, **kwargs):
        raise AssertionError("a finished run was run again")

    monkeypatch.setattr(benchmark, "run_child", no_process)
    assert benchmark.main(arguments)["summary"] == result["summary"]


def test_study_plot_is_optional(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    run = benchmark.StudyRun(frames=2, height=HEIGHT, width=WIDTH, long_term=True)
    rows = [{"frame": 0.0, "seconds": 0.1, "rss_mb": 10.0}, {"frame": 1.0, "seconds": 0.1, "rss_mb": 10.0}]
    assert benchmark.plot_study([(run, rows)], tmp_path / "plot.png") is None
    assert not (tmp_path / "plot.png").exists()


def test_prefill_needs_long_term_memory_and_a_first_frame(recipe_network):
    with pytest.raises(ValueError, match=r"prefill_memory needs long-term memory \(inference.enable_long_term=true\)"):
        benchmark.main(["--frames", "4", "--disable_long_term", "--prefill_memory"])
    core = InferenceCore(recipe_network, InferenceConfig())
    with pytest.raises(ValueError, match=r"step the first \(annotated\) frame before prefilling"):
        benchmark.prefill_memory(core)
    with pytest.raises(ValueError, match="prefill_memory needs long-term memory"):
        benchmark.prefill_memory(InferenceCore(recipe_network, InferenceConfig(enable_long_term=False)))
