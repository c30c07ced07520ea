"""scripts/evaluation/evaluate.py and inference/evaluation/folder_evaluation.py: folder against folder, the
toolkit's tables, reuse of unchanged results, loud bad input."""
from __future__ import annotations

import csv
import importlib.util
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dataset.image_io import read_index_mask, read_mask_ids, write_index_mask
from inference.evaluation import folder_evaluation
from inference.evaluation.metrics import MODE_APPEARANCE, evaluate_sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "scripts" / "evaluation" / "evaluate.py"
FIXTURES = Path(__file__).parent / "fixtures" / "metrics"
TOLERANCE = 1e-6


evaluate_script = importlib.import_module("scripts.evaluation.evaluate")


def evaluate_folders(ground_truth_dir, prediction_dir, **kwargs):
    return folder_evaluation.evaluate_folders(ground_truth_dir, prediction_dir, read_mask=read_mask_ids, **kwargs)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def assert_close_or_both_nan(actual: str, expected: str, label: str) -> None:
    if math.isnan(float(expected)):
        assert math.isnan(float(actual)), label
    else:
        assert float(actual) == pytest.approx(float(expected), abs=TOLERANCE), label


@pytest.fixture
def davis_copy(tmp_path) -> tuple[Path, Path, Path]:
    """A writable copy of the five short fixture sequences: (ground truth, predictions, image set)."""
    names = ["blobs-a", "blobs-b", "blobs-c", "blobs-d", "odd-size"]
    for name in names:
        shutil.copytree(FIXTURES / "davis" / "Annotations" / "480p" / name, tmp_path / "gt" / name)
        shutil.copytree(FIXTURES / "pred" / name, tmp_path / "pred" / name)
    imageset = tmp_path / "val.txt"
    imageset.write_text("\n".join(names) + "\n")
    return tmp_path / "gt", tmp_path / "pred", imageset


def test_cli_writes_the_toolkit_tables(tmp_path):
    output = tmp_path / "results"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), str(FIXTURES / "davis" / "Annotations" / "480p"), str(FIXTURES / "pred"),
         "--imageset", str(FIXTURES / "davis" / "ImageSets" / "2017" / "val.txt"), "--output", str(output),
         "--davis_compat_decay", "--num_processes", "2"],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr
    assert "J&F-Mean" in completed.stdout
    (global_row,) = read_csv(output / "global_results.csv")
    (expected_global,) = read_csv(FIXTURES / "toolkit_global.csv")
    assert list(global_row) == list(expected_global)
    for column in expected_global:
        assert_close_or_both_nan(global_row[column], expected_global[column], column)
    rows = read_csv(output / "per_object_results.csv")
    expected_rows = read_csv(FIXTURES / "toolkit_per_object.csv")
    assert [row["Sequence"] for row in rows] == [row["object"] for row in expected_rows]
    for row, expected in zip(rows, expected_rows):
        for column in expected:
            if column != "object":
                assert_close_or_both_nan(row[column], expected[column], f"{row['Sequence']} {column}")


def test_results_go_to_the_prediction_folder_and_are_reused_until_inputs_change(davis_copy, monkeypatch):
    ground_truth_dir, prediction_dir, imageset = davis_copy
    first = evaluate_folders(ground_truth_dir, prediction_dir, imageset=imageset, num_processes=1)
    assert (prediction_dir / "global_results.csv").is_file()
    assert (prediction_dir / "per_object_results.csv").is_file()

    calls = []
    score = folder_evaluation._score_sequence
    monkeypatch.setattr(folder_evaluation, "_score_sequence", lambda job: calls.append(job.name) or score(job))
    again = evaluate_folders(ground_truth_dir, prediction_dir, imageset=imageset, num_processes=1)
    assert calls == [] and again == first

    # Change one predicted pixel: the stored results are stale and everything is scored again.
    frame = prediction_dir / "blobs-a" / "00005.png"
    mask, palette = read_index_mask(frame)
    mask[:20, :20] = 1 - (mask[:20, :20] == 1)
    write_index_mask(frame, mask, palette)
    changed = evaluate_folders(ground_truth_dir, prediction_dir, imageset=imageset, num_processes=1)
    assert len(calls) == 5 and changed != first
    (row,) = read_csv(prediction_dir / "global_results.csv")
    assert float(row["J-Mean"]) == pytest.approx(changed.global_scores()["J-Mean"], abs=1e-9)

    # Other options are other inputs too.
    evaluate_folders(ground_truth_dir, prediction_dir, imageset=imageset, num_processes=1,
                                     mode=MODE_APPEARANCE)
    assert len(calls) == 10

    # --recompute scores again although nothing changed.
    evaluate_script.main([str(ground_truth_dir), str(prediction_dir), "--imageset", str(imageset),
                          "--mode", MODE_APPEARANCE, "--num_processes", "1", "--recompute"])
    assert len(calls) == 15


def test_sparse_ground_truth_scores_only_annotated_frames(davis_copy):
    ground_truth_dir, prediction_dir, _ = davis_copy
    annotated = sorted((ground_truth_dir / "blobs-b").glob("*.png"))
    for path in annotated[1::3]:  # keep every third frame's ground truth, as in Long-time Video or LVOS
        path.unlink()
    kept = sorted((ground_truth_dir / "blobs-b").glob("*.png"))
    (ground_truth_dir / "list.txt").write_text("blobs-b\n")
    with pytest.raises(ValueError, match=r"pred/blobs-b/00001.png has no ground truth .* pass --sparse"):
        evaluate_folders(ground_truth_dir, prediction_dir, imageset=ground_truth_dir / "list.txt")
    results = evaluate_folders(ground_truth_dir, prediction_dir, imageset=ground_truth_dir / "list.txt",
                                               sparse=True, num_processes=1)
    ground_truth = np.stack([read_index_mask(path)[0] for path in kept])
    prediction = np.stack([read_index_mask(prediction_dir / "blobs-b" / path.name)[0] for path in kept])
    assert results.objects == tuple(evaluate_sequence(ground_truth, prediction, sequence="blobs-b"))


# --------------------------------------------------------------------------------------------------------- bad input
def evaluate(ground_truth_dir, prediction_dir, **kwargs):
    return evaluate_folders(ground_truth_dir, prediction_dir, num_processes=1, **kwargs)


def test_missing_prediction_frame(davis_copy):
    ground_truth_dir, prediction_dir, imageset = davis_copy
    (prediction_dir / "blobs-c" / "00007.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"prediction missing: .*pred/blobs-c/00007.png \(ground truth"):
        evaluate(ground_truth_dir, prediction_dir, imageset=imageset)


def test_missing_prediction_video(davis_copy):
    ground_truth_dir, prediction_dir, imageset = davis_copy
    shutil.rmtree(prediction_dir / "blobs-d")
    with pytest.raises(FileNotFoundError, match=r"prediction folder of video 'blobs-d' not found: .*pred/blobs-d"):
        evaluate(ground_truth_dir, prediction_dir, imageset=imageset)


def test_prediction_of_another_size(davis_copy):
    ground_truth_dir, prediction_dir, imageset = davis_copy
    write_index_mask(prediction_dir / "blobs-a" / "00003.png", np.zeros((60, 100), np.uint8))
    with pytest.raises(ValueError, match=r"prediction .*pred/blobs-a/00003.png is 100×60 but its ground truth .*"
                                         r"gt/blobs-a/00003.png is 200×120"):
        evaluate(ground_truth_dir, prediction_dir, imageset=imageset)


def test_prediction_id_the_ground_truth_never_has(davis_copy):
    ground_truth_dir, prediction_dir, imageset = davis_copy
    mask, palette = read_index_mask(prediction_dir / "blobs-a" / "00004.png")
    mask[0, 0] = 7
    write_index_mask(prediction_dir / "blobs-a" / "00004.png", mask, palette)
    with pytest.raises(ValueError, match=r"pred/blobs-a/00004.png: prediction holds object id 7"):
        evaluate(ground_truth_dir, prediction_dir, imageset=imageset)
    with pytest.raises(ValueError, match=r"pred/blobs-a/00004.png: prediction holds object id 7, which no"):
        evaluate(ground_truth_dir, prediction_dir, imageset=imageset, mode=MODE_APPEARANCE)


@pytest.mark.parametrize("which", ["ground truth", "prediction"])
def test_empty_video_folder(davis_copy, which):
    ground_truth_dir, prediction_dir, imageset = davis_copy
    folder = (ground_truth_dir if which == "ground truth" else prediction_dir) / "blobs-b"
    for path in folder.glob("*.png"):
        path.unlink()
    role = "ground-truth" if which == "ground truth" else "prediction"
    with pytest.raises(ValueError, match=rf"{role} folder .*/blobs-b holds no .png masks"):
        evaluate(ground_truth_dir, prediction_dir, imageset=imageset)


def test_empty_ground_truth_root(tmp_path):
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    with pytest.raises(ValueError, match=r"ground-truth folder .*/gt holds no video folders"):
        evaluate(tmp_path / "gt", tmp_path / "pred")


def test_missing_folders_and_image_set(davis_copy):
    ground_truth_dir, prediction_dir, imageset = davis_copy
    with pytest.raises(FileNotFoundError, match=r"prediction folder not found: .*/nowhere"):
        evaluate(ground_truth_dir, prediction_dir.parent / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"image set file not found: .*/missing.txt"):
        evaluate(ground_truth_dir, prediction_dir, imageset=imageset.parent / "missing.txt")
    imageset.write_text("blobs-a\nno-such-video\n")
    with pytest.raises(FileNotFoundError, match=r"ground-truth folder of video 'no-such-video' not found"):
        evaluate(ground_truth_dir, prediction_dir, imageset=imageset)
    imageset.write_text("\n")
    with pytest.raises(ValueError, match=r"image set file .*val.txt lists no video"):
        evaluate(ground_truth_dir, prediction_dir, imageset=imageset)


def test_too_few_ground_truth_frames(davis_copy):
    ground_truth_dir, prediction_dir, imageset = davis_copy
    for path in sorted((ground_truth_dir / "blobs-a").glob("*.png"))[2:]:
        path.unlink()
    with pytest.raises(ValueError, match=r"gt/blobs-a holds 2 masks; .* at least 3 are needed"):
        evaluate(ground_truth_dir, prediction_dir, imageset=imageset, sparse=True)


def test_first_ground_truth_frame_without_object(davis_copy):
    ground_truth_dir, prediction_dir, imageset = davis_copy
    write_index_mask(ground_truth_dir / "blobs-a" / "00000.png", np.zeros((120, 200), np.uint8))
    with pytest.raises(ValueError, match=r"gt/blobs-a/00000.png: the first ground-truth frame holds no object"):
        evaluate(ground_truth_dir, prediction_dir, imageset=imageset)


def test_rgb_prediction(davis_copy):
    from PIL import Image

    ground_truth_dir, prediction_dir, imageset = davis_copy
    Image.new("RGB", (200, 120)).save(prediction_dir / "blobs-a" / "00002.png")
    with pytest.raises(ValueError, match=r"mask .*pred/blobs-a/00002.png has image mode 'RGB'"):
        evaluate(ground_truth_dir, prediction_dir, imageset=imageset)


def test_bad_process_count(davis_copy):
    ground_truth_dir, prediction_dir, imageset = davis_copy
    with pytest.raises(ValueError, match="num_processes must be at least 1, got 0"):
        evaluate_folders(ground_truth_dir, prediction_dir, imageset=imageset, num_processes=0)


def test_cli_reports_bad_input_in_one_line(davis_copy):
    ground_truth_dir, prediction_dir, imageset = davis_copy
    (prediction_dir / "blobs-c" / "00007.png").unlink()
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), str(ground_truth_dir), str(prediction_dir), "--imageset", str(imageset)],
        capture_output=True, text=True, check=False,
    )
    assert completed.returncode != 0
    assert completed.stderr.strip().startswith("error: prediction missing:")
    assert len(completed.stderr.strip().splitlines()) == 1
    assert not (prediction_dir / "global_results.csv").exists()
