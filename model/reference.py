"""The straightforward network computation, as the original runs it, for checking the optimised modules.

`model.modules` convolves the per-frame parts of a concatenation (RGB in the value encoder's stem, f16 in both
fusion blocks) once per frame and adds them to every object's part. Here every object's input is concatenated
first and convolved whole, as the original's `MainToGroupDistributor('cat')` does, with the same network's
weights. Nothing in inference uses this module; tests/test_speed_paths.py holds the optimised path against it
(≤ 1e-4) and scripts/speed/speed_compare.py times both. The memory-reading counterpart is `model.reference_memory`.

Shapes as in `model.modules`: B batch, N objects, H×W input, h×w = H/16×W/16.

Example:

    >>> network = XMem().eval()
    >>> image, masks = torch.zeros(1, 3, 64, 112), torch.zeros(1, 2, 64, 112)
    >>> f16 = network.encode_key(image).f16
    >>> value, hidden = reference_encode_value(network, image, f16, torch.zeros(1, 2, 64, 4, 7), masks)
    >>> value.shape, hidden.shape
    (torch.Size([1, 2, 512, 4, 7]), torch.Size([1, 2, 64, 4, 7]))
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from model.aggregate import aggregate
from model.modules import (LOGITS_STRIDE, FeatureFusionBlock, _broadcast_cat, _fold_objects, _resize_groups,
                           _unfold_objects)
from model.network import Segmentation, XMem


def reference_fusion(block: FeatureFusionBlock, shared: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """`block` over [shared | group] concatenated per object: block2(g + CBAM(g)), g = block1([x | g_obj]).

    Args:
        shared: B×x_in×h×w per-frame feature. group: B×N×g_in×h×w per-object features.
    Returns:
        B×N×g_out×h×w.
    """
    fused = block.block1(_broadcast_cat(shared, group))
    attended = _unfold_objects(block.attention(_fold_objects(fused)), group.shape[0])
    return block.block2(fused + attended)


def _others(masks: torch.Tensor) -> torch.Tensor:
    """others[:, i] = Σ_{j≠i} masks[:, j] (zeros for a single object), as the original's encode_value."""
    if masks.shape[1] == 1:
        return torch.zeros_like(masks)
    return masks.sum(dim=1, keepdim=True) - masks


def reference_encode_value(
    network: XMem,
    image: torch.Tensor,
    f16: torch.Tensor,
    hidden: torch.Tensor | None,
    masks: torch.Tensor,
    *,
    is_deep_update: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`network.encode_value` computed the original way: [RGB | mask | others] and [f16 | g] per object.

    Args and returns: as `XMem.encode_value`.
    """
    encoder = network.value_encoder
    per_object = masks.unsqueeze(2) if encoder.single_object else torch.stack([masks, _others(masks)], dim=2)
    x = encoder.conv1(_fold_objects(_broadcast_cat(image, per_object)))
    x = encoder.relu(encoder.maxpool(encoder.bn1(x)))
    x = encoder.layer3(encoder.layer2(encoder.layer1(x)))
    value = reference_fusion(encoder.fuser, f16, _unfold_objects(x, masks.shape[0]))
    if is_deep_update and encoder.hidden_reinforce is not None:
        hidden = encoder.hidden_reinforce(value, hidden)
    return value, hidden


def reference_segment(
    network: XMem,
    multi_scale_features: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    readout: torch.Tensor,
    hidden: torch.Tensor | None,
    *,
    update_hidden: bool = True,
    strip_background: bool = True,
) -> Segmentation:
    """`network.segment` computed the original way: the decoder's fuser over [f16 | readout | hidden] per object.

    Args and returns: as `XMem.segment` (without the training-only selector).
    """
    decoder = network.decoder
    f16, f8, f4 = multi_scale_features
    batch_size = readout.shape[0]
    group16 = readout if decoder.hidden_update is None else torch.cat([readout, hidden], dim=2)
    g16 = reference_fusion(decoder.fuser, f16, group16)
    g8 = decoder.up_16_8(f8, g16)
    g4 = decoder.up_8_4(f4, g8)
    logits_4 = _unfold_objects(decoder.pred(F.relu(_fold_objects(g4))), batch_size)
    new_hidden = None
    if update_hidden and decoder.hidden_update is not None:
        new_hidden = decoder.hidden_update(g16, g8, torch.cat([g4, logits_4], dim=2), hidden)
    object_logits = _resize_groups(logits_4, LOGITS_STRIDE, "bilinear")[:, :, 0]
    logits, prob = aggregate(torch.sigmoid(object_logits), dim=1)
    return Segmentation(new_hidden, logits, prob[:, 1:] if strip_background else prob)
