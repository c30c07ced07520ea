"""The re-entry metric (inference/evaluation/reentry.py) on a hand-made ground truth with a known absence, and the long
benchmark's recorded absences (dataset/synthetic_long.py) against its masks."""
import doctest

import numpy as np
import pytest

import inference.evaluation.reentry as reentry_module
from dataset.synthetic_long import (ABSENCES_FILE, LongBenchmark, long_benchmark, lookalike_pixels, object_absences,
                                    read_absences, write_long_benchmark)
from inference.evaluation.reentry import Absence, score_reentry

SIZE = (8, 8)
OBJECT, OTHER = 1, 2


def _box(top: int, left: int, label: int = OBJECT) -> np.ndarray:
    mask = np.zeros(SIZE, dtype=np.uint8)
    mask[top:top + 3, left:left + 3] = label
    return mask


def test_reentry_on_a_hand_made_ground_truth_with_one_absence():
    """Object 1 is on frames 0-5, away on 6-11, back from 12; ground truth every 2 frames. The prediction finds it
    perfectly on 12 and 16, misses it on 14 and 18, and labels half of a look-alike as it on frame 8. Mutations checked: scoring
    the window from `gone` instead of `back`, and counting look-alike pixels over the whole frame, each fail."""
    ground_truth = {frame: (_box(1, 1) if not 6 <= frame < 12 else np.zeros(SIZE, np.uint8))
                    for frame in range(0, 20, 2)}
    for frame in ground_truth:  # a second object that never leaves
        ground_truth[frame] = np.where(_box(5, 5, OTHER) > 0, OTHER, ground_truth[frame]).astype(np.uint8)
    predictions = {frame: mask.copy() for frame, mask in ground_truth.items()}
    for lost in (14, 18):  # lost again two and six frames after coming back
        predictions[lost][predictions[lost] == OBJECT] = 0
    lookalike = np.zeros(SIZE, dtype=bool)
    lookalike[0:2, 0:4] = True  # 8 look-alike pixels
    predictions[8][0:2, 0:2] = OBJECT  # 4 of them labelled as the absent object
    lookalikes = {frame: lookalike for frame in ground_truth}
    absences = [Absence(OBJECT, 6, 12), Absence(OTHER, 19, None)]  # the second: too short to count

    scores = score_reentry("v", ground_truth, predictions, absences, window_frames=4, min_absence_frames=3,
                           lookalikes=lookalikes)
    assert (scores.returns, scores.reentry_frames) == (1, 2)  # frames 12 and 14
    assert scores.jf_sum / scores.reentry_frames == pytest.approx((1.0 + 0.0) / 2)
    assert scores.away_frames == 3  # frames 6, 8, 10
    assert scores.away_area_sum / scores.away_frames == pytest.approx(4 / 64 / 3)
    assert scores.lookalike_frames == 3 and scores.lookalike_fp_sum / scores.lookalike_frames == pytest.approx(0.5 / 3)

    wider = score_reentry("v", ground_truth, predictions, absences, window_frames=8, min_absence_frames=3)
    assert wider.reentry_frames == 4 and wider.jf_sum == pytest.approx(2.0)  # 12 (1), 14 (0), 16 (1), 18 (0)
    assert wider.lookalike_frames == 0  # no look-alike pixels given
    ignored = score_reentry("v", ground_truth, predictions, absences, window_frames=4, min_absence_frames=7)
    assert (ignored.returns, ignored.reentry_frames, ignored.away_frames) == (0, 0, 0)  # a 6-frame absence is short
    with pytest.raises(ValueError, match="re-entry window 0"):
        score_reentry("v", ground_truth, predictions, absences, window_frames=0)


def test_an_object_that_never_comes_back_is_scored_only_while_away():
    ground_truth = {frame: (_box(1, 1) if frame < 4 else np.zeros(SIZE, np.uint8)) for frame in range(10)}
    predictions = {frame: _box(1, 1) for frame in range(10)}  # the tracker keeps seeing it
    scores = score_reentry("v", ground_truth, predictions, [Absence(OBJECT, 4, None)], window_frames=3,
                           min_absence_frames=2)
    assert (scores.returns, scores.reentry_frames, scores.away_frames) == (0, 0, 6)
    assert scores.away_area_sum / scores.away_frames == pytest.approx(9 / 64)


def test_long_benchmark_records_every_absence_of_every_object(tmp_path):
    size = LongBenchmark(num_videos=1, num_frames=160, height=32, width=48, annotation_every=20)
    write_long_benchmark(tmp_path, size)
    assert (tmp_path / "long_video" / ABSENCES_FILE).is_file()
    recorded = read_absences(tmp_path)
    video = long_benchmark(size)["synth0000"]
    assert recorded == {"synth0000": object_absences(video)}
    # judged against the masks frame by frame: absent exactly on the recorded spans
    for object_id, spans in recorded["synth0000"].items():
        absent = [not (video.frame(index)[1] == object_id).any() for index in range(size.num_frames)]
        expected = np.zeros(size.num_frames, dtype=bool)
        for gone, back in spans:
            expected[gone:back if back is not None else size.num_frames] = True
        assert absent == expected.tolist(), object_id
    assert any(spans for spans in recorded["synth0000"].values())  # this video has absences to score


def test_lookalike_pixels_are_visible_distractor_pixels_only():
    video = long_benchmark(LongBenchmark(num_videos=1, num_frames=40, height=48, width=80))["synth0000"]
    for index in (0, 20):
        pixels = lookalike_pixels(video, index)
        _, mask = video.frame(index)
        assert pixels.any() and not (pixels & (mask > 0)).any()
        rgb, _ = video.frame(index)
        rgb_without, _ = video.render(index, distractors=False)
        assert (rgb[pixels] != rgb_without[pixels]).any(axis=-1).mean() > 0.5  # drawn by a distractor there


def test_read_absences_names_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absences.json not found; rerun write_long_benchmark"):
        read_absences(tmp_path)


def test_module_docstring_example_runs():
    results = doctest.testmod(reentry_module, extraglobs={"np": np})
    assert results.attempted > 0 and results.failed == 0
