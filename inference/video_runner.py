"""Segment one evaluation video frame by frame and hand its saved frames to a writer.

Written against two small protocols, so that this package needs nothing of `dataset`: a video yields frames
(an RGB image, the mask given on it or None, the ids it gives, whether its output is saved), a writer takes an
id mask (`write_mask`) and, with `save_scores`, the probabilities (`write_scores`, objects in ascending id order).
`eval.py` passes `dataset.eval_datasets.EvalVideo` and `dataset.writers.ResultWriter`.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any, Iterator, Optional, Protocol, Sequence

import numpy as np
import torch
from tqdm import tqdm

from configs.schema import Config
from inference.inference_core import InferenceCore, normalize_image, too_many_objects_message
from inference.memory_manager import MemoryManager
from inference.resize import resize_image, resize_mask, resize_probabilities, resized_shape

logger = logging.getLogger(__name__)

FEATURE_STRIDE = 16  # memory elements are the 1/16-resolution feature pixels of the (padded) frame
BYTES_PER_ELEMENT_VALUE = 4  # float32 memory
# A video whose memory estimate exceeds this is announced before it runs (with what to lower if it does not fit).
LARGE_MEMORY_BYTES = 4 * 2**30
BYTES_PER_GB = 2**30
MEMORY_TRACE_COLUMNS = ("frame", "working_elements", "long_term_elements", "consolidations", "pruned_elements")
"""A memory trace row: the frame index, then the memory's sizes and running event totals after that frame."""
# A video record's peak store sizes: live elements and bytes of working and long-term memory, largest over frames.
STORE_PEAK_KEYS = ("working_elements_peak", "long_term_elements_peak", "working_bytes_peak", "long_term_bytes_peak")
MEMORY_TRACE_KEY = "memory_trace"  # where a video record keeps its memory trace (`MemoryRecorder.as_record`)
MAX_ID = 255  # saved masks hold 8-bit object ids


class VideoFrame(Protocol):
    name: str
    image: np.ndarray  # uint8 H×W×3 RGB
    mask: Optional[np.ndarray]  # uint8 H×W ids of the objects given on this frame, or None
    objects: Sequence[int]
    save: bool
    is_last: bool


class Video(Protocol):
    name: str
    palette: Optional[bytes]
    output_shape: Optional[tuple[int, int]]  # outputs are resized to this (H, W); None = each frame's size
    object_ids: Sequence[int]  # every object id its input masks give, known before it runs
    full_length: int  # frames of the whole video, those before the first mask (not processed) included

    def __len__(self) -> int: ...  # the frames to process, from the first mask on

    def frames(self) -> Iterator[VideoFrame]: ...


class ResultSink(Protocol):
    def write_mask(self, video: str, frame: str, mask: np.ndarray, palette: Optional[bytes]) -> None: ...

    def write_scores(self, video: str, frame: str, prob: np.ndarray, labels: Sequence[int]) -> None: ...


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def estimate_memory_bytes(height: int, width: int, num_objects: int, num_frames: int, config: Config) -> int:
    """A rough upper bound of the memory one video needs at network input size H×W (padded to 16).

    Counts the working memory (T_max frames, or every memory frame without long-term memory), the long-term memory
    (LT_max elements), per element its key, shrinkage and N values of C^v channels, and the affinity of one read
    (memory elements × query pixels). Network activations are not counted.
    """
    memory, model = config.inference, config.model
    pixels = math.ceil(height / FEATURE_STRIDE) * math.ceil(width / FEATURE_STRIDE)
    if memory.enable_long_term:
        working_frames = memory.max_working_frames
        long_term = memory.max_long_term_elements
    else:
        working_frames = num_frames if memory.mem_every <= 0 else math.ceil(num_frames / memory.mem_every) + 1
        long_term = 0
    elements = working_frames * pixels + long_term
    per_element = model.key_dim + 1 + num_objects * model.value_dim
    return BYTES_PER_ELEMENT_VALUE * (elements * per_element + elements * pixels
                                      + num_objects * model.hidden_dim * pixels)


def _announce_memory(video: Video, shape: tuple[int, int], num_objects: int, config: Config) -> None:
    estimate = estimate_memory_bytes(*shape, num_objects, len(video), config)
    if estimate > LARGE_MEMORY_BYTES:
        logger.warning(
            "video %s: its memory may take about %.1f GB (%d objects at %dx%d, T_max %d, LT_max %d); if it does not "
            "fit, lower eval.size, inference.max_working_frames or inference.max_long_term_elements",
            video.name, estimate / BYTES_PER_GB, num_objects, shape[1], shape[0],
            config.inference.max_working_frames, config.inference.max_long_term_elements)


def check_object_limit(video: Video, max_objects: int) -> None:
    """Refuse a video with more objects than `max_objects` before any work on it.

    Raises:
        ValueError: too many objects (names the video, the count and what to do).
    """
    if len(video.object_ids) > max_objects:
        raise ValueError(too_many_objects_message(f"video {video.name!r}", video.object_ids, max_objects,
                                                  "eval.max_objects"))


class MemoryRecorder:
    """What one video's memory did, observed after every frame without a device sync.

    It keeps a trace (one row of MEMORY_TRACE_COLUMNS per frame where the working or long-term size, the
    consolidations or the pruned elements changed), the largest live element counts and bytes of the working and
    long-term stores (STORE_PEAK_KEYS), and the largest absolute value the sensory memory took (kept on the device
    until `as_record`).
    """

    def __init__(self) -> None:
        self.rows: list[list[int]] = []
        self.store_peaks = dict.fromkeys(STORE_PEAK_KEYS, 0)
        self._sensory_peak: torch.Tensor | None = None

    def observe(self, frame: int, memory: MemoryManager) -> None:
        """Record the state of `memory` after frame `frame`."""
        state = [memory.working_elements, memory.long_term_elements, memory.consolidations, memory.pruned_elements]
        if not self.rows or self.rows[-1][1:] != state:
            self.rows.append([frame, *state])
        sizes = (memory.working_elements, memory.long_term_elements, memory.working_bytes, memory.long_term_bytes)
        for key, value in zip(STORE_PEAK_KEYS, sizes):
            self.store_peaks[key] = max(self.store_peaks[key], value)
        if memory.sensory is not None:  # no sync: the maximum stays on the device until the video ends
            frame_peak = memory.sensory.detach().abs().amax().float()
            self._sensory_peak = frame_peak if self._sensory_peak is None else torch.maximum(self._sensory_peak,
                                                                                             frame_peak)

    def as_record(self, elements_per_frame: int) -> dict[str, Any]:
        """JSON-ready entries of a video record: `sensory_peak_abs` (None without sensory memory), the
        STORE_PEAK_KEYS, and MEMORY_TRACE_KEY: {`columns`, `rows`, `elements_per_frame` (h·w elements per memory
        frame)}."""
        sensory_peak = None if self._sensory_peak is None else round(float(self._sensory_peak), 6)
        trace = {"columns": list(MEMORY_TRACE_COLUMNS), "rows": self.rows, "elements_per_frame": elements_per_frame}
        return {"sensory_peak_abs": sensory_peak, **self.store_peaks, MEMORY_TRACE_KEY: trace}


def _note_objects(spans: dict[str, list[int]], frame: int, output: np.ndarray) -> None:
    """Extend each object's [first, last] frame span in the saved outputs by frame `frame` (ids as JSON keys)."""
    for object_id in np.flatnonzero(np.bincount(output.ravel(), minlength=MAX_ID + 1)[1:]) + 1:
        spans.setdefault(str(object_id), [frame, frame])[1] = frame


def run_video(network, video: Video, config: Config, writer: ResultSink, device: torch.device, *,
              size: int) -> dict[str, Any]:
    """Segment one video frame by frame and write its saved frames; return its record.

    The video is refused first when it has more objects than `config.eval.max_objects`, and a memory estimate is
    logged (warning) when it is large (`LARGE_MEMORY_BYTES`).

    Args:
        network: XMem in eval mode on `device`.
        video: the frames to process (see `Video`).
        config: `inference` and `model` shape the per-frame algorithm; `eval.flip` and `eval.save_scores` the
            outputs.
        writer: receives each saved frame's uint8 H×W id mask and (with `save_scores`) its float (N+1)×H×W
            probabilities, objects in ascending id order.
        size: shorter side frames are resized to; -1 = native.
    Raises:
        ValueError: too many objects (`check_object_limit`); FileNotFoundError, ValueError from reading the frames.
    Returns:
        the record: video, frames, saved_frames, objects, seconds, fps, working_elements, long_term_elements
        (memory at the end of the video), the STORE_PEAK_KEYS (the largest live element counts and bytes of the
        working and long-term stores over the video), sensory_peak_abs (the largest absolute value the sensory
        memory took; None without sensory memory), MEMORY_TRACE_KEY (all three from `MemoryRecorder`) and object_frames
        (object id as a string -> [first, last] frame index where the saved outputs hold it). Timing covers
        normalisation, resizing, the network and the output resize/argmax (not reading or writing files).
    """
    options = config.eval
    check_object_limit(video, options.max_objects)
    # The original decides long-term usage counting from the whole video's length, skipped frames included.
    core = InferenceCore(network, config.inference, device=device, num_frames=video.full_length,
                         model_config=config.model, max_objects=options.max_objects)
    seconds = 0.0
    saved = 0
    recorder, object_frames = MemoryRecorder(), {}
    progress = tqdm(video.frames(), total=len(video), desc=video.name, unit="frame", leave=False)
    for index, frame in enumerate(progress):
        image, mask = frame.image, frame.mask
        if options.flip:
            image = image[:, ::-1]
            mask = None if mask is None else mask[:, ::-1]
        output_shape = video.output_shape or image.shape[:2]
        shape = resized_shape(*image.shape[:2], size)
        if index == 0:
            _announce_memory(video, shape, len(video.object_ids), config)
        _synchronize(device)
        start = time.perf_counter()
        with torch.inference_mode():
            pixels = resize_image(normalize_image(np.ascontiguousarray(image), device=device), shape)
            mask_tensor = None
            if mask is not None:
                mask_tensor = resize_mask(torch.from_numpy(np.ascontiguousarray(mask)).to(device), shape)
            prob = core.step(pixels, mask_tensor, list(frame.objects) if mask is not None else None,
                             end=frame.is_last)
            if frame.save:
                prob = resize_probabilities(prob, tuple(output_shape))
                if options.flip:
                    prob = prob.flip(-1)
                prob, labels, output = core.by_ascending_id(prob)
                output = output.to(torch.uint8).cpu().numpy()
        _synchronize(device)
        seconds += time.perf_counter() - start
        recorder.observe(index, core.memory)
        if frame.save:
            _note_objects(object_frames, index, output)
            writer.write_mask(video.name, frame.name, output, video.palette)
            if options.save_scores:
                writer.write_scores(video.name, frame.name, prob.float().cpu().numpy(), labels)
            saved += 1
    frames = len(video)
    return {"video": video.name, "frames": frames, "saved_frames": saved, "objects": len(core.object_ids),
            "seconds": round(seconds, 6), "fps": round(frames / seconds, 3) if seconds > 0 else float("nan"),
            "working_elements": core.working_memory_elements, "long_term_elements": core.long_term_memory_elements,
            **recorder.as_record(core.memory.elements_per_frame), "object_frames": object_frames}
