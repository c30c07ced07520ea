"""The run summary (inference/evaluation/run_summary.py): what eval.py writes is what its readers get back, in the
JSON layout the tools and tests read by key; a file that is not a summary is refused naming the file.

Mutations checked by hand: `read` leaving paths as strings fails the round trip; `write` without
`summary=path` fails the written-path check; `report_lines` dropping the NOT SCORED lines fails the report test;
`read` accepting any key set fails the refusal test.
"""
import json
import math
from pathlib import Path

import pytest

from inference.evaluation.run_summary import MEMORY_RECORD_KEYS, RunSummary, largest_memory, rate


def _summary(output: Path, **changes) -> RunSummary:
    fields = dict(
        output=output, world_size=2, skipped_finished=["a"], inputs_changed=[], processed=["b", "c"],
        skipped_empty=[], failed={"c": "bad frame"}, rank_frames=[3, 4], frames=7, seconds=0.5, fps=rate(7, 0.5),
        wall_seconds=0.0, fps_end_to_end=rate(7, 0.0), peak_memory_mb_per_rank=[10.0, 12.5], peak_memory_mb=12.5,
        peak_memory_kind="process peak RSS", memory=largest_memory([{"working_elements": 4}, {"working_elements": 6}]),
        timings=output / "timings.csv", config=output / "config.yaml", zip=None, unscored={"b": "no ground truth"},
        scores={"J&F-Mean": 0.5}, page=output / "report.html", report="text")
    fields.update(changes)
    return RunSummary(**fields)


def test_written_summary_reads_back_equal(tmp_path):
    written = _summary(tmp_path, wall_seconds=2.0, fps_end_to_end=rate(7, 2.0)).write(tmp_path / "summary.json")
    assert written.summary == tmp_path / "summary.json"
    again = RunSummary.read(tmp_path / "summary.json")
    assert again == written
    assert isinstance(again.timings, Path) and again.zip is None and again.memory["working_elements"] == 6


def test_a_rate_over_no_time_is_written_and_read_as_nan(tmp_path):
    _summary(tmp_path).write(tmp_path / "summary.json")
    assert "NaN" in (tmp_path / "summary.json").read_text()
    assert math.isnan(RunSummary.read(tmp_path / "summary.json").fps_end_to_end)


def test_the_file_keeps_the_keys_readers_use_by_name(tmp_path):
    """summary.json is read by key outside this class (tests, scripts/cuda/check_cuda_checks.py): keys and values stay."""
    _summary(tmp_path).write(tmp_path / "summary.json")
    data = json.loads((tmp_path / "summary.json").read_text())
    assert list(data)[:3] == ["output", "world_size", "skipped_finished"] and list(data)[-1] == "summary"
    assert data["summary"] == str(tmp_path / "summary.json") and data["timings"] == str(tmp_path / "timings.csv")
    assert data["fps"] == 14.0 and data["peak_memory_mb"] == 12.5 and data["scores"] == {"J&F-Mean": 0.5}
    assert set(data["memory"]) == set(MEMORY_RECORD_KEYS) and data["memory"]["long_term_elements"] is None


def test_report_lines_name_ranks_failures_and_unscored_videos(tmp_path):
    lines = _summary(tmp_path).report_lines()
    assert lines[0].startswith("frames 7  time 0.50 s  FPS 14.00")
    assert "per rank: rank 0 3 frames, peak 10 MB, rank 1 4 frames, peak 12 MB" in lines  # 12.5 rounds to even
    assert lines[-2:] == ["FAILED c: bad frame", "NOT SCORED b: no ground truth"]
    assert f"report page: {tmp_path / 'report.html'}" in lines


def test_a_file_that_is_not_a_summary_is_refused_naming_it(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"output": "x", "frames": 3}))
    with pytest.raises(ValueError, match=r"summary\.json: not a run summary of this version; expected the keys"):
        RunSummary.read(path)
    path.write_text("{")
    with pytest.raises(ValueError, match=r"summary\.json: not a run summary, its JSON does not parse"):
        RunSummary.read(path)
