"""scripts/benchmark.py on a tiny streamed video: CSV rows, the late object, bounded memory counts."""
import csv
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import benchmark  # noqa: E402

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
