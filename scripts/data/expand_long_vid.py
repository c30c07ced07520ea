"""Build the Long-time Video ×3 set (LV3) from the ×1 set by ping-pong replay: forward, backward, forward.

Every frame (and every mask, at its replayed positions) is copied under a new `%05d` name, so a video of N frames
becomes 3N frames and its objects are seen again after leaving and re-entering memory.

Usage:
    python scripts/data/expand_long_vid.py --input ../long_video_set/long_video --output ../long_video_set/long_video_x3
"""
from __future__ import annotations

import sys
import argparse
import shutil
from pathlib import Path
from typing import Optional, Sequence


from tqdm import tqdm

from configs.common import atomic_output, run_cli

SUBFOLDERS = ("JPEGImages", "Annotations")
DEFAULT_PASSES = 3  # LV3: forward, backward, forward
FRAME_NAME = "{:05d}"


def ping_pong_order(num_frames: int, passes: int = DEFAULT_PASSES) -> list[int]:
    """Source frame index of each output frame: passes alternate forward and backward over all N frames."""
    forward = list(range(num_frames))
    return [index for p in range(passes) for index in (forward if p % 2 == 0 else forward[::-1])]


def expand_video(source: Path, target: Path, frame_names: Sequence[str], passes: int) -> None:
    """Copy the files of one video folder in ping-pong order; files are matched to frames by their stem."""
    files = {p.stem: p for p in source.iterdir() if p.is_file() and not p.name.startswith(".")}
    for position, index in enumerate(ping_pong_order(len(frame_names), passes)):
        original = files.get(frame_names[index])
        if original is None:  # sparse ground truth: this frame has no mask
            continue
        with atomic_output(target / (FRAME_NAME.format(position) + original.suffix)) as temporary:
            shutil.copyfile(original, temporary)


def expand_dataset(input_dir: Path, output_dir: Path, passes: int = DEFAULT_PASSES) -> list[str]:
    """Expand every video of `input_dir` (`JPEGImages/<v>/`, `Annotations/<v>/`) into `output_dir`.

    Returns:
        the video names.
    Raises:
        FileNotFoundError: `input_dir/JPEGImages` is missing.
    """
    frames_root = input_dir / SUBFOLDERS[0]
    if not frames_root.is_dir():
        raise FileNotFoundError(f"no {SUBFOLDERS[0]} folder in {input_dir}; pass the long_video folder as --input")
    videos = sorted(p.name for p in frames_root.iterdir() if p.is_dir())
    for video in tqdm(videos, desc="videos", unit="video"):
        frame_names = sorted(p.stem for p in (frames_root / video).iterdir() if not p.name.startswith("."))
        for sub in SUBFOLDERS:
            if (input_dir / sub / video).is_dir():
                expand_video(input_dir / sub / video, output_dir / sub / video, frame_names, passes)
    return videos


def main(argv: Optional[Sequence[str]] = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, type=Path, help="the long_video folder")
    parser.add_argument("--output", required=True, type=Path, help="where to write long_video_x3")
    parser.add_argument("--passes", type=int, default=DEFAULT_PASSES, help="replay passes (3 for LV3)")
    arguments = parser.parse_args(argv)
    return expand_dataset(arguments.input, arguments.output, arguments.passes)


def _cli(arguments: list[str]) -> int:
    main(arguments)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(_cli))
