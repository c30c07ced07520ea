"""A cheap fingerprint of one evaluation video's inputs, so that a rerun knows a finished video's inputs changed.

Frames are fingerprinted by their names and byte sizes (hashing every JPEG would cost as much as decoding it);
masks (the input masks and the ground truth, small PNGs) by their names and full contents. Modification times are
left out on purpose: copying a dataset elsewhere changes them and nothing else. A frame edited in place to the same
byte size goes unnoticed; any other change to a frame (added, removed, renamed, re-encoded) is seen.

Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "frames/v").mkdir(parents=True); _ = (root / "frames/v/00000.jpg").write_bytes(b"jpeg")
    >>> before = video_fingerprint("v", (root / "frames",), (root / "masks",))
    >>> _ = (root / "frames/v/00001.jpg").write_bytes(b"jpeg")
    >>> changed_parts(before, video_fingerprint("v", (root / "frames",), (root / "masks",)))
    ['frames']
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, Sequence

FINGERPRINT_VERSION = 1  # bump when what is hashed changes, so older fingerprints count as changed
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
MASK_SUFFIX = ".png"
PARTS = ("frames", "masks")  # what a fingerprint holds, each a SHA-256 in hex
PART_NAMES = {"frames": "frames", "masks": "masks or ground truth"}  # how messages name the parts
_HASH_CHUNK_BYTES = 1 << 20


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[os.DirEntry]:
    """The visible files of `folder` with one of `suffixes` (case-insensitive), by name; none if it is missing."""
    if not folder.is_dir():
        return []
    with os.scandir(folder) as entries:
        return sorted((entry for entry in entries if entry.is_file() and not entry.name.startswith(".")
                       and os.path.splitext(entry.name)[1].lower() in suffixes), key=lambda entry: entry.name)


def video_fingerprint(name: str, frame_roots: Iterable[Path], mask_roots: Iterable[Path]) -> dict[str, str]:
    """The fingerprint of video `name`'s inputs: its folder in each frame root and each mask root.

    Args:
        name: the video folder name.
        frame_roots: folders holding `<name>/` frame folders (names and sizes are hashed).
        mask_roots: folders holding `<name>/` mask folders, input masks and ground truth (names and bytes hashed).
    Returns:
        {"frames": sha256 hex, "masks": sha256 hex}; a missing folder hashes as empty (the run reports it).
    """
    frames = hashlib.sha256(f"version {FINGERPRINT_VERSION}".encode())
    for index, root in enumerate(dict.fromkeys(frame_roots)):  # by position: a moved dataset keeps its fingerprint
        frames.update(f"\0folder {index}\0".encode())
        for entry in _files(Path(root) / name, FRAME_SUFFIXES):
            frames.update(f"{entry.name}\0{entry.stat().st_size}\0".encode())
    masks = hashlib.sha256(f"version {FINGERPRINT_VERSION}".encode())
    for index, root in enumerate(dict.fromkeys(mask_roots)):
        masks.update(f"\0folder {index}\0".encode())
        for entry in _files(Path(root) / name, (MASK_SUFFIX,)):
            masks.update(f"{entry.name}\0".encode())
            with open(entry.path, "rb") as handle:
                while chunk := handle.read(_HASH_CHUNK_BYTES):
                    masks.update(chunk)
    return {"frames": frames.hexdigest(), "masks": masks.hexdigest()}


def changed_parts(recorded: Optional[Mapping[str, str]], current: Mapping[str, str]) -> list[str]:
    """Which parts of a fingerprint differ (`PARTS` order); every part when nothing was recorded."""
    if not isinstance(recorded, Mapping):
        return list(PARTS)
    return [part for part in PARTS if recorded.get(part) != current.get(part)]


def changed_videos(names: Sequence[str], recorded: Callable[[str], Optional[Mapping[str, str]]],
                   current: Callable[[str], Mapping[str, str]]) -> dict[str, str]:
    """The videos among `names` whose recorded fingerprint differs from their current one, each with what
    changed in words (e.g. `frames and masks or ground truth`)."""
    changed = {}
    for name in names:
        parts = changed_parts(recorded(name), current(name))
        if parts:
            changed[name] = " and ".join(PART_NAMES[part] for part in parts)
    return changed
