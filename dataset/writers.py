"""Result writers for evaluation: palette PNG masks, probability (score) files, completion markers, timings, zips.

Output layout of one run (`<out>` = the output folder):
- masks: `<out>/<video>/<frame>.png` (DAVIS layout) or `<out>/Annotations/<video>/<frame>.png` (YouTube-VOS);
- scores (`save_scores`): `<out>/Scores/<video>/<frame>.npz` with `prob` float16 (N+1)×H×W (background first,
  objects in ascending id order) and `labels` int64 N (the object id of rows 1..N);
- `<out>/.progress/<video>.json`: written once every output of a video is on disk, with its record (timings,
  memory, the settings and the input fingerprint that made it, the outputs it owns); a video without it is redone
  on a rerun;
- `<out>/.progress/<video>.planned`: the outputs a video is about to write, written before the first of them
  (and removed when it is finished), so that a rerun deletes what a killed run left and nothing else;
- `<out>/timings.csv`: one row per finished video; `<out>/config.yaml` (written by eval.py);
- zips: YouTube-VOS `<out>/<basename of out>.zip` holding `Annotations/`; DAVIS test-dev `<out>.zip` holding the
  video folders.
Every file is written atomically (a temporary file renamed into place), so a killed run leaves no half-written file.
Redoing a video deletes only the files its records name (and their temporaries), then its folders if empty: a
folder the project did not make, or a file it did not write, is never removed (a record written before outputs
were recorded names none: those files are overwritten by the redone video, never deleted).
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Iterable, Literal, Mapping, Optional, Sequence

import numpy as np

from configs.common import atomic_output
from dataset.image_io import write_index_mask

SCORES_DIR = "Scores"
PROGRESS_DIR = ".progress"
PLANNED_SUFFIX = ".planned"  # `<out>/.progress/<video>.planned`: a JSON record, but never taken for a finished one
OUTPUTS_KEY = "outputs"  # a record's list of the files a video owns, relative to the output folder
ANNOTATIONS_DIR = "Annotations"
TIMINGS_FILE = "timings.csv"
SCORE_SUFFIX = ".npz"
SCORE_DTYPE = np.float16
TIMING_COLUMNS = ("video", "frames", "saved_frames", "objects", "seconds", "fps")


def _remove_with_temporaries(path: Path) -> None:
    """Delete `path` and what atomic_output leaves of a killed write to it: `.<stem>.<random>.tmp<suffix>`."""
    path.unlink(missing_ok=True)
    for temporary in path.parent.glob(f".{path.stem}.*.tmp{path.suffix}"):
        temporary.unlink(missing_ok=True)


def write_scores(path: str | os.PathLike, prob: np.ndarray, labels: Sequence[int]) -> None:
    """Write one frame's probabilities as a compressed `.npz`, atomically.

    Args:
        path: destination (`.npz`).
        prob: float (N+1)×H×W probabilities at output resolution; row 0 = background, row i = object `labels[i-1]`.
        labels: the N object ids, ascending.
    Raises:
        ValueError: `prob` is not 3-D or its row count is not len(labels) + 1.
    """
    prob = np.asarray(prob)
    labels = np.asarray(labels, dtype=np.int64)
    if prob.ndim != 3 or prob.shape[0] != len(labels) + 1:
        raise ValueError(f"scores for {path}: prob must be (N+1)×H×W with N={len(labels)} labels, got "
                         f"{tuple(prob.shape)}")
    with atomic_output(path) as temporary:
        with open(temporary, "wb") as handle:
            np.savez_compressed(handle, prob=prob.astype(SCORE_DTYPE), labels=labels)


def read_scores(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a score file written by `write_scores`.

    Returns:
        (prob float32 (N+1)×H×W, labels int64 N).
    Raises:
        FileNotFoundError: no such file.
        ValueError: not a score file (missing `prob` or `labels`, or shapes that disagree).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"score file not found: {path}")
    try:
        with np.load(path) as data:
            prob, labels = data["prob"].astype(np.float32), data["labels"].astype(np.int64)
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is not a score file (npz with 'prob' and 'labels'): {error}") from None
    if prob.ndim != 3 or prob.shape[0] != len(labels) + 1:
        raise ValueError(f"score file {path}: prob {tuple(prob.shape)} does not match {len(labels)} labels")
    return prob, labels


def write_zip(zip_path: str | os.PathLike, root: str | os.PathLike, members: Iterable[str]) -> None:
    """Zip the folders (or files) `members` of `root`, stored under their paths relative to `root`, atomically.

    Hidden files (starting with `.`) are left out.
    """
    root = Path(root)
    with atomic_output(zip_path) as temporary:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for member in members:
                top = root / member
                paths = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
                for path in paths:
                    relative = path.relative_to(root)
                    if any(part.startswith(".") for part in relative.parts):
                        continue
                    archive.write(path, relative.as_posix())


def check_output_folder(path: str | os.PathLike) -> None:
    """Fail early, before any work, when `path` cannot become a writable output folder (nothing is created).

    Raises:
        NotADirectoryError: `path` or one of its parents is a file, or `path` is a dangling symbolic link.
        PermissionError: the folder (or its nearest existing parent) is not writable.
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise NotADirectoryError(f"output folder {path} is a symbolic link to {os.readlink(path)}, which does not "
                                 "exist; create that folder or pass another --output")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == path else f"cannot be made: {existing} is a file"
        raise NotADirectoryError(f"output folder {path} {where}; pass --output naming a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"output folder {existing} is not writable; pass --output naming a folder you can "
                              "write to, or change its permissions")


class ResultWriter:
    """Writes the outputs of one evaluation run under `output_dir` (layout in the module docstring).

    Args:
        output_dir: the run's output folder (created).
        layout: `davis` (`<out>/<video>/`) or `youtube` (`<out>/Annotations/<video>/`).
    """

    def __init__(self, output_dir: str | os.PathLike, layout: Literal["davis", "youtube"]):
        if layout not in ("davis", "youtube"):
            raise ValueError(f"unknown output layout {layout!r}; expected 'davis' or 'youtube'")
        self.output_dir = Path(output_dir)
        self.layout = layout
        self.mask_root.mkdir(parents=True, exist_ok=True)  # also tells merge_multi_scale.py the layout

    @property
    def mask_root(self) -> Path:
        return self.output_dir / ANNOTATIONS_DIR if self.layout == "youtube" else self.output_dir

    def mask_path(self, video: str, frame: str) -> Path:
        return self.mask_root / video / f"{frame}.png"

    def score_path(self, video: str, frame: str) -> Path:
        return self.output_dir / SCORES_DIR / video / f"{frame}{SCORE_SUFFIX}"

    def _marker_path(self, video: str) -> Path:
        return self.output_dir / PROGRESS_DIR / f"{video}.json"

    def write_mask(self, video: str, frame: str, mask: np.ndarray, palette: Optional[bytes]) -> None:
        """Write an H×W mask of object ids (0..255) as `<frame>.png` with `palette` (None: grayscale)."""
        write_index_mask(self.mask_path(video, frame), mask, palette)

    def write_scores(self, video: str, frame: str, prob: np.ndarray, labels: Sequence[int]) -> None:
        """Write float (N+1)×H×W probabilities (objects in ascending id order `labels`) for one frame."""
        write_scores(self.score_path(video, frame), prob, labels)

    def is_finished(self, video: str) -> bool:
        """Whether `video` was completed by an earlier run (its completion marker exists)."""
        return self._marker_path(video).is_file()

    def check_finished_visible(self, finished_by_rank: Sequence[Sequence[str]]) -> None:
        """Check that every video each rank of a torchrun job finished is finished here too: rank 0 zips and
        scores every rank's outputs, so they must share this folder (one filesystem shared by all nodes).

        Args:
            finished_by_rank: the videos each rank finished, by rank.
        Raises:
            FileNotFoundError: a video another rank finished has no completion marker here (names the rank).
        """
        for rank, finished in enumerate(finished_by_rank):
            missing = [name for name in finished if not self.is_finished(name)]
            if missing:
                raise FileNotFoundError(
                    f"rank {rank} finished {len(missing)} video(s) (e.g. {missing[0]!r}) whose outputs rank 0 "
                    f"cannot see in {self.output_dir}; on several machines --output must be a folder every node "
                    "shares (e.g. NFS), then rerun (finished videos are skipped)")

    def finished_record(self, video: str) -> dict:
        """The record saved with a finished video's completion marker (timings, memory, the output settings).

        Raises:
            ValueError: the marker is not a JSON record (the message names it and says what to do).
        """
        path = self._marker_path(video)
        try:
            record = json.loads(path.read_text())
        except ValueError as error:
            raise ValueError(f"completion marker {path} is unreadable ({error}); delete it to redo video "
                             f"{video!r}") from None
        if not isinstance(record, dict):
            raise ValueError(f"completion marker {path} is not a JSON record; delete it to redo video {video!r}")
        return record

    def finished_videos(self) -> list[str]:
        """Every video of the folder that an earlier run finished (has a completion marker), sorted."""
        folder = self.output_dir / PROGRESS_DIR
        if not folder.is_dir():
            return []
        return sorted(path.stem for path in folder.glob("*.json") if not path.name.startswith("."))

    def _planned_path(self, video: str) -> Path:
        return self.output_dir / PROGRESS_DIR / f"{video}{PLANNED_SUFFIX}"

    def _video_folders(self, video: str) -> tuple[Path, Path]:
        return self.mask_root / video, self.output_dir / SCORES_DIR / video

    def check_video_folders(self, videos: Sequence[str]) -> None:
        """Refuse to run when an output folder of the run is a symbolic link: outputs go only into folders this
        project makes, never through a link to somewhere else (perhaps the inputs).

        Raises:
            ValueError: the mask root, the scores root or a video's output folder is a symbolic link (named).
        """
        folders = [self.mask_root, self.output_dir / SCORES_DIR]
        folders += [folder for video in videos for folder in self._video_folders(video)]
        for folder in folders:
            if folder.is_symlink():
                raise ValueError(f"output folder {folder} is a symbolic link (to {os.readlink(folder)}); eval.py "
                                 "writes only into folders it makes: remove the link or pass another --output")

    def _recorded_outputs(self, video: str) -> list[Path]:
        """The files `video`'s records (finished and planned) say it owns, each inside one of its folders."""
        owned = []
        for path in (self._marker_path(video), self._planned_path(video)):
            with contextlib.suppress(OSError, ValueError):
                record = json.loads(path.read_text())
                owned += [self.output_dir / name for name in record.get(OUTPUTS_KEY, [])
                          if isinstance(name, str)]
        folders = self._video_folders(video)
        return [path for path in owned if path.parent in folders]  # a tampered record reaches nothing else

    def start_video(self, video: str) -> None:
        """Forget any earlier (finished or partial) outputs of `video`, so none of them is trusted: its completion
        marker, the files its records name and their leftover temporaries, then its folders if that empties them."""
        owned = self._recorded_outputs(video)
        _remove_with_temporaries(self._marker_path(video))
        for path in owned:
            _remove_with_temporaries(path)
        for folder in self._video_folders(video):
            if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
                folder.rmdir()
        _remove_with_temporaries(self._planned_path(video))

    def _outputs(self, frames: Sequence[str], scores: bool, video: str) -> list[Path]:
        paths = [self.mask_path(video, frame) for frame in frames]
        return paths + ([self.score_path(video, frame) for frame in frames] if scores else [])

    def plan_video(self, video: str, frames: Sequence[str], *, scores: bool) -> None:
        """Record the outputs `video` is about to write (a mask per frame in `frames`, and its scores with `scores`)
        before the first of them, so that a rerun after a kill deletes exactly those."""
        outputs = [path.relative_to(self.output_dir).as_posix() for path in self._outputs(frames, scores, video)]
        with atomic_output(self._planned_path(video)) as temporary:
            temporary.write_text(json.dumps({OUTPUTS_KEY: outputs}))

    def finish_video(self, video: str, record: Mapping[str, object]) -> None:
        """Mark `video` finished, storing its `record` and the outputs it owns; call it once every output planned
        by `plan_video` is written.

        Raises:
            FileNotFoundError: a planned output is not on disk (the video is not marked finished).
        """
        owned = []
        with contextlib.suppress(FileNotFoundError):
            owned = json.loads(self._planned_path(video).read_text())[OUTPUTS_KEY]
        missing = [name for name in owned if not (self.output_dir / name).is_file()]
        if missing:
            raise FileNotFoundError(f"video {video!r}: output {self.output_dir / missing[0]} is missing after its "
                                    f"last frame ({len(missing)} of {len(owned)} outputs missing); it is redone on "
                                    "a rerun")
        with atomic_output(self._marker_path(video)) as temporary:
            temporary.write_text(json.dumps({**record, OUTPUTS_KEY: owned}))
        self._planned_path(video).unlink(missing_ok=True)

    def write_timings(self, records: Sequence[Mapping[str, object]]) -> Path:
        """Write `timings.csv` (columns TIMING_COLUMNS), one row per record, atomically; return its path."""
        buffer = io.StringIO()
        table = csv.DictWriter(buffer, fieldnames=TIMING_COLUMNS, extrasaction="ignore", lineterminator="\n")
        table.writeheader()
        table.writerows(records)
        path = self.output_dir / TIMINGS_FILE
        with atomic_output(path) as temporary:
            temporary.write_text(buffer.getvalue())
        return path

    def write_submission_zip(self, kind: Literal["davis", "youtube"], videos: Sequence[str]) -> Path:
        """Zip the masks for an evaluation server and return the zip's path.

        `youtube`: `<out>/<basename of out>.zip` holding `Annotations/<video>/...`; `davis` (test-dev):
        `<out>.zip` beside `<out>`, holding `<video>/...` at its top level.
        """
        if kind == "youtube":
            path = self.output_dir / f"{self.output_dir.resolve().name}.zip"
            write_zip(path, self.output_dir, [f"{ANNOTATIONS_DIR}/{video}" for video in videos])
        else:
            path = self.output_dir.resolve().with_name(self.output_dir.resolve().name + ".zip")
            write_zip(path, self.mask_root, videos)
        return path
