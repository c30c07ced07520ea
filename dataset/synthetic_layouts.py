"""Write synthetic videos (`dataset.synthetic.SyntheticVideo`) in the folder layouts of the real benchmarks.

Every layout follows the real dataset's conventions, so the benchmark readers, eval.py and the training datasets
read the output unchanged: `%05d` frame names, RGB JPEG frames, 8-bit palette PNG index masks (DAVIS palette),
binary 0/255 grayscale PNG masks where the real data uses them (DAVIS 2016, static image sets).

- `write_davis`: `JPEGImages/480p/<v>/`, `Annotations/480p/<v>/` (every frame), `ImageSets/2017/{train,val}.txt`
  (`ImageSets/2016/` and single-object 0/255 masks with `single_object_255`);
- `write_youtube_train`: `train_480p/{JPEGImages,Annotations}/<v>/` on every 5th frame, all objects (the real
  train set ships only its annotated frames);
- `write_youtube_valid`: `valid/JPEGImages/<v>/` (every 5th frame), `valid/Annotations/<v>/` (only where objects
  first appear, holding only those objects), `valid/meta.json`, `all_frames/valid_all_frames/JPEGImages/<v>/`
  (every frame), `valid/GroundTruth/<v>/` (every 5th frame; the real set keeps this on its server);
- `write_long_video`: `long_video/{JPEGImages,Annotations}/<v>/`, every frame, ground truth on frame 0 and every Nth;
- `write_generic`: `JPEGImages/<v>/`, `Annotations/<v>/` (frames where objects first appear, or every frame),
  optional `GroundTruth/<v>/`;
- `write_static_fss`: `<class>/<n>.jpg` + `<class>/<n>.png` (FSS-1000, n from 1), binary 0/255 masks;
- `write_static_flat`: `<name>.jpg` + `<name>.png` (DUTS, ECSSD, BIG, HRSOD), binary 0/255 masks.

"First appears" means the first written frame where at least MIN_VISIBLE_FRACTION of the frame is the object;
an object is left out of ground truth before that frame (it would be unscorable there) and out of everything
if it never becomes that visible.

Writing is resumable and crash-safe. Each video (a class for FSS, an image for the flat layout) is rendered into
`out/.synthetic_state/staging/`, moved into place, and only then marked complete by a JSON record of its spec in
`out/.synthetic_state/`. A rerun skips complete videos whose spec matches, redoes incomplete ones, and refuses a
folder whose videos were made with other settings. Index files (ImageSets, meta.json) list the videos of the
call and are written last. Frames are rendered one at a time, so memory does not grow with video length.

Length: one module on purpose: one writer per benchmark layout (the mirror of eval_datasets.py's readers)
sharing the resumable, atomic write-and-mark machinery.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection, Mapping, Sequence

import numpy as np

from configs.common import atomic_output
from dataset.image_io import write_image, write_index_mask
from dataset.synthetic import Difficulty, SyntheticVideo, video_seed

ProgressCallback = Callable[[int], None]
"""Called with the number of frames (or static images) just finished, like tqdm.update."""

FRAME_NAME_DIGITS = 5
YOUTUBE_FRAME_STEP = 5
"""YouTube-VOS annotates every 5th frame; its train set and valid JPEGImages hold only those frames."""
MIN_VISIBLE_FRACTION = 0.0005
"""An object counts as appeared once it covers this fraction of the frame (about 200 pixels at 480p)."""
BINARY_FOREGROUND = 255
"""Foreground value of binary masks (DAVIS 2016 and the static image sets)."""
DAVIS_RESOLUTION = "480p"
LONG_VIDEO_DIR = "long_video"
GROUND_TRUTH_DIR = "GroundTruth"
STATE_DIR = ".synthetic_state"
STAGING_DIR = "staging"


@dataclass
class WriteReport:
    """What a writer did: names of units (videos, FSS classes or flat images) written now and skipped as complete."""

    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def frame_name(index: int) -> str:
    """File stem of frame `index`: '00000', '00005', ..."""
    return f"{index:0{FRAME_NAME_DIGITS}d}"


def _spec_record(video: SyntheticVideo) -> dict:
    # A JSON round trip turns tuples into lists, so a record compares equal to one read back from disk.
    return json.loads(json.dumps(dataclasses.asdict(video)))


def _no_progress(_: int) -> None:
    return None


def _min_visible_px(video: SyntheticVideo) -> int:
    return max(1, math.ceil(MIN_VISIBLE_FRACTION * video.height * video.width))


def _check_names(videos: Mapping[str, object], what: str) -> None:
    for name in videos:
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"{what} name {name!r} is not a usable folder name; use letters, digits, '_' or '-'")


def _check_starts_complete(videos: Mapping[str, SyntheticVideo], layout: str) -> None:
    for name, video in videos.items():
        late = {object_id: frame for object_id, frame in video.entry_frames.items() if frame > 0}
        if late:
            raise ValueError(
                f"video {name!r} has objects entering late {late}, but {layout} annotates only objects present on "
                "frame 0; use a difficulty from dataset.synthetic.without_late_entries(...)"
            )


def _write_unit(out: Path, unit: str, record: dict, num_items: int, progress: ProgressCallback,
                write: Callable[[Path], tuple[list[str], dict]], report: WriteReport) -> dict:
    """Write one resumable unit (a video, FSS class or flat image) through the staging folder.

    Args:
        unit: '<layout>/<name>', the key of the completion record.
        record: JSON-able description of what is written; a complete unit with another record is an error.
        num_items: frames or images the unit accounts for in `progress` when skipped.
        write: writes the unit's files under the staging folder it is given, at their final relative paths, and
            returns (relative paths to move into `out`, JSON-able metadata to keep in the completion record).
    Returns:
        The unit's metadata (from the completion record when skipped).
    Raises:
        ValueError: the unit is complete with another record.
    """
    marker = out / STATE_DIR / f"{unit}.json"
    if marker.is_file():
        saved = json.loads(marker.read_text())
        if saved["record"] != record:
            raise ValueError(
                f"{out} already holds {unit} generated with other settings ({marker}); write to a new output "
                "folder, or delete this one to regenerate"
            )
        if all((out / relative).exists() for relative in saved["paths"]):
            progress(num_items)
            report.skipped.append(unit.split("/", 1)[1])
            return saved["meta"]
    staging = out / STATE_DIR / STAGING_DIR / unit
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    relatives, meta = write(staging)
    for relative in relatives:
        destination = out / relative
        # Whatever is there is a leftover of an interrupted run (complete units were skipped above).
        if destination.is_dir():
            shutil.rmtree(destination)
        elif destination.exists():
            destination.unlink()
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / relative, destination)
    shutil.rmtree(staging)
    with contextlib.suppress(OSError):  # drop the emptied staging folders; stops at the first non-empty one
        os.removedirs(staging.parent)
    with atomic_output(marker) as temporary:
        temporary.write_text(json.dumps({"record": record, "paths": relatives, "meta": meta}, sort_keys=True))
    report.written.append(unit.split("/", 1)[1])
    return meta


def _write_text(path: Path, text: str) -> None:
    with atomic_output(path) as temporary:
        temporary.write_text(text)


def _write_name_list(path: Path, names: Sequence[str]) -> None:
    _write_text(path, "".join(f"{name}\n" for name in names))


class _FirstAppearance:
    """Tracks which objects have appeared; on each checked frame, says which appear there for the first time."""

    def __init__(self, video: SyntheticVideo):
        self.min_visible_px = _min_visible_px(video)
        self.first_frame: dict[int, int] = {}

    def update(self, index: int, mask: np.ndarray) -> list[int]:
        counts = np.bincount(mask.ravel(), minlength=max(mask.max(initial=0) + 1, 1))
        new = [int(label) for label in np.flatnonzero(counts >= self.min_visible_px)
               if label > 0 and label not in self.first_frame]
        for label in new:
            self.first_frame[label] = index
        return new

    def annotated_only(self, mask: np.ndarray) -> np.ndarray:
        """The mask with objects that have not appeared yet set to background."""
        keep = np.zeros(256, dtype=np.uint8)
        for label in self.first_frame:
            keep[label] = label
        return keep[mask]


def _only(mask: np.ndarray, labels: Sequence[int]) -> np.ndarray:
    """The mask with every label not in `labels` set to background."""
    return np.where(np.isin(mask, labels), mask, 0).astype(np.uint8)


# --------------------------------------------------------------------------------------------------- DAVIS
def write_davis(out: str | os.PathLike, train_videos: Mapping[str, SyntheticVideo],
                val_videos: Mapping[str, SyntheticVideo], *, single_object_255: bool = False,
                progress: ProgressCallback | None = None) -> WriteReport:
    """Write a DAVIS 2017 trainval folder (or, with `single_object_255`, DAVIS 2016 style).

    Layout: `out/JPEGImages/480p/<v>/%05d.jpg`, `out/Annotations/480p/<v>/%05d.png` on every frame (palette PNG of
    object ids), `out/ImageSets/2017/{train,val}.txt`. With `single_object_255`, each video has one object
    labelled 255 in grayscale 0/255 PNGs, and the lists go to `out/ImageSets/2016/`.

    Raises:
        ValueError: a video has late-entering objects, a name is shared by both splits, or (DAVIS 2016) a video
            has more than one object.
    """
    out = Path(out)
    progress = progress or _no_progress
    shared = sorted(set(train_videos) & set(val_videos))
    if shared:
        raise ValueError(f"videos {shared} are in both the DAVIS train and val splits; give each video one split")
    videos = {**train_videos, **val_videos}
    _check_names(videos, "video")
    _check_starts_complete(videos, "DAVIS")
    if single_object_255:
        for name, video in videos.items():
            if len(video.object_ids) != 1:
                raise ValueError(
                    f"video {name!r} has {len(video.object_ids)} objects but DAVIS 2016 has one per video; use a "
                    "difficulty with min_objects = max_objects = 1"
                )
    report = WriteReport()
    for name, video in videos.items():
        record = {"layout": "davis", "single_object_255": single_object_255, "video": _spec_record(video)}
        write = functools.partial(_write_davis_video, name=name, video=video, single_object_255=single_object_255,
                                  progress=progress)
        _write_unit(out, f"davis/{name}", record, video.num_frames, progress, write, report)
    year = "2016" if single_object_255 else "2017"
    _write_name_list(out / "ImageSets" / year / "train.txt", list(train_videos))
    _write_name_list(out / "ImageSets" / year / "val.txt", list(val_videos))
    return report


def _write_davis_video(staging: Path, *, name: str, video: SyntheticVideo, single_object_255: bool,
                       progress: ProgressCallback) -> tuple[list[str], dict]:
    images = Path("JPEGImages") / DAVIS_RESOLUTION / name
    masks = Path("Annotations") / DAVIS_RESOLUTION / name
    for index, rgb, mask in video.frames():
        write_image(staging / images / f"{frame_name(index)}.jpg", rgb)
        if single_object_255:
            binary = (mask > 0).astype(np.uint8) * BINARY_FOREGROUND
            write_index_mask(staging / masks / f"{frame_name(index)}.png", binary, palette=None)
        else:
            write_index_mask(staging / masks / f"{frame_name(index)}.png", mask)
        progress(1)
    return [str(images), str(masks)], {}


# ---------------------------------------------------------------------------------------------- YouTube-VOS
def write_youtube_train(out: str | os.PathLike, videos: Mapping[str, SyntheticVideo], *,
                        progress: ProgressCallback | None = None) -> WriteReport:
    """Write a YouTube-VOS training set as XMem trains on it (`train_480p`, made by resize_youtube in the original).

    Layout: `out/train_480p/{JPEGImages,Annotations}/<v>/%05d.{jpg,png}` on frames 0, 5, 10, ... (the real train
    set ships only its annotated frames, every 5th), masks holding every object visible on that frame.
    """
    out = Path(out)
    progress = progress or _no_progress
    _check_names(videos, "video")
    report = WriteReport()
    for name, video in videos.items():
        record = {"layout": "youtube_train", "video": _spec_record(video)}
        write = functools.partial(_write_youtube_train_video, name=name, video=video, progress=progress)
        _write_unit(out, f"youtube_train/{name}", record, video.num_frames, progress, write, report)
    return report


def _write_youtube_train_video(staging: Path, *, name: str, video: SyntheticVideo,
                               progress: ProgressCallback) -> tuple[list[str], dict]:
    images = Path("train_480p") / "JPEGImages" / name
    masks = Path("train_480p") / "Annotations" / name
    for index in range(0, video.num_frames, YOUTUBE_FRAME_STEP):
        rgb, mask = video.frame(index)
        write_image(staging / images / f"{frame_name(index)}.jpg", rgb)
        write_index_mask(staging / masks / f"{frame_name(index)}.png", mask)
        progress(min(YOUTUBE_FRAME_STEP, video.num_frames - index))
    return [str(images), str(masks)], {}


def write_youtube_valid(out: str | os.PathLike, videos: Mapping[str, SyntheticVideo], *, split: str = "valid",
                        progress: ProgressCallback | None = None) -> WriteReport:
    """Write a YouTube-VOS validation (or test) split.

    Layout under `out`:
    - `<split>/JPEGImages/<v>/`: frames 0, 5, 10, ...;
    - `all_frames/<split>_all_frames/JPEGImages/<v>/`: every frame;
    - `<split>/Annotations/<v>/%05d.png`: only on the 5th-frame where objects first appear, each holding only the
      objects first appearing there;
    - `<split>/meta.json`: {"videos": {v: {"objects": {"<id>": {"category": <shape kind>, "frames": [...]}}}}},
      frames every 5th frame from the object's first appearance to the end;
    - `<split>/GroundTruth/<v>/`: every object on frames 0, 5, 10, ... from its first appearance (the frames the
      benchmark scores), for scoring with the project's metrics.
    """
    out = Path(out)
    progress = progress or _no_progress
    _check_names({split: None}, "split")
    _check_names(videos, "video")
    report = WriteReport()
    meta_videos = {}
    for name, video in videos.items():
        record = {"layout": "youtube_valid", "split": split, "video": _spec_record(video)}
        write = functools.partial(_write_youtube_valid_video, name=name, video=video, split=split,
                                  progress=progress)
        meta_videos[name] = _write_unit(out, f"youtube_{split}/{name}", record, video.num_frames,
                                        progress, write, report)
    _write_text(out / split / "meta.json", json.dumps({"videos": meta_videos}, indent=1, sort_keys=True) + "\n")
    return report


def _write_youtube_valid_video(staging: Path, *, name: str, video: SyntheticVideo, split: str,
                               progress: ProgressCallback) -> tuple[list[str], dict]:
    sparse_images = Path(split) / "JPEGImages" / name
    all_images = Path("all_frames") / f"{split}_all_frames" / "JPEGImages" / name
    annotations = Path(split) / "Annotations" / name
    ground_truth = Path(split) / GROUND_TRUTH_DIR / name
    (staging / sparse_images).mkdir(parents=True)
    appearance = _FirstAppearance(video)
    for index, rgb, mask in video.frames():
        all_path = staging / all_images / f"{frame_name(index)}.jpg"
        write_image(all_path, rgb)
        if index % YOUTUBE_FRAME_STEP == 0:
            shutil.copyfile(all_path, staging / sparse_images / f"{frame_name(index)}.jpg")
            new = appearance.update(index, mask)
            if new:
                write_index_mask(staging / annotations / f"{frame_name(index)}.png", _only(mask, new))
            write_index_mask(staging / ground_truth / f"{frame_name(index)}.png", appearance.annotated_only(mask))
        progress(1)
    last_sparse = (video.num_frames - 1) // YOUTUBE_FRAME_STEP * YOUTUBE_FRAME_STEP
    kinds = video.shape_kinds
    objects = {
        str(label): {
            "category": kinds[label],
            "frames": [frame_name(index) for index in range(first, last_sparse + 1, YOUTUBE_FRAME_STEP)],
        }
        for label, first in sorted(appearance.first_frame.items())
    }
    return [str(sparse_images), str(all_images), str(annotations), str(ground_truth)], {"objects": objects}


# --------------------------------------------------------------------------------------------- Long-time Video
def write_long_video(out: str | os.PathLike, videos: Mapping[str, SyntheticVideo], *, annotation_every: int,
                     progress: ProgressCallback | None = None) -> WriteReport:
    """Write a Long-time Video style set: thousands of frames, sparse ground truth, streamed frame by frame.

    Layout: `out/long_video/JPEGImages/<v>/` every frame; `out/long_video/Annotations/<v>/` on frames 0,
    annotation_every, 2·annotation_every, ... (the input mask is frame 0; the others are ground truth).

    Raises:
        ValueError: annotation_every < 1, or a video has late-entering objects.
    """
    if annotation_every < 1:
        raise ValueError(f"annotation_every {annotation_every} is invalid; expected a frame step >= 1")
    out = Path(out)
    progress = progress or _no_progress
    _check_names(videos, "video")
    _check_starts_complete(videos, "Long-time Video")
    report = WriteReport()
    for name, video in videos.items():
        record = {"layout": "long", "annotation_every": annotation_every, "video": _spec_record(video)}
        write = functools.partial(_write_long_video, name=name, video=video, annotation_every=annotation_every,
                                  progress=progress)
        _write_unit(out, f"long/{name}", record, video.num_frames, progress, write, report)
    return report


def _write_long_video(staging: Path, *, name: str, video: SyntheticVideo, annotation_every: int,
                      progress: ProgressCallback) -> tuple[list[str], dict]:
    images = Path(LONG_VIDEO_DIR) / "JPEGImages" / name
    masks = Path(LONG_VIDEO_DIR) / "Annotations" / name
    for index, rgb, mask in video.frames():
        write_image(staging / images / f"{frame_name(index)}.jpg", rgb)
        if index % annotation_every == 0:
            write_index_mask(staging / masks / f"{frame_name(index)}.png", mask)
        progress(1)
    return [str(images), str(masks)], {}


# ------------------------------------------------------------------------------------------------- generic
def write_generic(out: str | os.PathLike, videos: Mapping[str, SyntheticVideo], *, all_masks: bool = False,
                  ground_truth: bool = False, progress: ProgressCallback | None = None) -> WriteReport:
    """Write generic frame folders with masks, as for running XMem on one's own videos.

    Layout: `out/JPEGImages/<v>/%05d.jpg` every frame; `out/Annotations/<v>/%05d.png` on each frame where objects
    first appear, holding only those objects (frame 0 alone when nothing enters later), or with `all_masks` every
    object on every frame; with `ground_truth`, `out/GroundTruth/<v>/` every object on every frame from its first
    appearance.
    """
    out = Path(out)
    progress = progress or _no_progress
    _check_names(videos, "video")
    report = WriteReport()
    for name, video in videos.items():
        record = {"layout": "generic", "all_masks": all_masks, "ground_truth": ground_truth,
                  "video": _spec_record(video)}
        write = functools.partial(_write_generic_video, name=name, video=video, all_masks=all_masks,
                                  ground_truth=ground_truth, progress=progress)
        _write_unit(out, f"generic/{name}", record, video.num_frames, progress, write, report)
    return report


def _write_generic_video(staging: Path, *, name: str, video: SyntheticVideo, all_masks: bool, ground_truth: bool,
                         progress: ProgressCallback) -> tuple[list[str], dict]:
    images, masks, truth = Path("JPEGImages") / name, Path("Annotations") / name, Path(GROUND_TRUTH_DIR) / name
    appearance = _FirstAppearance(video)
    for index, rgb, mask in video.frames():
        write_image(staging / images / f"{frame_name(index)}.jpg", rgb)
        new = appearance.update(index, mask)
        if all_masks:
            write_index_mask(staging / masks / f"{frame_name(index)}.png", mask)
        elif new:
            write_index_mask(staging / masks / f"{frame_name(index)}.png", _only(mask, new))
        if ground_truth:
            write_index_mask(staging / truth / f"{frame_name(index)}.png", appearance.annotated_only(mask))
        progress(1)
    relatives = [str(images), str(masks)] + ([str(truth)] if ground_truth else [])
    return relatives, {"first_frames": {str(label): first for label, first in sorted(appearance.first_frame.items())}}


# ------------------------------------------------------------------------------------------- static images
def make_static_classes(num_classes: int, images_per_class: int, *, seed: int, height: int, width: int,
                        difficulty: Difficulty) -> dict[str, list[SyntheticVideo]]:
    """Single-frame specs for `write_static_fss`: {'class000': [spec, ...], ...} with independent seeds.

    Raises:
        ValueError: num_classes < 0 or images_per_class < 1.
    """
    if num_classes < 0 or images_per_class < 1:
        raise ValueError(
            f"static classes {num_classes} x {images_per_class} images are invalid; expected >= 0 classes and >= 1 "
            "image per class"
        )
    return {
        f"class{class_index:03d}": [
            SyntheticVideo(seed=video_seed(seed, class_index * images_per_class + image_index), height=height,
                           width=width, num_frames=1, difficulty=difficulty)
            for image_index in range(images_per_class)
        ]
        for class_index in range(num_classes)
    }


def _static_pair(video: SyntheticVideo) -> tuple[np.ndarray, np.ndarray]:
    """Frame 0 of `video` and its binary mask: 255 on every object, 0 elsewhere."""
    rgb, mask = video.frame(0)
    return rgb, (mask > 0).astype(np.uint8) * BINARY_FOREGROUND


def write_static_fss(out: str | os.PathLike, classes: Mapping[str, Sequence[SyntheticVideo]], *,
                     progress: ProgressCallback | None = None) -> WriteReport:
    """Write image + mask pairs in the FSS-1000 layout: `out/<class>/<n>.jpg` and `<n>.png`, n = 1, 2, ...

    Each image is frame 0 of its spec; the mask is 255 on every object, 0 elsewhere (grayscale PNG).
    """
    out = Path(out)
    progress = progress or _no_progress
    _check_names(classes, "class")
    report = WriteReport()
    for class_name, specs in classes.items():
        record = {"layout": "static_fss", "images": [_spec_record(video) for video in specs]}
        write = functools.partial(_write_fss_class, class_name=class_name, specs=specs,
                                  progress=progress)
        _write_unit(out, f"static_fss/{class_name}", record, len(specs), progress, write, report)
    return report


def _write_fss_class(staging: Path, *, class_name: str, specs: Sequence[SyntheticVideo],
                     progress: ProgressCallback) -> tuple[list[str], dict]:
    for number, video in enumerate(specs, start=1):
        rgb, binary = _static_pair(video)
        write_image(staging / class_name / f"{number}.jpg", rgb)
        write_index_mask(staging / class_name / f"{number}.png", binary, palette=None)
        progress(1)
    return [class_name], {}


def write_static_flat(out: str | os.PathLike, images: Mapping[str, SyntheticVideo], *,
                      progress: ProgressCallback | None = None) -> WriteReport:
    """Write image + mask pairs in the flat layout of DUTS / ECSSD / BIG / HRSOD: `out/<name>.jpg` + `<name>.png`.

    Each image is frame 0 of its spec; the mask is 255 on every object, 0 elsewhere (grayscale PNG).
    """
    out = Path(out)
    progress = progress or _no_progress
    _check_names(images, "image")
    report = WriteReport()
    for name, video in images.items():
        record = {"layout": "static_flat", "image": _spec_record(video)}
        write = functools.partial(_write_flat_pair, name=name, video=video, progress=progress)
        _write_unit(out, f"static_flat/{name}", record, 1, progress, write, report)
    return report


def _write_flat_pair(staging: Path, *, name: str, video: SyntheticVideo,
                     progress: ProgressCallback) -> tuple[list[str], dict]:
    rgb, binary = _static_pair(video)
    write_image(staging / f"{name}.jpg", rgb)
    write_index_mask(staging / f"{name}.png", binary, palette=None)
    progress(1)
    return [f"{name}.jpg", f"{name}.png"], {}


def split_names(names: Collection[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """Split names in order into (train, val), val being the last round(val_fraction * len) names.

    Raises:
        ValueError: val_fraction outside [0, 1].
    """
    if not 0 <= val_fraction <= 1:
        raise ValueError(f"val_fraction {val_fraction} is invalid; expected a fraction in [0, 1]")
    ordered = list(names)
    num_val = int(round(val_fraction * len(ordered)))
    return ordered[:len(ordered) - num_val], ordered[len(ordered) - num_val:]
