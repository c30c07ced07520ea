"""The streaming per-frame inference of XMem: one `InferenceCore` per video, `step` once per frame.

The schedule (inference/frame_schedule.py) is the original's by default (reference §2.3): memory frames at steps
0, r, 2r, ... after the first annotation and on every annotated frame, never on the last frame; the deep update
of the sensory memory on memory frames (or every `deep_update_every` frames, deferred to the next memory frame);
the decoder's normal sensory update on every other frame; no segmentation at step 0. Frames before the first
annotation are not steps (the original's eval skips them): they return background only.

Departures are named modes of the config (configs/schema.py): `memory_frames='annotated_only'`,
`deep_update='immediate'` or `'never'`, and `use_sensory_memory=false` (the sensory memory stays zero).
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import replace
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from configs.common import IMAGENET_MEAN, IMAGENET_STD, resolve_device
from configs.schema import EvalConfig, InferenceConfig, ModelConfig
from dataset.video_io import check_index_mask, match_mask_to_frame
from inference.frame_schedule import FrameActions, FrameSchedule, plan_frame
from inference.memory_manager import MemoryManager, resolve_long_term_count_usage
from inference.object_manager import ObjectManager
from model.aggregate import aggregate
from model.network import KeyEncoding, XMem

UINT8_MAX = 255.0
PAD_MULTIPLE = 16  # the key encoder's stride: inputs are zero-padded to multiples of it
MASK_PRESENT_THRESHOLD = 0.5  # an annotation covers a pixel where its objects' masks sum above this
DEFAULT_MAX_OBJECTS = EvalConfig.max_objects  # the Python API's object limit is eval.py's


def too_many_objects_message(subject: str, object_ids: Sequence[int], max_objects: int, setting: str) -> str:
    """The one-line refusal of more objects than `max_objects` (eval.py's and the Python API's alike).

    Args:
        subject: what has them, e.g. `video 'bike'` or `the masks given to InferenceCore`.
        object_ids: every id, ascending.
        setting: how to raise the limit, e.g. `eval.max_objects` or `InferenceCore(max_objects=...)`'s `max_objects`.
    """
    return (f"{subject} has {len(object_ids)} objects (ids {object_ids[0]}..{object_ids[-1]}), more than "
            f"{setting}={max_objects}; time and memory grow with each object, so check that its masks hold objects "
            f"(not a class or instance map), or pass {setting}={len(object_ids)} to run it anyway")


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


def amp_enabled(config: InferenceConfig, device: torch.device) -> bool:
    """Whether frames run under autocast: `use_amp` on, or auto on a CUDA device (autocast picks float16 there,
    bfloat16 on CPU)."""
    return config.use_amp == "on" or (config.use_amp == "auto" and device.type == "cuda")


class InferenceCore:
    """Segments one video frame by frame with XMem's sensory, working and long-term memory.

    Build one per video (or call `clear_memory`), feed frames in order with `step`; give a mask on the first
    frame and on any later frame that introduces or re-annotates objects. Object ids are yours (any positive
    ints, e.g. 255); outputs list them in `object_ids` order.

    Example (random weights on CPU; load real ones with `model.load_network`):

        >>> import numpy as np, torch
        >>> from configs.schema import InferenceConfig
        >>> from model.network import KeyEncoding, XMem
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
        num_frames: the whole video's length when known (frames before the first annotation included);
            `long_term_count_usage='auto'` uses it as the original does.
        model_config: the similarity switches the network was trained with (default: XMem's).
        max_objects: masks that would make more objects tracked are refused (as eval.py's `eval.max_objects`);
            None = no limit.
    Raises:
        ValueError: an unknown device (the config checks its own ranges when it is built).
    """

    def __init__(
        self,
        network: XMem,
        config: InferenceConfig,
        *,
        device: str | torch.device | None = None,
        num_frames: int | None = None,
        model_config: ModelConfig | None = None,
        max_objects: int | None = DEFAULT_MAX_OBJECTS,
    ):
        self.device = resolve_device(device, default=next(network.parameters()).device)
        self.max_objects = max_objects
        self.network = network.to(self.device).eval()
        self.config = config
        self._schedule = FrameSchedule.from_config(config)
        self.model_config = model_config or ModelConfig()
        self.num_frames = num_frames
        self.use_amp = amp_enabled(config, self.device)
        self._objects = ObjectManager()
        self._image_size: tuple[int, int] | None = None
        self.clear_memory()

    # ----------------------------------------------------------------------------------------------- state
    def clear_memory(self) -> None:
        """Forget every memory (sensory, working, long-term) and restart the frame counter; objects are kept.

        The next frame must carry a mask (until then frames return background only).
        """
        self._frame_index = -1
        self._counters = self._schedule.initial_counters()
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
            mask: None; or an index mask (integer H×W of object ids, 0 = background; one a few pixels off the
                frame's size is resized (nearest) with a warning, one that looks smoothed is refused); or soft
                masks (float N×H×W in [0, 1]) with `objects` giving their N ids. New ids add objects; known ids
                re-annotate them on this frame (their prediction is replaced); tracked objects not in `objects`
                keep their prediction. A first mask without any object gives a warning (nothing is tracked).
            objects: ids annotated by `mask` (required for soft masks; default for index masks: its non-zero ids).
            end: this is the video's last frame (nothing is written to memory, as in the original).
        Returns:
            float32 (N+1)×H×W probabilities summing to 1 over channels at the input resolution: channel 0 is
            background, channel i is object_ids[i − 1].
        Raises:
            ValueError / TypeError: a malformed image, mask or object list (the message says what was expected);
                more objects than `max_objects`; a smoothed index mask.
        """
        height, width = self._check_image(image)
        annotated_ids, annotated_masks = self._parse_mask(mask, objects, height, width)
        self._check_new_objects(annotated_ids, mask_given=mask is not None)
        if mask is None and self._memory.working_elements == 0:
            # Nothing to read yet (before the first annotation, or right after clear_memory): background only.
            prob = torch.zeros(self._objects.num_objects + 1, height, width, device=self.device)
            prob[0] = 1
            return prob

        left, right, top, bottom = _padding(height, width)
        padded = F.pad(image.to(self.device), (left, right, top, bottom)).unsqueeze(0)
        self._frame_index += 1
        frame = self._frame_index
        known_ids = self._objects.object_ids
        actions = plan_frame(
            frame, self._counters, self._schedule, mask_given=mask is not None,
            has_unannotated_objects=bool(known_ids) and not set(known_ids) <= set(annotated_ids), is_last_frame=end,
        )
        with self._autocast():
            encoding = self.network.encode_key(
                padded, need_shrinkage=actions.is_memory_frame,
                need_selection=self._memory.stores_selection or actions.need_segment,
            )
            if not self._memory.initialized:
                self._memory.initialize(
                    tuple(encoding.key.shape[-2:]),
                    key_dim=encoding.key.shape[1],
                    value_dim=self.network.value_dim,
                    device=self.device,
                    dtype=encoding.key.dtype,
                )
            prob = self._segment(encoding, actions) if actions.need_segment else None
            if mask is not None:
                prob = self._merge_annotation(
                    prob, annotated_ids, annotated_masks, (left, right, top, bottom), padded.shape[-2:]
                )
            if prob is None:  # every object was removed: nothing to segment or remember
                prob = padded.new_ones(1, *padded.shape[-2:])
            elif actions.is_memory_frame or actions.needs_extra_value_pass:
                self._encode_value(padded, encoding, prob, actions, frame)
        return prob[:, top : top + height, left : left + width].float()

    def _segment(self, encoding: KeyEncoding, actions: FrameActions) -> torch.Tensor:
        """(N+1)×H'×W' probabilities of the padded frame from a memory read; the decoder's sensory update."""
        memory_readout = self._memory.read(encoding.key, encoding.selection)
        segmentation = self.network.segment(
            (encoding.f16, encoding.f8, encoding.f4),
            memory_readout,
            self._memory.sensory,
            update_hidden=actions.is_normal_update,
            strip_background=False,
        )
        if actions.is_normal_update:
            self._memory.update_sensory(segmentation.hidden)
        return segmentation.prob[0]

    def _encode_value(
        self, padded: torch.Tensor, encoding: KeyEncoding, prob: torch.Tensor, actions: FrameActions, frame: int
    ) -> None:
        """Value encoding of a memory frame (written to memory) or a deep update's extra pass; moves the counters."""
        if actions.needs_extra_value_pass and not self._memory.keeps_sensory_memory:
            # Nothing to deep-update: the pass would only be thrown away.
            self._counters = replace(self._counters, last_deep_update_frame=frame)
            return
        value, hidden = self.network.encode_value(
            padded,
            encoding.f16,
            self._memory.sensory,
            self._objects.object_probabilities(prob).unsqueeze(0),
            is_deep_update=actions.is_deep_update,
        )
        if actions.is_memory_frame:
            self._memory.add_memory(encoding.key, encoding.shrinkage, encoding.selection, value)
            self._counters = replace(self._counters, last_memory_frame=frame)
        if actions.is_deep_update:
            self._memory.update_sensory(hidden)
            self._counters = replace(self._counters, last_deep_update_frame=frame)

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

    def _check_new_objects(self, annotated_ids: list[int], *, mask_given: bool) -> None:
        """Warn about a first mask without objects; refuse ids that would make more than `max_objects` objects."""
        if mask_given and not annotated_ids and not self._objects.object_ids:
            warnings.warn(f"the mask given on frame {self._frame_index + 1} holds no object (all 0): nothing is "
                          "tracked until a mask with objects is given", stacklevel=3)
        tracked = sorted(set(self._objects.object_ids) | set(annotated_ids))
        if self.max_objects is not None and len(tracked) > self.max_objects:
            raise ValueError(too_many_objects_message("the video given to InferenceCore", tracked, self.max_objects,
                                                      "max_objects"))

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
            source = f"given on frame {self._frame_index + 1}"
            if tuple(mask.shape) != (height, width):  # within a few pixels: resized with a warning, as eval.py does
                mask = torch.from_numpy(match_mask_to_frame(mask.cpu().numpy(), (height, width), source))
                mask = mask.to(self.device)
            check_index_mask(mask.cpu().numpy(), f"mask {source}")
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
