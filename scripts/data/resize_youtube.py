"""Resize YouTube-VOS training videos so that their shorter side is 480 pixels (makes `train_480p`).

    python scripts/data/resize_youtube.py ../YouTube/train ../YouTube/train_480p [--workers 8]

Frames are resized with bicubic interpolation (PIL, antialiased when shrinking) and saved as JPEG; masks with
nearest neighbour, keeping their palette. Output sizes follow the reference: int(side × 480 / shorter side).
Videos are processed in parallel processes; every file is written atomically and existing outputs are skipped, so
an interrupted run continues where it stopped.
"""
from __future__ import annotations

import argparse
import os
import sys
from multiprocessing import Pool
from pathlib import Path


import numpy as np
from PIL import Image
from tqdm import tqdm

from dataset.image_io import read_image, read_index_mask, write_image, write_index_mask
from configs.common import run_cli

SHORT_SIDE_PX = 480
JPEG_QUALITY = 75
"""PIL's default quality, which the reference's resize script saved with."""
FOLDERS = {"JPEGImages": ".jpg", "Annotations": ".png"}


def _resized_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    ratio = short_side / min(width, height)
    return int(width * ratio), int(height * ratio)


def resize_video(job: tuple[Path, Path, str, int, int]) -> int:
    """Resize every frame (or mask) of one video folder; returns how many files were written."""
    source, output, kind, short_side, jpeg_quality = job
    written = 0
    for path in sorted(source.iterdir()):
        if path.suffix.lower() != FOLDERS[kind] or (output / path.name).is_file():
            continue
        if kind == "JPEGImages":
            image = Image.fromarray(read_image(path))
            resized = image.resize(_resized_size(*image.size, short_side), Image.Resampling.BICUBIC)
            write_image(output / path.name, np.asarray(resized), quality=jpeg_quality)
        else:
            mask, palette = read_index_mask(path)
            height, width = mask.shape
            resized = Image.fromarray(mask).resize(_resized_size(width, height, short_side), Image.Resampling.NEAREST)
            write_index_mask(output / path.name, np.asarray(resized), palette=palette)
        written += 1
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="YouTube-VOS split folder holding JPEGImages/ and Annotations/")
    parser.add_argument("output", type=Path, help="output folder (e.g. ../YouTube/train_480p)")
    parser.add_argument("--short-side", type=int, default=SHORT_SIDE_PX, help="shorter side in pixels")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel processes")
    parser.add_argument("--jpeg-quality", type=int, default=JPEG_QUALITY, help="JPEG quality of resized frames")
    args = parser.parse_args(argv)
    if args.short_side < 1 or args.workers < 1:
        sys.exit(f"error: --short-side and --workers must be >= 1, got {args.short_side} and {args.workers}")
    kinds = [kind for kind in FOLDERS if (args.source / kind).is_dir()]
    if not kinds:
        sys.exit(f"error: no JPEGImages/ or Annotations/ folder in {args.source}; pass a YouTube-VOS split folder "
                 "such as ../YouTube/train")
    jobs = []
    for kind in kinds:
        for video in sorted(p for p in (args.source / kind).iterdir() if p.is_dir()):
            (args.output / kind / video.name).mkdir(parents=True, exist_ok=True)
            jobs.append((video, args.output / kind / video.name, kind, args.short_side, args.jpeg_quality))
    with Pool(args.workers) as pool:
        written = sum(tqdm(pool.imap_unordered(resize_video, jobs), total=len(jobs), desc="videos", unit="video"))
    print(f"resized {written} files into {args.output} ({len(jobs)} video folders)")


if __name__ == "__main__":
    sys.exit(run_cli(main))
