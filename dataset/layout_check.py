"""Checks that training data is laid out as the datasets expect, with one clear error per problem.

The dataset constructors call these, so a wrong path or an image without a mask fails at start-up, naming the
folder or file, instead of crashing a worker hours into training.

Layouts:
- static images: `root/x.jpg + root/x.png` ("flat") or `root/<class>/x.jpg + x.png` ("class_folders", FSS-1000);
- videos: `image_root/<video>/<frame>.jpg` and `mask_root/<video>/<frame>.png`, every frame annotated. A video
  whose masks do not pair one to one with its frames is skipped with a warning naming it (its labels may belong to
  other frames); only when no video is left is it an error.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence

IMAGE_SUFFIXES = (".jpg", ".jpeg")
MASK_SUFFIX = ".png"
STATIC_LAYOUTS = ("flat", "class_folders")
DOWNLOAD_HINT = "see `python scripts/data/download_datasets.py --help`"


def require_directory(path: str | os.PathLike, description: str, hint: str = DOWNLOAD_HINT) -> Path:
    """Return `path` as a Path if it is a directory.

    Raises:
        FileNotFoundError: naming the folder, what it should hold, and `hint`.
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{description} not found: {path} is not a directory; {hint}")
    return path


def _images_in(folder: Path) -> list[str]:
    return sorted(entry.name for entry in os.scandir(folder)
                  if entry.is_file() and entry.name.lower().endswith(IMAGE_SUFFIXES))


def _require_masks(image_folder: Path, mask_folder: Path, image_names: Sequence[str]) -> None:
    mask_stems = {name[: -len(MASK_SUFFIX)] for name in os.listdir(mask_folder) if name.endswith(MASK_SUFFIX)}
    missing = [name for name in image_names if Path(name).stem not in mask_stems]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} image(s) in {image_folder} have no mask, e.g. {image_folder / missing[0]} needs "
            f"{mask_folder / (Path(missing[0]).stem + MASK_SUFFIX)}; every training image needs a same-named "
            f"{MASK_SUFFIX} mask (remove the image or add its mask)")


def list_static_images(root: str | os.PathLike, layout: str) -> list[Path]:
    """All images of one static-image source, each checked to have a mask.

    Args:
        root: the source folder (e.g. `static/DUTS-TR`).
        layout: 'flat' (`root/x.jpg + x.png`) or 'class_folders' (`root/<class>/x.jpg + x.png`).
    Returns:
        Sorted image paths; the mask of `x.jpg` is `x.png` beside it.
    Raises:
        ValueError: unknown layout, or no image in the source.
        FileNotFoundError: `root` missing, or an image without its mask.
    """
    if layout not in STATIC_LAYOUTS:
        raise ValueError(f"static layout must be one of {STATIC_LAYOUTS}, got {layout!r}")
    root = require_directory(root, "static image source")
    folders = [root] if layout == "flat" else sorted(p for p in root.iterdir() if p.is_dir())
    images: list[Path] = []
    for folder in folders:
        names = _images_in(folder)
        _require_masks(folder, folder, names)
        images.extend(folder / name for name in names)
    if not images:
        where = "directly in it" if layout == "flat" else "in its class sub-folders"
        raise ValueError(f"static image source {root} holds no {'/'.join(IMAGE_SUFFIXES)} images {where} "
                         f"(layout {layout!r})")
    return images


def read_subset_file(path: str | os.PathLike) -> list[str]:
    """Video names listed one per line (blank lines and `#` comments ignored).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file lists no video.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"video subset file not found: {path}")
    names = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    names = [name for name in names if name]
    if not names:
        raise ValueError(f"video subset file {path} lists no video; expected one video name per line")
    return names


def list_annotated_videos(image_root: str | os.PathLike, mask_root: str | os.PathLike, *, dataset_name: str,
                          videos: Sequence[str] | None = None, min_frames: int = 1,
                          hint: str = DOWNLOAD_HINT) -> dict[str, list[str]]:
    """Frame lists of the usable videos of a video dataset, with every frame checked to have a mask.

    Args:
        image_root: folder of per-video frame folders (`<video>/<frame>.jpg`).
        mask_root: folder of per-video mask folders (`<video>/<frame>.png`).
        dataset_name: used in messages.
        videos: restrict to these video names (a subset list); None = every folder in `image_root`. Names that
            are not in `image_root` are skipped with a warning.
        min_frames: videos with fewer frames are skipped (a training clip needs this many distinct frames).
        hint: how to obtain the data, appended to "not found" errors.
    Returns:
        {video: sorted frame file names}, videos in sorted order.
    Raises:
        FileNotFoundError: a root is missing.
        ValueError: `videos` is empty, or no video is left (videos whose masks do not pair with their frames are
            skipped with a warning).
    """
    image_root = require_directory(image_root, f"{dataset_name} frame folder (<video>/<frame>.jpg)", hint)
    mask_root = require_directory(mask_root, f"{dataset_name} mask folder (<video>/<frame>.png)", hint)
    available = sorted(entry.name for entry in os.scandir(image_root) if entry.is_dir())
    if videos is None:
        selected = available
    else:
        if len(videos) == 0:
            raise ValueError(f"the video subset for {dataset_name} is empty; pass at least one video name or no "
                             "subset to use every video")
        known = set(available)
        absent = [name for name in videos if name not in known]
        if absent:
            warnings.warn(f"{len(absent)} of {len(videos)} subset videos are not in {image_root} and are skipped, "
                          f"e.g. {absent[0]!r}", stacklevel=2)
        selected = sorted(set(videos) & known)
    frame_lists: dict[str, list[str]] = {}
    unpaired = 0
    for video in selected:
        frames = _images_in(image_root / video)
        if len(frames) < min_frames:
            continue
        problem = _pairing_problem(image_root / video, mask_root / video, frames)
        if problem:
            warnings.warn(f"{dataset_name} video {video!r} skipped: {problem}", stacklevel=2)
            unpaired += 1
            continue
        frame_lists[video] = frames
    if not frame_lists:
        if unpaired:
            raise ValueError(f"no usable {dataset_name} video in {image_root}: {len(selected)} selected, {unpaired} "
                             "skipped because their masks do not pair with their frames (see the warnings), the "
                             f"rest shorter than {min_frames} frames; every frame needs a same-named {MASK_SUFFIX} "
                             f"mask in {mask_root}/<video>/")
        raise ValueError(f"no usable {dataset_name} video in {image_root}: {len(selected)} selected, none with at "
                         f"least {min_frames} frames")
    return frame_lists


def _pairing_problem(image_folder: Path, mask_folder: Path, frames: Sequence[str]) -> str | None:
    """Why a video's masks do not pair one to one with its frames, or None when they do."""
    if not mask_folder.is_dir():
        return f"it has frames in {image_folder} but no mask folder {mask_folder}"
    frame_stems = {Path(name).stem for name in frames}
    mask_stems = {name[: -len(MASK_SUFFIX)] for name in os.listdir(mask_folder) if name.endswith(MASK_SUFFIX)}
    without_mask = sorted(frame_stems - mask_stems)
    if without_mask:
        return (f"{len(without_mask)} of its {len(frames)} frames have no mask, e.g. {image_folder} frame "
                f"{without_mask[0]!r} needs {mask_folder / (without_mask[0] + MASK_SUFFIX)}")
    without_frame = sorted(mask_stems - frame_stems)
    if without_frame:
        return (f"its {len(mask_stems)} masks outnumber its {len(frames)} frames, e.g. "
                f"{mask_folder / (without_frame[0] + MASK_SUFFIX)} has no frame in {image_folder}")
    return None
