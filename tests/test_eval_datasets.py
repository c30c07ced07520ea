"""Benchmark readers and result writers: layouts, sparse saving, late objects, resizing rules and bad input."""
import json
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from configs.schema import EvalConfig
from dataset import video_io
from dataset.eval_datasets import EmptyMaskError, open_benchmark
from dataset.video_io import match_mask_to_frame, read_mask_any
from inference.resize import resize_image, resize_mask, resize_probabilities, resized_shape
from configs.common import DAVIS_PALETTE
from dataset.image_io import read_index_mask, write_image, write_index_mask
from dataset.writers import ResultWriter, read_scores, write_scores

HEIGHT, WIDTH = 24, 40
CUSTOM_PALETTE = bytes(range(256)) * 3


def _frame(index: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = 10 * index
    return image


def _mask(ids_and_boxes, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    for object_id, (top, left) in ids_and_boxes:
        mask[top:top + 6, left:left + 6] = object_id
    return mask


def _write_video(frame_dir: Path, mask_dir: Path, num_frames: int, masks: dict, *, digits: int = 5,
                 palette=DAVIS_PALETTE) -> None:
    for index in range(num_frames):
        write_image(frame_dir / f"{index:0{digits}d}.jpg", _frame(index))
    for index, mask in masks.items():
        write_index_mask(mask_dir / f"{index:0{digits}d}.png", mask, palette)


def _config(**fields) -> EvalConfig:
    return EvalConfig(**fields)


def _davis17(root: Path, split_dir: str = "trainval", list_name: str = "val") -> Path:
    base = root / "DAVIS2017" / split_dir
    for name, first in (("cows", _mask([(1, (2, 2)), (2, (10, 20))])), ("dogs", _mask([(3, (4, 4))]))):
        _write_video(base / "JPEGImages/480p" / name, base / "Annotations/480p" / name, 4, {0: first},
                     palette=CUSTOM_PALETTE)
    (base / "ImageSets/2017").mkdir(parents=True)
    (base / "ImageSets/2017" / f"{list_name}.txt").write_text("cows\ndogs\n")
    return root / "DAVIS2017"


def _youtube(root: Path, *, all_frames: bool = True) -> Path:
    base = root / "YouTube"
    frame_dir = base / ("all_frames/valid_all_frames/JPEGImages" if all_frames else "valid/JPEGImages") / "fish"
    masks = {1: _mask([(1, (2, 2))]), 4: _mask([(1, (2, 2)), (2, (12, 20))])}  # object 1 repeated on frame 4
    _write_video(frame_dir, base / "valid/Annotations/fish", 8, masks)
    meta = {"videos": {"fish": {"objects": {"1": {"category": "fish", "frames": ["00001", "00006"]},
                                            "2": {"category": "fish", "frames": ["00004"]}}}}}
    (base / "valid/meta.json").write_text(json.dumps(meta))
    return base


def test_resized_shape_follows_torchvision_rule():
    assert resized_shape(480, 854, 480) == (480, 854)
    assert resized_shape(24, 40, 12) == (12, 20)
    assert resized_shape(40, 25, 10) == (16, 10)
    assert resized_shape(481, 853, 600) == (600, int(600 * 853 / 481))
    assert resized_shape(7, 9, -1) == (7, 9)


def test_resizers_bilinear_images_nearest_masks_and_probabilities_back():
    image = torch.arange(2 * 4, dtype=torch.float32).reshape(1, 2, 4).expand(3, 2, 4)
    assert resize_image(image, (4, 8)).shape == (3, 4, 8)
    mask = torch.tensor([[0, 255], [7, 0]], dtype=torch.uint8)
    up = resize_mask(mask, (4, 4))
    assert up.dtype == torch.uint8 and set(up.unique().tolist()) == {0, 7, 255}
    assert torch.equal(up[:2, 2:], torch.full((2, 2), 255, dtype=torch.uint8))
    prob = torch.softmax(torch.randn(3, 6, 10), dim=0)
    back = resize_probabilities(prob, (12, 20))
    assert back.shape == (3, 12, 20)
    assert torch.allclose(back.sum(0), torch.ones(12, 20), atol=1e-5)


def test_davis17_val_lists_videos_keeps_palette_and_scores_against_annotations(tmp_path):
    root = _davis17(tmp_path)
    benchmark = open_benchmark(_config(dataset="D17", d17_path=str(root), size=480))
    assert benchmark.video_names == ("cows", "dogs") and benchmark.layout == "davis"
    assert benchmark.zip_kind is None and benchmark.ground_truth_dir == root / "trainval/Annotations/480p"
    video = benchmark.video("cows")
    assert len(video) == 4 and video.save_frames is None and video.palette == CUSTOM_PALETTE
    frames = list(video.frames())
    assert [f.name for f in frames] == ["00000", "00001", "00002", "00003"]
    assert frames[0].objects == (1, 2) and frames[1].mask is None and frames[-1].is_last
    assert frames[0].image.shape == (HEIGHT, WIDTH, 3)


def test_davis17_test_dev_is_zipped_and_not_scored(tmp_path):
    root = _davis17(tmp_path, "test-dev", "test-dev")
    benchmark = open_benchmark(_config(dataset="D17", split="test", d17_path=str(root)))
    assert benchmark.zip_kind == "davis" and benchmark.ground_truth_dir is None


def test_davis_full_resolution_frames_keep_480p_output_size(tmp_path):
    root = _davis17(tmp_path)
    big = root / "trainval/JPEGImages/Full-Resolution/cows"
    _write_video(big, root / "trainval/Annotations/Full-Resolution/cows", 2,
                 {0: _mask([(1, (4, 4))], 2 * HEIGHT, 2 * WIDTH)})
    for index in range(2):
        write_image(big / f"{index:05d}.jpg", _frame(index, 2 * HEIGHT, 2 * WIDTH))
    video = open_benchmark(_config(dataset="D17", d17_path=str(root), size=600)).video("cows")
    assert video.output_shape == (HEIGHT, WIDTH)
    assert next(video.frames()).image.shape == (2 * HEIGHT, 2 * WIDTH, 3)


def test_davis_at_native_size_keeps_the_full_resolution_as_the_original(tmp_path):
    """--size -1: full-resolution frames, outputs at their size and scored against full-resolution annotations."""
    root = _davis17(tmp_path)
    big = root / "trainval/JPEGImages/Full-Resolution/cows"
    _write_video(big, root / "trainval/Annotations/Full-Resolution/cows", 2,
                 {0: _mask([(1, (4, 4))], 2 * HEIGHT, 2 * WIDTH)})
    for index in range(2):
        write_image(big / f"{index:05d}.jpg", _frame(index, 2 * HEIGHT, 2 * WIDTH))
    benchmark = open_benchmark(_config(dataset="D17", d17_path=str(root), size=-1))
    video = benchmark.video("cows")
    assert video.output_shape is None  # each frame's own (full) size
    assert next(video.frames()).image.shape == (2 * HEIGHT, 2 * WIDTH, 3)
    assert benchmark.ground_truth_dir == root / "trainval/Annotations/Full-Resolution"


def test_davis_without_full_resolution_uses_480p_with_a_warning(tmp_path):
    root = _davis17(tmp_path)
    with pytest.warns(UserWarning, match="uses the 480p frames"):
        benchmark = open_benchmark(_config(dataset="D17", d17_path=str(root), size=720))
    assert benchmark.video("cows").output_shape is None


def test_davis16_reads_255_masks_and_the_originals_video_list(tmp_path):
    d16 = tmp_path / "DAVIS" / "2016"
    _write_video(d16 / "JPEGImages/480p/bear", d16 / "Annotations/480p/bear", 3, {0: _mask([(255, (3, 3))])},
                 palette=None)
    (tmp_path / "DAVIS/2017/trainval/ImageSets/2016").mkdir(parents=True)
    (tmp_path / "DAVIS/2017/trainval/ImageSets/2016/val.txt").write_text("bear\n")
    benchmark = open_benchmark(_config(dataset="D16", d16_path=str(d16), size=480))
    video = benchmark.video("bear")
    assert video.palette is None  # grayscale annotations are written back as grayscale
    assert next(video.frames()).objects == (255,)


def test_davis16_official_frame_list_format(tmp_path):
    d16 = tmp_path / "2016"
    _write_video(d16 / "JPEGImages/480p/bear", d16 / "Annotations/480p/bear", 2, {0: _mask([(255, (3, 3))])})
    (d16 / "ImageSets/480p").mkdir(parents=True)
    (d16 / "ImageSets/480p/val.txt").write_text(
        "/JPEGImages/480p/bear/00000.jpg /Annotations/480p/bear/00000.png\n"
        "/JPEGImages/480p/bear/00001.jpg /Annotations/480p/bear/00001.png\n")
    assert open_benchmark(_config(dataset="D16", d16_path=str(d16))).video_names == ("bear",)


def test_youtube_all_frames_late_objects_and_sparse_saving(tmp_path):
    root = _youtube(tmp_path)
    benchmark = open_benchmark(_config(dataset="Y19", y19_path=str(root)))
    assert benchmark.layout == "youtube" and benchmark.zip_kind == "youtube"
    video = benchmark.video("fish")
    # Frame 00000 has no mask yet: processing starts at 00001 and indices count from there.
    assert [p.stem for p in video.frame_paths] == [f"{i:05d}" for i in range(1, 8)]
    assert video.save_frames == frozenset({0, 3, 5})
    frames = list(video.frames())
    assert frames[0].objects == (1,)
    assert frames[3].objects == (2,)  # object 1 is in that file too, but later masks only add objects
    assert set(np.unique(frames[3].mask)) == {0, 2}
    assert [f.name for f in frames if f.save] == ["00001", "00004", "00006"]
    all_saved = open_benchmark(_config(dataset="Y19", y19_path=str(root), save_all=True)).video("fish")
    assert all_saved.save_frames is None


def test_youtube_without_all_frames_falls_back_with_a_warning(tmp_path):
    root = _youtube(tmp_path, all_frames=False)
    with pytest.warns(UserWarning, match="all_frames"):
        benchmark = open_benchmark(_config(dataset="Y18", y18_path=str(root)))
    assert benchmark.video_names == ("fish",)


def test_youtube_video_missing_from_meta_is_named(tmp_path):
    root = _youtube(tmp_path)
    _write_video(root / "all_frames/valid_all_frames/JPEGImages/eel", root / "valid/Annotations/eel", 2,
                 {0: _mask([(1, (2, 2))])})
    benchmark = open_benchmark(_config(dataset="Y19", y19_path=str(root)))
    with pytest.raises(KeyError, match="'eel' is not in .*meta.json"):
        benchmark.video("eel")


def test_long_video_saves_ground_truth_frames_at_native_size(tmp_path):
    lv = tmp_path / "long_video_set"
    masks = {0: _mask([(1, (2, 2))]), 3: _mask([(1, (4, 4)), (2, (10, 10))]), 5: _mask([(1, (5, 5))])}
    _write_video(lv / "long_video/JPEGImages/dressage", lv / "long_video/Annotations/dressage", 6, masks)
    with pytest.warns(UserWarning, match="native resolution"):
        benchmark = open_benchmark(_config(dataset="LV1", lv_path=str(lv), size=480))
    assert benchmark.size == -1 and benchmark.ground_truth_dir == lv / "long_video/Annotations"
    video = benchmark.video("dressage")
    assert video.save_frames == frozenset({0, 3, 5})
    assert list(video.input_masks) == [0]  # ground truth on later frames is never an input
    assert all(f.mask is None for f in video.frames() if f.index > 0)


def test_lvos_objects_start_where_the_meta_file_says(tmp_path):
    split = tmp_path / "LVOS" / "valid"
    masks = {0: _mask([(1, (2, 2))]), 2: _mask([(1, (3, 3)), (2, (12, 20))])}
    _write_video(split / "JPEGImages/v1", split / "Annotations/v1", 4, masks, digits=8)
    meta = {"videos": {"v1": {"objects": {
        "1": {"frame_range": {"start": 0, "end": 3, "frame_nums": 4}},
        "2": {"frame_range": {"start": 2, "end": 3, "frame_nums": 2}}}}}}
    (split / "valid_meta.json").write_text(json.dumps(meta))
    video = open_benchmark(_config(dataset="LVOS2", lvos_path=str(tmp_path / "LVOS"), size=-1)).video("v1")
    frames = list(video.frames())
    assert frames[0].objects == (1,) and frames[2].objects == (2,)
    assert set(np.unique(frames[2].mask)) == {0, 2}


def test_generic_first_mask_only_unless_use_all_masks(tmp_path):
    root = tmp_path / "mine"
    masks = {0: _mask([(1, (2, 2))]), 2: _mask([(1, (2, 2)), (7, (12, 12))])}
    _write_video(root / "JPEGImages/clip", root / "Annotations/clip", 4, masks)
    first_only = open_benchmark(_config(dataset="G", generic_path=str(root))).video("clip")
    assert list(first_only.input_masks) == [0] and first_only.save_frames is None
    all_masks = open_benchmark(_config(dataset="G", generic_path=str(root), use_all_masks=True)).video("clip")
    assert [f.objects for f in all_masks.frames()] == [(1,), (), (7,), ()]


# ---------------------------------------------------------------------------------------------------- bad input


def test_missing_dataset_path_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"D17 root \(d17_path\) not found: .*nowhere"):
        open_benchmark(_config(dataset="D17", d17_path=str(tmp_path / "nowhere")))
    with pytest.raises(ValueError, match="dataset G needs generic_path"):
        open_benchmark(_config(dataset="G"))
    with pytest.raises(FileNotFoundError, match="meta file not found: .*meta.json"):
        (tmp_path / "Y/valid/Annotations").mkdir(parents=True)
        open_benchmark(_config(dataset="Y19", y19_path=str(tmp_path / "Y")))


def test_video_without_mask_is_named(tmp_path):
    root = tmp_path / "g"
    _write_video(root / "JPEGImages/nomask", root / "Annotations/nomask", 2, {})
    _write_video(root / "JPEGImages/fine", root / "Annotations/fine", 2, {0: _mask([(1, (2, 2))])})
    benchmark = open_benchmark(_config(dataset="G", generic_path=str(root)))
    with pytest.raises(FileNotFoundError, match="video 'nomask' has no mask"):
        benchmark.video("nomask")


def test_empty_first_mask_raises_empty_mask_error(tmp_path):
    root = tmp_path / "g"
    _write_video(root / "JPEGImages/blank", root / "Annotations/blank", 2, {0: _mask([])})
    with pytest.raises(EmptyMaskError, match="first mask of video 'blank'.*holds no object"):
        open_benchmark(_config(dataset="G", generic_path=str(root))).video("blank")


def test_slightly_smaller_mask_is_resized_with_a_warning_grossly_different_is_an_error(tmp_path):
    mask = _mask([(1, (2, 2))], HEIGHT, WIDTH - 1)
    with pytest.warns(UserWarning, match=f"is {WIDTH - 1}x{HEIGHT}.*resized"):
        matched = match_mask_to_frame(mask, (HEIGHT, WIDTH), Path("m.png"))
    assert matched.shape == (HEIGHT, WIDTH) and set(np.unique(matched)) == {0, 1}
    with pytest.raises(ValueError, match=f"mask big.png is {2 * WIDTH}x{HEIGHT} but its frame is {WIDTH}x{HEIGHT}"):
        match_mask_to_frame(np.zeros((HEIGHT, 2 * WIDTH), np.uint8), (HEIGHT, WIDTH), Path("big.png"))


def test_mask_off_by_a_few_pixels_in_a_video(tmp_path):
    root = tmp_path / "g"
    _write_video(root / "JPEGImages/v", root / "Annotations/v", 2, {})
    write_index_mask(root / "Annotations/v/00000.png", _mask([(1, (2, 2))], HEIGHT, WIDTH - 1))
    video = open_benchmark(_config(dataset="G", generic_path=str(root))).video("v")
    with pytest.warns(UserWarning, match="resized"):
        first = next(video.frames())
    assert first.mask.shape == (HEIGHT, WIDTH)


def test_rgb_mask_with_palette_colours_is_converted_else_rejected(tmp_path):
    palette = np.frombuffer(DAVIS_PALETTE, np.uint8).reshape(256, 3)
    ids = _mask([(1, (2, 2)), (3, (10, 20))])
    Image.fromarray(palette[ids]).save(tmp_path / "rgb.png")
    converted, used_palette = read_mask_any(tmp_path / "rgb.png")
    assert np.array_equal(converted, ids) and used_palette == DAVIS_PALETTE
    odd = palette[ids].copy()
    odd[0, 0] = (1, 2, 3)
    Image.fromarray(odd).save(tmp_path / "odd.png")
    with pytest.raises(ValueError, match=r"odd.png is an RGB image with colours that are not in the DAVIS "
                                         r"palette \(\(1, 2, 3\)\)"):
        read_mask_any(tmp_path / "odd.png")


def test_unreadable_frame_is_named(tmp_path):
    root = tmp_path / "g"
    _write_video(root / "JPEGImages/v", root / "Annotations/v", 3, {0: _mask([(1, (2, 2))])})
    (root / "JPEGImages/v/00001.jpg").write_bytes(b"not a jpeg")
    video = open_benchmark(_config(dataset="G", generic_path=str(root))).video("v")
    with pytest.raises(ValueError, match=r"cannot read image .*v/00001.jpg"):
        list(video.frames())


def test_frames_of_different_sizes_are_rejected(tmp_path):
    root = tmp_path / "g"
    _write_video(root / "JPEGImages/v", root / "Annotations/v", 2, {0: _mask([(1, (2, 2))])})
    write_image(root / "JPEGImages/v/00001.jpg", _frame(1, HEIGHT + 8, WIDTH))
    video = open_benchmark(_config(dataset="G", generic_path=str(root))).video("v")
    with pytest.raises(ValueError, match=f"00001.jpg is {WIDTH}x{HEIGHT + 8} but the video's first frame"):
        list(video.frames())


def test_mask_without_frame_is_rejected(tmp_path):
    root = tmp_path / "g"
    _write_video(root / "JPEGImages/v", root / "Annotations/v", 2, {0: _mask([(1, (2, 2))]), 9: _mask([])})
    with pytest.raises(ValueError, match="mask .*00009.png has no frame 00009"):
        open_benchmark(_config(dataset="G", generic_path=str(root))).video("v")


# ---------------------------------------------------------------------------------------------------- writers


def test_scores_round_trip_and_bad_shapes(tmp_path):
    prob = np.random.default_rng(0).random((3, 4, 5)).astype(np.float32)
    write_scores(tmp_path / "a.npz", prob, [2, 255])
    read_prob, labels = read_scores(tmp_path / "a.npz")
    with np.load(tmp_path / "a.npz") as raw:
        assert raw["prob"].dtype == np.float16 and raw["labels"].tolist() == [2, 255]
    assert np.allclose(read_prob, prob, atol=1e-3) and labels.tolist() == [2, 255]
    with pytest.raises(ValueError, match=r"prob must be \(N\+1\)×H×W with N=1 labels"):
        write_scores(tmp_path / "b.npz", prob, [1])
    np.savez(tmp_path / "c.npz", other=prob)
    with pytest.raises(ValueError, match="c.npz is not a score file"):
        read_scores(tmp_path / "c.npz")


def test_writer_layouts_markers_timings_and_zips(tmp_path):
    out = tmp_path / "Y19_val"
    writer = ResultWriter(out, "youtube")
    writer.plan_video("fish", ["00001"], scores=False)
    writer.write_mask("fish", "00001", _mask([(1, (2, 2))]), CUSTOM_PALETTE)
    mask, palette = read_index_mask(out / "Annotations/fish/00001.png")
    assert palette == CUSTOM_PALETTE and set(np.unique(mask)) == {0, 1}
    assert not writer.is_finished("fish")
    writer.finish_video("fish", {"video": "fish", "frames": 3, "seconds": 0.5})
    assert writer.is_finished("fish") and writer.finished_record("fish")["frames"] == 3
    csv_path = writer.write_timings([{"video": "fish", "frames": 3, "saved_frames": 1, "objects": 1,
                                      "seconds": 0.5, "fps": 6.0}])
    assert csv_path.read_text().splitlines() == ["video,frames,saved_frames,objects,seconds,fps",
                                                 "fish,3,1,1,0.5,6.0"]
    zip_path = writer.write_submission_zip("youtube", ["fish"])
    assert zip_path == out / "Y19_val.zip"
    assert zipfile.ZipFile(zip_path).namelist() == ["Annotations/fish/00001.png"]
    writer.start_video("fish")
    assert not writer.is_finished("fish") and not (out / "Annotations/fish").exists()

    davis = ResultWriter(tmp_path / "D17_test", "davis")
    davis.plan_video("cows", ["00000"], scores=False)
    davis.write_mask("cows", "00000", _mask([(1, (2, 2))]), DAVIS_PALETTE)
    davis.finish_video("cows", {})
    zip_path = davis.write_submission_zip("davis", ["cows"])
    assert zip_path == tmp_path / "D17_test.zip"
    assert zipfile.ZipFile(zip_path).namelist() == ["cows/00000.png"]
    with pytest.raises(ValueError, match="unknown output layout 'flat'"):
        ResultWriter(tmp_path / "x", "flat")


def test_redoing_a_video_deletes_only_the_files_its_records_name(tmp_path):
    """Mutations checked by hand: `start_video` deleting the whole folder (shutil.rmtree, as before) fails the
    user-file assertion; `finish_video` without its missing-output check marks a half-written video finished."""
    out = tmp_path / "out"
    writer = ResultWriter(out, "davis")
    writer.plan_video("cows", ["00000", "00001"], scores=True)
    writer.write_mask("cows", "00000", _mask([(1, (2, 2))]), DAVIS_PALETTE)
    with pytest.raises(FileNotFoundError, match=f"video 'cows': output {out / 'cows/00001.png'} is missing after "
                                                "its last frame \\(3 of 4 outputs missing\\)"):
        writer.finish_video("cows", {})
    assert not writer.is_finished("cows")
    (out / "cows/.00000.abc123.tmp.png").write_bytes(b"half")  # what a killed atomic write leaves
    (out / "cows/notes.txt").write_text("the user's own file")
    writer.start_video("cows")  # a killed run's leftovers: only what the plan named goes
    assert sorted(path.name for path in (out / "cows").iterdir()) == ["notes.txt"]
    (out / "cows/notes.txt").unlink()
    writer.plan_video("cows", ["00000"], scores=False)
    writer.write_mask("cows", "00000", _mask([(1, (2, 2))]), DAVIS_PALETTE)
    writer.finish_video("cows", {"frames": 1})
    assert writer.finished_record("cows")["outputs"] == ["cows/00000.png"]
    writer.start_video("cows")
    assert not (out / "cows").exists() and not writer.is_finished("cows")



def test_redoing_a_video_deletes_what_a_kill_left_of_its_plan_and_marker(tmp_path):
    """A rank killed while writing `<video>.planned` or `<video>.json` (found by test_eval_distributed's killed
    rank) leaves their atomic temporaries in .progress; a redo removes them, and another video's stay."""
    out = tmp_path / "out"
    writer = ResultWriter(out, "davis")
    progress = out / ".progress"
    progress.mkdir(parents=True)
    leftovers = [progress / ".cows.k3x.tmp.planned", progress / ".cows.9qz.tmp.json"]
    other = progress / ".bear.k3x.tmp.planned"
    for path in [*leftovers, other]:
        path.write_text("{")
    writer.start_video("cows")
    assert sorted(path.name for path in progress.iterdir()) == [other.name]

def test_reader_needs_only_eval_fields():
    namespace = SimpleNamespace(dataset="X", split="val", size=480)
    with pytest.raises(ValueError, match="unknown dataset 'X'"):
        open_benchmark(namespace)


# ---------------------------------------------------------------------------------------------------- LV3


def test_expand_long_video_replays_forward_backward_forward(tmp_path):
    from scripts.data import expand_long_vid

    assert expand_long_vid.ping_pong_order(3) == [0, 1, 2, 2, 1, 0, 0, 1, 2]
    source = tmp_path / "long_video"
    _write_video(source / "JPEGImages/v", source / "Annotations/v", 3, {0: _mask([(1, (2, 2))]),
                                                                       2: _mask([(1, (3, 3))])})
    assert expand_long_vid.main(["--input", str(source), "--output", str(tmp_path / "x3")]) == ["v"]
    frames = sorted(p.name for p in (tmp_path / "x3/JPEGImages/v").iterdir())
    assert frames == [f"{i:05d}.jpg" for i in range(9)]
    masks = sorted(p.stem for p in (tmp_path / "x3/Annotations/v").iterdir())
    assert masks == ["00000", "00002", "00003", "00005", "00006", "00008"]
    with pytest.raises(FileNotFoundError, match="no JPEGImages folder in"):
        expand_long_vid.main(["--input", str(tmp_path / "nothing"), "--output", str(tmp_path / "y")])


def test_lvos_without_meta_file_is_named(tmp_path):
    split = tmp_path / "LVOS" / "valid"
    _write_video(split / "JPEGImages/v1", split / "Annotations/v1", 2, {0: _mask([(1, (2, 2))])}, digits=8)
    with pytest.raises(FileNotFoundError, match=r"LVOS1 meta file not found: .*valid_meta.json or .*meta.json"):
        open_benchmark(_config(dataset="LVOS1", lvos_path=str(tmp_path / "LVOS")))


@pytest.mark.parametrize("source, target", [((480, 853), (480, 854)), ((62, 110), (64, 112)), ((64, 112), (61, 108)),
                                            ((7, 9), (14, 18)), ((97, 161), (96, 160)), ((1080, 1920), (480, 853))])
def test_mask_matching_picks_the_pixels_torch_nearest_picks(source, target):
    """dataset matches a few-pixel-off mask to its frame without torch; it must pick what resize_mask picks."""
    mask = np.random.default_rng(0).integers(0, 256, size=source, dtype=np.uint8)
    assert np.array_equal(video_io._nearest_resize(mask, target),
                          resize_mask(torch.from_numpy(mask), target).numpy())


def test_sixteen_bit_masks_are_read_when_ids_fit_and_refused_with_what_to_do_when_not(tmp_path):
    ids = np.zeros((HEIGHT, WIDTH), np.uint16)
    ids[:4, :4], ids[5:9, 5:9] = 3, 200
    Image.fromarray(ids).save(tmp_path / "fits.png")
    mask, palette = read_mask_any(tmp_path / "fits.png")
    assert mask.dtype == np.uint8 and palette is None and set(np.unique(mask).tolist()) == {0, 3, 200}
    ids[10:14, 10:14] = 300
    Image.fromarray(ids).save(tmp_path / "wide.png")
    with pytest.raises(ValueError, match=r"mask .*wide.png holds object id 300 \(a 16-bit mask\); result masks are "
                                         r"8-bit PNGs of ids 0..255: renumber the video's objects to 1..255"):
        read_mask_any(tmp_path / "wide.png")


def test_a_video_knows_every_object_its_input_masks_give_before_it_runs(tmp_path):
    root = tmp_path / "g"
    for index in range(3):
        write_image(root / f"JPEGImages/v/{index:05d}.jpg", np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    first, later = np.zeros((HEIGHT, WIDTH), np.uint8), np.zeros((HEIGHT, WIDTH), np.uint8)
    first[:4, :4], later[8:12, 8:12] = 2, 7
    write_index_mask(root / "Annotations/v/00000.png", first)
    write_index_mask(root / "Annotations/v/00002.png", later)
    config = EvalConfig(dataset="G", generic_path=str(root), use_all_masks=True)
    assert open_benchmark(config).video("v").object_ids == (2, 7)
    only_first = EvalConfig(dataset="G", generic_path=str(root))
    assert open_benchmark(only_first).video("v").object_ids == (2,)
