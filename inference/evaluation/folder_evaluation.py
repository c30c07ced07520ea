"""Score folders of predicted index masks against folders of ground truth, with reuse of unchanged results.

Both folders hold `<video>/<frame>.png` index masks. `evaluate_folders` lists and checks the videos, scores them in
parallel processes with `inference.evaluation.metrics`, and writes `global_results.csv` and
`per_object_results.csv` (values in 0..1, as the DAVIS toolkit). A SHA-256 of every mask file read and of the
options is stored next to the tables; a rerun on unchanged inputs reads them back instead of scoring again. Used by
`eval.py` and `scripts/evaluation/evaluate.py`.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import multiprocessing
import os
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
from tqdm import tqdm

from configs.common import atomic_write_text
from inference.evaluation.metrics import (
    GLOBAL_COLUMNS,
    MODE_DAVIS,
    MODES,
    PER_OBJECT_COLUMNS,
    EvaluationResults,
    ObjectScores,
    SequenceScorer,
)

GLOBAL_RESULTS_FILE = "global_results.csv"
PER_OBJECT_RESULTS_FILE = "per_object_results.csv"
STATE_FILE = "evaluation_state.json"
"""Hash of the inputs and the full results, written last: its presence means the tables are complete."""
RESULTS_VERSION = 2  # 2: per-frame J and F kept with each object
"""Part of the input hash: bump it when a change to the metrics changes results, so stored ones are not reused."""
MASK_SUFFIX = ".png"
FLOAT_FORMAT = "{:.10f}"
_HASH_CHUNK_BYTES = 1 << 20


MaskReader = Callable[[Path], np.ndarray]
"""Reads an index-mask file into an integer H×W array of object ids; must be picklable (a module-level function)."""
GroundTruthAligner = Callable[[np.ndarray, tuple, Path], np.ndarray]
"""(ground truth, prediction shape, ground-truth file) -> the ground truth at the prediction's size, or ValueError;
picklable. Without one, a size difference is an error."""
SCORING_ERRORS = (FileNotFoundError, ValueError)
"""What makes one video unscorable (a missing or unreadable mask, mismatched sizes or ids)."""


@dataclasses.dataclass(frozen=True)
class _SequenceJob:
    """One video to score: the ground-truth frame files in order and the prediction files of the scored frames."""

    name: str
    ground_truth_files: tuple[Path, ...]
    prediction_files: tuple[Path, ...]
    mode: str
    davis_compat_decay: bool
    read_mask: MaskReader
    binary: bool = False  # score foreground against background as one object (DAVIS 2016)
    align_ground_truth: Optional[GroundTruthAligner] = None


@dataclasses.dataclass(frozen=True)
class ScoringOutcome:
    """What `score_sequences` returns: the scores of every scored video (None when none was) and, per video that
    could not be scored, its error."""

    results: Optional[EvaluationResults]
    failures: dict[str, Exception]


def _mask_names(folder: Path) -> list[str]:
    # Sorted as strings, as the DAVIS toolkit (np.sort of a glob) and vos-benchmark (sorted listdir) do.
    return sorted(entry.name for entry in folder.iterdir() if entry.is_file() and entry.suffix == MASK_SUFFIX)


def _sequence_names(ground_truth_dir: Path, imageset: Path | None) -> list[str]:
    if imageset is None:
        names = sorted(entry.name for entry in ground_truth_dir.iterdir() if entry.is_dir())
        if not names:
            raise ValueError(
                f"ground-truth folder {ground_truth_dir} holds no video folders; expected <video>/<frame>.png "
                f"(for DAVIS, pass its Annotations/480p folder)"
            )
        return names
    if not imageset.is_file():
        raise FileNotFoundError(f"image set file not found: {imageset}")
    names = [line.strip() for line in imageset.read_text().splitlines() if line.strip()]
    if not names:
        raise ValueError(f"image set file {imageset} lists no video; expected one video name per line")
    return names


def list_sequences(
    ground_truth_dir: str | os.PathLike, prediction_dir: str | os.PathLike, *, read_mask: MaskReader,
    imageset: str | os.PathLike | None = None, mode: str = MODE_DAVIS, sparse: bool = False,
    davis_compat_decay: bool = False,
) -> list[_SequenceJob]:
    """Check both folders and list what to score; every problem is one error naming the file or folder.

    Raises:
        FileNotFoundError: a folder, the image set, a video's ground truth or predictions, or a prediction frame of
            a scored ground-truth frame is missing.
        ValueError: unknown mode; no video; a video with no masks or fewer than 3 ground-truth frames; without
            `sparse`, a prediction frame that has no ground truth.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    ground_truth_dir, prediction_dir = Path(ground_truth_dir), Path(prediction_dir)
    for folder, role in ((ground_truth_dir, "ground-truth"), (prediction_dir, "prediction")):
        if not folder.is_dir():
            raise FileNotFoundError(f"{role} folder not found: {folder}")
    jobs = []
    for name in _sequence_names(ground_truth_dir, None if imageset is None else Path(imageset)):
        ground_truth_folder, prediction_folder = ground_truth_dir / name, prediction_dir / name
        if not ground_truth_folder.is_dir():
            raise FileNotFoundError(f"ground-truth folder of video {name!r} not found: {ground_truth_folder}")
        if not prediction_folder.is_dir():
            raise FileNotFoundError(
                f"prediction folder of video {name!r} not found: {prediction_folder}; predict every video of the "
                f"image set, or pass --imageset listing the videos predicted"
            )
        ground_truth_names = _mask_names(ground_truth_folder)
        prediction_names = _mask_names(prediction_folder)
        if not ground_truth_names:
            raise ValueError(f"ground-truth folder {ground_truth_folder} holds no {MASK_SUFFIX} masks")
        if not prediction_names:
            raise ValueError(f"prediction folder {prediction_folder} holds no {MASK_SUFFIX} masks")
        if len(ground_truth_names) < 3:
            raise ValueError(
                f"ground-truth folder {ground_truth_folder} holds {len(ground_truth_names)} masks; the first and the "
                f"last are never scored, so at least 3 are needed"
            )
        scored = ground_truth_names[1:-1]
        missing = sorted(set(scored) - set(prediction_names))
        if missing:
            raise FileNotFoundError(
                f"prediction missing: {prediction_folder / missing[0]} (ground truth "
                f"{ground_truth_folder / missing[0]} exists; {len(missing)} scored frames of {name!r} lack a prediction)"
            )
        extra = sorted(set(prediction_names) - set(ground_truth_names))
        if extra and not sparse:
            raise ValueError(
                f"prediction {prediction_folder / extra[0]} has no ground truth in {ground_truth_folder}; if the "
                f"ground truth is sparse (Long-time Video, LVOS, YouTube-VOS) pass --sparse to score only the "
                f"frames that have ground truth, otherwise check the frame names"
            )
        jobs.append(_SequenceJob(
            name,
            tuple(ground_truth_folder / frame for frame in ground_truth_names),
            tuple(prediction_folder / frame for frame in scored),
            mode,
            davis_compat_decay,
            read_mask,
        ))
    return jobs


def list_predicted_sequences(
    ground_truth_dir: str | os.PathLike, prediction_dir: str | os.PathLike, videos: Sequence[str], *,
    read_mask: MaskReader, mode: str = MODE_DAVIS, davis_compat_decay: bool = False, binary: bool = False,
    align_ground_truth: Optional[GroundTruthAligner] = None, min_frames: int = 3,
) -> list[_SequenceJob]:
    """What to score of a run's own predictions: per video, the ground-truth frames that have a prediction.

    Unlike `list_sequences` nothing is an error here: a video whose ground truth or predictions are missing, or
    with fewer than `min_frames` such frames (the first and last are never scored), is left out.
    """
    ground_truth_dir, prediction_dir = Path(ground_truth_dir), Path(prediction_dir)
    jobs = []
    for name in videos:
        ground_truth_folder = ground_truth_dir / name
        names = _mask_names(ground_truth_folder) if ground_truth_folder.is_dir() else []
        names = [frame for frame in names if (prediction_dir / name / frame).is_file()]
        if len(names) < min_frames:
            continue
        jobs.append(_SequenceJob(
            name, tuple(ground_truth_folder / frame for frame in names),
            tuple(prediction_dir / name / frame for frame in names[1:-1]),
            mode, davis_compat_decay, read_mask, binary, align_ground_truth,
        ))
    return jobs


def _read_ground_truth(job: _SequenceJob, ground_truth_file: Path, shape: Callable[[], tuple]) -> np.ndarray:
    """A ground-truth frame ready to be scored: aligned to the prediction's size `shape()` when the job has an
    aligner, binarised for `binary`."""
    ground_truth = job.read_mask(ground_truth_file)
    if job.align_ground_truth is not None:
        ground_truth = job.align_ground_truth(ground_truth, shape(), ground_truth_file)
    return (ground_truth > 0).astype(np.uint8) if job.binary else ground_truth


def _score_sequence(job: _SequenceJob) -> list[ObjectScores]:
    """Score one video, reading one frame at a time (runs in a worker process)."""
    def prediction_shape() -> tuple:  # every frame of a video has the size of its first scored prediction
        return job.read_mask(job.prediction_files[0]).shape

    scorer = SequenceScorer(_read_ground_truth(job, job.ground_truth_files[0], prediction_shape), mode=job.mode,
                            sequence=job.name, first_source=f"ground truth {job.ground_truth_files[0]}")
    for ground_truth_file, prediction_file in zip(job.ground_truth_files[1:-1], job.prediction_files):
        prediction = job.read_mask(prediction_file)
        ground_truth = _read_ground_truth(job, ground_truth_file, lambda: prediction.shape)
        if job.binary:
            prediction = (prediction > 0).astype(np.uint8)
        if ground_truth.shape != prediction.shape:
            raise ValueError(
                f"prediction {prediction_file} is {prediction.shape[1]}×{prediction.shape[0]} but its ground truth "
                f"{ground_truth_file} is {ground_truth.shape[1]}×{ground_truth.shape[0]} (width×height); predictions "
                f"must have the ground truth's size"
            )
        scorer.add_frame(ground_truth, prediction, source=f"prediction {prediction_file}")
    last = _read_ground_truth(job, job.ground_truth_files[-1], prediction_shape)
    return scorer.finish(last, davis_compat_decay=job.davis_compat_decay)


def _score_sequence_or_error(job: _SequenceJob) -> tuple[str, list[ObjectScores], Optional[Exception]]:
    try:
        return job.name, _score_sequence(job), None
    except SCORING_ERRORS as error:
        return job.name, [], error


def _inputs_digest(jobs: Sequence[_SequenceJob], options: dict) -> str:
    """SHA-256 of the options, the video and frame names and the bytes of every mask file that is read."""
    digest = hashlib.sha256(json.dumps({"version": RESULTS_VERSION, **options}, sort_keys=True).encode())
    for job in jobs:
        digest.update(f"\0video {job.name}\0".encode())
        for role, files in (("ground truth", job.ground_truth_files), ("prediction", job.prediction_files)):
            for path in files:
                digest.update(f"\0{role} {path.name}\0".encode())
                with open(path, "rb") as handle:
                    while chunk := handle.read(_HASH_CHUNK_BYTES):
                        digest.update(chunk)
    return digest.hexdigest()


def _format_value(value: float) -> str:
    return "nan" if math.isnan(value) else FLOAT_FORMAT.format(value)


def _csv_text(rows: Sequence[Sequence[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


def write_results(results: EvaluationResults, output_dir: str | os.PathLike) -> None:
    """Write `global_results.csv` (GLOBAL_COLUMNS) and `per_object_results.csv` (Sequence + PER_OBJECT_COLUMNS)."""
    output_dir = Path(output_dir)
    scores = results.global_scores()
    atomic_write_text(output_dir / GLOBAL_RESULTS_FILE, _csv_text(
        [GLOBAL_COLUMNS, [_format_value(scores[column]) for column in GLOBAL_COLUMNS]]))
    atomic_write_text(output_dir / PER_OBJECT_RESULTS_FILE, _csv_text(
        [("Sequence", *PER_OBJECT_COLUMNS)]
        + [[scores.name, *map(_format_value, scores.row().values())] for scores in results.objects]))


def _load_stored(output_dir: Path, digest: str) -> EvaluationResults | None:
    """The stored results when they were computed from exactly these inputs and the tables are present."""
    state_file = output_dir / STATE_FILE
    if not all((output_dir / name).is_file() for name in (STATE_FILE, GLOBAL_RESULTS_FILE, PER_OBJECT_RESULTS_FILE)):
        return None
    try:
        state = json.loads(state_file.read_text())
        if state.get("inputs_sha256") != digest:
            return None
        return EvaluationResults(tuple(
            ObjectScores(**{**fields, "frame_j": tuple(fields["frame_j"]), "frame_f": tuple(fields["frame_f"])})
            for fields in state["objects"]))
    except (ValueError, TypeError, KeyError):
        return None  # unreadable or from another version: score again and overwrite it


def evaluate_folders(
    ground_truth_dir: str | os.PathLike, prediction_dir: str | os.PathLike, *, read_mask: MaskReader,
    imageset: str | os.PathLike | None = None, mode: str = MODE_DAVIS, sparse: bool = False,
    output_dir: str | os.PathLike | None = None, davis_compat_decay: bool = False,
    num_processes: int | None = None, reuse_results: bool = True,
) -> EvaluationResults:
    """Score every video of `prediction_dir` against `ground_truth_dir` and write the result tables.

    Args:
        ground_truth_dir: folder of `<video>/<frame>.png` ground-truth index masks.
        prediction_dir: folder of `<video>/<frame>.png` predicted index masks, same frame names.
        read_mask: reads one mask file into an H×W array of ids (callers pass `dataset.image_io.read_mask_ids`;
            this package may not import `dataset`).
        imageset: text file with one video name per line; default: every video folder of `ground_truth_dir`.
        mode: "davis" (DAVIS 2017 toolkit) or "appearance" (vos-benchmark; objects may appear late).
        sparse: the ground truth covers only some frames; prediction frames without ground truth are ignored.
        output_dir: where the tables go; default `prediction_dir`.
        davis_compat_decay: reproduce the toolkit's decay on sequences with more than 256 scored frames.
        num_processes: worker processes; default one per CPU core, at most one per video.
        reuse_results: return the stored results when the inputs and options are unchanged.
    Returns:
        EvaluationResults, per object in video order.
    Raises:
        FileNotFoundError, ValueError: bad input (see `list_sequences`); a prediction of another size than its
            ground truth, or holding an object id the ground truth never has (the message names the file);
            num_processes < 1; no object to score.
    """
    jobs = list_sequences(ground_truth_dir, prediction_dir, read_mask=read_mask, imageset=imageset, mode=mode,
                          sparse=sparse, davis_compat_decay=davis_compat_decay)
    outcome = score_sequences(jobs, output_dir=Path(prediction_dir if output_dir is None else output_dir),
                              num_processes=num_processes, reuse_results=reuse_results,
                              options={"sparse": sparse}, raise_errors=True)
    return outcome.results


def score_sequences(
    jobs: Sequence[_SequenceJob], *, output_dir: str | os.PathLike, num_processes: int | None = None,
    reuse_results: bool = True, options: Optional[dict] = None, raise_errors: bool = False,
) -> ScoringOutcome:
    """Score listed videos (`list_sequences` / `list_predicted_sequences`) and write the result tables.

    The one scoring driver of the project: `evaluate_folders` (scripts/evaluation/evaluate.py) and eval.py both
    score here.

    Args:
        jobs: the videos to score.
        output_dir: where `global_results.csv`, `per_object_results.csv` and the state file go.
        num_processes: worker processes; default one per CPU core, at most one per video.
        reuse_results: return the stored results when the inputs and options are unchanged.
        options: further options that change results (hashed with the inputs).
        raise_errors: raise the first video's scoring error instead of collecting it in `failures`.
    Returns:
        ScoringOutcome: the results of the scored videos (None if none was scored; the tables are then not
        written) and the error of each video that could not be scored (SCORING_ERRORS).
    Raises:
        ValueError: num_processes < 1; with `raise_errors`, a video's scoring error or no object to score.
    """
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"num_processes must be at least 1, got {num_processes}")
    output_dir = Path(output_dir)
    job_options = sorted({(job.mode, job.davis_compat_decay, job.binary) for job in jobs})
    digest = _inputs_digest(jobs, {"jobs": job_options, **(options or {})})
    if reuse_results:
        stored = _load_stored(output_dir, digest)
        if stored is not None:
            return ScoringOutcome(stored, {})

    num_processes = max(1, min(num_processes or os.cpu_count() or 1, len(jobs)))
    progress = tqdm(total=len(jobs), desc="scoring videos", unit="video")
    objects: list[ObjectScores] = []
    failures: dict[str, Exception] = {}
    score = _score_sequence if raise_errors else _score_sequence_or_error

    def collect(outcome) -> None:
        nonlocal objects
        if raise_errors:
            objects += outcome
        else:
            name, scores, error = outcome
            objects += scores
            if error is not None:
                failures[name] = error
        progress.update()

    if num_processes <= 1:
        for job in jobs:
            collect(score(job))
    else:
        with multiprocessing.Pool(num_processes) as pool:
            for outcome in pool.imap(score, jobs):
                collect(outcome)
    progress.close()
    if not objects and not raise_errors:
        return ScoringOutcome(None, failures)
    results = EvaluationResults(tuple(objects))

    write_results(results, output_dir)
    if not failures:  # a partial result is never reused: the failed videos are scored again next time
        state = {"inputs_sha256": digest, "objects": [dataclasses.asdict(scores) for scores in results.objects]}
        atomic_write_text(output_dir / STATE_FILE, json.dumps(state, indent=1))
    return ScoringOutcome(results, failures)
