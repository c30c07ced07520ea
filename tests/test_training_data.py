"""Training data: frame sampler and curriculum, geometric agreement of image and mask (TPS included), per-sample
determinism, the batch contract, bad-input errors, and the dataset scripts (offline download, YouTube resize).

All data is drawn here: constant-colour objects on a textured background, written as JPEG + PNG.
"""
from __future__ import annotations

import importlib.util
import re
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dataset.image_io import read_image, read_index_mask, write_image, write_index_mask
from dataset.sampling import SkipCurriculum, dataset_max_skip, sample_frame_indices, sample_rng
from dataset.static_dataset import StaticAugmentation, StaticImageDataset, StaticSource, reference_static_sources
from dataset.tps import random_tps_backward_map, tps_backward_map
from dataset.transforms import (AffineJitter, ColourJitter, denormalise, horizontal_flip_matrix,
                                warp_image_and_mask)
from dataset.vos_dataset import VideoAugmentation, VOSDataset, main_training_mix

REPO_ROOT = Path(__file__).resolve().parents[1]
BACKGROUND_RGB = ((40, 200, 70), (40, 170, 70))  # checkerboard texture
OBJECT_RGB = {1: (230, 40, 40), 2: (40, 40, 230), 3: (240, 240, 30)}
CHECKER_PX = 6
JPEG_QUALITY = 100
COLOUR_TOLERANCE = 45  # JPEG chroma subsampling and interpolation; colours differ by > 150 in some channel
BORDER_EROSION_PX = 3
SCRIPT_TIMEOUT_S = 120
NO_COLOUR = dict(sequence_colour=ColourJitter(), frame_colour=ColourJitter(), grayscale_probability=0.0)


# ---------------------------------------------------------------------------------------------------------------
# Test data


def draw_frame(height: int, width: int, objects: dict[int, tuple[int, int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """uint8 H×W×3 image and H×W mask; objects maps id -> (top, left, box height, box width) of an ellipse."""
    rows, columns = np.mgrid[:height, :width]
    checker = ((rows // CHECKER_PX + columns // CHECKER_PX) % 2).astype(bool)
    image = np.where(checker[..., None], BACKGROUND_RGB[0], BACKGROUND_RGB[1]).astype(np.uint8)
    mask = np.zeros((height, width), np.uint8)
    for object_id, (top, left, box_height, box_width) in objects.items():
        centre_y, centre_x = top + box_height / 2, left + box_width / 2
        inside = (((rows - centre_y) / (box_height / 2)) ** 2 + ((columns - centre_x) / (box_width / 2)) ** 2) <= 1
        image[inside] = OBJECT_RGB[object_id]
        mask[inside] = object_id
    return image, mask


def write_video(image_root: Path, mask_root: Path, video: str, num_frames: int, *, height: int = 72,
                width: int = 96, num_objects: int = 3, frame_step: int = 1) -> None:
    """A video whose objects drift a pixel per frame; frame files are numbered 0, step, 2·step, ..."""
    for t in range(num_frames):
        objects = {k: (8 + 18 * (k - 1) % 40, 6 + t + 28 * (k - 1), 22, 26) for k in range(1, num_objects + 1)}
        image, mask = draw_frame(height, width, objects)
        stem = f"{t * frame_step:05d}"
        write_image(image_root / video / f"{stem}.jpg", image, quality=JPEG_QUALITY)
        write_index_mask(mask_root / video / f"{stem}.png", mask)


def write_static(folder: Path, names: list[str], *, height: int = 60, width: int = 80) -> None:
    for i, name in enumerate(names):
        image, mask = draw_frame(height, width, {1: (10 + i % 5, 15, 36, 40)})
        write_image(folder / f"{name}.jpg", image, quality=JPEG_QUALITY)
        write_index_mask(folder / f"{name}.png", mask * 255, palette=None)  # 0/255 greyscale, as saliency sets


@pytest.fixture(scope="module")
def folder_root(tmp_path_factory) -> Path:
    """DAVIS-layout folder: JPEGImages/<v>/ + Annotations/<v>/, 4 videos of 10 frames, 3 objects each."""
    root = tmp_path_factory.mktemp("folder")
    for v in range(4):
        write_video(root / "JPEGImages", root / "Annotations", f"video{v}", 10)
    return root


@pytest.fixture(scope="module")
def static_root(tmp_path_factory) -> Path:
    """The reference static layout with a few images per source."""
    root = tmp_path_factory.mktemp("static")
    for folder, _, _ in [("DUTS-TR",) * 3, ("DUTS-TE",) * 3, ("ecssd",) * 3, ("BIG_small",) * 3,
                         ("HRSOD_small",) * 3]:
        write_static(root / folder, [f"img{i}" for i in range(2)])
    for category in ("cat", "dog"):
        write_static(root / "fss" / category, ["1", "2"])
    return root


def load_script(name: str):
    """Load scripts/data/<name>.py as a module from its file."""
    spec = importlib.util.spec_from_file_location(f"_script_{name}", REPO_ROOT / "scripts" / "data" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------------------------
# Frame sampler and curriculum


@pytest.mark.parametrize("num_video_frames,num_frames,max_skip", [(30, 8, 3), (12, 8, 1), (40, 3, 15), (8, 8, 5)])
def test_sampled_frames_respect_the_skip_window_without_repeats(num_video_frames, num_frames, max_skip):
    max_jump = min(num_video_frames, max_skip)
    orders, largest_gap = set(), 0
    for trial in range(400):
        indices = sample_frame_indices(sample_rng(0, 0, 0, trial), num_video_frames, num_frames, max_skip)
        assert len(indices) == num_frames == len(set(indices))
        assert all(0 <= i < num_video_frames for i in indices)
        ascending = sorted(indices)
        assert indices in (ascending, ascending[::-1])
        orders.add(indices == ascending)
        gaps = np.diff(ascending)
        largest_gap = max(largest_gap, int(gaps.max()))
        assert gaps.max() <= max_jump
    assert orders == {True, False}
    # The window is used to its full width (when the video allows it).
    if num_video_frames > num_frames:
        assert largest_gap == max_jump


def test_sampler_rejects_impossible_requests():
    with pytest.raises(ValueError, match="cannot sample 9 distinct frames from a video of 8 frames"):
        sample_frame_indices(sample_rng(0, 0, 0, 0), 8, 9, 5)
    with pytest.raises(ValueError, match="max_skip must be >= 1"):
        sample_frame_indices(sample_rng(0, 0, 0, 0), 8, 3, 0)


def test_curriculum_switches_at_configured_fractions():
    main = SkipCurriculum.for_stage("3")
    assert main.switch_iterations(1000) == [100, 300, 900, 100000]
    expected = {0: 5, 99: 5, 100: 10, 299: 10, 300: 15, 899: 15, 900: 5, 1099: 5}
    assert {it: main.max_skip_at(it, 1000) for it in expected} == expected
    assert SkipCurriculum.for_stage("2") == main
    stage1 = SkipCurriculum.for_stage("1")
    assert [stage1.max_skip_at(it, 1000) for it in (799, 800)] == [15, 5]
    custom = SkipCurriculum(initial_max_skip=2, switch_fractions=(0.5,), max_skips=(4,))
    assert [custom.max_skip_at(it, 10) for it in (4, 5)] == [2, 4]
    with pytest.raises(ValueError, match="no max-skip curriculum for stage '0'"):
        SkipCurriculum.for_stage("0")
    with pytest.raises(ValueError, match="same length"):
        SkipCurriculum(switch_fractions=(0.1,), max_skips=(10, 15))


def test_youtube_divides_max_skip_by_its_frame_stride(tmp_path):
    assert [dataset_max_skip(s, 5) for s in (5, 10, 15, 4)] == [1, 2, 3, 1]
    root = tmp_path / "train_480p"
    write_video(root / "JPEGImages", root / "Annotations", "yt", 16, num_objects=1, frame_step=5)
    data = VOSDataset.youtube_vos_train(tmp_path, num_frames=4, crop_size=32)
    for max_skip, largest_step in [(5, 5), (10, 10), (15, 15)]:
        data.set_max_skip(max_skip)
        gaps = set()
        for index in range(12):
            numbers = sorted(int(Path(name).stem) for name in data.sample(0, index)["info"]["frames"])
            gaps.update(np.diff(numbers).tolist())
        assert max(gaps) == largest_step  # in original-video frames: max_skip // 5 list positions × 5


# ---------------------------------------------------------------------------------------------------------------
# Geometry: image and mask receive the same transform


def assert_mask_covers_its_colour(image: np.ndarray, mask: np.ndarray, colours: dict[int, tuple[int, int, int]]):
    """Inside each object's (eroded) mask the image has that object's colour; outside all masks it has none."""
    image = image.astype(np.int32)

    def interior(region: np.ndarray) -> np.ndarray:
        # The frame edge counts as a border too: the region may continue just outside the crop.
        return cv2.erode(region.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=BORDER_EROSION_PX,
                         borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)

    for label, colour in colours.items():
        inside = interior(mask == label)
        if inside.any():
            assert np.abs(image[inside] - colour).max() <= COLOUR_TOLERANCE, f"object {label} misses its colour"
    outside = interior(mask == 0)
    for colour in colours.values():
        assert (np.abs(image[outside] - colour).max(axis=1) > COLOUR_TOLERANCE).all(), "object colour off its mask"


def test_warp_moves_image_and_mask_together_including_tps_and_antialiasing():
    image, mask = draw_frame(90, 120, {1: (10, 10, 40, 50), 2: (40, 60, 40, 50)})
    jitter = AffineJitter(max_rotation_deg=30, scale_range=(0.2, 2.0), max_shear_deg=15)
    for trial in range(24):
        rng = sample_rng(1, 2, 3, trial)
        matrix = jitter.sample(rng, 60, 45)
        if trial % 2:
            matrix = horizontal_flip_matrix(120) @ matrix
        tps = random_tps_backward_map(rng, 64, 64, displacement_std=0.05) if trial % 3 else None
        for interpolation in ("bilinear", "bicubic"):
            warped, warped_mask = warp_image_and_mask(image, mask, matrix, 64, image_interpolation=interpolation,
                                                      backward_map=tps)
            assert_mask_covers_its_colour(warped, warped_mask, {1: OBJECT_RGB[1], 2: OBJECT_RGB[2]})
            filled = warped_mask == 0
            assert set(np.unique(warped_mask)) <= {0, 1, 2}
            assert filled.any()


def test_mask_matches_the_interpolated_image_to_the_pixel():
    """A white object on black, warped bilinearly, is > 0.8 only on the mask and < 0.2 only off it.

    Bilinear value > 0.8 means the nearest source pixel (the largest of the four weights) is inside the object, so
    any offset between the image's and the mask's transforms, even one pixel, shows up on the object's border.
    """
    _, mask = draw_frame(90, 120, {1: (10, 10, 40, 50), 2: (40, 60, 40, 50)})
    intensity = np.repeat(((mask > 0) * 255).astype(np.uint8)[..., None], 3, axis=2)
    jitter = AffineJitter(max_rotation_deg=30, scale_range=(0.6, 2.0), max_shear_deg=15)
    for trial in range(24):
        rng = sample_rng(4, 5, 6, trial)
        matrix = horizontal_flip_matrix(120) @ jitter.sample(rng, 60, 45) if trial % 2 else jitter.sample(rng, 60, 45)
        tps = random_tps_backward_map(rng, 64, 64, displacement_std=0.05) if trial % 3 else None
        warped, warped_mask = warp_image_and_mask(intensity, mask, matrix, 64, backward_map=tps, image_fill=(0, 0, 0))
        value = warped[..., 0] / 255.0
        assert (warped_mask[value > 0.8] > 0).all() and (warped_mask[value < 0.2] == 0).all()
        assert (value > 0.8).any() and (value < 0.2).any()


def test_tps_with_zero_displacement_is_the_identity():
    image, mask = draw_frame(40, 56, {1: (5, 5, 20, 30)})
    rng = np.random.default_rng(0)
    points = rng.uniform(size=(12, 2))
    map_x, map_y = tps_backward_map(points, np.zeros((12, 2)), 40, 56)
    grid_y, grid_x = np.mgrid[:40, :56]
    np.testing.assert_array_equal(map_x, grid_x.astype(np.float32))
    np.testing.assert_array_equal(map_y, grid_y.astype(np.float32))
    identity = np.eye(3)
    for interpolation in ("bilinear", "bicubic"):
        square, square_mask = image[:40, :40], mask[:40, :40]
        warped, warped_mask = warp_image_and_mask(square, square_mask, identity, 40, image_interpolation=interpolation,
                                                  backward_map=(map_x[:, :40], map_y[:, :40]))
        np.testing.assert_array_equal(warped, square)
        np.testing.assert_array_equal(warped_mask, square_mask)


def test_tps_interpolates_its_control_points():
    # Control points on pixel centres of a 101×101 frame, so the map can be read there exactly.
    points = np.array([[0.2, 0.3], [0.5, 0.5], [0.8, 0.1], [0.1, 0.9], [0.7, 0.7], [0.3, 0.6]])
    shifts = np.random.default_rng(5).normal(scale=0.02, size=points.shape)
    map_x, map_y = tps_backward_map(points, shifts, 101, 101)
    for (x, y), (dx, dy) in zip(points, shifts):
        row, column = int(round(y * 100)), int(round(x * 100))
        assert map_x[row, column] == pytest.approx((x + dx) * 100, abs=1e-3)
        assert map_y[row, column] == pytest.approx((y + dy) * 100, abs=1e-3)


def test_static_clip_masks_cover_the_object_after_every_transform(static_root):
    augmentation = StaticAugmentation(tps_probability=1.0, **NO_COLOUR)
    data = StaticImageDataset(reference_static_sources(static_root), crop_size=64, augmentation=augmentation)
    for index in range(0, len(data), 7):
        sample = data[index]
        for frame, labels in zip(sample["rgb"], sample["cls_gt"][:, 0].numpy()):
            image = np.round(denormalise(frame) * 255)
            assert_mask_covers_its_colour(image, labels.astype(np.uint8), {1: OBJECT_RGB[1]})


def test_video_clip_masks_cover_each_object_after_every_transform(folder_root):
    data = VOSDataset.davis_layout_folder(folder_root, num_frames=6, crop_size=64,
                                          augmentation=VideoAugmentation(**NO_COLOUR))
    for epoch in range(3):
        data.set_epoch(epoch)
        for sample in data:
            # Slots are a random permutation of the chosen ids: find each slot's colour in frame 0.
            labels = sample["cls_gt"][:, 0].numpy().astype(np.uint8)
            first = np.round(denormalise(sample["rgb"][0]) * 255)
            slot_colours = {}
            for slot in range(1, sample["info"]["num_objects"] + 1):
                pixels = first[labels[0] == slot]
                slot_colours[slot] = min(OBJECT_RGB.values(),
                                         key=lambda c: np.abs(np.median(pixels, axis=0) - c).sum())
            assert len(set(slot_colours.values())) == len(slot_colours)
            for frame, frame_labels in zip(sample["rgb"], labels):
                assert_mask_covers_its_colour(np.round(denormalise(frame) * 255), frame_labels, slot_colours)


def test_colour_jitter_keeps_range_and_zero_strength_is_identity():
    image = np.random.default_rng(0).uniform(size=(3, 8, 8)).astype(np.float32)
    rng = np.random.default_rng(1)
    np.testing.assert_array_equal(ColourJitter().sample(rng).apply(image), image)
    jittered = ColourJitter(0.5, 0.5, 0.5, 0.5).sample(rng).apply(image)
    assert jittered.dtype == np.float32 and jittered.min() >= 0 and jittered.max() <= 1
    assert not np.allclose(jittered, image)


# ---------------------------------------------------------------------------------------------------------------
# Determinism


def collect(data, num_workers: int) -> list[dict]:
    loader = DataLoader(data, batch_size=2, shuffle=False, num_workers=num_workers)
    return list(loader)


def assert_batches_equal(first: list[dict], second: list[dict]) -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second):
        for key in ("rgb", "first_frame_gt", "cls_gt", "selector"):
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
        assert a["info"]["name"] == b["info"]["name"] and a["info"]["frames"] == b["info"]["frames"]
        assert torch.equal(a["info"]["num_objects"], b["info"]["num_objects"])


def test_samples_depend_only_on_seed_epoch_and_index(folder_root, tmp_path):
    options = dict(num_frames=3, crop_size=32, seed=7)
    data = main_training_mix(*_davis_and_youtube(tmp_path), **options)
    data.set_epoch(2)
    data.set_max_skip(10)
    in_process = collect(data, num_workers=0)
    assert_batches_equal(in_process, collect(data, num_workers=2))
    twin = main_training_mix(*_davis_and_youtube(tmp_path), **options)
    twin.set_epoch(2)
    twin.set_max_skip(10)
    assert_batches_equal(in_process, collect(twin, num_workers=0))
    twin.set_epoch(3)
    assert not torch.equal(in_process[0]["rgb"], collect(twin, num_workers=0)[0]["rgb"])
    # Repeated DAVIS copies and the YouTube-VOS part draw different augmentations for the same video.
    davis = data.datasets[0]
    assert not torch.equal(davis.sample(0, 2)["rgb"], davis.sample(len(davis.videos), 2)["rgb"])


def test_static_samples_are_deterministic_across_instances_and_epochs(static_root):
    make = lambda: StaticImageDataset(reference_static_sources(static_root), crop_size=32, seed=3)  # noqa: E731
    first, second = make(), make()
    for index in (0, 5, len(first) - 1):
        torch.testing.assert_close(first.sample(index, 4)["rgb"], second.sample(index, 4)["rgb"], rtol=0, atol=0)
    assert not torch.equal(first.sample(0, 4)["rgb"], first.sample(0, 5)["rgb"])
    assert not torch.equal(first.sample(0, 4)["rgb"], StaticImageDataset(
        reference_static_sources(static_root), crop_size=32, seed=4).sample(0, 4)["rgb"])


def _davis_and_youtube(tmp_path: Path) -> tuple[Path, Path]:
    """A DAVIS 2017 trainval folder (2 train videos + 1 val video) and a YouTube-VOS train_480p folder."""
    davis = tmp_path / "DAVIS" / "2017" / "trainval"
    youtube = tmp_path / "YouTube" / "train_480p"
    if not davis.exists():
        for video in ("bear", "boat", "val-only"):
            write_video(davis / "JPEGImages" / "480p", davis / "Annotations" / "480p", video, 6, num_objects=2)
        (davis / "ImageSets" / "2017").mkdir(parents=True)
        (davis / "ImageSets" / "2017" / "train.txt").write_text("bear\nboat\n")
        write_video(youtube / "JPEGImages", youtube / "Annotations", "yt1", 6, frame_step=5)
    return tmp_path / "DAVIS", tmp_path / "YouTube"


# ---------------------------------------------------------------------------------------------------------------
# Batch contract


def test_batch_contract_of_video_clips(tmp_path):
    davis_root, youtube_root = _davis_and_youtube(tmp_path)
    data = main_training_mix(davis_root, youtube_root, num_frames=4, crop_size=48)
    assert len(data) == 2 * 5 + 1  # DAVIS train list only, ×5, then YouTube-VOS
    assert {data.datasets[0].videos[0], data.datasets[0].videos[1]} == {"bear", "boat"}
    batch = next(iter(DataLoader(data, batch_size=3)))
    assert batch["rgb"].shape == (3, 4, 3, 48, 48) and batch["rgb"].dtype == torch.float32
    assert batch["first_frame_gt"].shape == (3, 1, 3, 48, 48) and batch["first_frame_gt"].dtype == torch.float32
    assert batch["cls_gt"].shape == (3, 4, 1, 48, 48) and batch["cls_gt"].dtype == torch.int64
    assert batch["selector"].shape == (3, 3) and batch["selector"].dtype == torch.float32
    assert batch["info"]["num_objects"].tolist() == batch["selector"].sum(1).long().tolist()
    assert len(batch["info"]["frames"]) == 4 and len(batch["info"]["name"]) == 3
    for sample in range(3):
        count = int(batch["info"]["num_objects"][sample])
        assert int(batch["cls_gt"][sample].max()) <= count
        # first_frame_gt is the one-hot of frame 0's labels
        for slot in range(3):
            expected = (batch["cls_gt"][sample, 0, 0] == slot + 1).float()
            torch.testing.assert_close(batch["first_frame_gt"][sample, 0, slot], expected)
    assert batch["rgb"].mean().abs() < 2 and batch["rgb"].std() > 0.1  # normalised, not [0, 255]


def test_batch_contract_at_reference_size(folder_root):
    data = VOSDataset.davis_layout_folder(folder_root)
    batch = next(iter(DataLoader(data, batch_size=2)))
    assert batch["rgb"].shape == (2, 8, 3, 384, 384)
    assert batch["first_frame_gt"].shape == (2, 1, 3, 384, 384)
    assert batch["cls_gt"].shape == (2, 8, 1, 384, 384)
    assert batch["selector"].tolist() == [[1.0, 1.0, 1.0]] * 2


def test_batch_contract_of_static_clips(static_root):
    data = StaticImageDataset(reference_static_sources(static_root), crop_size=40)
    assert len(data) == 4 + 3 * 2 + 2 * 2 * 5  # fss 4 + three ×1 sets of 2 + two ×5 sets of 2
    batch = next(iter(DataLoader(data, batch_size=2)))
    assert batch["rgb"].shape == (2, 3, 3, 40, 40)
    assert batch["first_frame_gt"].shape == (2, 1, 1, 40, 40)
    assert batch["cls_gt"].shape == (2, 3, 1, 40, 40) and batch["cls_gt"].dtype == torch.int64
    assert batch["selector"].tolist() == [[1.0], [1.0]]
    assert set(batch["cls_gt"].unique().tolist()) <= {0, 1}


def test_bl30k_object_rule_scales_with_crop_area(tmp_path):
    write_video(tmp_path / "JPEGImages", tmp_path / "Annotations", "scene", 3, num_objects=1)
    data = VOSDataset.bl30k(tmp_path, num_frames=3, crop_size=96)  # thresholds ×1/16: 6.25, 56.25 and 25 px
    blank = np.zeros((96, 96), np.uint8)
    first, later = blank.copy(), blank.copy()
    first[:10, :10] = 1  # 100 px: large enough
    first[20:25, 20:28] = 2  # 40 px, stays small (10 px later)
    later[20:22, 20:25] = 2
    first[40:45, 40:48] = 3  # 40 px but 200 px later: a sliver of a large object
    later[40:60, 40:50] = 3
    first[80:82, 80:82] = 4  # 4 px: too small
    assert data._usable_objects([first, later, later]) == [1, 2]
    assert VOSDataset.davis_layout_folder(tmp_path, num_frames=3)._usable_objects([first, later, later]) == [1, 2, 3, 4]
    assert data.augmentation.frame_affine == AffineJitter() and data.augmentation.crop_scale_range == (0.25, 1.0)


def test_at_most_max_objects_are_chosen_and_relabelled(folder_root):
    data = VOSDataset.davis_layout_folder(folder_root, num_frames=3, crop_size=48, max_num_objects=2)
    for index in range(len(data)):
        sample = data[index]
        assert sample["first_frame_gt"].shape == (1, 2, 48, 48)
        assert sample["cls_gt"].max() <= 2 and sample["info"]["num_objects"] <= 2


# ---------------------------------------------------------------------------------------------------------------
# Bad input


def test_missing_roots_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"DAVIS 2017 trainval not found under .*nowhere.*2017/trainval"):
        VOSDataset.davis_2017_train(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"static image root .* not found: .*nowhere"):
        reference_static_sources(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"static image source not found: .*DUTS-TR is not a directory"):
        StaticImageDataset([StaticSource(tmp_path / "DUTS-TR")])
    with pytest.raises(FileNotFoundError, match=r"BL30K root .* not found: .*doi.org"):
        VOSDataset.bl30k(tmp_path / "BL30K")


def test_image_without_mask_is_named(tmp_path, static_root):
    write_video(tmp_path / "JPEGImages", tmp_path / "Annotations", "clip", 4, num_objects=1)
    write_video(tmp_path / "JPEGImages", tmp_path / "Annotations", "good", 4, num_objects=1)
    (tmp_path / "Annotations" / "clip" / "00002.png").unlink()
    with pytest.warns(UserWarning, match=r"video 'clip' skipped: 1 of its 4 frames have no mask, e.g. .*clip frame "
                                         r"'00002' needs .*clip/00002.png"):
        assert VOSDataset.davis_layout_folder(tmp_path, num_frames=3).videos == ["good"]
    (tmp_path / "JPEGImages" / "good" / "00003.jpg").unlink()  # now its masks outnumber its frames
    with pytest.warns(UserWarning) as warned:
        with pytest.raises(ValueError, match=r"no usable folder:.* video in .*: 2 selected, 2 skipped because their "
                                             r"masks do not pair with their frames"):
            VOSDataset.davis_layout_folder(tmp_path, num_frames=3)
    assert any("video 'good' skipped: its 4 masks outnumber its 3 frames" in str(w.message) for w in warned)
    write_static(tmp_path / "flat", ["a", "b"])
    (tmp_path / "flat" / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"b.jpg needs .*b.png"):
        StaticImageDataset([StaticSource(tmp_path / "flat")])


def test_empty_subset_is_rejected(tmp_path):
    root = tmp_path / "train_480p"
    write_video(root / "JPEGImages", root / "Annotations", "yt", 4, num_objects=1)
    empty = tmp_path / "subset.txt"
    empty.write_text("# no videos\n\n")
    with pytest.raises(ValueError, match=r"subset file .*subset.txt lists no video"):
        VOSDataset.youtube_vos_train(root, subset_file=empty, num_frames=3)
    with pytest.raises(ValueError, match="the video subset for YouTubeVOS-train is empty"):
        VOSDataset(root / "JPEGImages", root / "Annotations", name="YouTubeVOS-train", videos=[])
    unknown = tmp_path / "unknown.txt"
    unknown.write_text("not-a-video\n")
    with pytest.warns(UserWarning, match="1 of 1 subset videos are not in"):
        with pytest.raises(ValueError, match="no usable YouTubeVOS-train video"):
            VOSDataset.youtube_vos_train(root, subset_file=unknown, num_frames=3)


def test_videos_shorter_than_the_clip_are_skipped_or_rejected(folder_root):
    with pytest.raises(ValueError, match="none with at least 11 frames"):
        VOSDataset.davis_layout_folder(folder_root, num_frames=11)


# ---------------------------------------------------------------------------------------------------------------
# Scripts


def test_download_fails_offline_with_url_and_manual_alternative(tmp_path, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise ConnectionRefusedError("[Errno 111] Connection refused")

    monkeypatch.setattr(socket, "create_connection", refuse)
    download = load_script("download_datasets")
    with pytest.raises(SystemExit) as stopped:
        download.main(["--static", "--root", str(tmp_path), "--yes"])
    message = str(stopped.value)
    assert "\n" not in message
    assert "drive.usercontent.google.com" in message and "1wUJq3HcLdN-z1t4CsUhjeZ9BVDb9YKLd" in message
    assert "download it by hand" in message
    assert not [p for p in tmp_path.rglob("*") if p.is_file()], "no partial download may be left behind"


def run_resize_youtube(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "data" / "resize_youtube.py"), *args],
                          capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S)


def test_resize_youtube_scales_shorter_side_and_resumes(tmp_path):
    source = tmp_path / "train"
    for video in ("a", "b"):
        write_video(source / "JPEGImages", source / "Annotations", video, 2, height=60, width=100, num_objects=2)
    output = tmp_path / "train_small"
    first = run_resize_youtube(str(source), str(output), "--short-side", "30", "--workers", "2")
    assert first.returncode == 0, first.stderr
    frame = read_image(output / "JPEGImages" / "a" / "00000.jpg")
    mask, palette = read_index_mask(output / "Annotations" / "a" / "00000.png")
    assert frame.shape == (30, 50, 3) and mask.shape == (30, 50)
    assert set(np.unique(mask)) == {0, 1, 2} and palette is not None
    stamp = (output / "JPEGImages" / "b" / "00001.jpg").stat().st_mtime_ns
    (output / "Annotations" / "b" / "00001.png").unlink()
    second = run_resize_youtube(str(source), str(output), "--short-side", "30", "--workers", "1")
    assert second.returncode == 0, second.stderr
    assert "resized 1 files" in second.stdout
    assert (output / "Annotations" / "b" / "00001.png").is_file()
    assert (output / "JPEGImages" / "b" / "00001.jpg").stat().st_mtime_ns == stamp  # finished files are skipped
    missing = run_resize_youtube(str(tmp_path / "missing"), str(output))
    assert missing.returncode != 0
    assert re.search(r"no JPEGImages/ or Annotations/ folder in .*missing", missing.stderr)
