"""Synthetic videos: exact masks, determinism, motion events, the benchmark layouts, resuming and bounded memory."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from configs.common import DAVIS_PALETTE
from dataset.image_io import read_image, read_index_mask
from dataset.synthetic import (
    PRESETS, Difficulty, SyntheticVideo, copy_first_mask_iou, get_preset, make_videos, without_late_entries,
)
from dataset.synthetic_layouts import (
    MIN_VISIBLE_FRACTION, STATE_DIR, YOUTUBE_FRAME_STEP, make_static_classes, split_names, write_davis,
    write_generic, write_long_video, write_static_flat, write_static_fss, write_youtube_train, write_youtube_valid,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
HEIGHT, WIDTH = 64, 112
HARD = get_preset("hard")
# Every object after the first enters late; nothing exits, so entries are easy to check.
LATE_ENTRIES = dataclasses.replace(HARD, min_objects=3, max_objects=3, late_entry_probability=1.0,
                                   exit_probability=0.0)
RSS_GROWTH_LIMIT_BYTES = 4 * 2**20


def small_video(seed: int = 0, num_frames: int = 20, difficulty: Difficulty = HARD) -> SyntheticVideo:
    return SyntheticVideo(seed=seed, height=HEIGHT, width=WIDTH, num_frames=num_frames, difficulty=difficulty)


def files_under(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def min_visible_px(video: SyntheticVideo) -> int:
    return max(1, int(np.ceil(MIN_VISIBLE_FRACTION * video.height * video.width)))


# ------------------------------------------------------------------------------------------------ generator
def test_frame_types_shapes_and_ids():
    video = small_video(num_frames=5)
    rgb, mask = video.frame(3)
    assert rgb.dtype == np.uint8 and rgb.shape == (HEIGHT, WIDTH, 3)
    assert mask.dtype == np.uint8 and mask.shape == (HEIGHT, WIDTH)
    assert set(np.unique(mask)) <= {0, *video.object_ids}
    assert 1 <= len(video.object_ids) <= 4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mask_is_exactly_the_pixels_where_each_object_is_drawn_on_top(seed):
    video = small_video(seed, num_frames=30)
    assert 0 in video.depth_order, "the hard preset draws distractors, which must stay out of the mask"
    for index in (0, 9, 17, 29):
        rgb, mask = video.frame(index)
        coverage = video.layer_coverage(index)
        painted = np.zeros_like(mask)
        for label, covered in coverage:  # back to front
            painted[covered] = label
        np.testing.assert_array_equal(mask, painted)

        nothing_drawn = ~np.any([covered for _, covered in coverage], axis=0)
        background_rgb, background_mask = video.render(index, object_ids=[], distractors=False)
        assert not background_mask.any()
        np.testing.assert_array_equal(rgb[nothing_drawn], background_rgb[nothing_drawn])
        for object_id in video.object_ids:
            alone_rgb, alone_mask = video.render(index, object_ids=[object_id], distractors=False)
            np.testing.assert_array_equal(alone_mask == object_id, dict(coverage)[object_id])
            on_top = mask == object_id
            np.testing.assert_array_equal(rgb[on_top], alone_rgb[on_top])


def test_objects_occlude_each_other_and_distractors_occlude_objects():
    hidden_by_object = hidden_by_distractor = False
    for seed in range(4):
        video = small_video(seed, num_frames=40)
        for index in range(0, 40, 3):
            _, mask = video.frame(index)
            coverage = video.layer_coverage(index)
            for depth, (label, covered) in enumerate(coverage):
                if label == 0:
                    continue
                hidden = covered & (mask != label)
                for front_label, front_covered in coverage[depth + 1:]:
                    if np.any(hidden & front_covered):
                        hidden_by_object |= front_label > 0
                        hidden_by_distractor |= front_label == 0
    assert hidden_by_object and hidden_by_distractor


def test_same_seed_gives_identical_frames_in_any_order_and_other_seeds_differ():
    first, second = small_video(seed=7), small_video(seed=7)
    late_first = second.frame(15)  # rendered before any other frame of this instance
    for index, rgb, mask in first.frames():
        if index == 15:
            np.testing.assert_array_equal(rgb, late_first[0])
            np.testing.assert_array_equal(mask, late_first[1])
    other_rgb, _ = small_video(seed=8).frame(15)
    assert not np.array_equal(other_rgb, late_first[0])


def drawn_objects(video: SyntheticVideo, index: int) -> set[int]:
    return {label for label, covered in video.layer_coverage(index) if label > 0 and covered.any()}


def test_late_objects_are_absent_before_their_entry_frame_and_drawn_from_it():
    video = small_video(seed=3, num_frames=30, difficulty=LATE_ENTRIES)
    entries = video.entry_frames
    assert entries[1] == 0 and all(entries[label] > 0 for label in (2, 3))
    for label in (2, 3):
        assert label not in drawn_objects(video, entries[label] - 1)
        assert not np.any(video.frame(entries[label] - 1)[1] == label)
        assert label in drawn_objects(video, entries[label])


def test_exiting_objects_leave_the_frame_and_come_back():
    difficulty = dataclasses.replace(PRESETS["held_out"], exit_probability=1.0, late_entry_probability=0.0)
    video = small_video(seed=5, num_frames=60, difficulty=difficulty)
    for label in video.object_ids:
        drawn = [label in drawn_objects(video, index) for index in range(video.num_frames)]
        gone = drawn.index(False)
        assert drawn[0] and not drawn[gone] and any(drawn[gone:])


def test_objects_rotate_change_scale_and_appearance():
    video = small_video(seed=2, num_frames=40, difficulty=dataclasses.replace(HARD, exit_probability=0.0))
    areas = [int(video.render(index, object_ids=[1], distractors=False)[1].astype(bool).sum())
             for index in range(0, 40, 4)]
    assert max(areas) > 1.2 * min(areas)
    steady = small_video(seed=2, num_frames=40,
                         difficulty=dataclasses.replace(HARD, exit_probability=0.0, appearance_change=0.0))
    changing_rgb, changing_mask = video.render(30, object_ids=[1], distractors=False)
    steady_rgb, steady_mask = steady.render(30, object_ids=[1], distractors=False)
    np.testing.assert_array_equal(changing_mask, steady_mask)
    inside = changing_mask == 1
    assert np.abs(changing_rgb[inside].astype(int) - steady_rgb[inside]).mean() > 5


def test_held_out_preset_defeats_copying_the_first_frame_mask():
    scores = [iou for seed in range(6)
              for iou in copy_first_mask_iou(small_video(seed, num_frames=30, difficulty=PRESETS["held_out"])).values()]
    assert np.mean(scores) < 0.4


@pytest.mark.parametrize(("make", "error", "message"), [
    (lambda: Difficulty(min_objects=3, max_objects=2), ValueError, "objects range 3..2"),
    (lambda: Difficulty(max_objects=5), ValueError, "max_objects <= 4"),
    (lambda: Difficulty(occlusion=0.0), ValueError, "occlusion 0.0"),
    (lambda: Difficulty(exit_probability=1.5), ValueError, "exit_probability 1.5"),
    (lambda: Difficulty(speed_fraction=-1.0), ValueError, "speed_fraction -1.0"),
    (lambda: Difficulty(appearance_change=1.0), ValueError, "appearance_change 1.0"),
    (lambda: Difficulty(object_radius_fraction=(0.3, 0.2)), ValueError, "object_radius_fraction"),
    (lambda: get_preset("medium"), KeyError, "unknown synthetic preset 'medium'"),
    (lambda: SyntheticVideo(seed=-1), ValueError, "seed -1"),
    (lambda: SyntheticVideo(seed=0, height=8, width=64), ValueError, "8x64 is too small"),
    (lambda: SyntheticVideo(seed=0, num_frames=0), ValueError, "num_frames 0"),
    (lambda: SyntheticVideo(seed=0, difficulty="hard"), TypeError, "get_preset"),
    (lambda: small_video(num_frames=4).frame(4), IndexError, "frame index 4 is outside this video's frames 0..3"),
    (lambda: make_videos(-1, seed=0, num_frames=2, height=32, width=32), ValueError, "num_videos -1"),
    (lambda: split_names(["a"], 1.5), ValueError, "val_fraction 1.5"),
])
def test_invalid_specs_are_rejected_with_a_clear_message(make, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(".", r"\.")):
        make()


# ------------------------------------------------------------------------------------------------- layouts
def test_davis_layout_has_every_frame_palette_masks_and_split_lists(tmp_path):
    videos = make_videos(3, seed=1, num_frames=6, height=HEIGHT, width=WIDTH,
                         difficulty=without_late_entries(HARD))
    train, val = split_names(videos, 0.34)
    write_davis(tmp_path, {name: videos[name] for name in train}, {name: videos[name] for name in val})
    assert (tmp_path / "ImageSets/2017/train.txt").read_text() == "synth0000\nsynth0001\n"
    assert (tmp_path / "ImageSets/2017/val.txt").read_text() == "synth0002\n"
    for name, video in videos.items():
        frames = sorted(path.name for path in (tmp_path / "JPEGImages/480p" / name).iterdir())
        masks = sorted(path.name for path in (tmp_path / "Annotations/480p" / name).iterdir())
        assert frames == [f"{index:05d}.jpg" for index in range(6)]
        assert masks == [f"{index:05d}.png" for index in range(6)]
        mask, palette = read_index_mask(tmp_path / "Annotations/480p" / name / "00004.png")
        assert palette == DAVIS_PALETTE
        np.testing.assert_array_equal(mask, video.frame(4)[1])
        assert set(np.unique(read_index_mask(tmp_path / "Annotations/480p" / name / "00000.png")[0])) == {
            0, *video.object_ids}
        rgb = read_image(tmp_path / "JPEGImages/480p" / name / "00004.jpg")
        assert np.abs(rgb.astype(int) - video.frame(4)[0]).mean() < 8  # JPEG


def test_davis_2016_variant_labels_its_single_object_255(tmp_path):
    single = dataclasses.replace(without_late_entries(HARD), min_objects=1, max_objects=1)
    videos = make_videos(2, seed=1, num_frames=3, height=HEIGHT, width=WIDTH, difficulty=single)
    write_davis(tmp_path, {"synth0000": videos["synth0000"]}, {"synth0001": videos["synth0001"]},
                single_object_255=True)
    assert (tmp_path / "ImageSets/2016/val.txt").read_text() == "synth0001\n"
    with Image.open(tmp_path / "Annotations/480p/synth0001/00002.png") as image:
        assert image.mode == "L"
        values = np.asarray(image)
    assert set(np.unique(values)) == {0, 255}
    np.testing.assert_array_equal(values == 255, videos["synth0001"].frame(2)[1] == 1)


def test_davis_rejects_late_entries_shared_names_and_several_objects_for_2016(tmp_path):
    late = {"late": small_video(difficulty=LATE_ENTRIES)}
    with pytest.raises(ValueError, match="'late' has objects entering late .*without_late_entries"):
        write_davis(tmp_path, late, {})
    steady = {"v": small_video(difficulty=without_late_entries(LATE_ENTRIES))}
    with pytest.raises(ValueError, match=r"videos \['v'\] are in both the DAVIS train and val splits"):
        write_davis(tmp_path, steady, steady)
    with pytest.raises(ValueError, match="'v' has 3 objects but DAVIS 2016 has one per video"):
        write_davis(tmp_path, steady, {}, single_object_255=True)
    with pytest.raises(ValueError, match="video name '../up' is not a usable folder name"):
        write_davis(tmp_path, {"../up": steady["v"]}, {})


def test_youtube_train_holds_every_fifth_frame(tmp_path):
    video = small_video(num_frames=12)
    write_youtube_train(tmp_path, {"v": video})
    assert sorted(p.name for p in (tmp_path / "train_480p/JPEGImages/v").iterdir()) == [
        "00000.jpg", "00005.jpg", "00010.jpg"]
    mask, palette = read_index_mask(tmp_path / "train_480p/Annotations/v/00005.png")
    assert palette == DAVIS_PALETTE
    np.testing.assert_array_equal(mask, video.frame(5)[1])


def test_youtube_valid_annotates_each_object_where_it_first_appears(tmp_path):
    num_frames = 30
    videos = {f"v{seed}": small_video(seed, num_frames, LATE_ENTRIES) for seed in range(3)}
    write_youtube_valid(tmp_path, videos)
    meta = json.loads((tmp_path / "valid/meta.json").read_text())
    assert set(meta) == {"videos"} and set(meta["videos"]) == set(videos)
    sparse = list(range(0, num_frames, YOUTUBE_FRAME_STEP))
    saw_late_annotation = False
    for name, video in videos.items():
        assert sorted(p.name for p in (tmp_path / "valid/JPEGImages" / name).iterdir()) == [
            f"{index:05d}.jpg" for index in sparse]
        assert len(list((tmp_path / "all_frames/valid_all_frames/JPEGImages" / name).iterdir())) == num_frames
        first_seen = {}
        for index in sparse:
            counts = np.bincount(video.frame(index)[1].ravel(), minlength=256)
            for label in video.object_ids:
                if label not in first_seen and counts[label] >= min_visible_px(video):
                    first_seen[label] = index
        objects = meta["videos"][name]["objects"]
        assert set(objects) == {str(label) for label in first_seen}
        for label, first in first_seen.items():
            assert objects[str(label)]["category"] in ("blob", "polygon", "ellipse")
            assert objects[str(label)]["frames"] == [f"{index:05d}" for index in sparse if index >= first]
        annotated = sorted(set(first_seen.values()))
        assert sorted(p.name for p in (tmp_path / "valid/Annotations" / name).iterdir()) == [
            f"{index:05d}.png" for index in annotated]
        for index in annotated:
            mask, palette = read_index_mask(tmp_path / "valid/Annotations" / name / f"{index:05d}.png")
            assert palette == DAVIS_PALETTE
            new = [label for label, first in first_seen.items() if first == index]
            expected = np.where(np.isin(video.frame(index)[1], new), video.frame(index)[1], 0)
            np.testing.assert_array_equal(mask, expected)
            saw_late_annotation |= index > 0
        truth, _ = read_index_mask(tmp_path / "valid/GroundTruth" / name / "00005.png")
        seen_by_5 = [label for label, first in first_seen.items() if first <= 5]
        np.testing.assert_array_equal(truth, np.where(np.isin(video.frame(5)[1], seen_by_5), video.frame(5)[1], 0))
    assert saw_late_annotation


def test_long_video_has_sparse_ground_truth(tmp_path):
    video = small_video(num_frames=25, difficulty=without_late_entries(HARD))
    write_long_video(tmp_path, {"v": video}, annotation_every=10)
    assert len(list((tmp_path / "long_video/JPEGImages/v").iterdir())) == 25
    assert sorted(p.name for p in (tmp_path / "long_video/Annotations/v").iterdir()) == [
        "00000.png", "00010.png", "00020.png"]
    np.testing.assert_array_equal(read_index_mask(tmp_path / "long_video/Annotations/v/00020.png")[0],
                                  video.frame(20)[1])
    with pytest.raises(ValueError, match="annotation_every 0 is invalid"):
        write_long_video(tmp_path, {"v": video}, annotation_every=0)


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
def test_five_thousand_frame_long_video_is_written_in_bounded_memory(tmp_path):
    num_frames = 5000
    video = SyntheticVideo(seed=11, height=48, width=64, num_frames=num_frames,
                           difficulty=without_late_entries(PRESETS["held_out"]))
    done, rss = 0, {}

    def progress(count: int) -> None:
        nonlocal done
        done += count
        if done in (1000, num_frames):
            rss[done] = resident_bytes()

    write_long_video(tmp_path, {"v": video}, annotation_every=500, progress=progress)
    assert len(list((tmp_path / "long_video/JPEGImages/v").iterdir())) == num_frames
    assert len(list((tmp_path / "long_video/Annotations/v").iterdir())) == num_frames // 500
    assert rss[num_frames] - rss[1000] < RSS_GROWTH_LIMIT_BYTES


def test_generic_layout_first_appearance_all_masks_and_ground_truth(tmp_path):
    video = small_video(seed=1, num_frames=24, difficulty=LATE_ENTRIES)
    write_generic(tmp_path / "sparse", {"v": video}, ground_truth=True)
    write_generic(tmp_path / "dense", {"v": video}, all_masks=True)
    first_seen = {}
    for index in range(video.num_frames):
        counts = np.bincount(video.frame(index)[1].ravel(), minlength=256)
        for label in video.object_ids:
            if label not in first_seen and counts[label] >= min_visible_px(video):
                first_seen[label] = index
    annotated = sorted(set(first_seen.values()))
    assert len(annotated) > 1
    assert sorted(p.name for p in (tmp_path / "sparse/Annotations/v").iterdir()) == [
        f"{index:05d}.png" for index in annotated]
    assert len(list((tmp_path / "sparse/GroundTruth/v").iterdir())) == video.num_frames
    assert len(list((tmp_path / "dense/Annotations/v").iterdir())) == video.num_frames
    assert not (tmp_path / "dense/GroundTruth").exists()
    last = annotated[-1]
    new = [label for label, first in first_seen.items() if first == last]
    expected = np.where(np.isin(video.frame(last)[1], new), video.frame(last)[1], 0)
    np.testing.assert_array_equal(read_index_mask(tmp_path / f"sparse/Annotations/v/{last:05d}.png")[0], expected)


def test_static_layouts_write_binary_masks(tmp_path):
    classes = make_static_classes(2, 3, seed=0, height=HEIGHT, width=WIDTH, difficulty=HARD)
    write_static_fss(tmp_path / "fss", classes)
    assert sorted(p.name for p in (tmp_path / "fss").iterdir() if not p.name.startswith(".")) == [
        "class000", "class001"]
    assert sorted(p.name for p in (tmp_path / "fss/class001").iterdir()) == [
        "1.jpg", "1.png", "2.jpg", "2.png", "3.jpg", "3.png"]
    images = make_videos(2, seed=0, num_frames=1, height=HEIGHT, width=WIDTH, difficulty=HARD)
    write_static_flat(tmp_path / "flat", images)
    assert sorted(p.name for p in (tmp_path / "flat").iterdir() if not p.name.startswith(".")) == [
        "synth0000.jpg", "synth0000.png", "synth0001.jpg", "synth0001.png"]
    for path, video in ((tmp_path / "fss/class001/2.png", classes["class001"][1]),
                        (tmp_path / "flat/synth0001.png", images["synth0001"])):
        with Image.open(path) as image:
            assert image.mode == "L"
            values = np.asarray(image)
        assert set(np.unique(values)) == {0, 255}
        np.testing.assert_array_equal(values == 255, video.frame(0)[1] > 0)


# ----------------------------------------------------------------------------- determinism and resuming
def test_same_seed_gives_identical_bytes_and_another_seed_different_bytes(tmp_path):
    def write(folder: str, seed: int) -> dict[str, bytes]:
        videos = make_videos(2, seed=seed, num_frames=6, height=HEIGHT, width=WIDTH, difficulty=LATE_ENTRIES)
        write_youtube_valid(tmp_path / folder, videos)
        return files_under(tmp_path / folder)

    first, again, other = write("a", 4), write("b", 4), write("c", 5)
    assert first == again
    frames = [name for name in first if name.endswith(".jpg")]
    assert frames and all(first[name] != other[name] for name in frames)


def test_rerun_skips_complete_videos_redoes_interrupted_ones_and_refuses_other_settings(tmp_path):
    videos = make_videos(2, seed=0, num_frames=4, height=HEIGHT, width=WIDTH, difficulty=LATE_ENTRIES)
    report = write_generic(tmp_path, videos)
    assert report.written == ["synth0000", "synth0001"] and report.skipped == []
    expected = files_under(tmp_path)

    # A run killed mid-video: its record never got written and half its frames are missing.
    (tmp_path / STATE_DIR / "generic/synth0001.json").unlink()
    for path in sorted((tmp_path / "JPEGImages/synth0001").iterdir())[2:]:
        path.unlink()
    report = write_generic(tmp_path, videos)
    assert report.written == ["synth0001"] and report.skipped == ["synth0000"]
    assert files_under(tmp_path) == expected
    assert not (tmp_path / STATE_DIR / "staging").exists()

    changed = make_videos(2, seed=1, num_frames=4, height=HEIGHT, width=WIDTH, difficulty=LATE_ENTRIES)
    with pytest.raises(ValueError, match="already holds generic/synth0000 generated with other settings"):
        write_generic(tmp_path, changed)


def test_failed_video_leaves_nothing_in_place_and_is_not_marked_complete(tmp_path, monkeypatch):
    video = small_video(num_frames=6, difficulty=without_late_entries(HARD))
    original_render = SyntheticVideo.render

    def failing_render(self, index, *args, **kwargs):
        if index == 4:
            raise RuntimeError("killed")
        return original_render(self, index, *args, **kwargs)

    monkeypatch.setattr(SyntheticVideo, "render", failing_render)
    with pytest.raises(RuntimeError, match="killed"):
        write_long_video(tmp_path, {"v": video}, annotation_every=2)
    assert not (tmp_path / "long_video").exists()
    assert not (tmp_path / STATE_DIR / "long/v.json").exists()


# ---------------------------------------------------------------------------------------------------- CLI
def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "scripts/data/make_synthetic.py"), *args],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_cli_writes_youtube_train_and_valid_with_disjoint_videos_and_resumes(tmp_path):
    args = ("--layout", "youtube", "--out", str(tmp_path), "--num_videos", "2", "--num_frames", "6",
            "--height", "32", "--width", "48", "--seed", "3", "--report_baseline")
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert "4 written, 0 already complete" in first.stdout and "copy-first-frame-mask baseline" in first.stdout
    assert sorted(p.name for p in (tmp_path / "train_480p/JPEGImages").iterdir()) == ["synth0000", "synth0001"]
    assert sorted(json.loads((tmp_path / "valid/meta.json").read_text())["videos"]) == ["synth0002", "synth0003"]
    again = run_cli(*args)
    assert again.returncode == 0 and "0 written, 4 already complete" in again.stdout


def test_cli_rejects_bad_counts():
    result = run_cli("--layout", "davis", "--out", "unused", "--num_videos", "-2")
    assert result.returncode != 0 and "--num_videos -2 is invalid; expected >= 0" in result.stderr
