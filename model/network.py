"""XMem: the stateless network (weights only), with one typed method per stage of a frame.

A frame is processed as: `encode_key` (query key + multi-scale features) -> read memory (`read_memory` in
training; the inference memory manager reads its own stores with `model.memory_util`) -> `segment` (decoder +
soft aggregation, normal sensory update) -> `encode_value` for memory frames (value + deep sensory update).
Per-video state (memories, sensory memory, objects) lives in the caller.

Example (random weights; load real ones with `model.load_network`):

    >>> network = XMem().eval()
    >>> image = torch.zeros(1, 3, 64, 112)
    >>> key, shrinkage, selection, f16, f8, f4 = network.encode_key(image)
    >>> masks = torch.zeros(1, 2, 64, 112)
    >>> value, hidden = network.encode_value(image, f16, torch.zeros(1, 2, 64, 4, 7), masks)
    >>> readout = network.read_memory(key, selection, key.unsqueeze(2), shrinkage.unsqueeze(2),
    ...                               value.unsqueeze(3))
    >>> hidden, logits, prob = network.segment((f16, f8, f4), readout, hidden)
    >>> prob.shape
    torch.Size([1, 2, 64, 112])
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from model.aggregate import aggregate
from configs.schema import MemoryReading
from model.memory_util import XMEM_READING, get_similarity, readout, softmax_affinity
from model.modules import KEY_ENCODER_F16_CHANNELS, Decoder, KeyEncoder, KeyProjection, ValueEncoder

DEFAULT_KEY_DIM = 64  # C^k
DEFAULT_VALUE_DIM = 512  # C^v
DEFAULT_HIDDEN_DIM = 64  # C^h; 0 = no sensory memory


class KeyEncoding(NamedTuple):
    """Output of `XMem.encode_key` (unpacks like the original's 6-tuple).

    For a 4-D input B×3×H×W: key B×C^k×h×w, shrinkage B×1×h×w (≥ 1) or None, selection B×C^k×h×w (in (0, 1))
    or None, f16 B×1024×h×w, f8 B×512×2h×2w, f4 B×256×4h×4w.
    For a 5-D input B×T×3×H×W (training clips): key B×C^k×T×h×w, shrinkage B×1×T×h×w, selection B×C^k×T×h×w
    (channel before time, the memory layout `read_memory` takes), but f16 B×T×1024×h×w, f8 B×T×512×2h×2w,
    f4 B×T×256×4h×4w (time before channel, so that frame t's features are `f16[:, t]`).
    """

    key: torch.Tensor
    shrinkage: torch.Tensor | None
    selection: torch.Tensor | None
    f16: torch.Tensor
    f8: torch.Tensor
    f4: torch.Tensor


class Segmentation(NamedTuple):
    """Output of `XMem.segment`.

    hidden: B×N×C^h×h×w new sensory memory, or None (no update requested, or C^h = 0).
    logits: B×(N+1)×H×W log-odds after soft aggregation, background first.
    prob: B×(N+1)×H×W probabilities summing to 1 over dim 1, background first; B×N×H×W (background row removed)
        when `strip_background`.
    """

    hidden: torch.Tensor | None
    logits: torch.Tensor
    prob: torch.Tensor


def _others_masks(masks: torch.Tensor) -> torch.Tensor:
    """For each object, the (soft) sum of all the other objects' masks; zeros for a single object. B×N×H×W."""
    if masks.shape[1] == 1:
        return torch.zeros_like(masks)
    return masks.sum(dim=1, keepdim=True) - masks


class XMem(nn.Module):
    """The XMem network: key encoder (ResNet-50), value encoder (ResNet-18), key projection and decoder.

    Holds weights only: no per-video state, no config, no I/O. The state_dict is that of the released
    checkpoints (`key_encoder.*`, `value_encoder.*`, `key_proj.*`, `decoder.*`).

    Args:
        key_dim: C^k, key channels (64).
        value_dim: C^v, value channels (512).
        hidden_dim: C^h, sensory memory channels (64); 0 builds the no-sensory variant (no hidden updaters).
        single_object: value encoder takes [RGB | mask] (4 channels, stage-0 pre-training) instead of
            [RGB | mask | others] (5 channels).
    """

    def __init__(
        self,
        *,
        key_dim: int = DEFAULT_KEY_DIM,
        value_dim: int = DEFAULT_VALUE_DIM,
        hidden_dim: int = DEFAULT_HIDDEN_DIM,
        single_object: bool = False,
    ):
        super().__init__()
        if key_dim < 1 or value_dim < 1 or hidden_dim < 0:
            raise ValueError(
                f"XMem dims must be key_dim ≥ 1, value_dim ≥ 1, hidden_dim ≥ 0; got key_dim={key_dim}, "
                f"value_dim={value_dim}, hidden_dim={hidden_dim}"
            )
        self.key_dim = key_dim
        self.value_dim = value_dim
        self.hidden_dim = hidden_dim
        self.single_object = single_object
        # Registration order = the released state_dict's key order.
        self.key_encoder = KeyEncoder()
        self.value_encoder = ValueEncoder(value_dim, hidden_dim, single_object)
        self.key_proj = KeyProjection(KEY_ENCODER_F16_CHANNELS, key_dim)
        self.decoder = Decoder(value_dim, hidden_dim)

    @property
    def device(self) -> torch.device:
        """The device of the parameters."""
        return next(self.parameters()).device

    def forward(self, *args, **kwargs):
        raise NotImplementedError(
            "XMem has no single forward; call encode_key, encode_value, read_memory or segment (training wraps "
            "the unrolled clip in its own module)"
        )

    def encode_key(
        self, image: torch.Tensor, *, need_shrinkage: bool = True, need_selection: bool = True
    ) -> KeyEncoding:
        """Key, shrinkage, selection and multi-scale features of frames.

        Args:
            image: normalised RGB (ImageNet mean/std), float32, B×3×H×W or B×T×3×H×W, H and W multiples of 16.
            need_shrinkage: compute shrinkage (needed for frames that go into memory).
            need_selection: compute selection (needed for query frames).
        Returns:
            KeyEncoding(key, shrinkage, selection, f16, f8, f4); see its docstring for 4-D and 5-D shapes.
            shrinkage / selection are None when not requested.
        Raises:
            ValueError: image is not 4-D or 5-D with 3 channels.
        """
        if image.dim() not in (4, 5) or image.shape[-3] != 3:
            raise ValueError(
                f"encode_key expects an image of shape B×3×H×W or B×T×3×H×W, got {tuple(image.shape)}"
            )
        clip_shape = image.shape[:2] if image.dim() == 5 else None
        frames = image.flatten(start_dim=0, end_dim=1) if clip_shape is not None else image
        f16, f8, f4 = self.key_encoder(frames)
        key, shrinkage, selection = self.key_proj(
            f16, need_shrinkage=need_shrinkage, need_selection=need_selection
        )
        if clip_shape is None:
            return KeyEncoding(key, shrinkage, selection, f16, f8, f4)

        def channel_before_time(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.view(*clip_shape, *x.shape[1:]).transpose(1, 2).contiguous()

        def time_before_channel(x: torch.Tensor) -> torch.Tensor:
            return x.view(*clip_shape, *x.shape[1:])

        return KeyEncoding(
            channel_before_time(key),
            channel_before_time(shrinkage),
            channel_before_time(selection),
            time_before_channel(f16),
            time_before_channel(f8),
            time_before_channel(f4),
        )

    def encode_value(
        self,
        image: torch.Tensor,
        f16: torch.Tensor,
        hidden: torch.Tensor | None,
        masks: torch.Tensor,
        *,
        is_deep_update: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Memory values of one frame for each object, and the deep-updated sensory memory.

        Args:
            image: B×3×H×W normalised RGB of the frame.
            f16: B×1024×h×w from `encode_key` of the same frame.
            hidden: B×N×C^h×h×w sensory memory (zeros for new objects); None when C^h = 0.
            masks: B×N×H×W per-object probabilities in [0, 1] (background excluded; soft masks are fine).
            is_deep_update: update the sensory memory with the hidden reinforcer.
        Returns:
            (value B×N×C^v×h×w, hidden B×N×C^h×h×w — deep-updated, or `hidden` unchanged when not).
        Raises:
            ValueError: a sensory network without `hidden`.
        """
        if hidden is None and self.hidden_dim > 0 and is_deep_update:
            raise ValueError(
                f"encode_value needs hidden (B×N×{self.hidden_dim}×h×w, zeros for new objects) for a deep update"
            )
        return self.value_encoder(
            image, f16, hidden, masks, _others_masks(masks), is_deep_update=is_deep_update
        )

    def read_memory(
        self,
        query_key: torch.Tensor,
        query_selection: torch.Tensor | None,
        memory_key: torch.Tensor,
        memory_shrinkage: torch.Tensor | None,
        memory_value: torch.Tensor,
        *,
        reading: MemoryReading = XMEM_READING,
    ) -> torch.Tensor:
        """Training-style memory read: one full-softmax affinity over all memory frames, shared by all objects.

        Args:
            query_key: B×C^k×h×w.
            query_selection: B×C^k×h×w in (0, 1), or None (no selection term).
            memory_key: B×C^k×T×h×w (T memory frames; the 5-D layout of `encode_key`).
            memory_shrinkage: B×1×T×h×w ≥ 1, or None (no shrinkage term).
            memory_value: B×N×C^v×T×h×w.
            reading: the memory-reading switches (ablations) of `get_similarity`.
        Returns:
            readout B×N×C^v×h×w.
        """
        batch_size, num_objects = memory_value.shape[:2]
        similarity = get_similarity(
            memory_key,
            memory_shrinkage,
            query_key,
            query_selection,
            reading=reading,
        )
        affinity = softmax_affinity(similarity)
        memory = readout(affinity, memory_value.flatten(start_dim=1, end_dim=2))
        return memory.view(batch_size, num_objects, memory_value.shape[2], *query_key.shape[-2:])

    def segment(
        self,
        multi_scale_features: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        readout: torch.Tensor,
        hidden: torch.Tensor | None,
        *,
        selector: torch.Tensor | None = None,
        update_hidden: bool = True,
        strip_background: bool = True,
    ) -> Segmentation:
        """Decode the memory readout into object probabilities (soft aggregation) and update the sensory memory.

        Args:
            multi_scale_features: (f16 B×1024×h×w, f8 B×512×2h×2w, f4 B×256×4h×4w) of the query frame.
            readout: B×N×C^v×h×w memory readout.
            hidden: B×N×C^h×h×w sensory memory, or None when C^h = 0.
            selector: optional B×N×1×1 multiplier of the per-object probabilities (0 for padded objects in
                training).
            update_hidden: compute the decoder's ("normal") sensory update.
            strip_background: drop the background row of `prob`.
        Returns:
            Segmentation(hidden, logits, prob); shapes in its docstring.
        Raises:
            ValueError: a sensory network without `hidden`.
        """
        if hidden is None and self.hidden_dim > 0:
            raise ValueError(f"segment needs hidden (B×N×{self.hidden_dim}×h×w sensory memory); got None")
        f16, f8, f4 = multi_scale_features
        new_hidden, object_logits = self.decoder(f16, f8, f4, hidden, readout, update_hidden=update_hidden)
        prob = torch.sigmoid(object_logits)
        if selector is not None:
            prob = prob * selector
        logits, prob = aggregate(prob, dim=1)
        if strip_background:
            prob = prob[:, 1:]
        return Segmentation(new_hidden, logits, prob)
