"""Video object segmentation metrics: region similarity J, boundary accuracy F, their recall and decay.

Everything works on integer index masks (0 = background, any other value an object id), as numpy arrays;
reading files is the caller's business (see `scripts/evaluation/evaluate.py`).

Per frame and object:
- J is the intersection over union of the predicted and ground-truth masks, 1 when both are empty.
- F is the boundary F-measure. Each mask becomes a one-pixel boundary map (a pixel is on the boundary when it differs
  from its right, bottom or bottom-right neighbour, the image edge repeating itself); each map is dilated with a disk
  of radius ceil(0.008 × image diagonal); precision is the share of predicted boundary pixels inside the dilated
  ground-truth boundary, recall the share of ground-truth boundary pixels inside the dilated predicted one.
  An empty boundary on both sides scores 1, on one side only 0.
Per object, over its scored frames: the mean, the recall (share of frames scoring above 0.5) and the decay (mean of
the first quarter of the frames minus mean of the last quarter, in the DAVIS toolkit's overlapping bins).

Two modes say which frames and objects are scored:
- `"davis"` reproduces the DAVIS 2017 toolkit (davis2017-evaluation) in its semi-supervised setting: the objects are
  1..max id of the first ground-truth frame, 255 in the ground truth is background, and every object is scored on
  every frame except the first and the last. The toolkit casts its decay bin indices to uint8, which wraps on
  sequences with more than 256 scored frames (decay NaN or wrong); we use correct indices unless
  `davis_compat_decay=True` asks for the toolkit's value.
- `"appearance"` computes what `vos-benchmark` 0.1.0 computes, for videos whose objects appear late (YouTube-VOS
  style): frames are scored in order except the first and the last; an object is scored on every frame from the
  first scored frame where it appears in the ground truth or the prediction; only objects that appear in a scored
  ground-truth frame are reported; ids are label values (255 included: this mode knows no void label).
  `vos-benchmark` reports no recall or decay; ours are taken over the same frames as the mean.

Global scores are object-weighted: every reported object of every sequence counts once.

Example:
    >>> import numpy as np
    >>> ground_truth = np.zeros((3, 8, 8), np.uint8); ground_truth[:, 2:6, 2:6] = 1
    >>> results = evaluate_sequences([("video", ground_truth, ground_truth.copy())])
    >>> results.global_scores()["J&F-Mean"]
    1.0

Length: one module on purpose: J, F (boundary maps, dilation), both scoring modes, recall, decay and the global
tables must agree with the DAVIS toolkit and vos-benchmark bit for bit, and are checked together against them.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Iterable, Sequence

import cv2
import numpy as np

MODE_DAVIS = "davis"
MODE_APPEARANCE = "appearance"
MODES = (MODE_DAVIS, MODE_APPEARANCE)

BOUNDARY_TOLERANCE_FRACTION = 0.008
"""Dilation radius of the boundary F-measure, as a fraction of the image diagonal (rounded up to whole pixels)."""
RECALL_THRESHOLD = 0.5
"""A frame counts towards the recall when its score is strictly above this."""
DECAY_BINS = 4
"""The decay compares the first and the last of this many bins over the scored frames."""
VOID_ID = 255
"""Ground-truth label of ambiguous pixels in DAVIS; DAVIS mode turns it into background, as the toolkit does."""
MAX_ID = 255
"""Ids are 8-bit, as index-mask PNGs store them."""
_NUM_IDS = MAX_ID + 1

# np.round rounds halves to even; the toolkit adds this to its bin edges first, so that an edge at k + 0.5 rounds up.
_BIN_EDGE_NUDGE = 1e-10
# The toolkit stores its bin indices as uint8, so they wrap modulo 256.
_TOOLKIT_INDEX_MODULUS = 256
# A boundary pixel can sit one pixel above or left of the object, and the one-pixel ring of background below and
# right of it makes the cropped boundary map equal the full one (see `_object_boundary_f`).
_CROP_MARGIN_PX = 1

GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
"""Columns of the global table, in the DAVIS toolkit's order."""
PER_OBJECT_COLUMNS = ("J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
"""Score columns of the per-object table (the row name `<sequence>_<object id>` comes first)."""


def boundary_tolerance_px(height: int, width: int) -> int:
    """Radius in pixels of the boundary dilation for an image of `height`×`width`: ceil(0.008 × diagonal)."""
    return int(math.ceil(BOUNDARY_TOLERANCE_FRACTION * math.hypot(height, width)))


@functools.lru_cache(maxsize=8)
def _cached_disk(radius_px: int) -> np.ndarray:
    disk = boundary_disk(radius_px)
    disk.flags.writeable = False
    return disk


def boundary_disk(radius_px: int) -> np.ndarray:
    """Structuring element of the boundary dilation.

    Returns:
        uint8 (2r+1)×(2r+1), 1 where dx² + dy² <= r² (the same disk as `skimage.morphology.disk`).
    """
    offsets = np.arange(-radius_px, radius_px + 1)
    return (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius_px**2).astype(np.uint8)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """One-pixel boundary of a binary mask, as the DAVIS toolkit's `seg2bmap` draws it.

    A pixel is on the boundary when it differs from its right, bottom or bottom-right neighbour; beyond the last row
    and column the image repeats its edge, so the mask's own edge on the image border is not a boundary.

    Args:
        mask: bool (or 0/1) H×W.
    Returns:
        bool H×W.
    """
    mask = np.asarray(mask, dtype=bool)
    extended = np.pad(mask, ((0, 1), (0, 1)), mode="edge")
    return (mask != extended[:-1, 1:]) | (mask != extended[1:, :-1]) | (mask != extended[1:, 1:])


def as_labels(labels: np.ndarray, *, what: str = "labels") -> np.ndarray:
    """Check that `labels` is an integer H×W image of 8-bit ids (what PNG index masks hold) and return it as uint8.

    Raises:
        ValueError: not 2-D, not integer, or ids outside 0..255.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{what} must be an integer H×W label image, got {labels.dtype} {labels.shape}")
    if labels.dtype != np.uint8:
        if labels.size and (labels.min() < 0 or labels.max() > MAX_ID):
            raise ValueError(f"{what} holds ids {labels.min()}..{labels.max()}; expected ids in 0..{MAX_ID}")
        labels = labels.astype(np.uint8)
    return labels


def _pair_counts(ground_truth: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """int64 256×256: pixels per (ground-truth id, predicted id) pair, from uint8 H×W labels in one pass."""
    pairs = (ground_truth.astype(np.uint16) << 8) | prediction
    return np.bincount(pairs.ravel(), minlength=_NUM_IDS * _NUM_IDS).reshape(_NUM_IDS, _NUM_IDS)


def _f_measure(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _object_boundary_f(ground_truth: np.ndarray, prediction: np.ndarray, disk: np.ndarray) -> float:
    """Boundary F-measure of two bool masks cut out of a frame.

    The cut-out must contain both masks with a one-pixel margin on the sides away from the image border. Then every
    boundary pixel lies inside it, the margin's own boundary values are 0 as in the full image, and the dilated maps
    are exact wherever they are read (at boundary pixels), so the result equals that of the full frame.
    """
    ground_truth_boundary = boundary_map(ground_truth)
    predicted_boundary = boundary_map(prediction)
    ground_truth_count = int(np.count_nonzero(ground_truth_boundary))
    predicted_count = int(np.count_nonzero(predicted_boundary))
    if ground_truth_count == 0 or predicted_count == 0:
        # Toolkit: both empty -> precision = recall = 1; one empty -> one of them is 0 and F is 0.
        return 1.0 if ground_truth_count == predicted_count else 0.0
    ground_truth_dilated = cv2.dilate(ground_truth_boundary.view(np.uint8), disk).view(bool)
    predicted_dilated = cv2.dilate(predicted_boundary.view(np.uint8), disk).view(bool)
    precision = np.count_nonzero(predicted_boundary & ground_truth_dilated) / predicted_count
    recall = np.count_nonzero(ground_truth_boundary & predicted_dilated) / ground_truth_count
    return _f_measure(precision, recall)


def frame_scores(
    ground_truth: np.ndarray, prediction: np.ndarray, object_ids: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """J and F of every object on one frame.

    Object k's masks are `ground_truth == k` and `prediction == k`; no void handling happens here.

    Args:
        ground_truth: integer H×W label image, ids in 0..255.
        prediction: integer H×W label image of the same size, ids in 0..255.
        object_ids: the N ids to score, each in 1..255.
    Returns:
        (j, f): float64 arrays of length N in [0, 1].
    Raises:
        ValueError: the images differ in size, are not 2-D, or hold ids outside 0..255; an object id outside 1..255.
    """
    ground_truth = as_labels(ground_truth, what="ground truth")
    prediction = as_labels(prediction, what="prediction")
    if ground_truth.shape != prediction.shape:
        raise ValueError(
            f"ground truth {ground_truth.shape} and prediction {prediction.shape} must be H×W images of one size"
        )
    invalid = [object_id for object_id in object_ids if not 1 <= object_id <= MAX_ID]
    if invalid:
        raise ValueError(f"object ids must lie in 1..{MAX_ID} (0 is background), got {invalid[0]}")
    return _scores_from_counts(ground_truth, prediction, _pair_counts(ground_truth, prediction), object_ids)


def _scores_from_counts(
    ground_truth: np.ndarray, prediction: np.ndarray, pair_counts: np.ndarray, object_ids: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """`frame_scores` given the frame's `_pair_counts` (in which ground-truth void may already count as background)."""
    ids = np.asarray(object_ids, dtype=np.intp)
    intersection = pair_counts[ids, ids].astype(np.float64)
    ground_truth_area = pair_counts[ids].sum(axis=1)
    predicted_area = pair_counts[:, ids].sum(axis=0)
    union = ground_truth_area + predicted_area - intersection
    j = np.divide(intersection, union, out=np.ones(ids.size), where=union > 0)

    height, width = ground_truth.shape
    disk = _cached_disk(boundary_tolerance_px(height, width))
    f = np.ones(ids.size)
    for index in np.flatnonzero(union > 0):  # empty on both sides: F = 1
        ground_truth_object = ground_truth == ids[index]
        predicted_object = prediction == ids[index]
        left, top, box_width, box_height = cv2.boundingRect((ground_truth_object | predicted_object).view(np.uint8))
        rows = slice(max(top - _CROP_MARGIN_PX, 0), min(top + box_height + _CROP_MARGIN_PX, height))
        columns = slice(max(left - _CROP_MARGIN_PX, 0), min(left + box_width + _CROP_MARGIN_PX, width))
        f[index] = _object_boundary_f(ground_truth_object[rows, columns], predicted_object[rows, columns], disk)
    return j, f


def decay_bins(num_frames: int, *, davis_compat_decay: bool = False) -> list[slice]:
    """The DAVIS toolkit's DECAY_BINS overlapping bins over `num_frames` scored frames.

    Edges are ids = round(linspace(1, n, 5) + 1e-10) - 1 and bin i is [ids[i], ids[i+1]] inclusive. With
    `davis_compat_decay` the edges wrap modulo 256 as the toolkit's uint8 cast makes them, so bins of long sequences
    come out wrong or empty.
    """
    edges = np.round(np.linspace(1, num_frames, DECAY_BINS + 1) + _BIN_EDGE_NUDGE).astype(np.int64) - 1
    if davis_compat_decay:
        edges = edges % _TOOLKIT_INDEX_MODULUS
    return [slice(int(edges[i]), int(edges[i + 1]) + 1) for i in range(DECAY_BINS)]


def _mean_or_nan(values: np.ndarray) -> float:
    return float(np.mean(values)) if values.size else math.nan


def summarize_frames(values: np.ndarray, *, davis_compat_decay: bool = False) -> tuple[float, float, float]:
    """Mean, recall and decay of one object's per-frame scores.

    Args:
        values: float T, the object's J (or F) on its scored frames, in order.
        davis_compat_decay: bin the decay as the toolkit does (wrapping on long sequences, NaN for an empty bin).
    Returns:
        (mean, recall, decay); all NaN when `values` is empty.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return math.nan, math.nan, math.nan
    bins = decay_bins(values.size, davis_compat_decay=davis_compat_decay)
    decay = _mean_or_nan(values[bins[0]]) - _mean_or_nan(values[bins[-1]])
    return float(values.mean()), float(np.mean(values > RECALL_THRESHOLD)), decay


@dataclasses.dataclass(frozen=True)
class ObjectScores:
    """Scores of one object of one sequence; every value in [0, 1] except the decays (in [-1, 1], maybe NaN)."""

    sequence: str
    object_id: int
    num_frames: int
    """How many frames the object was scored on."""
    j_mean: float
    j_recall: float
    j_decay: float
    f_mean: float
    f_recall: float
    f_decay: float
    frame_j: tuple[float, ...] = dataclasses.field(default=(), compare=False, repr=False)
    """J on each of the object's scored frames, in order (the last `num_frames` scored frames of its sequence);
    empty when not kept. Not part of the tables; the report page plots it."""
    frame_f: tuple[float, ...] = dataclasses.field(default=(), compare=False, repr=False)
    """F on the same frames."""

    @property
    def name(self) -> str:
        """Row name in the per-object table, as the toolkit writes it: `<sequence>_<object id>`."""
        return f"{self.sequence}_{self.object_id}"

    def row(self) -> dict[str, float]:
        """The PER_OBJECT_COLUMNS of this object."""
        return dict(zip(PER_OBJECT_COLUMNS, (self.j_mean, self.j_recall, self.j_decay,
                                             self.f_mean, self.f_recall, self.f_decay)))


class ForeignObjectError(ValueError):
    """A prediction holds an object id that the ground truth of its sequence does not have.

    Attributes:
        object_id: the id; sequence: the sequence's name; source: names the first prediction holding it.
    """

    def __init__(self, message: str, object_id: int, sequence: str, source: str) -> None:
        super().__init__(message)
        self.object_id, self.sequence, self.source = object_id, sequence, source

    def __reduce__(self):  # picklable with its attributes (raised in scoring worker processes)
        return type(self), (str(self), self.object_id, self.sequence, self.source)


@dataclasses.dataclass(frozen=True)
class EvaluationResults:
    """Per-object scores of a whole evaluation, in sequence order."""

    objects: tuple[ObjectScores, ...]

    def global_scores(self) -> dict[str, float]:
        """The GLOBAL_COLUMNS: object-weighted means (NaN decays propagate, as in the toolkit).

        Raises:
            ValueError: there is no object to average.
        """
        if not self.objects:
            raise ValueError("no object was scored: the ground truth holds no object on any scored frame")
        table = np.array([[*scores.row().values()] for scores in self.objects])
        means = dict(zip(PER_OBJECT_COLUMNS, table.mean(axis=0)))
        means["J&F-Mean"] = (means["J-Mean"] + means["F-Mean"]) / 2
        return {column: float(means[column]) for column in GLOBAL_COLUMNS}

    def format_table(self) -> str:
        """The global scores as a two-line text table (values × 100, one decimal)."""
        scores = self.global_scores()
        header = " ".join(f"{column:>9}" for column in GLOBAL_COLUMNS)
        values = " ".join(f"{100 * scores[column]:9.1f}" for column in GLOBAL_COLUMNS)
        return f"{header}\n{values}"


class SequenceScorer:
    """Scores one video frame by frame, so that only one frame is held in memory.

    Feed the first ground-truth frame to the constructor, every scored frame (all but the first and last) to
    `add_frame` in order, then call `finish` with the last ground-truth frame. See the module docstring for what
    each mode scores.

    Args:
        first_ground_truth: integer H×W labels of the first ground-truth frame (never scored).
        mode: "davis" or "appearance".
        sequence: name used in the results and error messages.
        first_source: names the first ground-truth frame (e.g. its file) in error messages.
    Raises:
        ValueError: unknown mode; in DAVIS mode, a first frame without objects.
    """

    def __init__(self, first_ground_truth: np.ndarray, *, mode: str = MODE_DAVIS, sequence: str = "",
                 first_source: str = "") -> None:
        if mode not in MODES:
            raise ValueError(f"unknown metrics mode {mode!r}; expected one of {MODES}")
        self.mode = mode
        self.sequence = sequence
        self._ground_truth_ids = self._ground_truth_ids_in(as_labels(first_ground_truth, what="ground truth"))
        self._first_prediction_source: dict[int, str] = {}
        self._appeared_in_scored_ground_truth: set[int] = set()
        self._first_frame_of_object: dict[int, int] = {}
        self._object_ids: list[int] = []
        self._j_rows: list[np.ndarray] = []
        self._f_rows: list[np.ndarray] = []
        if mode == MODE_DAVIS:
            num_objects = max(self._ground_truth_ids, default=0)
            if num_objects == 0:
                raise ValueError(
                    f"{first_source or f'sequence {sequence!r}'}: the first ground-truth frame holds no object; "
                    f"DAVIS mode scores the objects of the first frame (use mode 'appearance' for objects that "
                    f"appear later)"
                )
            self._object_ids = list(range(1, num_objects + 1))
            self._first_frame_of_object = dict.fromkeys(self._object_ids, 0)

    def _ground_truth_ids_in(self, ground_truth: np.ndarray) -> set[int]:
        ids = set(np.flatnonzero(np.bincount(ground_truth.ravel(), minlength=_NUM_IDS)).tolist()) - {0}
        return ids - {VOID_ID} if self.mode == MODE_DAVIS else ids

    def add_frame(self, ground_truth: np.ndarray, prediction: np.ndarray, *, source: str = "") -> None:
        """Score the next frame.

        Args:
            ground_truth: integer H×W labels, ids in 0..255.
            prediction: integer H×W labels of the same size, ids in 0..255.
            source: names the prediction (e.g. its file) in error messages.
        Raises:
            ValueError: the sizes differ or ids lie outside 0..255; in DAVIS mode, the prediction holds an id above
                the first frame's largest (ForeignObjectError).
        """
        source = source or f"sequence {self.sequence!r}, scored frame {len(self._j_rows)}"
        ground_truth = as_labels(ground_truth, what=f"{source}: ground truth")
        prediction = as_labels(prediction, what=f"{source}: prediction")
        if ground_truth.shape != prediction.shape:
            raise ValueError(
                f"{source}: prediction is {prediction.shape[1]}×{prediction.shape[0]} but the ground truth is "
                f"{ground_truth.shape[1]}×{ground_truth.shape[0]} (width×height); predictions must have the ground "
                f"truth's size"
            )
        pair_counts = _pair_counts(ground_truth, prediction)
        if self.mode == MODE_DAVIS:
            # Void pixels count as background, as in the toolkit; no scored object has the void id.
            pair_counts[0] += pair_counts[VOID_ID]
            pair_counts[VOID_ID] = 0
        ground_truth_ids = set(np.flatnonzero(pair_counts.sum(axis=1)).tolist()) - {0}
        predicted_ids = set(np.flatnonzero(pair_counts.sum(axis=0)).tolist()) - {0}
        self._ground_truth_ids |= ground_truth_ids
        for object_id in predicted_ids:
            self._first_prediction_source.setdefault(object_id, source)
        frame = len(self._j_rows)
        if self.mode == MODE_DAVIS:
            unknown = sorted(predicted_ids - set(self._object_ids))
            if unknown:
                raise ForeignObjectError(
                    f"{source}: prediction holds object id {unknown[0]} but DAVIS mode scores the objects "
                    f"1..{len(self._object_ids)} of the first ground-truth frame; use mode 'appearance' if objects "
                    f"appear later, or fix the prediction's ids", unknown[0], self.sequence, source
                )
        else:
            self._appeared_in_scored_ground_truth |= ground_truth_ids
            for object_id in sorted(ground_truth_ids | predicted_ids):
                if object_id not in self._first_frame_of_object:
                    self._first_frame_of_object[object_id] = frame
                    self._object_ids.append(object_id)
        j, f = _scores_from_counts(ground_truth, prediction, pair_counts, self._object_ids)
        self._j_rows.append(j)
        self._f_rows.append(f)

    def finish(self, last_ground_truth: np.ndarray | None = None, *,
               davis_compat_decay: bool = False) -> list[ObjectScores]:
        """Per-object scores of the sequence.

        Args:
            last_ground_truth: integer H×W labels of the last ground-truth frame (not scored; its ids count as ids
                the ground truth has).
            davis_compat_decay: reproduce the toolkit's decay binning (see `decay_bins`).
        Returns:
            one ObjectScores per reported object, in id order.
        Raises:
            ValueError: no frame was scored; the prediction holds an id that no ground-truth frame has
                (ForeignObjectError).
        """
        if not self._j_rows:
            raise ValueError(
                f"sequence {self.sequence!r} has no scored frame: the first and the last ground-truth frames are "
                f"never scored, so at least 3 ground-truth frames are needed"
            )
        if last_ground_truth is not None:
            self._ground_truth_ids |= self._ground_truth_ids_in(as_labels(last_ground_truth, what="ground truth"))
        foreign = sorted(set(self._first_prediction_source) - self._ground_truth_ids)
        if foreign:
            source = self._first_prediction_source[foreign[0]]
            raise ForeignObjectError(
                f"{source}: prediction holds object id {foreign[0]}, which no ground-truth frame of sequence "
                f"{self.sequence!r} has; fix the prediction's ids", foreign[0], self.sequence, source
            )
        num_frames = len(self._j_rows)
        reported = (self._object_ids if self.mode == MODE_DAVIS
                    else sorted(self._appeared_in_scored_ground_truth))
        results = []
        for object_id in reported:
            slot = self._object_ids.index(object_id)
            first = self._first_frame_of_object[object_id]
            j = np.array([row[slot] for row in self._j_rows[first:]])
            f = np.array([row[slot] for row in self._f_rows[first:]])
            results.append(ObjectScores(
                self.sequence, object_id, num_frames - first,
                *summarize_frames(j, davis_compat_decay=davis_compat_decay),
                *summarize_frames(f, davis_compat_decay=davis_compat_decay),
                tuple(j.tolist()), tuple(f.tolist()),
            ))
        return results


def evaluate_sequence(
    ground_truth: np.ndarray, prediction: np.ndarray, *, sequence: str = "", mode: str = MODE_DAVIS,
    davis_compat_decay: bool = False,
) -> list[ObjectScores]:
    """Scores of one video held in memory.

    Args:
        ground_truth: integer T×H×W labels, the frames that have ground truth (for sparse ground truth, only those).
        prediction: integer T×H×W labels of the same frames (frames 0 and T-1 are never read).
        sequence: name used in the results.
        mode: "davis" or "appearance".
        davis_compat_decay: reproduce the toolkit's decay binning.
    Returns:
        one ObjectScores per reported object, in id order.
    Raises:
        ValueError: the arrays are not T×H×W of one size, T < 3, or see `SequenceScorer`.
    """
    if ground_truth.ndim != 3 or ground_truth.shape != prediction.shape:
        raise ValueError(
            f"sequence {sequence!r}: ground truth {ground_truth.shape} and prediction {prediction.shape} must be "
            f"T×H×W arrays of one shape"
        )
    scorer = SequenceScorer(ground_truth[0], mode=mode, sequence=sequence)
    for frame in range(1, ground_truth.shape[0] - 1):
        scorer.add_frame(ground_truth[frame], prediction[frame])
    return scorer.finish(ground_truth[-1], davis_compat_decay=davis_compat_decay)


def evaluate_sequences(
    sequences: Iterable[tuple[str, np.ndarray, np.ndarray]], *, mode: str = MODE_DAVIS,
    davis_compat_decay: bool = False,
) -> EvaluationResults:
    """Scores of several videos held in memory.

    Args:
        sequences: (name, ground truth T×H×W, prediction T×H×W) per video; see `evaluate_sequence`.
        mode: "davis" or "appearance".
        davis_compat_decay: reproduce the toolkit's decay binning.
    Returns:
        EvaluationResults with the objects of all sequences, in the given order.
    """
    objects: list[ObjectScores] = []
    for name, ground_truth, prediction in sequences:
        objects += evaluate_sequence(ground_truth, prediction, sequence=name, mode=mode,
                                     davis_compat_decay=davis_compat_decay)
    return EvaluationResults(tuple(objects))
