"""Stages 1-3 training data: clips of annotated videos (reference VOSDataset).

One sample is one video: `num_frames` frames chosen by the curriculum frame sampler (`dataset.sampling`), up to
`max_num_objects` objects of the first sampled frame relabelled 1..k, and these augmentations:
- shared by all frames: horizontal flip, RandomResizedCrop to S×S (area scale 0.36-1, BL30K 0.25-1, aspect
  3/4-4/3), colour jitter (0.1, 0.03, 0.03, 0) and grayscale with probability 0.05;
- per frame: random affine (rotation ±15°, shear ±10°; none for BL30K or while fine-tuning) about the crop centre,
  colour jitter (0.01, 0.01, 0.01, 0).
The geometric chain of a frame is one matrix applied once to the image (bilinear) and once to the mask (nearest).
If the first sampled frame holds no usable object the clip is redrawn, at most 5 times.

Datasets (roots as in the reference, `../DAVIS/2017/trainval`, `../YouTube/train_480p`, `../BL30K`):
- `VOSDataset.davis_2017_train`: `JPEGImages/480p/<v>` + `Annotations/480p/<v>`, the 60 videos of the dataset's own
  `ImageSets/2017/train.txt`, each repeated 5 times per epoch (the reference's ConcatDataset of 5 copies);
- `VOSDataset.youtube_vos_train`: `JPEGImages/<v>` + `Annotations/<v>` of `train_480p` (made by
  scripts/data/resize_youtube.py); frames are every 5th of the video, so max_skip is divided by 5; an optional subset
  file (one video per line, e.g. the original XMem's `util/yv_subset.txt`) restricts the videos;
- `VOSDataset.bl30k`: `JPEGImages/<v>` + `Annotations/<v>` with the BL30K crop scale, no per-frame affine, and the
  object-size rule (an object of frame 0 is kept if it covers > 100 px and either > 900 px or < 400 px in both
  frames 1 and 2; pixel counts at a 384 crop, scaled with the crop area);
- `VOSDataset.davis_layout_folder`: any `JPEGImages/<v>` + `Annotations/<v>` folder with every frame annotated,
  for fine-tuning on one's own videos.
`main_training_mix` builds the stage 2/3 mix (DAVIS ×5 + YouTube-VOS).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from dataset.image_io import read_image, read_index_mask
from dataset.layout_check import MASK_SUFFIX, list_annotated_videos, read_subset_file, require_directory
from dataset.sampling import (INITIAL_MAX_SKIP, YOUTUBE_VOS_FRAME_STRIDE, dataset_max_skip, sample_frame_indices,
                              sample_rng, stream_id)
from dataset.transforms import (NO_AFFINE, AffineJitter, ColourJitter, colour_and_normalise, crop_to_square_matrix,
                                horizontal_flip_matrix, random_resized_crop_box,
                                warp_image_and_mask)

DEFAULT_NUM_FRAMES = 8
DEFAULT_MAX_OBJECTS = 3
DEFAULT_CROP_SIZE = 384
MAX_SAMPLING_TRIALS = 5
DAVIS_TRAIN_REPEATS = 5

REFERENCE_CROP_SIZE = 384
"""Crop size at which the BL30K pixel thresholds below were set."""
BL30K_MIN_OBJECT_PX = 10 * 10
BL30K_LARGE_OBJECT_PX = 30 * 30
BL30K_SMALL_LATER_PX = 20 * 20
BL30K_LATER_FRAMES = 2
"""The size rule looks at this many frames after the first."""

DAVIS_TRAIN_LIST = Path("ImageSets") / "2017" / "train.txt"
DAVIS_RESOLUTION_FOLDER = "480p"


@dataclass(frozen=True)
class VideoAugmentation:
    """Augmentation of video clips; defaults are the reference's for DAVIS / YouTube-VOS.

    Attributes:
        flip_probability: probability of a horizontal flip (shared by the clip).
        crop_scale_range: RandomResizedCrop area fraction range (shared).
        crop_aspect_range: RandomResizedCrop width/height range (shared).
        sequence_colour: colour jitter shared by the clip.
        grayscale_probability: probability of turning the whole clip grey.
        frame_affine: per-frame random affine (switched off while fine-tuning).
        frame_colour: per-frame colour jitter.
        image_interpolation: 'bilinear' (reference) or 'bicubic'; masks always use nearest.
    """

    flip_probability: float = 0.5
    crop_scale_range: tuple[float, float] = (0.36, 1.0)
    crop_aspect_range: tuple[float, float] = (3 / 4, 4 / 3)
    sequence_colour: ColourJitter = ColourJitter(0.1, 0.03, 0.03, 0.0)
    grayscale_probability: float = 0.05
    frame_affine: AffineJitter = AffineJitter(max_rotation_deg=15.0, max_shear_deg=10.0)
    frame_colour: ColourJitter = ColourJitter(0.01, 0.01, 0.01, 0.0)
    image_interpolation: str = "bilinear"


BL30K_AUGMENTATION = VideoAugmentation(crop_scale_range=(0.25, 1.0), frame_affine=NO_AFFINE)


class VOSDataset(Dataset):
    """Training clips from a folder of annotated videos.

    Every sample is a dict (collated by torch's default_collate), S = crop_size, T = num_frames,
    O = max_num_objects:
        rgb: float32 T×3×S×S, ImageNet-normalised.
        first_frame_gt: float32 1×O×S×S, one-hot masks of the chosen objects in frame 0 (zero-padded).
        cls_gt: int64 T×1×S×S, labels 0 (background) .. k (k chosen objects, k <= O).
        selector: float32 O, 1.0 for the first max(1, k) slots.
        info: {'name': video, 'num_objects': max(1, k), 'frames': the T frame file names, in clip order}.

    Randomness comes only from (seed, dataset name, epoch, index). Call `set_epoch`, `set_max_skip` and
    `set_finetune` before each epoch's DataLoader iteration starts (non-persistent workers copy the dataset then).
    """

    def __init__(self, image_root: str | os.PathLike, mask_root: str | os.PathLike, *, name: str,
                 videos: Sequence[str] | None = None, num_frames: int = DEFAULT_NUM_FRAMES,
                 max_num_objects: int = DEFAULT_MAX_OBJECTS, crop_size: int = DEFAULT_CROP_SIZE,
                 max_skip: int = INITIAL_MAX_SKIP, frame_stride: int = 1, repeats: int = 1,
                 augmentation: VideoAugmentation = VideoAugmentation(), bl30k_object_filter: bool = False,
                 seed: int = 0) -> None:
        """
        Args:
            image_root: folder of `<video>/<frame>.jpg`.
            mask_root: folder of `<video>/<frame>.png` (index masks, every frame annotated).
            name: dataset name, used in messages and to separate its random stream from other datasets'.
            videos: only these videos (a subset list); None = all.
            num_frames: frames per clip (T); shorter videos are skipped.
            max_num_objects: objects per clip (O); more are subsampled at random.
            crop_size: side S of the square output frames.
            max_skip: curriculum max frame skip, in frames of the original video (see `set_max_skip`).
            frame_stride: the frame list keeps every frame_stride-th frame of the video (YouTube-VOS: 5).
            repeats: each video appears this many times per epoch.
            augmentation: augmentation parameters.
            bl30k_object_filter: apply BL30K's object-size rule.
            seed: the run's seed.
        Raises:
            FileNotFoundError: a root is missing.
            ValueError: an empty subset, no usable video (at least num_frames frames, masks paired one to one with
                them; unpaired videos are skipped with a warning), or a bad numeric argument.
        """
        if num_frames < 1 or max_num_objects < 1 or crop_size < 1 or repeats < 1:
            raise ValueError(f"num_frames, max_num_objects, crop_size and repeats must be >= 1, got {num_frames}, "
                             f"{max_num_objects}, {crop_size}, {repeats}")
        self.image_root = Path(image_root)
        self.mask_root = Path(mask_root)
        self.name = name
        self.frame_lists = list_annotated_videos(image_root, mask_root, dataset_name=name, videos=videos,
                                                 min_frames=num_frames)
        self.videos = list(self.frame_lists)
        self.num_frames = num_frames
        self.max_num_objects = max_num_objects
        self.crop_size = crop_size
        self.frame_stride = frame_stride
        self.repeats = repeats
        self.augmentation = augmentation
        self.bl30k_object_filter = bl30k_object_filter
        self.seed = seed
        self.epoch = 0
        self.finetune = False
        self.max_skip = INITIAL_MAX_SKIP
        self.set_max_skip(max_skip)

    # -- construction for the known datasets ---------------------------------------------------------------------

    @classmethod
    def davis_2017_train(cls, davis_root: str | os.PathLike, *, repeats: int = DAVIS_TRAIN_REPEATS,
                         **options: Any) -> "VOSDataset":
        """DAVIS 2017 train (60 videos from `ImageSets/2017/train.txt`), each video `repeats` times per epoch.

        Args:
            davis_root: the `trainval` folder (holding JPEGImages/480p), or a folder holding `2017/trainval`.
            options: further VOSDataset keyword arguments (num_frames, crop_size, max_skip, seed, ...).
        """
        root = _resolve_root(davis_root, "DAVIS 2017 trainval", Path("JPEGImages") / DAVIS_RESOLUTION_FOLDER,
                             [Path("."), Path("2017") / "trainval"])
        train_list = root / DAVIS_TRAIN_LIST
        if not train_list.is_file():
            raise FileNotFoundError(f"DAVIS 2017 train list not found: {train_list}; it ships with "
                                    "DAVIS-2017-trainval-480p.zip (see scripts/data/download_datasets.py)")
        return cls(root / "JPEGImages" / DAVIS_RESOLUTION_FOLDER, root / "Annotations" / DAVIS_RESOLUTION_FOLDER,
                   name="DAVIS-2017-train", videos=read_subset_file(train_list), repeats=repeats, **options)

    @classmethod
    def youtube_vos_train(cls, youtube_root: str | os.PathLike, *, subset_file: str | os.PathLike | None = None,
                          **options: Any) -> "VOSDataset":
        """YouTube-VOS train at 480p (every 5th frame annotated; max_skip is divided by 5).

        Args:
            youtube_root: the `train_480p` folder (holding JPEGImages/), or a folder holding `train_480p`.
            subset_file: optional list of videos, one per line; the original XMem trained on its
                `util/yv_subset.txt` (3464 videos) — pass that file to reproduce it. None = every video.
            options: further VOSDataset keyword arguments.
        """
        root = _resolve_root(youtube_root, "YouTube-VOS train_480p", Path("JPEGImages"),
                             [Path("."), Path("train_480p")])
        videos = read_subset_file(subset_file) if subset_file is not None else None
        return cls(root / "JPEGImages", root / "Annotations", name="YouTubeVOS-train", videos=videos,
                   frame_stride=YOUTUBE_VOS_FRAME_STRIDE, **options)

    @classmethod
    def bl30k(cls, bl30k_root: str | os.PathLike, **options: Any) -> "VOSDataset":
        """BL30K (stage 1): its own crop scale, no per-frame affine, and the object-size rule."""
        root = require_directory(bl30k_root, "BL30K root (JPEGImages/, Annotations/)",
                                 "download it from https://doi.org/10.13012/B2IDB-1702934_V1")
        options.setdefault("augmentation", BL30K_AUGMENTATION)
        return cls(root / "JPEGImages", root / "Annotations", name="BL30K", bl30k_object_filter=True, **options)

    @classmethod
    def davis_layout_folder(cls, root: str | os.PathLike, **options: Any) -> "VOSDataset":
        """Any DAVIS-layout folder, `JPEGImages/<v>/*.jpg` + `Annotations/<v>/*.png`, every frame annotated.

        A `480p` level (`JPEGImages/480p/<v>`) is used when present. For fine-tuning on one's own videos.
        """
        root = require_directory(root, "video folder (JPEGImages/<video>/, Annotations/<video>/)",
                                 "lay your videos out as JPEGImages/<video>/<frame>.jpg + Annotations/<video>/"
                                 "<frame>.png")
        image_root, mask_root = root / "JPEGImages", root / "Annotations"
        if (image_root / DAVIS_RESOLUTION_FOLDER).is_dir():
            image_root, mask_root = image_root / DAVIS_RESOLUTION_FOLDER, mask_root / DAVIS_RESOLUTION_FOLDER
        return cls(image_root, mask_root, name=f"folder:{root.name}", **options)

    # -- schedule --------------------------------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentations and frames of `epoch`."""
        self.epoch = epoch

    def set_max_skip(self, max_skip: int) -> None:
        """Set the curriculum's max frame skip, counted in frames of the original video (divided by frame_stride)."""
        dataset_max_skip(max_skip, self.frame_stride)  # validates
        self.max_skip = max_skip

    def set_finetune(self, finetune: bool) -> None:
        """While fine-tuning, the per-frame affine is off ("fewer augmentations to train the sensory memory")."""
        self.finetune = finetune

    # -- samples ---------------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.videos) * self.repeats

    def __getitem__(self, index: int) -> dict:
        return self.sample(index, self.epoch)

    def sample(self, index: int, epoch: int) -> dict:
        """Sample `index` as drawn in `epoch`: a pure function of (seed, name, epoch, index, max_skip, finetune)."""
        if not 0 <= index < len(self):
            raise IndexError(f"sample index {index} out of range for {self.name} ({len(self)} samples)")
        rng = sample_rng(self.seed, stream_id(self.name), epoch, index)
        video = self.videos[index % len(self.videos)]
        frame_names = self.frame_lists[video]
        max_skip = dataset_max_skip(self.max_skip, self.frame_stride)
        for _ in range(MAX_SAMPLING_TRIALS):
            indices = sample_frame_indices(rng, len(frame_names), self.num_frames, max_skip)
            chosen = [frame_names[i] for i in indices]
            frames, masks = self._load_clip(rng, video, chosen)
            objects = self._usable_objects(masks)
            if objects:
                break
        if len(objects) > self.max_num_objects:
            objects = [int(o) for o in rng.choice(objects, size=self.max_num_objects, replace=False)]

        size = self.crop_size
        stacked = np.stack(masks)
        cls_gt = np.zeros((self.num_frames, size, size), dtype=np.int64)
        first_frame_gt = np.zeros((1, self.max_num_objects, size, size), dtype=np.float32)
        for slot, object_id in enumerate(objects):
            cls_gt[stacked == object_id] = slot + 1
            first_frame_gt[0, slot] = stacked[0] == object_id
        num_objects = max(1, len(objects))
        selector = torch.zeros(self.max_num_objects)
        selector[:num_objects] = 1.0
        return {
            "rgb": torch.stack(frames),
            "first_frame_gt": torch.from_numpy(first_frame_gt),
            "cls_gt": torch.from_numpy(cls_gt).unsqueeze(1),
            "selector": selector,
            "info": {"name": video, "num_objects": num_objects, "frames": chosen},
        }

    def _usable_objects(self, masks: list[np.ndarray]) -> list[int]:
        """Object ids of the first frame, after BL30K's size rule when enabled."""
        ids, counts = np.unique(masks[0], return_counts=True)
        candidates = [(int(i), int(c)) for i, c in zip(ids, counts) if i != 0]
        if not self.bl30k_object_filter:
            return [object_id for object_id, _ in candidates]
        area_scale = (self.crop_size / REFERENCE_CROP_SIZE) ** 2
        kept = []
        for object_id, first_count in candidates:
            if first_count <= BL30K_MIN_OBJECT_PX * area_scale:
                continue
            later = max((int((m == object_id).sum()) for m in masks[1:1 + BL30K_LATER_FRAMES]), default=0)
            # A small object is fine if it stays small; one that is small only here is a sliver of a big one.
            if first_count > BL30K_LARGE_OBJECT_PX * area_scale or later < BL30K_SMALL_LATER_PX * area_scale:
                kept.append(object_id)
        return kept

    def _load_clip(self, rng: np.random.Generator, video: str,
                   frame_names: list[str]) -> tuple[list[torch.Tensor], list[np.ndarray]]:
        augmentation = self.augmentation
        size = self.crop_size
        flip = rng.uniform() < augmentation.flip_probability
        box = None
        sequence_colour = None
        grayscale = False
        frame_affine = NO_AFFINE if self.finetune else augmentation.frame_affine
        frames, masks = [], []
        for frame_name in frame_names:
            image_path = self.image_root / video / frame_name
            mask_path = self.mask_root / video / (Path(frame_name).stem + MASK_SUFFIX)
            image = read_image(image_path)
            mask, _ = read_index_mask(mask_path)
            height, width = mask.shape
            if image.shape[:2] != (height, width):
                raise ValueError(f"mask {mask_path} is {width}×{height} but frame {image_path} is "
                                 f"{image.shape[1]}×{image.shape[0]}; a mask must match its frame")
            if box is None:
                # Shared draws happen on the first frame, in a fixed order, so the stream stays reproducible.
                left, top, box_width, box_height = random_resized_crop_box(
                    rng, height, width, augmentation.crop_scale_range, augmentation.crop_aspect_range)
                box = (left / width, top / height, box_width / width, box_height / height)
                sequence_colour = augmentation.sequence_colour.sample(rng)
                grayscale = rng.uniform() < augmentation.grayscale_probability
            # The box is stored relative to the frame size, in case a video's frames differ in size.
            crop = crop_to_square_matrix(box[0] * width, box[1] * height, box[2] * width, box[3] * height, size)
            source_to_output = crop @ horizontal_flip_matrix(width) if flip else crop
            centre = (size - 1) / 2
            source_to_output = frame_affine.sample(rng, centre, centre) @ source_to_output
            warped, warped_mask = warp_image_and_mask(image, mask, source_to_output, size,
                                                      image_interpolation=augmentation.image_interpolation)
            frames.append(colour_and_normalise(warped, sequence_colour, grayscale, augmentation.frame_colour, rng))
            masks.append(warped_mask)
        return frames, masks


def _resolve_root(root: str | os.PathLike, description: str, marker: Path, candidates: list[Path]) -> Path:
    """The first of root/candidate that holds `marker`; FileNotFoundError naming every place looked at."""
    root = Path(root).expanduser()
    for candidate in candidates:
        if (root / candidate / marker).is_dir():
            return root / candidate
    looked = ", ".join(str(root / candidate / marker) for candidate in candidates)
    raise FileNotFoundError(f"{description} not found under {root}: none of {looked} is a directory; "
                            "see `python scripts/data/download_datasets.py --help`")


class TrainingMix(ConcatDataset):
    """Several training datasets as one (each keeps its own random stream); schedule calls reach every part."""

    def set_epoch(self, epoch: int) -> None:
        """Forward to every part."""
        for part in self.datasets:
            part.set_epoch(epoch)

    def set_max_skip(self, max_skip: int) -> None:
        """Forward to every part (each divides by its own frame stride)."""
        for part in self.datasets:
            part.set_max_skip(max_skip)

    def set_finetune(self, finetune: bool) -> None:
        """Forward to every part."""
        for part in self.datasets:
            part.set_finetune(finetune)


def main_training_mix(davis_root: str | os.PathLike, youtube_root: str | os.PathLike, *,
                      youtube_subset_file: str | os.PathLike | None = None,
                      davis_repeats: int = DAVIS_TRAIN_REPEATS, **options: Any) -> TrainingMix:
    """The stage 2/3 training set: DAVIS 2017 train × `davis_repeats` followed by YouTube-VOS train.

    Args:
        davis_root, youtube_root: as `VOSDataset.davis_2017_train` / `VOSDataset.youtube_vos_train`.
        youtube_subset_file: optional YouTube-VOS video list (the original's `util/yv_subset.txt`).
        davis_repeats: DAVIS copies per epoch (reference 5).
        options: VOSDataset keyword arguments shared by both (num_frames, crop_size, max_skip, seed, ...).
    """
    davis = VOSDataset.davis_2017_train(davis_root, repeats=davis_repeats, **options)
    youtube = VOSDataset.youtube_vos_train(youtube_root, subset_file=youtube_subset_file, **options)
    return TrainingMix([davis, youtube])
