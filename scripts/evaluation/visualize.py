r"""Overlay index masks on their frames: an .mp4 video and/or a PNG contact sheet (grid of evenly spaced frames).

Examples:
    python scripts/evaluation/visualize.py --frames ../DAVIS/2017/trainval/JPEGImages/480p/bike-packing \
        --masks ../output/d17_val/bike-packing --video bike-packing.mp4 --sheet bike-packing.png
    python scripts/evaluation/visualize.py --frames my_video/frames --masks my_video/masks --sheet grid.png --columns 4
    python scripts/evaluation/visualize.py --frames my_video.mp4 --masks ../output/generic/my_video --video overlay.mp4

Frames are a folder of images (.jpg/.jpeg/.png) or a video file (.mp4, read with OpenCV). Masks (index PNGs,
0 = background) are matched to image frames by file name stem, and to frame i of a video by the number in their
name (00000.png is the first frame, as eval.py writes them); a frame without a mask is shown as it is (e.g. sparse YouTube-VOS outputs). Each object id gets its colour of the DAVIS palette,
blended over the frame with its outline drawn in full colour. A mask of another size than its frame is resized to
it (nearest neighbour), as eval.py may keep masks at the benchmark's size. Outputs are written atomically.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Sequence, Union


import cv2
import numpy as np
from tqdm import tqdm

from configs.common import DAVIS_PALETTE, atomic_output, run_cli
from dataset.image_io import read_image, read_mask_ids, write_image

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
VIDEO_SUFFIXES = (".mp4",)
MASK_SUFFIX = ".png"
PALETTE_RGB = np.frombuffer(DAVIS_PALETTE, dtype=np.uint8).reshape(-1, 3)
DEFAULT_ALPHA = 0.5
DEFAULT_FPS = 10.0
DEFAULT_COLUMNS = 6
DEFAULT_SHEET_FRAMES = 12
VIDEO_CODEC = "mp4v"  # MPEG-4 part 2: written by every OpenCV build's FFmpeg, read by common players
OUTLINE_PX = 1
LABEL_SCALE = 0.4  # font scale of the frame names on the contact sheet
LABEL_MARGIN_PX = 3
LABEL_COLOUR = (255, 255, 255)
LABEL_SHADOW = (0, 0, 0)
TILE_GAP_PX = 2


@dataclasses.dataclass(frozen=True)
class VideoFrame:
    """Frame `index` (0-based) of a video file; named like an extracted frame (`stem` 00000, 00001, ...)."""

    video: Path
    index: int

    @property
    def stem(self) -> str:
        return f"{self.index:05d}"


Frame = Union[Path, VideoFrame]


def _video_frames(video: Path) -> list[VideoFrame]:
    """Every frame of `video`, counted by decoding it (container frame counts can be approximate)."""
    capture = cv2.VideoCapture(str(video))
    try:
        if not capture.isOpened():
            raise ValueError(f"OpenCV cannot open the video {video}; convert it to H.264 or MPEG-4 .mp4, or pass "
                             "a folder of its frames")
        count = 0
        while capture.grab():
            count += 1
    finally:
        capture.release()
    return [VideoFrame(video, index) for index in range(count)]


def frame_mask_pairs(frames: str | Path, masks_dir: str | Path) -> list[tuple[Frame, Path | None]]:
    """The frames of `frames` (a folder of images in name order, or a video file) each with its mask in
    `masks_dir` (or None): same stem for an image, the number in the mask's name for frame i of a video.

    Raises:
        FileNotFoundError: the frames folder / video or the masks folder is missing.
        ValueError: no frame, a video OpenCV cannot read, or no frame has a mask (names do not match).
    """
    frames, masks_dir = Path(frames), Path(masks_dir)
    is_video = frames.suffix.lower() in VIDEO_SUFFIXES
    if is_video and not frames.is_file():
        raise FileNotFoundError(f"video not found: {frames}")
    for folder, what in (() if is_video else ((frames, "frames"),)) + ((masks_dir, "masks"),):
        if not folder.is_dir():
            raise FileNotFoundError(f"{what} folder not found: {folder}")
    if is_video:
        found: list[Frame] = list(_video_frames(frames))
    else:
        found = sorted(path for path in frames.iterdir() if path.suffix.lower() in FRAME_SUFFIXES)
    if not found and is_video:
        raise ValueError(f"OpenCV decodes no frame of {frames}; convert it to H.264 or MPEG-4 .mp4, or pass a "
                         "folder of its frames")
    if not found:
        raise ValueError(f"no frame ({'/'.join(FRAME_SUFFIXES)}) in {frames}; pass the folder of one video's "
                         f"frames, or a video file ({'/'.join(VIDEO_SUFFIXES)})")
    masks = {path.stem: path for path in masks_dir.iterdir() if path.suffix.lower() == MASK_SUFFIX}
    if is_video:
        by_number = {int(stem): path for stem, path in masks.items() if stem.isdigit()}
        pairs = [(frame, by_number.get(frame.index)) for frame in found]
    else:
        pairs = [(frame, masks.get(frame.stem)) for frame in found]
    if not any(mask is not None for _, mask in pairs):
        raise ValueError(f"no mask in {masks_dir} matches a frame of {frames} (e.g. "
                         f"{found[0].stem}{MASK_SUFFIX}); masks are matched to frames by file name stem, or to "
                         "frame i of a video by the number in their name")
    return pairs


class _FrameReader:
    """Reads image files, and video frames through one open capture per video (sequential reads do not seek)."""

    def __init__(self) -> None:
        self._captures: dict[Path, tuple[cv2.VideoCapture, int]] = {}

    def read(self, frame: Frame) -> np.ndarray:
        """The frame as uint8 H×W×3 RGB."""
        if not isinstance(frame, VideoFrame):
            return read_image(frame)
        capture, next_index = self._captures.get(frame.video) or (cv2.VideoCapture(str(frame.video)), 0)
        if frame.index != next_index:
            capture.set(cv2.CAP_PROP_POS_FRAMES, frame.index)
        ok, bgr = capture.read()
        if not ok:
            raise ValueError(f"cannot read frame {frame.index} of {frame.video}; the video may be truncated")
        self._captures[frame.video] = (capture, frame.index + 1)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


_frame_reader = _FrameReader()


def overlay(image: np.ndarray, mask: np.ndarray | None, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """Blend each object's palette colour over the frame and outline it.

    Args:
        image: uint8 H×W×3 RGB.
        mask: integer H'×W' object ids (0 = background), resized to H×W (nearest) if needed; None = no overlay.
        alpha: weight of the object colour in [0, 1].
    Returns:
        uint8 H×W×3 RGB.
    Raises:
        ValueError: alpha outside [0, 1], or an image that is not H×W×3 uint8.
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha {alpha} is invalid; expected a blending weight in [0, 1]")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 H×W×3, got {image.dtype} {tuple(image.shape)}")
    if mask is None:
        return image.copy()
    height, width = image.shape[:2]
    if mask.shape != (height, width):
        mask = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    colours = PALETTE_RGB[mask.astype(np.intp) % len(PALETTE_RGB)]
    objects = mask > 0
    blended = image.astype(np.float32)
    blended[objects] = (1 - alpha) * blended[objects] + alpha * colours[objects]
    result = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    # Outline: pixels whose 3×3 neighbourhood holds another id.
    kernel = np.ones((2 * OUTLINE_PX + 1,) * 2, np.uint8)
    labels = mask.astype(np.uint8)
    boundary = (cv2.dilate(labels, kernel) != cv2.erode(labels, kernel)) & objects
    result[boundary] = colours[boundary]
    return result


def _overlaid(pairs: Sequence[tuple[Frame, Path | None]], alpha: float, index: int) -> np.ndarray:
    frame, mask = pairs[index]
    return overlay(_frame_reader.read(frame), None if mask is None else read_mask_ids(mask), alpha)


def write_overlay_video(pairs: Sequence[tuple[Frame, Path | None]], path: str | Path, *, fps: float = DEFAULT_FPS,
                        alpha: float = DEFAULT_ALPHA) -> Path:
    """Write every frame, overlaid, as an .mp4 (one video frame per input frame), atomically.

    Raises:
        ValueError: no frame, fps <= 0, or a path not ending in .mp4.
        RuntimeError: OpenCV cannot open a video writer (no FFmpeg support in this OpenCV build).
    """
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise ValueError(f"video path {path} must end in .mp4")
    if fps <= 0:
        raise ValueError(f"fps {fps} is invalid; expected a positive frame rate")
    if not pairs:
        raise ValueError(f"no frame to write to {path}")
    first = _overlaid(pairs, alpha, 0)
    height, width = first.shape[:2]
    with atomic_output(path) as temporary:
        writer = cv2.VideoWriter(str(temporary), cv2.VideoWriter_fourcc(*VIDEO_CODEC), fps, (width, height))
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV cannot write {VIDEO_CODEC} video to {path}; install opencv-python-headless "
                               "from PyPI (its wheels include FFmpeg)")
        try:
            for index in tqdm(range(len(pairs)), desc=f"video {path.name}", unit="frame", leave=False):
                image = first if index == 0 else _overlaid(pairs, alpha, index)
                if image.shape[:2] != (height, width):
                    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
                writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
    return path


def contact_sheet(pairs: Sequence[tuple[Frame, Path | None]], *, num_frames: int = DEFAULT_SHEET_FRAMES,
                  columns: int = DEFAULT_COLUMNS, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """A grid of `num_frames` evenly spaced overlaid frames (first and last included), each labelled with its name.

    Returns:
        uint8 RGB image, rows × columns tiles of the first frame's size with TILE_GAP_PX gaps.
    Raises:
        ValueError: no frame, or num_frames / columns < 1.
    """
    if num_frames < 1 or columns < 1:
        raise ValueError(f"num_frames {num_frames} and columns {columns} must be at least 1")
    if not pairs:
        raise ValueError("no frame for the contact sheet")
    chosen = sorted(set(np.linspace(0, len(pairs) - 1, min(num_frames, len(pairs))).round().astype(int).tolist()))
    tiles = [_overlaid(pairs, alpha, index) for index in chosen]
    height, width = tiles[0].shape[:2]
    columns = min(columns, len(tiles))
    rows = -(-len(tiles) // columns)
    sheet = np.zeros((rows * (height + TILE_GAP_PX) - TILE_GAP_PX, columns * (width + TILE_GAP_PX) - TILE_GAP_PX, 3),
                     np.uint8)
    for position, (index, tile) in enumerate(zip(chosen, tiles)):
        if tile.shape[:2] != (height, width):
            tile = cv2.resize(tile, (width, height), interpolation=cv2.INTER_AREA)
        tile = np.ascontiguousarray(tile)
        label = pairs[index][0].stem
        origin = (LABEL_MARGIN_PX, height - LABEL_MARGIN_PX)
        cv2.putText(tile, label, origin, cv2.FONT_HERSHEY_SIMPLEX, LABEL_SCALE, LABEL_SHADOW, 2, cv2.LINE_AA)
        cv2.putText(tile, label, origin, cv2.FONT_HERSHEY_SIMPLEX, LABEL_SCALE, LABEL_COLOUR, 1, cv2.LINE_AA)
        top, left = (position // columns) * (height + TILE_GAP_PX), (position % columns) * (width + TILE_GAP_PX)
        sheet[top:top + height, left:left + width] = tile
    return sheet


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", required=True, type=Path, help="folder of one video's frames, or a video file (.mp4)")
    parser.add_argument("--masks", required=True, type=Path, help="folder of its index-mask PNGs (same stems)")
    parser.add_argument("--video", type=Path, default=None, help="write the overlay video here (.mp4)")
    parser.add_argument("--sheet", type=Path, default=None, help="write the contact sheet here (.png)")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="mask colour weight (default 0.5)")
    parser.add_argument("--fps", type=float, default=DEFAULT_FPS, help="video frame rate (default 10)")
    parser.add_argument("--sheet_frames", type=int, default=DEFAULT_SHEET_FRAMES,
                        help="frames on the contact sheet (default 12)")
    parser.add_argument("--columns", type=int, default=DEFAULT_COLUMNS, help="contact sheet columns (default 6)")
    args = parser.parse_args(argv)
    if args.video is None and args.sheet is None:
        parser.error("nothing to write: pass --video OUT.mp4 and/or --sheet OUT.png")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    pairs = frame_mask_pairs(args.frames, args.masks)
    if args.video is not None:
        write_overlay_video(pairs, args.video, fps=args.fps, alpha=args.alpha)
        print(f"{args.video}: {len(pairs)} frames at {args.fps:g} fps")
    if args.sheet is not None:
        write_image(args.sheet, contact_sheet(pairs, num_frames=args.sheet_frames, columns=args.columns,
                                              alpha=args.alpha))
        print(f"{args.sheet}: {min(args.sheet_frames, len(pairs))} frames")


if __name__ == "__main__":
    sys.exit(run_cli(main))
