"""Benchmark readers for evaluation: DAVIS 2016/2017, YouTube-VOS 2018/2019, Long-time Video, LVOS and generic folders.

Each benchmark is opened with `open_benchmark(config)`, which checks the dataset root and lists the videos;
`benchmark.video(name)` then checks one video (frames, input masks, sizes) and raises a one-line error naming the
file when something is wrong, so that one broken video does not stop the others. Frames are read lazily, one at
a time, at their stored resolution; `inference.resize` does the resizing the original evaluation did (shorter side
to `size`, bilinear for images, nearest for masks).

Layouts (`<x>` = a video, `<f>` = a frame name; see the README of each benchmark):
- D16: `<d16>/{JPEGImages,Annotations}/480p/<x>/`, video list `<d16>/../2017/trainval/ImageSets/2016/val.txt`
  (as the original) or `<d16>/ImageSets/{2016,480p}/val.txt`; masks are 0/255, so the object id is 255.
- D17: `<d17>/{trainval,test-dev}/{JPEGImages,Annotations}/480p/<x>/`, list `ImageSets/2017/{val,test-dev}.txt`.
  At a size other than 480 the `Full-Resolution` (or `1080p`) frames are read when present, and outputs keep the
  480p size, except at size -1, which keeps the full resolution (outputs and scoring too), as the original.
- Y18/Y19: frames `<root>/all_frames/<split>_all_frames/JPEGImages/<x>/` (every frame; the sparse
  `<root>/<split>/JPEGImages` is used with a warning when absent), masks `<root>/<split>/Annotations/<x>/` (each
  file may introduce objects), `<root>/<split>/meta.json` lists the frames that are scored.
- LV1/LV3: `<lv>/long_video[_x3]/{JPEGImages,Annotations}/<x>/`; only the first mask is input, frames with a
  ground-truth file are saved, always at native resolution (as the original).
- LVOS1/LVOS2: `<lvos>/<split>/{JPEGImages,Annotations}/<x>/` (`valid` or `test`) and
  `<lvos>/<split>/<split>_meta.json` (or `meta.json`), whose `frame_range.start` says on which frame each object is
  given (objects appear late; only those objects are taken from that frame's annotation, so a densely annotated
  folder needs no preprocessing). Every frame is saved; the LVOS toolkit scores every 5th.
- G: `<generic>/{JPEGImages,Annotations}/<x>/`; the first mask is input (every mask with `use_all_masks`), every
  frame is saved.

Length: one module on purpose: one small reader per benchmark (nine of them) sharing the video and frame types
and the input-mask rules; each reader is a few lines of layout knowledge.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Literal, Mapping, Optional

import numpy as np
from PIL import Image

from dataset.image_io import read_image
from dataset.input_fingerprint import video_fingerprint
from dataset.video_io import check_index_mask, match_mask_to_frame, read_mask_any

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MASK_SUFFIX = ".png"
GROUND_TRUTH_DIR = "GroundTruth"  # not part of the real benchmarks; synthetic and user data may hold full ground truth
DAVIS_NATIVE_SIZE = 480  # DAVIS ships 480p frames; other sizes read the full-resolution frames when present
DAVIS_FULL_RESOLUTION_DIRS = ("Full-Resolution", "1080p")
NATIVE_SIZE = -1  # `size` value meaning "do not resize"

BenchmarkName = Literal["D16", "D17", "Y18", "Y19", "LV1", "LV3", "LVOS1", "LVOS2", "G"]
OutputLayout = Literal["davis", "youtube"]


class EmptyMaskError(ValueError):
    """A video's first input mask holds no object: there is nothing to segment (the video is skipped)."""


@dataclass(frozen=True)
class EvalFrame:
    """One frame of an evaluation video, at its stored resolution.

    Attributes:
        index: position in the video (0 = the first frame with an input mask).
        name: the file stem (e.g. `00005`), used for the output file name.
        image: uint8 H×W×3 RGB.
        mask: uint8 H×W of object ids (0 = background) for the objects given on this frame, or None.
        objects: the object ids given on this frame (ascending; empty without a mask).
        save: whether the benchmark wants this frame's output.
        is_last: the last frame of the video.
    """

    index: int
    name: str
    image: np.ndarray
    mask: Optional[np.ndarray]
    objects: tuple[int, ...]
    save: bool
    is_last: bool


@dataclass(frozen=True)
class InputMask:
    """A mask file given as input on one frame; `objects` restricts it to those ids (None = every id in it)."""

    path: Path
    objects: Optional[frozenset[int]] = None


@dataclass(frozen=True)
class EvalVideo:
    """One checked evaluation video. Frames before the first input mask are already dropped (never processed).

    Attributes:
        name: the video folder name.
        frame_paths: the frames to process, in order.
        input_masks: frame index -> the mask given on that frame (index 0 always has one). On later frames only
            objects not given before are taken from a mask (as the original: later masks add objects).
        save_frames: indices of the frames whose output is saved; None = all.
        palette: 768-byte palette of the input annotation (outputs use it), or None for grayscale annotations.
        output_shape: (H, W) outputs are resized to; None = each frame's own size.
        object_ids: every object id the input masks give (ascending), known before any frame is processed.
        frames_before_first_mask: frames of the video before its first input mask (dropped, never processed).
    """

    name: str
    frame_paths: tuple[Path, ...]
    input_masks: Mapping[int, InputMask]
    save_frames: Optional[frozenset[int]]
    palette: Optional[bytes]
    output_shape: Optional[tuple[int, int]] = None
    object_ids: tuple[int, ...] = ()
    frames_before_first_mask: int = 0

    def __len__(self) -> int:
        return len(self.frame_paths)

    @property
    def full_length(self) -> int:
        """Frames of the whole video, the dropped ones before the first input mask included (the length the
        original decides long-term usage counting from)."""
        return self.frames_before_first_mask + len(self.frame_paths)

    @property
    def saved_frame_names(self) -> list[str]:
        """The names (stems) of the frames whose output is saved, in order."""
        return [path.stem for index, path in enumerate(self.frame_paths)
                if self.save_frames is None or index in self.save_frames]

    @property
    def num_saved_frames(self) -> int:
        return len(self.frame_paths) if self.save_frames is None else len(self.save_frames)

    def frames(self) -> Iterator[EvalFrame]:
        """Read the frames one by one (images, and masks where given).

        Raises:
            FileNotFoundError, ValueError: an unreadable frame or mask (naming the file), a frame whose size
                differs from the first frame's, or a mask that cannot be matched to its frame.
        """
        first_shape: Optional[tuple[int, int]] = None
        last = len(self.frame_paths) - 1
        given_objects: set[int] = set()
        for index, path in enumerate(self.frame_paths):
            image = read_image(path)
            shape = image.shape[:2]
            if first_shape is None:
                first_shape = shape
            elif shape != first_shape:
                raise ValueError(
                    f"frame {path} is {shape[1]}x{shape[0]} but the video's first frame {self.frame_paths[0]} is "
                    f"{first_shape[1]}x{first_shape[0]}; every frame of a video must have the same size"
                )
            mask, objects = None, ()
            if index in self.input_masks:
                mask, objects = _frame_mask(self.input_masks[index], shape, exclude=given_objects)
                given_objects.update(objects)
                if not objects:
                    mask = None
            save = self.save_frames is None or index in self.save_frames
            yield EvalFrame(index, path.stem, image, mask, objects, save, index == last)


def _frame_mask(given: InputMask, frame_shape: tuple[int, int],
                exclude: set[int]) -> tuple[np.ndarray, tuple[int, ...]]:
    """The mask of one frame at the frame's size, keeping only `given.objects` (if set) and no id in `exclude`."""
    mask, _ = read_mask_any(given.path)
    mask = match_mask_to_frame(mask, frame_shape, given.path)
    present = {int(i) for i in np.unique(mask)} - {0}
    keep = (present if given.objects is None else present & given.objects) - exclude
    if keep != present:
        mask = np.where(np.isin(mask, sorted(keep)), mask, 0).astype(np.uint8)
    return mask, tuple(sorted(keep))


def align_ground_truth(ground_truth: np.ndarray, prediction_shape: tuple[int, int], path: Path) -> np.ndarray:
    """A ground-truth mask at its prediction's size, for scoring (see `match_mask_to_frame`); the warning about a
    few pixels' difference is not repeated (it was given when the video's masks were read)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return match_mask_to_frame(ground_truth, prediction_shape, path)


# ----------------------------------------------------------------------------------------------------------------
# Benchmarks


@dataclass(frozen=True)
class Benchmark:
    """An opened benchmark: its videos (checked one by one via `video`) and how outputs are laid out.

    Attributes:
        dataset: the benchmark name (D16 ... G).
        split: `val` or `test`.
        video_names: every video, in order.
        size: shorter side frames are resized to; -1 = native (forced for LV1/LV3).
        layout: `davis` writes `<out>/<video>/<frame>.png`; `youtube` writes `<out>/Annotations/<video>/...`.
        zip_kind: the submission zip to make, or None: `youtube` = `<out>/<basename of out>.zip` holding
            `Annotations/`; `davis` (test-dev) = `<out>.zip` beside `<out>`, holding the video folders.
        ground_truth_dir: folder of `<video>/<frame>.png` ground truth to score against, or None.
        scoring_mode: `davis` (DAVIS 2017 toolkit: objects of the first ground-truth frame) or `appearance`
            (objects scored from where they appear, for benchmarks whose objects appear late).
        frame_roots: the folders of `<video>/` frame folders the run reads.
        mask_roots: the folders of `<video>/` mask folders it reads (input masks and ground truth).
    """

    dataset: str
    split: str
    video_names: tuple[str, ...]
    size: int
    layout: OutputLayout
    zip_kind: Optional[Literal["davis", "youtube"]]
    ground_truth_dir: Optional[Path]
    scoring_mode: Literal["davis", "appearance"]
    _make_video: Callable[[str], EvalVideo] = field(repr=False, compare=False)
    frame_roots: tuple[Path, ...] = ()
    mask_roots: tuple[Path, ...] = ()

    @property
    def input_folders(self) -> tuple[Path, ...]:
        """Every folder of the dataset the run reads (frames, input masks, ground truth); outputs stay out of them."""
        return tuple(dict.fromkeys(self.frame_roots + self.mask_roots))

    def fingerprint(self, name: str) -> dict[str, str]:
        """The fingerprint of one video's inputs (`dataset.input_fingerprint.video_fingerprint`)."""
        return video_fingerprint(name, self.frame_roots, self.mask_roots)

    def video(self, name: str) -> EvalVideo:
        """Check and describe one video.

        Raises:
            FileNotFoundError: its frame or mask folder is missing, or it has no mask.
            EmptyMaskError: its first input mask holds no object.
            ValueError: an unreadable or mismatched first mask, or a mask without a frame.
        """
        return self._make_video(name)


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{what} not found: {path} (check the dataset path setting)")
    return path


def _list_frames(folder: Path) -> list[Path]:
    frames = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not frames:
        raise FileNotFoundError(f"no frames ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return frames


def _check_unique_stems(name: str, frames: list[Path]) -> None:
    """Outputs are named after the frame stems, so two frames with one stem would overwrite each other's."""
    seen: dict[str, Path] = {}
    for path in frames:
        if path.stem in seen:
            raise ValueError(f"video {name!r} has two frames named {path.stem}: {seen[path.stem]} and {path}; their "
                             f"outputs would both be {path.stem}{MASK_SUFFIX}, so keep only one of them")
        seen[path.stem] = path


def _read_input_mask(path: Path) -> tuple[np.ndarray, Optional[bytes]]:
    """An input mask file, refused when it looks smoothed rather than an index mask (`check_index_mask`)."""
    mask, palette = read_mask_any(path)
    check_index_mask(mask, f"mask {path}")
    return mask, palette


def _list_masks(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == MASK_SUFFIX and not p.name.startswith("."))


def _list_videos(folder: Path) -> tuple[str, ...]:
    return tuple(sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")))


def read_video_list(path: Path) -> tuple[str, ...]:
    """Video names from an ImageSets file: one name per line, or DAVIS-2016 style lines of frame paths."""
    names: dict[str, None] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        first = line.split()[0]
        names[Path(first).parent.name if "/" in first else first] = None
    return tuple(names)


def _build_video(
    name: str,
    frame_dir: Path,
    mask_dir: Path,
    *,
    all_masks_are_input: bool,
    save_stems: Optional[set[str]] = None,
    object_start_stems: Optional[Mapping[str, frozenset[int]]] = None,
    output_shape: Optional[tuple[int, int]] = None,
) -> EvalVideo:
    """Check one video: frames exist, masks name frames, the first input mask is readable and not empty.

    Args:
        all_masks_are_input: every mask file adds (or re-annotates) objects; otherwise only the first one.
        save_stems: frame stems to save; None = all.
        object_start_stems: LVOS: frame stem -> the object ids given on that frame (from the meta file).
    """
    frames = _list_frames(_require_dir(frame_dir, f"frame folder of video {name!r}"))
    stems = [p.stem for p in frames]
    _check_unique_stems(name, frames)
    position = {stem: i for i, stem in enumerate(stems)}
    masks = _list_masks(mask_dir)
    if not masks:
        raise FileNotFoundError(f"video {name!r} has no mask: no {MASK_SUFFIX} file in {mask_dir}; the first frame "
                                f"to segment needs an annotation")
    orphans = [m.name for m in masks if m.stem not in position]
    if orphans and object_start_stems is None:
        raise ValueError(f"mask {mask_dir / orphans[0]} has no frame {orphans[0][:-len(MASK_SUFFIX)]}.* in "
                         f"{frame_dir}; mask names must match frame names")
    if object_start_stems is not None:
        missing = [stem for stem in object_start_stems
                   if stem not in position or not (mask_dir / (stem + MASK_SUFFIX)).is_file()]
        if missing:
            raise FileNotFoundError(f"video {name!r}: an object starts on frame {missing[0]} (meta file) but "
                                    f"{mask_dir / (missing[0] + MASK_SUFFIX)} or its frame is missing")
        inputs = {position[stem]: InputMask(mask_dir / (stem + MASK_SUFFIX), ids)
                  for stem, ids in object_start_stems.items()}
    elif all_masks_are_input:
        inputs = {position[m.stem]: InputMask(m) for m in masks}
    else:
        inputs = {position[masks[0].stem]: InputMask(masks[0])}
    if not inputs:
        raise FileNotFoundError(f"video {name!r} has no mask to start from in {mask_dir}")

    first = min(inputs)
    first_mask, palette = _read_input_mask(inputs[first].path)
    restrict = inputs[first].objects
    ids = set(np.unique(first_mask).tolist()) - {0}
    if restrict is not None:
        ids &= set(restrict)
    if not ids:
        raise EmptyMaskError(f"the first mask of video {name!r}, {inputs[first].path}, holds no object (all 0); "
                             f"nothing to segment, the video is skipped")
    for index in sorted(inputs)[1:]:  # every input mask is read now, so bad ids stop the video before it runs
        later, _ = _read_input_mask(inputs[index].path)
        later_ids = set(np.unique(later).tolist()) - {0}
        ids |= later_ids if inputs[index].objects is None else later_ids & set(inputs[index].objects)
    save = None if save_stems is None else frozenset(position[s] - first for s in save_stems
                                                      if s in position and position[s] >= first)
    return EvalVideo(
        name=name,
        frame_paths=tuple(frames[first:]),
        input_masks={index - first: given for index, given in sorted(inputs.items())},
        save_frames=save,
        palette=palette,
        output_shape=output_shape,
        object_ids=tuple(sorted(ids)),
        frames_before_first_mask=first,
    )


def _davis_benchmark(dataset: str, split: str, root: Path, video_list: Path, size: int,
                     zip_kind: Optional[Literal["davis"]], scored: bool) -> Benchmark:
    """D16 / D17: 480p frames, or full-resolution frames at other sizes (outputs at 480p unless size is -1)."""
    frames_480 = _require_dir(root / "JPEGImages" / f"{DAVIS_NATIVE_SIZE}p", f"{dataset} frame folder")
    masks_480 = _require_dir(root / "Annotations" / f"{DAVIS_NATIVE_SIZE}p", f"{dataset} annotation folder")
    if not video_list.is_file():
        raise FileNotFoundError(f"{dataset} video list not found: {video_list} (check the dataset path setting)")
    frame_root, mask_root = frames_480, masks_480
    if size != DAVIS_NATIVE_SIZE:
        for name in DAVIS_FULL_RESOLUTION_DIRS:
            if (root / "JPEGImages" / name).is_dir():
                frame_root, mask_root = root / "JPEGImages" / name, root / "Annotations" / name
                break
        else:
            if size > DAVIS_NATIVE_SIZE or size == NATIVE_SIZE:
                warnings.warn(f"{dataset}: no {' or '.join(DAVIS_FULL_RESOLUTION_DIRS)} frames under "
                              f"{root / 'JPEGImages'}; size {size} uses the 480p frames", stacklevel=3)
    full_resolution = frame_root != frames_480
    # As the original: size -1 keeps the full resolution throughout (outputs too, scored against the full-resolution
    # annotations); other sizes write outputs at the size of the 480p frames that the toolkit scores.
    outputs_at_480p = full_resolution and size != NATIVE_SIZE

    def make(name: str) -> EvalVideo:
        output_shape = None
        if outputs_at_480p:
            reference = _list_frames(_require_dir(frames_480 / name, f"480p frame folder of video {name!r}"))[0]
            with Image.open(reference) as image:
                output_shape = (image.height, image.width)
        return _build_video(name, frame_root / name, mask_root / name, all_masks_are_input=False,
                            output_shape=output_shape)

    ground_truth = masks_480 if outputs_at_480p or not full_resolution else mask_root
    return Benchmark(dataset, split, read_video_list(video_list), size, "davis", zip_kind,
                     ground_truth if scored else None, "davis", make, frame_roots=(frame_root, frames_480),
                     mask_roots=(mask_root, ground_truth))


def _youtube_benchmark(dataset: str, split: str, root: Path, size: int, save_all: bool) -> Benchmark:
    folder = "valid" if split == "val" else "test"
    _require_dir(root, f"{dataset} root")
    split_dir = _require_dir(root / folder, f"{dataset} {folder} folder")
    mask_root = _require_dir(split_dir / "Annotations", f"{dataset} annotation folder")
    meta_path = split_dir / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{dataset} meta file not found: {meta_path} (it lists the frames to score)")
    try:
        meta = json.loads(meta_path.read_text())["videos"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{meta_path} is not a YouTube-VOS meta file (a 'videos' mapping): {error}") from None
    frame_root = root / "all_frames" / f"{folder}_all_frames" / "JPEGImages"
    if not frame_root.is_dir():
        warnings.warn(f"{dataset}: {frame_root} not found; using the sparse frames of {split_dir / 'JPEGImages'} "
                      f"(the published numbers use all frames)", stacklevel=3)
        frame_root = _require_dir(split_dir / "JPEGImages", f"{dataset} frame folder")

    def make(name: str) -> EvalVideo:
        if name not in meta:
            raise KeyError(f"video {name!r} is not in {meta_path}; the frames to save are unknown")
        objects = meta[name].get("objects", {})
        save = None if save_all else {stem for obj in objects.values() for stem in obj.get("frames", [])}
        return _build_video(name, frame_root / name, mask_root / name, all_masks_are_input=True, save_stems=save)

    # The real sets keep their ground truth on the server; a local `GroundTruth/` folder (synthetic data) is scored.
    ground_truth = split_dir / GROUND_TRUTH_DIR if (split_dir / GROUND_TRUTH_DIR).is_dir() else None
    return Benchmark(dataset, split, _list_videos(frame_root), size, "youtube", "youtube", ground_truth,
                     "appearance", make, frame_roots=(frame_root,),
                     mask_roots=(mask_root,) + (() if ground_truth is None else (ground_truth,)))


def _long_video_benchmark(dataset: str, split: str, root: Path, size: int) -> Benchmark:
    frame_root = _require_dir(root / "JPEGImages", f"{dataset} frame folder")
    mask_root = _require_dir(root / "Annotations", f"{dataset} annotation folder")
    if size != NATIVE_SIZE:
        warnings.warn(f"{dataset} runs at native resolution as the original; size {size} is ignored",
                      stacklevel=3)

    def make(name: str) -> EvalVideo:
        stems = {m.stem for m in _list_masks(mask_root / name)}
        return _build_video(name, frame_root / name, mask_root / name, all_masks_are_input=False, save_stems=stems)

    return Benchmark(dataset, split, _list_videos(frame_root), NATIVE_SIZE, "davis", None, mask_root, "davis", make,
                     frame_roots=(frame_root,), mask_roots=(mask_root,))


def _lvos_benchmark(dataset: str, split: str, root: Path, size: int) -> Benchmark:
    folder = "valid" if split == "val" else "test"
    split_dir = _require_dir(root / folder, f"{dataset} {folder} folder")
    frame_root = _require_dir(split_dir / "JPEGImages", f"{dataset} frame folder")
    mask_root = _require_dir(split_dir / "Annotations", f"{dataset} annotation folder")
    candidates = [split_dir / f"{folder}_meta.json", split_dir / "meta.json"]
    meta_path = next((path for path in candidates if path.is_file()), None)
    if meta_path is None:
        raise FileNotFoundError(f"{dataset} meta file not found: {' or '.join(map(str, candidates))} (it says on "
                                f"which frame each object is given)")
    try:
        meta = json.loads(meta_path.read_text())["videos"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{meta_path} is not an LVOS meta file (a 'videos' mapping): {error}") from None

    def make(name: str) -> EvalVideo:
        if name not in meta:
            raise KeyError(f"video {name!r} is not in {meta_path}; its objects' first frames are unknown")
        stem_of = {int(p.stem): p.stem for p in _list_frames(frame_root / name) if p.stem.isdigit()}
        starts: dict[str, set[int]] = {}
        for object_id, info in meta[name]["objects"].items():
            start = int(info["frame_range"]["start"])
            if start not in stem_of:
                raise ValueError(f"{meta_path}: object {object_id} of video {name!r} starts on frame {start}, "
                                 f"which is not in {frame_root / name}")
            starts.setdefault(stem_of[start], set()).add(int(object_id))
        return _build_video(name, frame_root / name, mask_root / name, all_masks_are_input=False,
                            object_start_stems={stem: frozenset(ids) for stem, ids in starts.items()})

    return Benchmark(dataset, split, _list_videos(frame_root), size, "davis", None, None, "appearance", make,
                     frame_roots=(frame_root,), mask_roots=(mask_root,))


def _generic_benchmark(split: str, root: Path, size: int, use_all_masks: bool) -> Benchmark:
    frame_root = _require_dir(root / "JPEGImages", "generic frame folder")
    mask_root = _require_dir(root / "Annotations", "generic annotation folder")

    def make(name: str) -> EvalVideo:
        return _build_video(name, frame_root / name, mask_root / name, all_masks_are_input=use_all_masks)

    # Ground truth: a `GroundTruth/` folder when there is one, else the annotations themselves (scored when they
    # go beyond the input masks). Objects that appear late are scored from their appearance.
    ground_truth = root / GROUND_TRUTH_DIR if (root / GROUND_TRUTH_DIR).is_dir() else mask_root
    mode = "appearance" if use_all_masks or ground_truth != mask_root else "davis"
    return Benchmark("G", split, _list_videos(frame_root), size, "davis", None, ground_truth, mode, make,
                     frame_roots=(frame_root,), mask_roots=(mask_root, ground_truth))


def open_benchmark(config) -> Benchmark:
    """Open the benchmark an `EvalConfig` names (dataset, split and the matching `*_path`).

    Args:
        config: `configs.schema.EvalConfig` (only its fields are read; `dataset` does not import configs).
    Returns:
        the `Benchmark`, its videos listed but not yet checked.
    Raises:
        FileNotFoundError: the dataset root, a required folder, video list or meta file is missing (named).
        ValueError: a split the benchmark does not have, or an unreadable meta file.
    """
    dataset, split, size = config.dataset, config.split, config.size
    if dataset == "D16":
        if split != "val":
            raise ValueError(f"D16 has only the 'val' split, got {split!r}")
        root = _require_dir(Path(config.d16_path), "D16 root (d16_path)")
        candidates = [root.parent / "2017" / "trainval" / "ImageSets" / "2016" / "val.txt",
                      root / "ImageSets" / "2016" / "val.txt", root / "ImageSets" / "480p" / "val.txt"]
        video_list = next((c for c in candidates if c.is_file()), candidates[0])
        return _davis_benchmark("D16", split, root, video_list, size, None, scored=True)
    if dataset == "D17":
        base = _require_dir(Path(config.d17_path), "D17 root (d17_path)")
        sub, list_name = ("trainval", "val") if split == "val" else ("test-dev", "test-dev")
        root = _require_dir(base / sub, f"D17 {sub} folder")
        return _davis_benchmark("D17", split, root, root / "ImageSets" / "2017" / f"{list_name}.txt", size,
                                "davis" if split == "test" else None, scored=split == "val")
    if dataset in ("Y18", "Y19"):
        path = config.y18_path if dataset == "Y18" else config.y19_path
        root = _require_dir(Path(path), f"{dataset} root ({dataset.lower()}_path)")
        return _youtube_benchmark(dataset, split, root, size, config.save_all)
    if dataset in ("LV1", "LV3"):
        base = _require_dir(Path(config.lv_path), f"{dataset} root (lv_path)")
        sub = "long_video" if dataset == "LV1" else "long_video_x3"
        return _long_video_benchmark(dataset, split, _require_dir(base / sub, f"{dataset} folder"), size)
    if dataset in ("LVOS1", "LVOS2"):
        root = _require_dir(Path(config.lvos_path), f"{dataset} root (lvos_path)")
        return _lvos_benchmark(dataset, split, root, size)
    if dataset == "G":
        if config.generic_path is None:
            raise ValueError("dataset G needs generic_path (--generic_path DIR holding JPEGImages/ and Annotations/)")
        root = _require_dir(Path(config.generic_path), "generic root (generic_path)")
        return _generic_benchmark(split, root, size, config.use_all_masks)
    raise ValueError(f"unknown dataset {dataset!r}; expected one of D16 D17 Y18 Y19 LV1 LV3 LVOS1 LVOS2 G")


def ground_truth_frames(ground_truth_dir: Path, video: str) -> list[Path]:
    """The ground-truth mask files of one video (sorted); empty if it has none."""
    return _list_masks(ground_truth_dir / video)


