"""Synthetic videos with exact object masks, for tests, benchmarks and the quickstart.

No benchmark data can be downloaded on the development machines, so every test, benchmark and the quickstart
stands on these videos. A video is a small frozen spec (`SyntheticVideo`: seed, size, length, `Difficulty`);
every frame is a pure function of the spec and the frame index, so frames can be rendered in any order and a
10,000-frame video needs no more memory than a 10-frame one.

What a video holds:
- a textured background (smooth noise, stripes, checker or gradient plus muted clutter shapes) that pans;
- 1..4 objects (ids 1..N) with smooth-blob, polygon or ellipse outlines and noise, stripe, checker or gradient
  textures, moving on smooth paths while rotating and changing scale; optionally their colours drift;
- unlabelled distractors textured like one of the objects (similar colour and pattern, mask value 0);
- a fixed depth order, so objects occlude each other and distractors occlude objects;
- objects that leave the frame and come back, and objects that enter mid-video (popping in at their home cell).

The mask is exact by construction: an object's pixels are those where its warped shape sprite is drawn on top
of everything behind it, and the same boolean coverage writes both the frame and the mask.

Example:
    >>> video = SyntheticVideo(seed=3, height=96, width=160, num_frames=40)
    >>> rgb, mask = video.frame(10)          # uint8 96×160×3, uint8 96×160 of ids 0..N
    >>> video.object_ids, video.entry_frames  # e.g. (1, 2), {1: 0, 2: 17}

Length: one module on purpose: every frame is one deterministic function of (spec, frame index) — shapes,
textures, motion, occlusion, exits, drift and the difficulty presets that parameterise them — and splitting it
would scatter that one algorithm over files that only make sense together.
"""
from __future__ import annotations

import colorsys
import dataclasses
import math
import types
from dataclasses import dataclass
from functools import cached_property
from typing import Iterator, Mapping, Sequence

import cv2
import numpy as np

MAX_OBJECTS = 4
"""Objects per video (ids 1..4); each benchmark video holds a handful of objects."""

MIN_FRAME_SIZE_PX = 16
"""Smallest frame height/width: below it the objects would be a few pixels across."""

SHAPE_KINDS = ("blob", "polygon", "ellipse")
TEXTURE_KINDS = ("noise", "stripes", "checker", "gradient")

# Paths: each coordinate is a sum of PATH_COMPONENTS sinusoids; the faster ones run 1.5-2.5x the base frequency.
PATH_COMPONENTS = 2
PATH_HARMONIC_RANGE = (1.5, 2.5)
PATH_MAIN_COMPONENT_WEIGHT = (0.5, 0.8)  # share of the path amplitude taken by the slow component
PATH_AXIS_FREQUENCY_RATIO = (0.8, 1.25)  # x and y run at slightly different speeds: no straight back-and-forth
# Objects start in distinct cells of a grid over the frame and fill at most this fraction of a cell's half-size,
# so the objects present on their first frame do not cover each other there.
HOME_CELL_FILL = 1.0
MIN_OBJECT_RADIUS_PX = 3.0
# Late entries fall in this part of the video (fractions of its length).
LATE_ENTRY_RANGE = (0.15, 0.6)
# Exits: an exiting object leaves and returns once per EXIT_PERIOD_FRAMES (or once per video if shorter): it slides
# out for EXIT_RAMP_FRACTION of the period, stays out for EXIT_HOLD_FRACTION, slides back in. (A subclass may time
# exits and colour drift otherwise: `SyntheticVideo.timing`.)
EXIT_PERIOD_FRAMES = 150
EXIT_START_RANGE = (0.15, 0.45)
EXIT_RAMP_FRACTION = 0.12
EXIT_HOLD_FRACTION = 0.15
MIN_EXIT_PERIOD_FRAMES = 8
# Size changes and colour drift are slow oscillations with periods drawn from these ranges (frames).
SCALE_PERIOD_FRAMES = (40.0, 120.0)
APPEARANCE_PERIOD_FRAMES = (60.0, 200.0)
BACKGROUND_PAN_PERIOD_FRAMES = (80.0, 200.0)
# Outlines: polygon vertex counts, number of samples around blobs and ellipses, blob harmonic amplitude.
POLYGON_VERTICES = (3, 8)
POLYGON_ANGLE_JITTER = 0.3  # vertex angles move up to this fraction of the even spacing
POLYGON_VERTEX_RADIUS = (0.6, 1.0)
OUTLINE_SAMPLES = 64
BLOB_HARMONICS = (2, 3, 4)
BLOB_HARMONIC_AMPLITUDE = 0.15
ELLIPSE_MINOR_AXIS = (0.45, 0.9)
FILL_POLY_SHIFT_BITS = 4  # sub-pixel vertex precision of cv2.fillPoly
# Textures: colour ranges (HSV) and per-pixel grain (std, 0..255).
GRAIN_STD = 6.0
# Texture feature sizes, as fractions of the texture's feature size (an object's radius, or larger for backgrounds).
NOISE_CELL_FRACTION = 0.5
STRIPE_PERIOD_FRACTION = (1 / 3, 2 / 3)
CHECKER_CELL_FRACTION = (1 / 4, 1 / 2)
OBJECT_SATURATION = (0.55, 1.0)
OBJECT_VALUE = (0.55, 1.0)
SECOND_COLOUR_HUE_SHIFT = (0.08, 0.25)  # fraction of the hue circle
BACKGROUND_SATURATION = (0.05, 0.4)
BACKGROUND_VALUE = (0.15, 0.85)
DISTRACTOR_HUE_JITTER = 0.03
BACKGROUND_HUE_SHIFT = (0.1, 0.5)
BACKGROUND_CLUTTER_SHAPES = 24
BACKGROUND_CLUTTER_RADIUS_FRACTION = (0.04, 0.15)
BACKGROUND_TEXTURE_SCALE = 4.0  # background features are this much larger than an object's
MAX_UINT8 = 255
_OBJECT_COUNT_STREAM, _SCENE_STREAM = 0, 1  # independent random streams derived from a video's seed


@dataclass(frozen=True)
class Difficulty:
    """How hard a synthetic video is for a tracker. Lengths are fractions of the frame so presets fit any size.

    Attributes:
        min_objects, max_objects: the number of objects is drawn uniformly from this range (1..4).
        object_radius_fraction: (low, high) radius of an object at scale 1, fraction of min(H, W).
        speed_fraction: typical object speed, fraction of the frame diagonal per frame.
        occlusion: in (0, 1]; how far an object wanders from its home cell, fraction of half the frame. Paths
            cross, and objects occlude each other, more often as it grows.
        rotation_deg_per_frame: largest rotation speed (degrees per frame; each object draws its own).
        scale_change: amplitude of the log-scale oscillation (0.3: sizes between x0.74 and x1.35).
        num_distractors: unlabelled objects textured like a labelled one (similar colour and pattern).
        appearance_change: amplitude of the slow per-channel colour gain drift of objects (0: none).
        late_entry_probability: chance that each object after the first enters mid-video.
        exit_probability: chance that an object leaves the frame and comes back (periodically in long videos).
        background_pan_fraction: amplitude of the background's panning, fraction of min(H, W).
    """

    min_objects: int = 1
    max_objects: int = 3
    object_radius_fraction: tuple[float, float] = (0.14, 0.24)
    speed_fraction: float = 0.02
    occlusion: float = 0.5
    rotation_deg_per_frame: float = 2.5
    scale_change: float = 0.25
    num_distractors: int = 1
    appearance_change: float = 0.2
    late_entry_probability: float = 0.3
    exit_probability: float = 0.3
    background_pan_fraction: float = 0.1

    def __post_init__(self) -> None:
        if not 1 <= self.min_objects <= self.max_objects <= MAX_OBJECTS:
            raise ValueError(
                f"Difficulty objects range {self.min_objects}..{self.max_objects} is invalid; "
                f"expected 1 <= min_objects <= max_objects <= {MAX_OBJECTS}"
            )
        low, high = self.object_radius_fraction
        if not 0 < low <= high <= 0.5:
            raise ValueError(
                f"Difficulty.object_radius_fraction {self.object_radius_fraction} is invalid; "
                "expected (low, high) with 0 < low <= high <= 0.5"
            )
        if not 0 < self.occlusion <= 1:
            raise ValueError(f"Difficulty.occlusion {self.occlusion} is invalid; expected a value in (0, 1]")
        for name in ("late_entry_probability", "exit_probability"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"Difficulty.{name} {getattr(self, name)} is invalid; expected a value in [0, 1]")
        for name in ("speed_fraction", "rotation_deg_per_frame", "scale_change", "appearance_change",
                     "background_pan_fraction", "num_distractors"):
            if getattr(self, name) < 0:
                raise ValueError(f"Difficulty.{name} {getattr(self, name)} is invalid; expected a value >= 0")
        if self.appearance_change >= 1:
            raise ValueError(
                f"Difficulty.appearance_change {self.appearance_change} is invalid; expected a value in [0, 1)"
            )


PRESETS: Mapping[str, Difficulty] = types.MappingProxyType({
    # Slow, few objects, no distractors, entries, exits or colour drift: a sanity check a tracker must ace.
    "easy": Difficulty(
        min_objects=1, max_objects=2, speed_fraction=0.006, occlusion=0.3, rotation_deg_per_frame=1.0,
        scale_change=0.1, num_distractors=0, appearance_change=0.0, late_entry_probability=0.0,
        exit_probability=0.0, background_pan_fraction=0.05,
    ),
    # The default for held-out evaluation: objects move their own size within a few frames, so copying the
    # first-frame mask scores poorly, yet appearance stays recognisable for a small model trained from scratch.
    "held_out": Difficulty(),
    # Every knob up: four objects, fast motion, heavy occlusion, several look-alike distractors.
    "hard": Difficulty(
        min_objects=2, max_objects=4, speed_fraction=0.02, occlusion=0.8, rotation_deg_per_frame=5.0,
        scale_change=0.4, num_distractors=3, appearance_change=0.4, late_entry_probability=0.5,
        exit_probability=0.5, background_pan_fraction=0.15,
    ),
})
DEFAULT_PRESET = "held_out"


def get_preset(name: str) -> Difficulty:
    """The named `Difficulty` preset.

    Raises:
        KeyError: unknown name (the message lists the valid ones).
    """
    if name not in PRESETS:
        raise KeyError(f"unknown synthetic preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


@dataclass(frozen=True)
class Timing:
    """When exits and colour drift happen (frames); the defaults are every SyntheticVideo's.

    Attributes:
        exit_period_frames: an exiting object leaves and returns once per period (once per video if shorter).
        exit_ramp_fraction: fraction of the period it takes to slide out (and again to slide back in).
        exit_hold_fraction: fraction of the period it stays fully outside.
        appearance_period_frames: (low, high) range of the colour-drift periods.
    """

    exit_period_frames: int = EXIT_PERIOD_FRAMES
    exit_ramp_fraction: float = EXIT_RAMP_FRACTION
    exit_hold_fraction: float = EXIT_HOLD_FRACTION
    appearance_period_frames: tuple[float, float] = APPEARANCE_PERIOD_FRAMES

    def __post_init__(self) -> None:
        if self.exit_period_frames < MIN_EXIT_PERIOD_FRAMES:
            raise ValueError(f"Timing.exit_period_frames {self.exit_period_frames} is invalid; expected >= "
                             f"{MIN_EXIT_PERIOD_FRAMES}")
        if not (0 < self.exit_ramp_fraction and 0 < self.exit_hold_fraction
                and 2 * self.exit_ramp_fraction + self.exit_hold_fraction <= 1):
            raise ValueError(f"Timing exit fractions ramp {self.exit_ramp_fraction}, hold {self.exit_hold_fraction} "
                             "are invalid; expected positive values with 2 * ramp + hold <= 1")
        low, high = self.appearance_period_frames
        if not 0 < low <= high:
            raise ValueError(f"Timing.appearance_period_frames {self.appearance_period_frames} is invalid; expected "
                             "(low, high) with 0 < low <= high")


DEFAULT_TIMING = Timing()


@dataclass(frozen=True)
class _Layer:
    """One drawn object or distractor: sprites at the largest scale, plus the parameters of its motion."""

    label: int  # object id, 0 for a distractor
    shape_kind: str
    colour_sprite: np.ndarray  # S×S×3 uint8 texture covering the whole square
    shape_sprite: np.ndarray  # S×S uint8, 1 inside the outline
    sprite_radius_px: float  # the outline fits in this circle around the sprite centre
    max_scale: float  # sprites are drawn at this scale, so warps only ever shrink them
    home_xy: np.ndarray  # (2,) frame position at entry
    path_amplitude: np.ndarray  # 2×PATH_COMPONENTS, pixels
    path_frequency: np.ndarray  # 2×PATH_COMPONENTS, radians per frame
    path_phase: np.ndarray  # 2×PATH_COMPONENTS
    angle0_deg: float
    rotation_deg_per_frame: float
    log_scale_amplitude: float
    scale_frequency: float
    scale_phase: float
    colour_gain_amplitude: float
    colour_frequency: float
    colour_phase: np.ndarray  # (3,)
    entry_frame: int
    exit_offset: np.ndarray | None  # (2,) pixels that carry the object fully outside, or None: never exits
    exit_start: int
    exit_ramp: int
    exit_hold: int
    exit_period: int


def _smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


def _rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, saturation, value), dtype=np.float32) * MAX_UINT8


def _texture(kind: str, height: int, width: int, colours: tuple[np.ndarray, np.ndarray], feature_px: float,
             rng: np.random.Generator) -> np.ndarray:
    """A height×width×3 uint8 texture mixing two colours by a pattern field of the given kind."""
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]
    angle = rng.uniform(0, math.pi)
    along = xs * math.cos(angle) + ys * math.sin(angle)
    across = -xs * math.sin(angle) + ys * math.cos(angle)
    if kind == "noise":
        cells = max(2, math.ceil(max(height, width) / max(feature_px * NOISE_CELL_FRACTION, 1.0)))
        coarse = rng.random((cells, cells)).astype(np.float32)
        field = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
        field = (field - field.min()) / max(float(field.max() - field.min()), 1e-6)
    elif kind == "stripes":
        period = feature_px * rng.uniform(*STRIPE_PERIOD_FRACTION)
        field = 0.5 + 0.5 * np.sin(2 * math.pi * along / max(period, 2.0))
    elif kind == "checker":
        cell = max(feature_px * rng.uniform(*CHECKER_CELL_FRACTION), 2.0)
        field = ((np.floor(along / cell) + np.floor(across / cell)) % 2).astype(np.float32)
    elif kind == "gradient":
        field = (along - along.min()) / max(float(along.max() - along.min()), 1e-6)
    else:
        raise ValueError(f"unknown texture kind {kind!r}; expected one of {TEXTURE_KINDS}")
    first, second = colours
    image = first * (1 - field[..., None]) + second * field[..., None]
    image += GRAIN_STD * rng.standard_normal(size=image.shape, dtype=np.float32)
    return np.clip(image, 0, MAX_UINT8).astype(np.uint8)


def _outline(kind: str, rng: np.random.Generator) -> np.ndarray:
    """Outline points (K×2, x/y) of a shape of the given kind, inside the unit circle and touching it."""
    angles = np.linspace(0, 2 * math.pi, OUTLINE_SAMPLES, endpoint=False)
    if kind == "blob":
        radius = np.ones_like(angles)
        for harmonic in BLOB_HARMONICS:
            radius += rng.uniform(0, BLOB_HARMONIC_AMPLITUDE) * np.cos(harmonic * angles + rng.uniform(0, 2 * math.pi))
        points = np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)
    elif kind == "polygon":
        count = int(rng.integers(POLYGON_VERTICES[0], POLYGON_VERTICES[1] + 1))
        jitter = rng.uniform(-POLYGON_ANGLE_JITTER, POLYGON_ANGLE_JITTER, size=count) * (2 * math.pi / count)
        vertex_angles = np.sort((np.arange(count) * 2 * math.pi / count + jitter) % (2 * math.pi))
        radius = rng.uniform(*POLYGON_VERTEX_RADIUS, size=count)
        points = np.stack([radius * np.cos(vertex_angles), radius * np.sin(vertex_angles)], axis=1)
    elif kind == "ellipse":
        minor = rng.uniform(*ELLIPSE_MINOR_AXIS)
        points = np.stack([np.cos(angles), minor * np.sin(angles)], axis=1)
    else:
        raise ValueError(f"unknown shape kind {kind!r}; expected one of {SHAPE_KINDS}")
    return points / np.linalg.norm(points, axis=1).max()


def _fill_outline(points: np.ndarray, size: int) -> np.ndarray:
    """Rasterise outline points (K×2, pixel x/y) into a size×size uint8 0/1 image without anti-aliasing."""
    canvas = np.zeros((size, size), dtype=np.uint8)
    fixed = np.round(points * (1 << FILL_POLY_SHIFT_BITS)).astype(np.int32)
    cv2.fillPoly(canvas, [fixed], 1, lineType=cv2.LINE_8, shift=FILL_POLY_SHIFT_BITS)
    return canvas


@dataclass(frozen=True)
class SyntheticVideo:
    """A deterministic synthetic video: every frame is a pure function of these fields and the frame index.

    Attributes:
        seed: any non-negative integer; equal specs give byte-identical frames, different seeds different videos.
        height, width: frame size H×W in pixels (>= 16).
        num_frames: length T.
        difficulty: the knobs (see `Difficulty`, `PRESETS`).

    Rendering state (sprites, background canvas: O(H×W) bytes) is built on first use and cached on the instance;
    nothing grows with the number of frames rendered.
    """

    seed: int
    height: int = 480
    width: int = 854
    num_frames: int = 60
    difficulty: Difficulty = PRESETS[DEFAULT_PRESET]

    def __post_init__(self) -> None:
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"SyntheticVideo seed {self.seed!r} is invalid; expected a non-negative integer")
        if self.height < MIN_FRAME_SIZE_PX or self.width < MIN_FRAME_SIZE_PX:
            raise ValueError(
                f"SyntheticVideo size {self.height}x{self.width} is too small; "
                f"expected height and width >= {MIN_FRAME_SIZE_PX}"
            )
        if self.num_frames < 1:
            raise ValueError(f"SyntheticVideo num_frames {self.num_frames} is invalid; expected >= 1")
        if not isinstance(self.difficulty, Difficulty):
            raise TypeError(
                f"SyntheticVideo difficulty must be a Difficulty, got {type(self.difficulty).__name__}; "
                "use dataset.synthetic.get_preset(name)"
            )

    # ----------------------------------------------------------------------------------------------- public API
    @property
    def timing(self) -> Timing:
        """When exits and colour drift happen. Not a field, so that the specs (and the completion records of
        written data sets) of every existing video stay as they are; `synthetic_long.LongSyntheticVideo` overrides
        it."""
        return DEFAULT_TIMING

    @property
    def object_ids(self) -> tuple[int, ...]:
        """The object ids 1..N (N in difficulty.min_objects..max_objects)."""
        return tuple(range(1, self._num_objects + 1))

    @property
    def entry_frames(self) -> dict[int, int]:
        """Object id -> first frame on which it is drawn (0 unless it enters mid-video)."""
        return {layer.label: layer.entry_frame for layer in self._layers_by_id}

    @property
    def shape_kinds(self) -> dict[int, str]:
        """Object id -> outline kind ('blob', 'polygon' or 'ellipse'), used as a category name."""
        return {layer.label: layer.shape_kind for layer in self._layers_by_id}

    @property
    def depth_order(self) -> tuple[int, ...]:
        """Labels of all drawn layers from back to front (0 for each distractor)."""
        return tuple(layer.label for layer in self._layers)

    def frame(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Render frame `index`.

        Returns:
            (rgb, mask): rgb uint8 H×W×3; mask uint8 H×W of object ids (0 = background or distractor), exactly the
            pixels where each object is drawn on top.
        Raises:
            IndexError: index outside 0..T-1.
        """
        return self.render(index)

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield (index, rgb, mask) for frames start..stop-1 (stop defaults to T), one at a time."""
        for index in range(start, self.num_frames if stop is None else stop):
            yield (index, *self.render(index))

    def render(self, index: int, object_ids: Sequence[int] | None = None,
               distractors: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Render frame `index` with only some layers (e.g. one object alone over the background).

        Args:
            index: frame index in 0..T-1.
            object_ids: objects to draw (None: all).
            distractors: whether to draw the distractors.
        Returns:
            (rgb, mask) as in `frame`.
        Raises:
            IndexError: index outside 0..T-1.
        """
        self._check_index(index)
        rgb = self._background(index)
        mask = np.zeros((self.height, self.width), dtype=np.uint8)
        for layer in self._layers:
            if (layer.label == 0 and not distractors) or (
                    layer.label > 0 and object_ids is not None and layer.label not in object_ids):
                continue
            placed = self._place(layer, index)
            if placed is None:
                continue
            top, left, colour, covered = placed
            bottom, right = top + covered.shape[0], left + covered.shape[1]
            np.copyto(rgb[top:bottom, left:right], colour, where=covered[..., None])
            np.copyto(mask[top:bottom, left:right], np.uint8(layer.label), where=covered)
        return rgb, mask

    def layer_coverage(self, index: int) -> list[tuple[int, np.ndarray]]:
        """Where each layer's outline lands on frame `index`, ignoring occlusion.

        Returns:
            [(label, covered)] from back to front: label the object id (0 for a distractor), covered bool H×W.
        Raises:
            IndexError: index outside 0..T-1.
        """
        self._check_index(index)
        coverage = []
        for layer in self._layers:
            covered = np.zeros((self.height, self.width), dtype=bool)
            placed = self._place(layer, index)
            if placed is not None:
                top, left, _, roi = placed
                covered[top:top + roi.shape[0], left:left + roi.shape[1]] = roi
            coverage.append((layer.label, covered))
        return coverage

    # ------------------------------------------------------------------------------------------- construction
    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.num_frames:
            raise IndexError(f"frame index {index} is outside this video's frames 0..{self.num_frames - 1}")

    def _rng(self, stream: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([int(self.seed), stream]))

    @cached_property
    def _num_objects(self) -> int:
        # A stream of its own, so object ids are known without building the scene.
        rng = self._rng(_OBJECT_COUNT_STREAM)
        return int(rng.integers(self.difficulty.min_objects, self.difficulty.max_objects + 1))

    @cached_property
    def _scene(self) -> tuple[list[_Layer], np.ndarray, int, np.ndarray, np.ndarray]:
        """(layers back to front, background canvas, pan margin, pan frequency (2,), pan phase (2,))."""
        rng = self._rng(_SCENE_STREAM)
        difficulty, timing = self.difficulty, self.timing
        short_side = min(self.height, self.width)
        num_objects = self._num_objects
        num_layers = num_objects + difficulty.num_distractors

        columns = max(1, int(round(math.sqrt(num_layers * self.width / self.height))))
        rows = math.ceil(num_layers / columns)
        cell_w, cell_h = self.width / columns, self.height / rows
        cells = rng.permutation(rows * columns)[:num_layers]

        object_colours: list[tuple[np.ndarray, np.ndarray, str]] = []
        layers = []
        for layer_index in range(num_layers):
            is_object = layer_index < num_objects
            label = layer_index + 1 if is_object else 0
            row, column = divmod(int(cells[layer_index]), columns)
            radius = min(rng.uniform(*difficulty.object_radius_fraction) * short_side,
                         HOME_CELL_FILL * min(cell_w, cell_h) / 2)
            radius = max(radius, MIN_OBJECT_RADIUS_PX)
            slack = np.maximum(np.array([cell_w, cell_h]) / 2 - radius, 0)
            home = np.array([(column + 0.5) * cell_w, (row + 0.5) * cell_h]) + rng.uniform(-slack, slack)

            if is_object:
                hue = rng.uniform()
                first = _rgb(hue, rng.uniform(*OBJECT_SATURATION), rng.uniform(*OBJECT_VALUE))
                shift = rng.uniform(*SECOND_COLOUR_HUE_SHIFT) * rng.choice([-1, 1])
                second = _rgb(hue + shift, rng.uniform(*OBJECT_SATURATION), rng.uniform(*OBJECT_VALUE))
                texture_kind = TEXTURE_KINDS[rng.integers(len(TEXTURE_KINDS))]
                object_colours.append((first, second, texture_kind))
            else:
                # A distractor copies one object's colours (hue-jittered) and texture kind: a look-alike.
                first, second, texture_kind = object_colours[rng.integers(num_objects)]
                jitter = rng.uniform(-DISTRACTOR_HUE_JITTER, DISTRACTOR_HUE_JITTER) * MAX_UINT8
                first, second = np.clip(first + jitter, 0, MAX_UINT8), np.clip(second - jitter, 0, MAX_UINT8)
            shape_kind = SHAPE_KINDS[rng.integers(len(SHAPE_KINDS))]

            max_scale = math.exp(difficulty.scale_change)
            sprite_radius = radius * max_scale
            sprite_size = 2 * math.ceil(sprite_radius) + 3
            centre = (sprite_size - 1) / 2
            outline = _outline(shape_kind, rng) * sprite_radius + centre
            shape_sprite = _fill_outline(outline, sprite_size)
            colour_sprite = _texture(texture_kind, sprite_size, sprite_size, (first, second), sprite_radius, rng)

            entry = 0
            if is_object and label > 1 and rng.uniform() < difficulty.late_entry_probability:
                entry = int(rng.integers(int(LATE_ENTRY_RANGE[0] * self.num_frames),
                                         int(LATE_ENTRY_RANGE[1] * self.num_frames) + 1))

            amplitude_total = difficulty.occlusion * np.array([self.width, self.height]) / 2
            main_weight = rng.uniform(*PATH_MAIN_COMPONENT_WEIGHT)
            # sin(w t + p) - sin(p) swings over up to 2 amplitudes, hence the halving.
            path_amplitude = np.outer(amplitude_total, [main_weight, 1 - main_weight]) / 2
            harmonics = np.array([1.0, rng.uniform(*PATH_HARMONIC_RANGE)])
            path_frequency = np.outer(rng.uniform(*PATH_AXIS_FREQUENCY_RATIO, size=2), harmonics)
            speed_px = difficulty.speed_fraction * math.hypot(self.height, self.width)
            rms_speed_per_unit = math.sqrt(float(np.sum((path_amplitude * path_frequency) ** 2)) / 2)
            path_frequency = path_frequency * (speed_px / rms_speed_per_unit)
            path_phase = rng.uniform(0, 2 * math.pi, size=(2, PATH_COMPONENTS))

            exit_period = min(self.num_frames, timing.exit_period_frames)
            exit_offset = None
            exit_start = exit_ramp = exit_hold = 0
            if rng.uniform() < difficulty.exit_probability and exit_period >= MIN_EXIT_PERIOD_FRAMES:
                side = int(rng.integers(4))
                axis, sign = side // 2, (-1.0, 1.0)[side % 2]
                extent = (self.width, self.height)[axis]
                exit_offset = np.zeros(2)
                # Far enough to push the object fully out from anywhere in the frame.
                exit_offset[axis] = sign * (extent + 2 * sprite_radius)
                exit_start = int(rng.uniform(*EXIT_START_RANGE) * exit_period)
                exit_ramp = max(2, int(round(timing.exit_ramp_fraction * exit_period)))
                exit_hold = max(1, int(round(timing.exit_hold_fraction * exit_period)))

            layers.append(_Layer(
                label=label, shape_kind=shape_kind, colour_sprite=colour_sprite, shape_sprite=shape_sprite,
                sprite_radius_px=sprite_radius, max_scale=max_scale, home_xy=home,
                path_amplitude=path_amplitude, path_frequency=path_frequency, path_phase=path_phase,
                angle0_deg=rng.uniform(0, 360),
                rotation_deg_per_frame=rng.uniform(-1, 1) * difficulty.rotation_deg_per_frame,
                log_scale_amplitude=difficulty.scale_change,
                scale_frequency=2 * math.pi / rng.uniform(*SCALE_PERIOD_FRAMES),
                scale_phase=rng.uniform(0, 2 * math.pi),
                colour_gain_amplitude=difficulty.appearance_change if is_object else 0.0,
                colour_frequency=2 * math.pi / rng.uniform(*timing.appearance_period_frames),
                colour_phase=rng.uniform(0, 2 * math.pi, size=3),
                entry_frame=entry, exit_offset=exit_offset, exit_start=exit_start, exit_ramp=exit_ramp,
                exit_hold=exit_hold, exit_period=exit_period,
            ))
        depth = rng.permutation(num_layers)
        layers = [layers[i] for i in depth]

        margin = int(math.ceil(difficulty.background_pan_fraction * short_side))
        canvas = self._background_canvas(rng, self.height + 2 * margin, self.width + 2 * margin)
        pan_frequency = 2 * math.pi / rng.uniform(*BACKGROUND_PAN_PERIOD_FRAMES, size=2)
        pan_phase = rng.uniform(0, 2 * math.pi, size=2)
        return layers, canvas, margin, pan_frequency, pan_phase

    def _background_canvas(self, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
        """A muted texture with clutter shapes, larger than the frame by the pan margin on each side."""
        short_side = min(self.height, self.width)
        hue = rng.uniform()
        colours = (_rgb(hue, rng.uniform(*BACKGROUND_SATURATION), rng.uniform(*BACKGROUND_VALUE)),
                   _rgb(hue + rng.uniform(*BACKGROUND_HUE_SHIFT), rng.uniform(*BACKGROUND_SATURATION),
                        rng.uniform(*BACKGROUND_VALUE)))
        feature_px = BACKGROUND_TEXTURE_SCALE * self.difficulty.object_radius_fraction[1] * short_side
        canvas = _texture(TEXTURE_KINDS[rng.integers(len(TEXTURE_KINDS))], height, width, colours, feature_px, rng)
        for _ in range(BACKGROUND_CLUTTER_SHAPES):
            radius = rng.uniform(*BACKGROUND_CLUTTER_RADIUS_FRACTION) * short_side
            outline = _outline(SHAPE_KINDS[rng.integers(len(SHAPE_KINDS))], rng)
            angle = rng.uniform(0, 2 * math.pi)
            rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
            points = outline @ rotation.T * radius + rng.uniform([0, 0], [width, height])
            colour = _rgb(rng.uniform(), rng.uniform(*BACKGROUND_SATURATION), rng.uniform(*BACKGROUND_VALUE))
            fixed = np.round(points * (1 << FILL_POLY_SHIFT_BITS)).astype(np.int32)
            cv2.fillPoly(canvas, [fixed], colour.tolist(), lineType=cv2.LINE_8, shift=FILL_POLY_SHIFT_BITS)
        return canvas

    @property
    def _layers(self) -> list[_Layer]:
        return self._scene[0]

    @property
    def _layers_by_id(self) -> list[_Layer]:
        return sorted((layer for layer in self._layers if layer.label > 0), key=lambda layer: layer.label)

    # ----------------------------------------------------------------------------------------------- per frame
    def _background(self, index: int) -> np.ndarray:
        """The frame's window of the background canvas, panned by whole pixels (a sub-pixel resample of the
        full frame would cost more than all the objects together)."""
        _, canvas, margin, frequency, phase = self._scene
        left, top = np.round(margin * (1 + np.sin(frequency * index + phase))).astype(int)
        return canvas[top:top + self.height, left:left + self.width].copy()

    def _pose(self, layer: _Layer, index: int) -> tuple[np.ndarray, float, float] | None:
        """(centre x/y in pixels, angle in degrees, scale) of a layer on frame `index`, or None before it enters."""
        elapsed = index - layer.entry_frame
        if elapsed < 0:
            return None
        waves = np.sin(layer.path_frequency * elapsed + layer.path_phase) - np.sin(layer.path_phase)
        centre = layer.home_xy + np.sum(layer.path_amplitude * waves, axis=1)
        if layer.exit_offset is not None and elapsed >= layer.exit_start:
            phase = (elapsed - layer.exit_start) % layer.exit_period
            if phase < layer.exit_ramp:
                out = _smoothstep(phase / layer.exit_ramp)
            elif phase < layer.exit_ramp + layer.exit_hold:
                out = 1.0
            else:
                out = 1.0 - _smoothstep((phase - layer.exit_ramp - layer.exit_hold) / layer.exit_ramp)
            centre = centre + out * layer.exit_offset
        angle = layer.angle0_deg + layer.rotation_deg_per_frame * elapsed
        scale = math.exp(layer.log_scale_amplitude
                         * (math.sin(layer.scale_frequency * elapsed + layer.scale_phase) - math.sin(layer.scale_phase))
                         / 2)
        return centre, angle, scale

    def _place(self, layer: _Layer, index: int) -> tuple[int, int, np.ndarray, np.ndarray] | None:
        """Warp a layer's sprites onto frame `index`.

        Returns:
            (top, left, colour, covered) with colour uint8 h×w×3 and covered bool h×w for the frame region
            [top:top+h, left:left+w], or None when the layer is not drawn (not entered yet, or fully outside).
        """
        pose = self._pose(layer, index)
        if pose is None:
            return None
        centre, angle, scale = pose
        relative_scale = scale / layer.max_scale
        reach = layer.sprite_radius_px * relative_scale + 1
        left, top = max(int(math.floor(centre[0] - reach)), 0), max(int(math.floor(centre[1] - reach)), 0)
        right = min(int(math.ceil(centre[0] + reach)) + 1, self.width)
        bottom = min(int(math.ceil(centre[1] + reach)) + 1, self.height)
        if right <= left or bottom <= top:
            return None
        sprite_centre = (layer.shape_sprite.shape[0] - 1) / 2
        warp = cv2.getRotationMatrix2D((sprite_centre, sprite_centre), angle, relative_scale)
        warp[:, 2] += np.array([centre[0] - left, centre[1] - top]) - sprite_centre
        size = (right - left, bottom - top)
        covered = cv2.warpAffine(layer.shape_sprite, warp, size, flags=cv2.INTER_NEAREST,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
        if not covered.any():
            return None
        colour = cv2.warpAffine(layer.colour_sprite, warp, size, flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
        if layer.colour_gain_amplitude > 0:
            gain = 1 + layer.colour_gain_amplitude * np.sin(
                layer.colour_frequency * (index - layer.entry_frame) + layer.colour_phase)
            colour = np.clip(colour * gain.astype(np.float32), 0, MAX_UINT8).astype(np.uint8)
        return top, left, colour, covered


def video_seed(base_seed: int, index: int) -> int:
    """The seed of video `index` in a set generated from `base_seed` (independent streams per video)."""
    return int(np.random.SeedSequence([int(base_seed), int(index)]).generate_state(1)[0])


def video_name(index: int) -> str:
    """Folder name of video `index` in every layout: 'synth0000', 'synth0001', ..."""
    return f"synth{index:04d}"


def make_videos(num_videos: int, *, seed: int, num_frames: int, height: int, width: int,
                difficulty: Difficulty = PRESETS[DEFAULT_PRESET], first_index: int = 0) -> dict[str, SyntheticVideo]:
    """Specs of `num_videos` videos named video_name(first_index..), with seeds video_seed(seed, index).

    Returns:
        {name: SyntheticVideo} in index order; cheap (nothing is rendered).
    Raises:
        ValueError: num_videos < 0 or an invalid video field.
    """
    if num_videos < 0:
        raise ValueError(f"num_videos {num_videos} is invalid; expected >= 0")
    return {
        video_name(index): SyntheticVideo(seed=video_seed(seed, index), height=height, width=width,
                                          num_frames=num_frames, difficulty=difficulty)
        for index in range(first_index, first_index + num_videos)
    }


def without_late_entries(difficulty: Difficulty) -> Difficulty:
    """The same difficulty with every object present from frame 0 (DAVIS and Long-time Video annotate frame 0 only)."""
    return dataclasses.replace(difficulty, late_entry_probability=0.0)


def copy_first_mask_iou(video: SyntheticVideo) -> dict[int, float]:
    """Calibration baseline: IoU of the frame-0 mask copied to every later frame, per object present on frame 0.

    A frame where both the copied and the true mask are empty counts as IoU 1 (as in the DAVIS toolkit). This is a
    difficulty check for presets, not a benchmark metric (see inference/evaluation/metrics.py for J and F).

    Returns:
        {object id: mean IoU over frames 1..T-1}; empty when T == 1.
    """
    _, first_mask = video.frame(0)
    objects = [int(label) for label in np.unique(first_mask) if label > 0]
    totals = {label: 0.0 for label in objects}
    for _, _, mask in video.frames(start=1):
        for label in objects:
            predicted, truth = first_mask == label, mask == label
            union = np.count_nonzero(predicted | truth)
            totals[label] += 1.0 if union == 0 else np.count_nonzero(predicted & truth) / union
    return {label: total / (video.num_frames - 1) for label, total in totals.items()} if video.num_frames > 1 else {}
