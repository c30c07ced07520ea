"""Metrics: the DAVIS 2017 toolkit's numbers (golden CSVs), vos-benchmark's appearance mode, hand-computed cases."""
from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from dataset.image_io import read_index_mask
from inference.evaluation.metrics import (
    MODE_APPEARANCE,
    EvaluationResults,
    SequenceScorer,
    boundary_disk,
    boundary_map,
    boundary_tolerance_px,
    decay_bins,
    evaluate_sequence,
    evaluate_sequences,
    frame_scores,
    summarize_frames,
)

FIXTURES = Path(__file__).parent / "fixtures" / "metrics"
GROUND_TRUTH_DIR = FIXTURES / "davis" / "Annotations" / "480p"
PREDICTION_DIR = FIXTURES / "pred"
TOLERANCE = 1e-6
LONG_SEQUENCE = "long-300"  # 298 scored frames: the toolkit's uint8 bin indices wrap and its decay is NaN


def read_toolkit_csv(name: str) -> dict[str, dict[str, float]]:
    with open(FIXTURES / name, newline="") as handle:
        rows = list(csv.DictReader(handle))
    key = "object" if "object" in rows[0] else None
    return {row[key] if key else "global": {k: float(v) for k, v in row.items() if k != key} for row in rows}


def load_sequence(name: str) -> tuple[np.ndarray, np.ndarray]:
    frames = sorted(path.name for path in (GROUND_TRUTH_DIR / name).glob("*.png"))
    ground_truth = np.stack([read_index_mask(GROUND_TRUTH_DIR / name / frame)[0] for frame in frames])
    prediction = np.stack([read_index_mask(PREDICTION_DIR / name / frame)[0] for frame in frames])
    return ground_truth, prediction


@pytest.fixture(scope="module")
def fixture_sequences() -> list[tuple[str, np.ndarray, np.ndarray]]:
    names = (FIXTURES / "davis" / "ImageSets" / "2017" / "val.txt").read_text().split()
    return [(name, *load_sequence(name)) for name in names]


def assert_scores_close(actual: dict[str, float], expected: dict[str, float], columns, label: str) -> None:
    for column in columns:
        if math.isnan(expected[column]):
            assert math.isnan(actual[column]), f"{label} {column}: expected NaN, got {actual[column]}"
        else:
            assert actual[column] == pytest.approx(expected[column], abs=TOLERANCE), f"{label} {column}"


# ---------------------------------------------------------------------------------------------- DAVIS toolkit goldens
@pytest.mark.parametrize("davis_compat_decay", [False, True])
def test_davis_mode_matches_toolkit_per_object(fixture_sequences, davis_compat_decay):
    expected = read_toolkit_csv("toolkit_per_object.csv")
    results = evaluate_sequences(fixture_sequences, davis_compat_decay=davis_compat_decay)
    assert [scores.name for scores in results.objects] == list(expected)
    for scores in results.objects:
        columns = ["J-Mean", "J-Recall", "F-Mean", "F-Recall"]
        if davis_compat_decay or scores.sequence != LONG_SEQUENCE:
            columns += ["J-Decay", "F-Decay"]
        assert_scores_close(scores.row(), expected[scores.name], columns, scores.name)


def test_davis_mode_matches_toolkit_global(fixture_sequences):
    expected = read_toolkit_csv("toolkit_global.csv")["global"]
    compat = evaluate_sequences(fixture_sequences, davis_compat_decay=True).global_scores()
    assert_scores_close(compat, expected, list(expected), "global (compat decay)")
    corrected = evaluate_sequences(fixture_sequences).global_scores()
    assert_scores_close(corrected, expected, [c for c in expected if "Decay" not in c], "global")
    assert not math.isnan(corrected["J-Decay"]) and not math.isnan(corrected["F-Decay"])


def test_long_sequence_decay_is_binned_over_the_right_frames(fixture_sequences):
    name, ground_truth, prediction = next(s for s in fixture_sequences if s[0] == LONG_SEQUENCE)
    per_frame = np.array([frame_scores(ground_truth[t], prediction[t], [1]) for t in range(1, len(ground_truth) - 1)])
    j, f = per_frame[:, 0, 0], per_frame[:, 1, 0]
    assert len(j) == 298
    # ids = round(linspace(1, 298, 5) + 1e-10) - 1 = [0, 74, 149, 223, 297]; first bin 0..74, last bin 223..297.
    expected_j_decay = j[0:75].mean() - j[223:298].mean()
    expected_f_decay = f[0:75].mean() - f[223:298].mean()
    (scores,) = evaluate_sequence(ground_truth, prediction, sequence=name)
    assert scores.j_decay == pytest.approx(expected_j_decay, abs=1e-12)
    assert scores.f_decay == pytest.approx(expected_f_decay, abs=1e-12)
    assert scores.j_mean == pytest.approx(j.mean(), abs=1e-12)
    (compat,) = evaluate_sequence(ground_truth, prediction, sequence=name, davis_compat_decay=True)
    assert math.isnan(compat.j_decay) and math.isnan(compat.f_decay)


def test_decay_bins_by_hand():
    assert decay_bins(298) == [slice(0, 75), slice(74, 150), slice(149, 224), slice(223, 298)]
    # The toolkit's uint8 cast turns the last edge 297 into 41: the last bin is empty.
    assert decay_bins(298, davis_compat_decay=True)[3] == slice(223, 42)
    # linspace(1, 23, 5) = 1, 6.5, 12, 17.5, 23; halves round up thanks to the 1e-10: edges 0, 6, 11, 17, 22.
    assert decay_bins(23) == [slice(0, 7), slice(6, 12), slice(11, 18), slice(17, 23)]
    assert decay_bins(1) == [slice(0, 1)] * 4
    mean, recall, decay = summarize_frames(np.array([1.0, 0.5, 0.6, 0.0]))
    # edges round(1, 1.75, 2.5, 3.25, 4) - 1 = 0, 1, 2, 2, 3: first bin frames 0..1, last bin frames 2..3.
    assert (mean, recall, decay) == pytest.approx((0.525, 0.5, 0.75 - 0.3))


# ------------------------------------------------------------------------------------------------ hand-computed cases
def rectangle(shape, top, left, height, width, object_id=1) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[top:top + height, left:left + width] = object_id
    return mask


def test_boundary_map_is_the_toolkit_ring():
    square = rectangle((8, 8), 2, 2, 4, 4)
    expected = np.zeros((8, 8), bool)
    expected[1:6, 1:6] = True  # rows/columns 1..5: the square shifted half a pixel towards the origin
    expected[2:5, 2:5] = False
    np.testing.assert_array_equal(boundary_map(square), expected)
    # The image edge repeats itself: an object filling the frame, or the left half, has no boundary on the border.
    assert not boundary_map(np.ones((5, 7), bool)).any()
    half = np.zeros((5, 7), bool)
    half[:, :3] = True
    np.testing.assert_array_equal(np.argwhere(boundary_map(half))[:, 1], [2] * 5)


def test_boundary_tolerance_and_disk():
    assert boundary_tolerance_px(480, 854) == 8  # ceil(0.008 * 979.6)
    assert boundary_tolerance_px(100, 100) == 2  # ceil(1.13)
    disk = boundary_disk(2)
    assert disk.sum() == 13 and disk[0, 2] == 1 and disk[0, 1] == 0 and disk[1, 1] == 1


@pytest.mark.parametrize(
    "ground_truth, prediction, expected_j, expected_f",
    [
        pytest.param(rectangle((40, 60), 5, 5, 10, 12), rectangle((40, 60), 5, 5, 10, 12), 1.0, 1.0, id="identical"),
        pytest.param(rectangle((40, 60), 2, 2, 8, 8), rectangle((40, 60), 25, 40, 8, 8), 0.0, 0.0, id="disjoint"),
        # 10×12 box moved one pixel right: intersection 10×11, union 10×13; every boundary pixel stays within 1 px.
        pytest.param(rectangle((40, 60), 5, 5, 10, 12), rectangle((40, 60), 5, 6, 10, 12), 110 / 130, 1.0,
                     id="one-pixel-shift"),
        pytest.param(np.zeros((40, 60), np.uint8), np.zeros((40, 60), np.uint8), 1.0, 1.0, id="empty-empty"),
        pytest.param(np.zeros((40, 60), np.uint8), rectangle((40, 60), 5, 5, 4, 4), 0.0, 0.0, id="empty-predicted"),
        pytest.param(rectangle((40, 60), 5, 5, 4, 4), np.zeros((40, 60), np.uint8), 0.0, 0.0, id="predicted-empty"),
        # Full frame against full frame: neither has a boundary (F = 1); against the left half: one side empty (F = 0).
        pytest.param(np.ones((40, 60), np.uint8), np.ones((40, 60), np.uint8), 1.0, 1.0, id="full-full"),
        pytest.param(np.ones((40, 60), np.uint8), rectangle((40, 60), 0, 0, 40, 30), 0.5, 0.0, id="full-half"),
    ],
)
def test_hand_computed_frame_scores(ground_truth, prediction, expected_j, expected_f):
    j, f = frame_scores(ground_truth, prediction, [1])
    assert j[0] == pytest.approx(expected_j) and f[0] == pytest.approx(expected_f)


def test_fractional_boundary_f_by_hand():
    # 100×100 image: dilation radius 2. Ground truth: left half (boundary = column 49, 100 pixels). Prediction: the same
    # plus a 4×4 square far away, whose boundary is a 5×5 ring of 16 pixels that no ground-truth boundary is near.
    ground_truth = rectangle((100, 100), 0, 0, 100, 50)
    prediction = ground_truth + rectangle((100, 100), 40, 80, 4, 4)
    precision, recall = 100 / 116, 1.0
    j, f = frame_scores(ground_truth, prediction, [1])
    assert j[0] == pytest.approx(5000 / 5016)
    assert f[0] == pytest.approx(2 * precision * recall / (precision + recall))


def test_scores_are_per_object_and_vectorised():
    ground_truth = rectangle((40, 60), 5, 5, 10, 12, 1) + rectangle((40, 60), 25, 30, 8, 8, 2)
    prediction = rectangle((40, 60), 5, 6, 10, 12, 1)
    j, f = frame_scores(ground_truth, prediction, [1, 2, 3])
    np.testing.assert_allclose(j, [110 / 130, 0.0, 1.0])
    np.testing.assert_allclose(f, [1.0, 0.0, 1.0])


def test_void_is_background_in_davis_mode():
    square = rectangle((40, 60), 10, 10, 10, 10)
    ring = rectangle((40, 60), 8, 8, 14, 14, 255)
    ring[square == 1] = 1  # ground truth: the square inside a 2-pixel void ring
    ground_truth = np.stack([ring] * 3)
    prediction = np.stack([rectangle((40, 60), 8, 8, 14, 14)] * 3)  # prediction covers square and ring
    (scores,) = evaluate_sequence(ground_truth, prediction)
    assert scores.object_id == 1 and scores.num_frames == 1
    assert scores.j_mean == pytest.approx(100 / 196)


def test_first_and_last_frames_are_not_scored():
    good = rectangle((30, 40), 5, 5, 10, 10)
    ground_truth = np.stack([good] * 4)
    prediction = np.stack([np.zeros_like(good), good, good, np.zeros_like(good)])
    (scores,) = evaluate_sequence(ground_truth, prediction)
    assert (scores.num_frames, scores.j_mean, scores.f_mean, scores.j_recall, scores.j_decay) == (2, 1, 1, 1, 0)


def test_davis_mode_scores_objects_of_the_first_frame_only():
    first = rectangle((30, 40), 2, 2, 6, 6, 2)  # ids 1..2 scored even though 1 is absent
    late = rectangle((30, 40), 20, 20, 6, 6, 3)
    ground_truth = np.stack([first, first + late, first + late])
    (one, two) = evaluate_sequence(ground_truth, ground_truth.copy() % 3)
    assert (one.object_id, one.j_mean, two.object_id, two.j_mean) == (1, 1.0, 2, 1.0)


def test_appearance_mode_scores_objects_from_their_first_appearance():
    empty = np.zeros((30, 40), np.uint8)
    late = rectangle((30, 40), 5, 5, 8, 8, 7)
    ground_truth = np.stack([empty, empty, late, late, late, empty])
    prediction = np.stack([empty, late, late, empty, late, empty])  # predicted one frame early, missed once
    (scores,) = evaluate_sequence(ground_truth, prediction, mode=MODE_APPEARANCE)
    assert scores.object_id == 7 and scores.num_frames == 4  # scored frames 1..4
    assert scores.j_mean == pytest.approx(0.5) and scores.f_mean == pytest.approx(0.5)


def test_appearance_mode_reports_only_objects_in_scored_ground_truth():
    blob = rectangle((30, 40), 5, 5, 8, 8, 4)
    empty = np.zeros_like(blob)
    ground_truth = np.stack([blob, empty, empty, empty])  # object 4 only on the (unscored) first frame
    assert evaluate_sequence(ground_truth, np.stack([blob] * 4), mode=MODE_APPEARANCE) == []
    with pytest.raises(ValueError, match="no object was scored"):
        EvaluationResults(()).global_scores()


# ------------------------------------------------------------------------------------------------------ input errors
def test_prediction_id_outside_the_first_frame_objects_is_rejected():
    ground_truth = np.stack([rectangle((20, 20), 2, 2, 5, 5)] * 3)
    scorer = SequenceScorer(ground_truth[0], sequence="video")
    with pytest.raises(ValueError, match=r"pred/video/00001.png: prediction holds object id 2 .* objects 1..1"):
        scorer.add_frame(ground_truth[1], ground_truth[1] * 2, source="pred/video/00001.png")


def test_prediction_id_that_ground_truth_never_has_is_rejected():
    ground_truth = np.stack([rectangle((20, 20), 2, 2, 5, 5)] * 3)
    prediction = ground_truth.copy()
    prediction[1, 15:, 15:] = 9
    with pytest.raises(ValueError, match="prediction holds object id 9, which no ground-truth frame of sequence 'v'"):
        evaluate_sequence(ground_truth, prediction, sequence="v", mode=MODE_APPEARANCE)


def test_davis_mode_needs_an_object_in_the_first_frame():
    with pytest.raises(ValueError, match="gt/v/00000.png: the first ground-truth frame holds no object"):
        SequenceScorer(np.zeros((8, 8), np.uint8), first_source="gt/v/00000.png")


@pytest.mark.parametrize(
    "ground_truth, prediction, kwargs, message",
    [
        (np.ones((2, 8, 8), np.uint8), np.ones((2, 8, 8), np.uint8), {}, "has no scored frame"),
        (np.ones((3, 8, 8), np.uint8), np.ones((3, 8, 9), np.uint8), {}, "must be T×H×W arrays of one shape"),
        (np.ones((3, 8, 8), np.uint8), np.ones((3, 8, 8), np.uint8), {"mode": "youtube"}, "unknown metrics mode"),
    ],
)
def test_bad_arrays_are_rejected(ground_truth, prediction, kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluate_sequence(ground_truth, prediction, **kwargs)


def test_frame_scores_rejects_bad_labels():
    with pytest.raises(ValueError, match="must be H×W images of one size"):
        frame_scores(np.zeros((8, 8), np.uint8), np.zeros((8, 9), np.uint8), [1])
    with pytest.raises(ValueError, match="object ids must lie in 1..255 .*, got 0"):
        frame_scores(np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), [1, 0])
    with pytest.raises(ValueError, match=r"prediction holds ids 0..300; expected ids in 0..255"):
        frame_scores(np.zeros((8, 8), np.uint8), np.arange(64).reshape(8, 8) * 300 // 63, [1])
    with pytest.raises(ValueError, match=r"ground truth must be an integer H×W label image, got float32"):
        frame_scores(np.zeros((8, 8), np.float32), np.zeros((8, 8), np.uint8), [1])


def test_size_mismatch_in_a_sequence_names_the_source():
    scorer = SequenceScorer(rectangle((20, 30), 2, 2, 5, 5))
    with pytest.raises(ValueError, match=r"pred/v/1.png: prediction is 31×20 but the ground truth is 30×20"):
        scorer.add_frame(np.zeros((20, 30), np.uint8), np.zeros((20, 31), np.uint8), source="pred/v/1.png")


def test_wide_integer_labels_score_like_uint8():
    ground_truth = np.stack([rectangle((20, 30), 2, 2, 5, 5, 3)] * 3)
    prediction = np.stack([rectangle((20, 30), 3, 2, 5, 5, 3)] * 3)
    expected = evaluate_sequence(ground_truth, prediction, mode=MODE_APPEARANCE)
    assert evaluate_sequence(ground_truth.astype(np.int64), prediction.astype(np.int32), mode=MODE_APPEARANCE) == expected
    assert expected[0].j_mean == pytest.approx(20 / 30)


# ------------------------------------------------------------------------------------- appearance mode = vos-benchmark
# vos-benchmark 0.1.0's outputs on these videos are recorded in fixtures/metrics/vos_benchmark/ (see record.py there:
# the package drags in opencv-python, which would replace this project's headless OpenCV, so it is not installed).
VOS_BENCHMARK_SCORES = FIXTURES / "vos_benchmark" / "appearance_scores.json"
NUM_SYNTHETIC_VIDEOS = 22
SYNTHETIC_SIZES = [(480, 854), (97, 131), (64, 112), (96, 160), (33, 47)]
SYNTHETIC_IDS = (1, 2, 3, 5, 255)


def synthetic_video(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Moving elliptic blobs, some entering late or leaving early; the prediction is a perturbed copy.

    Returns:
        (ground truth, prediction): uint8 T×H×W; the size cycles through SYNTHETIC_SIZES with the seed.
    """
    height, width = SYNTHETIC_SIZES[seed % len(SYNTHETIC_SIZES)]
    num_frames = 4 if height >= 480 else 8  # few frames at 854×480 to stay fast
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[0:height, 0:width]
    ground_truth = np.zeros((num_frames, height, width), np.uint8)
    prediction = np.zeros_like(ground_truth)
    num_objects = int(rng.integers(1, 4))
    for object_id in rng.choice(SYNTHETIC_IDS, num_objects, replace=False):
        first = int(rng.integers(0, num_frames - 1))
        last = int(rng.integers(first + 1, num_frames + 1))
        start, velocity = rng.uniform(-0.1, 1.1, 2) * (height, width), rng.normal(0, 0.04, 2) * (height, width)
        radii = rng.uniform(0.05, 0.35, 2) * (height, width)
        predicted_first = max(first + int(rng.integers(-1, 2)), 0)
        for frame in range(num_frames):
            centre = start + velocity * frame
            if first <= frame < last:
                inside = ((rows - centre[0]) / radii[0]) ** 2 + ((columns - centre[1]) / radii[1]) ** 2 <= 1
                ground_truth[frame][inside] = object_id
            if predicted_first <= frame < last + 1 and rng.random() > 0.1:
                centre = centre + rng.normal(0, 2.0, 2)
                scale = rng.uniform(0.8, 1.2, 2)
                inside = (((rows - centre[0]) / (radii[0] * scale[0])) ** 2
                          + ((columns - centre[1]) / (radii[1] * scale[1])) ** 2 <= 1)
                prediction[frame][inside] = object_id
    # The prediction may only hold ids the ground truth has somewhere.
    prediction[~np.isin(prediction, np.unique(ground_truth))] = 0
    return ground_truth, prediction


def video_digest(ground_truth: np.ndarray, prediction: np.ndarray) -> str:
    return hashlib.sha256(ground_truth.tobytes() + prediction.tobytes()).hexdigest()


@pytest.fixture(scope="module")
def vos_benchmark_scores() -> dict:
    return json.loads(VOS_BENCHMARK_SCORES.read_text())


@pytest.mark.parametrize("seed", range(NUM_SYNTHETIC_VIDEOS))
def test_appearance_mode_matches_vos_benchmark(seed, vos_benchmark_scores):
    ground_truth, prediction = synthetic_video(seed)
    expected = vos_benchmark_scores[str(seed)]
    assert video_digest(ground_truth, prediction) == expected["sha256"], (
        "the synthetic video is not the one vos-benchmark scored; re-record with "
        "tests/fixtures/metrics/vos_benchmark/record.py"
    )
    scores = evaluate_sequence(ground_truth, prediction, sequence=f"seed{seed}", mode=MODE_APPEARANCE)
    assert [str(s.object_id) for s in scores] == list(expected["j_percent"])
    for object_scores in scores:
        object_id = str(object_scores.object_id)
        assert object_scores.j_mean == pytest.approx(expected["j_percent"][object_id] / 100, abs=TOLERANCE)
        assert object_scores.f_mean == pytest.approx(expected["f_percent"][object_id] / 100, abs=TOLERANCE)


def test_synthetic_videos_exercise_late_objects_sizes_and_misses():
    """The comparison above is only meaningful if objects appear late, sizes vary and predictions miss."""
    late_objects, sizes, imperfect = 0, set(), 0
    for seed in range(NUM_SYNTHETIC_VIDEOS):
        ground_truth, prediction = synthetic_video(seed)
        sizes.add(ground_truth.shape[1:])
        scores = evaluate_sequence(ground_truth, prediction, mode=MODE_APPEARANCE)
        late_objects += sum(s.num_frames < len(ground_truth) - 2 for s in scores)
        imperfect += sum(0 < s.j_mean < 1 for s in scores)
    assert late_objects >= 5 and imperfect >= 20
    assert {(480, 854), (97, 131)} <= sizes
