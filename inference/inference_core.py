"""The streaming per-frame inference of XMem: one `InferenceCore` per video, `step` once per frame.

The schedule is the original's (reference §2.3): memory frames at steps 0, r, 2r, ... after the first annotation
and on every annotated frame, never on the last frame; the deep update of the sensory memory on memory frames
(or every `deep_update_every` frames, deferred to the next memory frame); the decoder's normal sensory update on
every other frame; no segmentation at step 0. Frames before the first annotation are not steps (the original's
eval skips them): they return background only.

Ablation switches beyond the original's flags (configs/schema.py): `mem_every = 0` writes memory on annotated
frames only; `deep_update_every = 0` never deep-updates; `immediate_deep_update` runs a due deep update on its own
frame (with an extra value-encoder pass off memory frames) instead of deferring it; `use_sensory_memory = false`
keeps the sensory memory at zero.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from configs.common import IMAGENET_MEAN, IMAGENET_STD, resolve_device
from configs.schema import InferenceConfig, ModelConfig
from inference.memory_manager import MemoryManager, resolve_long_term_count_usage
from inference.object_manager import ObjectManager
from model.aggregate import aggregate
from model.network import XMem

UINT8_MAX = 255.0
PAD_MULTIPLE = 16  # the key encoder's stride: inputs are zero-padded to multiples of it
MASK_PRESENT_THRESHOLD = 0.5  # an annotation covers a pixel where its objects' masks sum above this
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
MEMORY_ON_ANNOTATIONS_ONLY = 0  # mem_every value: memory frames only where a mask is given
DEEP_UPDATE_ON_MEMORY_FRAMES = -1  # deep_update_every value: deep update with every memory frame (the default)


def normalize_image(rgb: np.ndarray | torch.Tensor, *, device: str | torch.device | None = "cpu") -> torch.Tensor:
    """An RGB frame as the network's input: ImageNet-normalised float32 3×H×W (as the original's ToTensor+Normalize).

    Args:
        rgb: uint8 H×W×3 RGB (numpy array or tensor).
        device: where the result goes.
    Returns:
        float32 3×H×W, (rgb / 255 − mean) / std per channel.
    Raises:
        ValueError: not an H×W×3 uint8 image.
    """
    tensor = rgb if isinstance(rgb, torch.Tensor) else torch.from_numpy(np.array(rgb))  # a writable copy
    if tensor.dim() != 3 or tensor.shape[2] != 3 or tensor.dtype != torch.uint8:
        raise ValueError(
            f"normalize_image expects a uint8 H×W×3 RGB image, got dtype {tensor.dtype} and shape "
            f"{tuple(tensor.shape)}; convert with np.asarray(PIL.Image.open(path).convert('RGB'))"
        )
    image = tensor.to(device).permute(2, 0, 1).float().div(UINT8_MAX)
    mean = torch.tensor(IMAGENET_MEAN, device=image.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image.device).view(3, 1, 1)
    return image.sub(mean).div(std)


def _padding(height: int, width: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) zero padding to multiples of 16, split floor(d/2) before, the rest after."""
    pad_height = -height % PAD_MULTIPLE
    pad_width = -width % PAD_MULTIPLE
    return pad_width // 2, pad_width - pad_width // 2, pad_height // 2, pad_height - pad_height // 2


class InferenceCore:
    """Segments one video frame by frame with XMem's sensory, working and long-term memory.

    Build one per video (or call `clear_memory`), feed frames in order with `step`; give a mask on the first
    frame and on any later frame that introduces or re-annotates objects. Object ids are yours (any positive
    ints, e.g. 255); outputs list them in `object_ids` order.

    Example (random weights on CPU; load real ones with `model.load_network`):

        >>> import numpy as np, torch
        >>> from configs.schema import InferenceConfig
        >>> from model.network import XMem
        >>> network = XMem().eval()
        >>> core = InferenceCore(network, InferenceConfig(), num_frames=3)
        >>> first_mask = np.zeros((64, 112), dtype=np.int64); first_mask[10:30, 20:50] = 255
        >>> for index in range(3):
        ...     rgb = np.full((64, 112, 3), 40 * index, dtype=np.uint8)
        ...     prob = core.step(normalize_image(rgb), first_mask if index == 0 else None, end=index == 2)
        >>> prob.shape, core.object_ids, core.prob_to_mask(prob).shape
        (torch.Size([2, 64, 112]), [255], torch.Size([64, 112]))

    Args:
        network: XMem in eval mode (moved to `device` if it is elsewhere).
        config: the inference settings (memory budgets, top_k, schedule, ablation switches).
        device: auto (the network's device) | cpu | cuda | cuda:N | mps.
        num_frames: the video's length when known; `long_term_count_usage='auto'` uses it as the original does.
        model_config: the similarity switches the network was trained with (default: XMem's).
    Raises:
        ValueError: inconsistent memory settings (e.g. min_working_frames ≥ max_working_frames).
    """

    def __init__(
        self,
        network: XMem,
        config: InferenceConfig,
        *,
        device: str | torch.device | None = None,
        num_frames: int | None = None,
        model_config: ModelConfig | None = None,
    ):
        _check_config(config)
        self.device = resolve_device(device, default=next(network.parameters()).device)
        self.network = network.to(self.device).eval()
        self.config = config
        self.model_config = model_config or ModelConfig()
        self.num_frames = num_frames
        self.use_amp = config.use_amp == "on" or (config.use_amp == "auto" and self.device.type == "cuda")
        self._objects = ObjectManager()
        self._image_size: tuple[int, int] | None = None
        self.clear_memory()

    # ----------------------------------------------------------------------------------------------- state
    def clear_memory(self) -> None:
        """Forget every memory (sensory, working, long-term) and restart the frame counter; objects are kept.

        The next frame must carry a mask (until then frames return background only).
        """
        self._frame_index = -1
        self._last_memory_frame = 0
        self._last_deep_update_frame = -self.config.deep_update_every
        self._memory = MemoryManager(
            self.config,
            model_config=self.model_config,
            hidden_dim=self.network.hidden_dim,
            count_long_term_usage=resolve_long_term_count_usage(self.config, self.num_frames),
        )
        self._memory.add_objects(self._objects.num_objects)

    @property
    def object_ids(self) -> list[int]:
        """Tracked object ids in slot order: channel i of `step`'s output is object_ids[i − 1]."""
        return self._objects.object_ids

    @property
    def working_memory_elements(self) -> int:
        """Elements in working memory (h·w per memory frame, h×w = padded size / 16)."""
        return self._memory.working_elements

    @property
    def long_term_memory_elements(self) -> int:
        """Elements (prototypes) in long-term memory."""
        return self._memory.long_term_elements

    @property
    def memory(self) -> MemoryManager:
        """The memory manager (stores and sensory memory), for inspection."""
        return self._memory

    def prob_to_mask(self, prob: torch.Tensor) -> torch.Tensor:
        """Index mask of object ids from `step`'s output: int64 H×W, argmax over channels, 0 = background."""
        return self._objects.prob_to_mask(prob)

    def by_ascending_id(self, prob: torch.Tensor) -> tuple[torch.Tensor, list[int], torch.Tensor]:
        """`step`'s output with objects in ascending id order, the ids, and the id mask (ObjectManager.by_ascending_id)."""
        return self._objects.by_ascending_id(prob)

    @torch.inference_mode()
    def remove_objects(self, object_ids: Iterable[int]) -> None:
        """Stop tracking objects: their values and sensory memory are dropped, the rest keep their order.

        Raises:
            KeyError: an id is not tracked.
        """
        remap = self._objects.remove_objects(object_ids)
        self._memory.keep_objects(remap)

    # ----------------------------------------------------------------------------------------------- step
    @torch.inference_mode()
    def step(
        self,
        image: torch.Tensor,
        mask: torch.Tensor | np.ndarray | None = None,
        objects: Sequence[int] | None = None,
        *,
        end: bool = False,
    ) -> torch.Tensor:
        """Process the next frame.

        Args:
            image: float32 3×H×W, ImageNet-normalised RGB (`normalize_image`); every frame the same H×W.
            mask: None; or an index mask (integer H×W of object ids, 0 = background); or soft masks (float N×H×W
                in [0, 1]) with `objects` giving their N ids. New ids add objects; known ids re-annotate them on
                this frame (their prediction is replaced); tracked objects not in `objects` keep their
                prediction.
            objects: ids annotated by `mask` (required for soft masks; default for index masks: its non-zero ids).
            end: this is the video's last frame (nothing is written to memory, as in the original).
        Returns:
            float32 (N+1)×H×W probabilities summing to 1 over channels at the input resolution: channel 0 is
            background, channel i is object_ids[i − 1].
        Raises:
            ValueError / TypeError: a malformed image, mask or object list (the message says what was expected).
        """
        height, width = self._check_image(image)
        annotated_ids, annotated_masks = self._parse_mask(mask, objects, height, width)
        if mask is None and self._memory.working_elements == 0:
            # Nothing to read yet (before the first annotation, or right after clear_memory): background only.
            prob = torch.zeros(self._objects.num_objects + 1, height, width, device=self.device)
            prob[0] = 1
            return prob

        left, right, top, bottom = _padding(height, width)
        padded = F.pad(image.to(self.device), (left, right, top, bottom)).unsqueeze(0)
        self._frame_index += 1
        frame = self._frame_index
        config = self.config
        known_ids = self._objects.object_ids
        sync_deep_update = config.deep_update_every == DEEP_UPDATE_ON_MEMORY_FRAMES
        memory_frame_due = config.mem_every != MEMORY_ON_ANNOTATIONS_ONLY and (
            frame - self._last_memory_frame >= config.mem_every
        )
        is_memory_frame = (memory_frame_due or mask is not None) and not end
        need_segment = frame > 0 and bool(known_ids) and not set(known_ids) <= set(annotated_ids)
        is_deep_update = (
            (sync_deep_update and is_memory_frame)
            or (
                config.deep_update_every > 0
                and frame - self._last_deep_update_frame >= config.deep_update_every
            )
        ) and not end
        is_normal_update = (not sync_deep_update or not is_deep_update) and not end

        with self._autocast():
            encoding = self.network.encode_key(
                padded, need_shrinkage=is_memory_frame, need_selection=config.enable_long_term or need_segment
            )
            if not self._memory.initialized:
                self._memory.initialize(
                    tuple(encoding.key.shape[-2:]),
                    key_dim=encoding.key.shape[1],
                    value_dim=self.network.value_dim,
                    device=self.device,
                    dtype=encoding.key.dtype,
                )
            prob = None
            if need_segment:
                memory_readout = self._memory.read(encoding.key, encoding.selection)
                segmentation = self.network.segment(
                    (encoding.f16, encoding.f8, encoding.f4),
                    memory_readout,
                    self._memory.sensory,
                    update_hidden=is_normal_update,
                    strip_background=False,
                    reference_compute=config.reference_compute,
                )
                prob = segmentation.prob[0]
                if is_normal_update and segmentation.hidden is not None and config.use_sensory_memory:
                    self._memory.sensory = segmentation.hidden
            if mask is not None:
                prob = self._merge_annotation(
                    prob, annotated_ids, annotated_masks, (left, right, top, bottom), padded.shape[-2:]
                )
            if prob is None:  # every object was removed: nothing to segment or remember
                prob = padded.new_ones(1, *padded.shape[-2:])
            elif is_memory_frame:
                value, hidden = self.network.encode_value(
                    padded,
                    encoding.f16,
                    self._memory.sensory,
                    self._objects.object_probabilities(prob).unsqueeze(0),
                    is_deep_update=is_deep_update,
                    reference_compute=config.reference_compute,
                )
                self._memory.add_memory(
                    encoding.key,
                    encoding.shrinkage,
                    encoding.selection if config.enable_long_term else None,
                    value,
                )
                self._last_memory_frame = frame
                if is_deep_update:
                    if hidden is not None and config.use_sensory_memory:
                        self._memory.sensory = hidden
                    self._last_deep_update_frame = frame
            elif is_deep_update and config.immediate_deep_update:
                if self._memory.sensory is not None and config.use_sensory_memory:
                    _, self._memory.sensory = self.network.encode_value(
                        padded,
                        encoding.f16,
                        self._memory.sensory,
                        self._objects.object_probabilities(prob).unsqueeze(0),
                        is_deep_update=True,
                        reference_compute=config.reference_compute,
                    )
                self._last_deep_update_frame = frame
        return prob[:, top : top + height, left : left + width].float()

    # ----------------------------------------------------------------------------------------------- helpers
    def _autocast(self):
        if not self.use_amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type)

    def _check_image(self, image: torch.Tensor) -> tuple[int, int]:
        if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3 or not image.is_floating_point():
            shape = tuple(image.shape) if hasattr(image, "shape") else type(image).__name__
            raise ValueError(
                f"step expects a float 3×H×W normalised image (use normalize_image(rgb_uint8)), got {shape}"
            )
        size = (image.shape[1], image.shape[2])
        if self._image_size is None:
            self._image_size = size
        elif size != self._image_size:
            raise ValueError(
                f"frame size {size[0]}×{size[1]} differs from this video's {self._image_size[0]}×"
                f"{self._image_size[1]}; resize every frame to one size or start a new InferenceCore"
            )
        return size

    def _parse_mask(
        self, mask: torch.Tensor | np.ndarray | None, objects: Sequence[int] | None, height: int, width: int
    ) -> tuple[list[int], torch.Tensor | None]:
        """(annotated ids, float K×H×W masks of those ids in the same order) from an index or soft mask."""
        if mask is None:
            if objects is not None:
                raise ValueError(f"objects={list(objects)} given without a mask; pass the mask they annotate")
            return [], None
        mask = mask if isinstance(mask, torch.Tensor) else torch.from_numpy(np.array(mask))
        mask = mask.to(self.device)
        if mask.dim() == 2:
            if mask.is_floating_point():
                raise TypeError(
                    f"a 2-D mask must be an integer index mask of object ids, got {mask.dtype}; soft masks are N×H×W"
                )
            if tuple(mask.shape) != (height, width):
                raise ValueError(f"index mask is {tuple(mask.shape)}, expected the frame size ({height}, {width})")
            present = [int(value) for value in torch.unique(mask).tolist() if value != 0]
            ids = present if objects is None else [int(object_id) for object_id in objects]
            _check_ids(ids)
            masks = torch.stack([(mask == object_id).float() for object_id in ids]) if ids else None
            return ids, masks
        if mask.dim() == 3:
            if objects is None:
                raise ValueError(f"soft masks ({mask.shape[0]}×H×W) need objects=[...] giving each mask's object id")
            ids = [int(object_id) for object_id in objects]
            if len(ids) != mask.shape[0] or tuple(mask.shape[1:]) != (height, width):
                raise ValueError(
                    f"soft masks are {tuple(mask.shape)}, expected {len(ids)}×{height}×{width} "
                    f"(one mask per id in objects={ids}, frame size)"
                )
            _check_ids(ids)
            return ids, mask.float()
        raise ValueError(f"mask must be H×W (index mask) or N×H×W (soft masks), got shape {tuple(mask.shape)}")

    def _merge_annotation(
        self,
        prob: torch.Tensor | None,
        annotated_ids: list[int],
        annotated_masks: torch.Tensor | None,
        padding: tuple[int, int, int, int],
        padded_size: tuple[int, int],
    ) -> torch.Tensor | None:
        """Probabilities of an annotated frame: new objects are added, annotated ones take the mask, others keep
        the prediction (zeroed where the annotation covers the pixel). Returns (N+1)×H'×W' (padded) or None."""
        new_ids = [object_id for object_id in annotated_ids if not self._objects.has_object(object_id)]
        num_known = self._objects.num_objects
        self._objects.add_objects(new_ids)
        self._memory.add_objects(len(new_ids))
        if self._objects.num_objects == 0:
            return None
        object_masks = torch.zeros(self._objects.num_objects, *padded_size, device=self.device)
        if annotated_masks is not None:
            for object_id, object_mask in zip(annotated_ids, F.pad(annotated_masks, padding)):
                object_masks[self._objects.slot_of(object_id)] = object_mask
        if prob is not None:
            predicted = self._objects.object_probabilities(prob).float()
            covered = object_masks.sum(dim=0) > MASK_PRESENT_THRESHOLD
            predicted = predicted.masked_fill(covered, 0)
            annotated_slots = {self._objects.slot_of(object_id) for object_id in annotated_ids}
            for slot in range(num_known):
                if slot not in annotated_slots:
                    object_masks[slot] = predicted[slot]
        return aggregate(object_masks, dim=0)[1]


def _check_ids(ids: list[int]) -> None:
    if len(set(ids)) != len(ids):
        raise ValueError(f"object ids in a mask repeat: {ids}; give each id once")
    bad = [object_id for object_id in ids if object_id <= 0]
    if bad:
        raise ValueError(f"object ids must be positive integers (0 is background), got {bad}")


def _check_config(config: InferenceConfig) -> None:
    problems = []
    if config.mem_every < 0:
        problems.append(f"mem_every={config.mem_every} must be ≥ 1 (or 0 for annotated frames only)")
    if config.deep_update_every < DEEP_UPDATE_ON_MEMORY_FRAMES:
        problems.append(
            f"deep_update_every={config.deep_update_every} must be -1 (every memory frame), 0 (never) or a number "
            "of frames ≥ 1"
        )
    if config.top_k is not None and config.top_k < 1:
        problems.append(f"top_k={config.top_k} must be ≥ 1 (or null for all elements)")
    if config.enable_long_term:
        if not 1 <= config.min_working_frames < config.max_working_frames:
            problems.append(
                f"need 1 ≤ min_working_frames < max_working_frames, got {config.min_working_frames} and "
                f"{config.max_working_frames}"
            )
        if not 1 <= config.num_prototypes <= config.max_long_term_elements:
            problems.append(
                f"need 1 ≤ num_prototypes ≤ max_long_term_elements, got {config.num_prototypes} and "
                f"{config.max_long_term_elements}"
            )
    if problems:
        raise ValueError("invalid inference config: " + "; ".join(problems))


# --------------------------------------------------------------------------------------------------- propagate
def _read_mask(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        if image.mode not in ("P", "L", "I", "I;16"):
            raise ValueError(f"{path}: expected an index (palette or grayscale) PNG mask, got mode {image.mode}")
        return np.asarray(image).astype(np.int64)


def _frames_from(frames: str | os.PathLike | Sequence[np.ndarray]) -> tuple[Iterator[np.ndarray], int | None]:
    """(iterator over uint8 H×W×3 RGB frames, number of frames if known) for a folder, video file or list."""
    if isinstance(frames, (str, os.PathLike)):
        path = Path(frames)
        if path.is_dir():
            files = sorted(file for file in path.iterdir() if file.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise FileNotFoundError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")

            def read_folder() -> Iterator[np.ndarray]:
                from PIL import Image

                for file in files:
                    with Image.open(file) as image:
                        yield np.asarray(image.convert("RGB"))

            return read_folder(), len(files)
        if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            import cv2

            capture = cv2.VideoCapture(str(path))
            if not capture.isOpened():
                raise ValueError(f"{path}: OpenCV cannot open this video; re-encode it as H.264 .mp4")
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None

            def read_video() -> Iterator[np.ndarray]:
                try:
                    while True:
                        ok, bgr = capture.read()
                        if not ok:
                            return
                        yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                finally:
                    capture.release()

            return read_video(), count
        raise FileNotFoundError(f"{path}: not a frame folder or a video file ({', '.join(VIDEO_SUFFIXES)})")
    frame_list = list(frames)
    return iter(frame_list), len(frame_list)


def propagate(
    network: XMem,
    frames: str | os.PathLike | Sequence[np.ndarray],
    first_mask: str | os.PathLike | np.ndarray | torch.Tensor,
    config: InferenceConfig,
    *,
    device: str | torch.device | None = None,
    model_config: ModelConfig | None = None,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Segment a whole video from its first frame's mask, yielding each frame's result as it is computed.

    Args:
        network: XMem in eval mode.
        frames: a folder of images (sorted by name), an .mp4/.avi/... file read with OpenCV, or a list of uint8
            H×W×3 RGB arrays.
        first_mask: index mask of the first frame (integer H×W of object ids, or a path to an index PNG).
        config: inference settings. device / model_config: as for `InferenceCore`.
    Yields:
        (frame index, prob float32 (N+1)×H×W on the core's device, index mask int64 H×W of object ids).
    Raises:
        FileNotFoundError / ValueError: unreadable frames or mask.
    """
    if isinstance(first_mask, (str, os.PathLike)):
        first_mask = _read_mask(Path(first_mask))
    frame_iterator, num_frames = _frames_from(frames)
    core = InferenceCore(network, config, device=device, num_frames=num_frames, model_config=model_config)
    current = next(frame_iterator, None)
    index = 0
    while current is not None:
        following = next(frame_iterator, None)  # look ahead so that the last frame is flagged `end`
        image = normalize_image(current, device=core.device)
        prob = core.step(image, first_mask if index == 0 else None, end=following is None)
        yield index, prob, core.prob_to_mask(prob)
        current, index = following, index + 1
