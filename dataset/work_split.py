"""A deterministic split of evaluation videos over the processes (ranks) of a distributed run.

Round robin over names gives one rank all the long 1080p videos as often as not. Here each video costs its
processed frames × processed pixels per frame (the network's work grows with both), and the split is the
longest-processing-time-first greedy: videos in decreasing cost (ties by name), each to the rank with the least
cost so far (ties to the lowest rank). It is a pure function of the costs, so every rank computing it gets the
same shares; the largest share is at most 4/3 of the best possible one (Graham's bound).
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from PIL import Image

from dataset.eval_datasets import EvalVideo


@dataclass(frozen=True)
class VideoWork:
    """What one video asks of a rank: `frames` processed, each of `pixels` (after resizing)."""

    frames: int
    pixels: int

    @property
    def cost(self) -> int:
        return self.frames * self.pixels


@dataclass(frozen=True)
class WorkSplit:
    """The videos of each rank and what they add up to.

    Attributes:
        shares: rank -> its videos, in the order of the names given to `split_work`.
        frames: rank -> its total frames.
        costs: rank -> its total frames × pixels.
    """

    shares: tuple[tuple[str, ...], ...]
    frames: tuple[int, ...]
    costs: tuple[int, ...]

    def describe(self) -> str:
        """One line per rank: its video count, frames and share of the total cost."""
        total = sum(self.costs) or 1
        return "\n".join(f"rank {rank}: {len(share)} videos, {frames} frames, {100 * cost / total:.1f} % of the "
                         f"frames x pixels" for rank, (share, frames, cost)
                         in enumerate(zip(self.shares, self.frames, self.costs)))


def video_work(video: EvalVideo, resized: Callable[[int, int], tuple[int, int]]) -> VideoWork:
    """The work of one checked video: its frame count and the pixels of its first frame once resized.

    Only the first frame's header is read (no decoding); `eval.py` checks later that every frame has that size.

    Args:
        video: the video (frames before its first mask already dropped).
        resized: (H, W) of a frame -> (H', W') the network sees (the benchmark's resizing rule).
    Raises:
        FileNotFoundError, ValueError: the first frame cannot be opened as an image (naming it).
    """
    path = video.frame_paths[0]
    try:
        with Image.open(path) as image:
            width, height = image.size
    except FileNotFoundError:
        raise FileNotFoundError(f"frame {path} does not exist") from None
    except OSError as error:
        raise ValueError(f"frame {path} is not a readable image ({error})") from None
    resized_height, resized_width = resized(height, width)
    return VideoWork(frames=len(video), pixels=resized_height * resized_width)


def split_work(names: Sequence[str], work: Mapping[str, VideoWork], world_size: int) -> WorkSplit:
    """Share `names` among `world_size` ranks, balancing frames × pixels (longest first, greedy).

    Args:
        names: the videos to process, in the order each rank should run its share.
        work: name -> its work; a name missing here (its video could not even be opened) costs nothing and still
            goes to a rank, which then reports its error.
        world_size: number of ranks (>= 1).
    Returns:
        the split; the same for the same arguments on every machine.
    Raises:
        ValueError: world_size < 1 or a name given twice.
    """
    if world_size < 1:
        raise ValueError(f"world size {world_size}: expected at least one process")
    if len(set(names)) != len(names):
        raise ValueError("split_work: video names must be unique")
    empty = VideoWork(frames=0, pixels=0)
    loads = [(0, rank) for rank in range(world_size)]  # (cost so far, rank): the heap breaks ties by rank
    owner: dict[str, int] = {}
    for name in sorted(names, key=lambda name: (-work.get(name, empty).cost, name)):
        cost, rank = heapq.heappop(loads)
        owner[name] = rank
        heapq.heappush(loads, (cost + work.get(name, empty).cost, rank))
    shares = tuple(tuple(name for name in names if owner[name] == rank) for rank in range(world_size))
    return WorkSplit(
        shares=shares,
        frames=tuple(sum(work.get(name, empty).frames for name in share) for share in shares),
        costs=tuple(sum(work.get(name, empty).cost for name in share) for share in shares),
    )
