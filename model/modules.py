"""The building blocks of XMem: encoders, key projection, fusion blocks, GRU-style sensory updaters, decoder.

Shape letters: B batch, N objects, H×W input (padded to a multiple of 16), h×w = H/16×W/16, C^k key dim (64),
C^v value dim (512), C^h sensory ("hidden") dim (64). A *group tensor* has the objects in dim 1,
`B×N×C×h×w`; group modules fold B·N into the batch of a 2-D operation and unfold it afterwards, while
per-frame features (`B×C×h×w`) are shared by all objects.

Attribute names are those of the released checkpoints (`res2`, `fuser`, `hidden_update`, `ChannelGate.mlp`, ...)
and must not change: released state_dicts load strictly into these modules.

Shared features, computed once. A convolution over a channel concatenation is the sum of convolutions over its
parts. Where a per-frame feature is concatenated in front of every object's features (the fusion blocks' first
convolutions over [f16 | object], the value encoder's stem over [RGB | masks]), the default path convolves the
per-frame part once per frame (B, not B·N) with its slice of the weights, adds the bias once, and adds the result
to every object's part. The weights are only sliced, never stored split, so state_dict names and shapes are those
of the released checkpoints. `model/reference.py` runs the original computation (concatenate, then convolve per
object) with the same weights; both agree to float rounding (≤ 1e-4, checked in tests/test_speed_paths.py).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

KEY_ENCODER_F16_CHANNELS = 1024  # ResNet-50 layer3 output
KEY_ENCODER_F8_CHANNELS = 512  # ResNet-50 layer2 output
KEY_ENCODER_F4_CHANNELS = 256  # ResNet-50 layer1 output
VALUE_TRUNK_CHANNELS = 256  # ResNet-18 layer3 output
TRUNK_STEM_CHANNELS = 64  # conv1 output of both ResNets
IMAGE_CHANNELS = 3
DECODER_CHANNELS_16 = 512  # decoder width at 1/16
DECODER_CHANNELS_8 = 256  # decoder width at 1/8
DECODER_CHANNELS_4 = 256  # decoder width at 1/4
SENSORY_UPDATE_CHANNELS = 256  # width the three decoder scales are projected to before the sensory update
CBAM_REDUCTION = 16  # channel-gate bottleneck ratio
CBAM_SPATIAL_KERNEL = 7
GRU_GATES = 3  # forget, update, candidate
UPSAMPLE_FACTOR = 2  # each decoder up-step doubles the resolution (1/16 -> 1/8 -> 1/4)
LOGITS_STRIDE = 4  # the decoder predicts at 1/4 of the input resolution


def _fold_objects(group: torch.Tensor) -> torch.Tensor:
    """B×N×C×h×w -> (B·N)×C×h×w."""
    return group.flatten(start_dim=0, end_dim=1)


def _unfold_objects(flat: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(B·N)×C×h×w -> B×N×C×h×w."""
    return flat.view(batch_size, -1, *flat.shape[1:])


def _resize_groups(group: torch.Tensor, scale: float, mode: str) -> torch.Tensor:
    """Resize a B×N×C×h×w group tensor spatially by `scale` ('bilinear' for up, 'area' for down)."""
    align_corners = False if mode == "bilinear" else None
    resized = F.interpolate(_fold_objects(group), scale_factor=scale, mode=mode, align_corners=align_corners)
    return _unfold_objects(resized, group.shape[0])


def _broadcast_cat(shared: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Concatenate a per-frame B×C1×h×w tensor in front of every object's B×N×C2×h×w features -> B×N×(C1+C2)×h×w."""
    num_objects = group.shape[1]
    return torch.cat([shared.unsqueeze(1).expand(-1, num_objects, -1, -1, -1), group], dim=2)


def _conv_of_broadcast_cat(conv: nn.Conv2d, shared: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """`conv` over `_broadcast_cat(shared, group)`, with the shared part convolved once per frame.

    conv(W, [x | g]) + b = conv(W[:, :C1], x) + b + conv(W[:, C1:], g): the first term is computed on the B
    per-frame tensors and broadcast-added to the B·N per-object results.

    Args:
        conv: a convolution whose input channels are C1 + C2 (weights are sliced, not copied into the module).
        shared: B×C1×h×w per-frame input. group: B×N×C2×h×w per-object input.
    Returns:
        B×N×C_out×h'×w', equal to `conv(_broadcast_cat(shared, group))` (unfolded) up to float rounding.
    """
    settings = dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups)
    if group.shape[1] == 1:
        # One object: nothing to share, and one convolution over the concatenation beats two plus an addition.
        # F.conv2d, not conv(...): `conv` may be a GroupConv2d, whose forward expects B×N×C×h×w.
        flat = _fold_objects(_broadcast_cat(shared, group))
        return _unfold_objects(F.conv2d(flat, conv.weight, conv.bias, **settings), group.shape[0])
    shared_channels = shared.shape[1]
    shared_part = F.conv2d(shared, conv.weight[:, :shared_channels], conv.bias, **settings)
    object_part = F.conv2d(_fold_objects(group), conv.weight[:, shared_channels:], None, **settings)
    # In place: a convolution's backward does not need its output, so autograd allows it.
    return _unfold_objects(object_part, group.shape[0]).add_(shared_part.unsqueeze(1))


class GroupConv2d(nn.Conv2d):
    """nn.Conv2d applied to a B×N×C×h×w group tensor (objects folded into the batch); same state_dict names."""

    def forward(self, group: torch.Tensor) -> torch.Tensor:
        return _unfold_objects(super().forward(_fold_objects(group)), group.shape[0])


class GroupResBlock(nn.Module):
    """Pre-activation residual block without normalisation: conv2(ReLU(conv1(ReLU(g)))) + skip(g).

    The skip is the identity when `in_dim == out_dim`, else a 3×3 convolution (`downsample`) of the raw input.
    Input B×N×in_dim×h×w, output B×N×out_dim×h×w.
    """

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        # Registered before conv1/conv2 so that the state_dict order matches the released checkpoints.
        self.downsample = None if in_dim == out_dim else GroupConv2d(in_dim, out_dim, kernel_size=3, padding=1)
        self.conv1 = GroupConv2d(in_dim, out_dim, kernel_size=3, padding=1)
        self.conv2 = GroupConv2d(out_dim, out_dim, kernel_size=3, padding=1)

    def forward(self, group: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(group))
        # In place on convolution outputs (never on the caller's `group`): saves two B×N×out_dim×h×w buffers.
        out = self.conv2(F.relu(out, inplace=True))
        skip = group if self.downsample is None else self.downsample(group)
        return out.add_(skip)

    def forward_with_shared(self, shared: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        """`forward(_broadcast_cat(shared, group))` with the per-frame part of conv1 and downsample done once.

        ReLU acts per channel, so ReLU([x | g]) = [ReLU(x) | ReLU(g)] and both first convolutions split.

        Args:
            shared: B×C1×h×w per-frame input. group: B×N×C2×h×w per-object input, C1 + C2 = in_dim.
        Returns:
            B×N×out_dim×h×w.
        """
        out = _conv_of_broadcast_cat(self.conv1, F.relu(shared), F.relu(group))
        out = self.conv2(F.relu(out, inplace=True))
        if self.downsample is None:
            skip = _broadcast_cat(shared, group)
        else:
            skip = _conv_of_broadcast_cat(self.downsample, shared, group)
        return out.add_(skip)


class _ChannelGate(nn.Module):
    """CBAM channel attention: sigmoid(MLP(avg-pool) + MLP(max-pool)) scales each channel. Keys `mlp.1`, `mlp.3`."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels, channels // reduction),
            nn.ReLU(),
            nn.Linear(channels // reduction, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attention = self.mlp(F.adaptive_avg_pool2d(x, 1)) + self.mlp(F.adaptive_max_pool2d(x, 1))
        return x * torch.sigmoid(attention)[:, :, None, None]


class _SpatialGate(nn.Module):
    """CBAM spatial attention: sigmoid(conv7×7([max over C, mean over C])) scales each pixel. Key `spatial.conv`."""

    def __init__(self, kernel_size: int):
        super().__init__()
        conv = nn.Conv2d(2, 1, kernel_size=kernel_size, padding=kernel_size // 2)
        self.spatial = nn.Sequential(OrderedDict(conv=conv))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(pooled))


class CBAM(nn.Module):
    """Convolutional block attention (channel gate, then spatial gate) on a (B·N)×C×h×w tensor; same shape out."""

    def __init__(self, channels: int, reduction: int = CBAM_REDUCTION):
        super().__init__()
        self.ChannelGate = _ChannelGate(channels, reduction)  # frozen state_dict name
        self.SpatialGate = _SpatialGate(CBAM_SPATIAL_KERNEL)  # frozen state_dict name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.SpatialGate(self.ChannelGate(x))


class FeatureFusionBlock(nn.Module):
    """Fuse a shared per-frame feature with per-object features: block2(g + CBAM(g)), g = block1([x | g_obj]).

    The first convolutions of `block1` (conv1 and downsample) see the concatenation `[x | g_obj]`. By default
    their `x` part is computed once per frame and added to every object's part (see the module docstring);
    with 3 objects this skips 2/3 of the 1024-channel f16 work of both fusers.

    Args (forward):
        shared: B×x_in×h×w per-frame feature (f16 of the key encoder).
        group: B×N×g_in×h×w per-object features.
    Returns:
        B×N×g_out×h×w.
    """

    def __init__(self, x_in: int, g_in: int, g_mid: int, g_out: int):
        super().__init__()
        self.block1 = GroupResBlock(x_in + g_in, g_mid)
        self.attention = CBAM(g_mid)
        self.block2 = GroupResBlock(g_mid, g_out)

    def forward(self, shared: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        batch_size = group.shape[0]
        fused = self.block1.forward_with_shared(shared, group)
        attended = _unfold_objects(self.attention(_fold_objects(fused)), batch_size)
        return self.block2(fused + attended)


def gru_sensory_update(gates: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """XMem's GRU-style rule: h' = f ⊙ h ⊙ (1 − u) + u ⊙ c.

    f = σ(gates[:C^h]) (forget), u = σ(gates[C^h:2C^h]) (update), c = tanh(gates[2C^h:]) (candidate). Unlike a
    standard GRU the candidate never sees a reset-gated h; the released weights were trained with this rule.

    Args:
        gates: B×N×3C^h×h×w, the transform convolution's output.
        hidden: B×N×C^h×h×w, the current sensory memory.
    Returns:
        B×N×C^h×h×w new sensory memory, each value in (−1, 1) when `hidden` is.
    """
    hidden_dim = hidden.shape[2]
    forget_gate = torch.sigmoid(gates[:, :, :hidden_dim])
    update_gate = torch.sigmoid(gates[:, :, hidden_dim : 2 * hidden_dim])
    candidate = torch.tanh(gates[:, :, 2 * hidden_dim :])
    return forget_gate * hidden * (1 - update_gate) + update_gate * candidate


class HiddenReinforcer(nn.Module):
    """Deep update of the sensory memory inside the value encoder: GRU rule on [value | hidden].

    Input value B×N×C^v×h×w and hidden B×N×C^h×h×w; output B×N×C^h×h×w.
    """

    def __init__(self, value_dim: int, hidden_dim: int):
        super().__init__()
        self.transform = GroupConv2d(value_dim + hidden_dim, hidden_dim * GRU_GATES, kernel_size=3, padding=1)
        nn.init.xavier_normal_(self.transform.weight)

    def forward(self, value: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        return gru_sensory_update(self.transform(torch.cat([value, hidden], dim=2)), hidden)


class HiddenUpdater(nn.Module):
    """Normal sensory update in the decoder: GRU rule on [Σ of the three projected decoder scales | hidden].

    Args (forward):
        g16: B×N×512×h×w; g8: B×N×256×2h×2w; g4: B×N×257×4h×4w (decoder features at 1/4 with the 1/4 logits
            appended); hidden: B×N×C^h×h×w.
    Returns:
        B×N×C^h×h×w.
    """

    def __init__(self, g_dims: tuple[int, int, int], mid_dim: int, hidden_dim: int):
        super().__init__()
        self.g16_conv = GroupConv2d(g_dims[0], mid_dim, kernel_size=1)
        self.g8_conv = GroupConv2d(g_dims[1], mid_dim, kernel_size=1)
        self.g4_conv = GroupConv2d(g_dims[2], mid_dim, kernel_size=1)
        self.transform = GroupConv2d(mid_dim + hidden_dim, hidden_dim * GRU_GATES, kernel_size=3, padding=1)
        nn.init.xavier_normal_(self.transform.weight)

    def forward(self, g16: torch.Tensor, g8: torch.Tensor, g4: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        merged = (
            self.g16_conv(g16)
            + self.g8_conv(_resize_groups(g8, 1 / UPSAMPLE_FACTOR, "area"))  # 1/8 -> 1/16
            + self.g4_conv(_resize_groups(g4, 1 / (UPSAMPLE_FACTOR * UPSAMPLE_FACTOR), "area"))  # 1/4 -> 1/16
        )
        return gru_sensory_update(self.transform(torch.cat([merged, hidden], dim=2)), hidden)


class UpsampleBlock(nn.Module):
    """One decoder up-step: out_conv(skip_conv(skip) + bilinear×2(g)).

    Args (forward):
        skip: B×skip_dim×2h×2w per-frame encoder feature; group: B×N×up_dim×h×w.
    Returns:
        B×N×out_dim×2h×2w.
    """

    def __init__(self, skip_dim: int, up_dim: int, out_dim: int, scale: int = UPSAMPLE_FACTOR):
        super().__init__()
        self.scale = scale
        self.skip_conv = nn.Conv2d(skip_dim, up_dim, kernel_size=3, padding=1)
        self.out_conv = GroupResBlock(up_dim, out_dim)

    def forward(self, skip: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        upsampled = _resize_groups(group, self.scale, "bilinear")
        # In place on the interpolation's fresh output (its backward does not need it).
        return self.out_conv(upsampled.add_(self.skip_conv(skip).unsqueeze(1)))


class KeyEncoder(nn.Module):
    """ResNet-50 stem and layers 1-3 (torchvision layout; layer1 is named `res2` as in the released weights).

    Input: normalised RGB B×3×H×W float32. Returns (f16 B×1024×h×w, f8 B×512×2h×2w, f4 B×256×4h×4w).
    """

    def __init__(self):
        super().__init__()
        trunk = torchvision.models.resnet50(weights=None)
        self.conv1 = trunk.conv1
        self.bn1 = trunk.bn1
        self.relu = trunk.relu
        self.maxpool = trunk.maxpool
        self.res2 = trunk.layer1
        self.layer2 = trunk.layer2
        self.layer3 = trunk.layer3

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(image))))
        f4 = self.res2(x)
        f8 = self.layer2(f4)
        f16 = self.layer3(f8)
        return f16, f8, f4


class KeyProjection(nn.Module):
    """Key, shrinkage and selection from f16 (three 3×3 convolutions).

    key k: B×C^k×h×w; shrinkage s = d² + 1 ∈ [1, ∞): B×1×h×w; selection e = σ(·) ∈ (0, 1): B×C^k×h×w.
    """

    def __init__(self, in_dim: int, key_dim: int):
        super().__init__()
        self.key_proj = nn.Conv2d(in_dim, key_dim, kernel_size=3, padding=1)
        self.d_proj = nn.Conv2d(in_dim, 1, kernel_size=3, padding=1)
        self.e_proj = nn.Conv2d(in_dim, key_dim, kernel_size=3, padding=1)
        nn.init.orthogonal_(self.key_proj.weight.data)
        nn.init.zeros_(self.key_proj.bias.data)

    def forward(
        self, f16: torch.Tensor, *, need_shrinkage: bool, need_selection: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        key = self.key_proj(f16)
        shrinkage = self.d_proj(f16) ** 2 + 1 if need_shrinkage else None
        selection = torch.sigmoid(self.e_proj(f16)) if need_selection else None
        return key, shrinkage, selection


class ValueEncoder(nn.Module):
    """Per-object value from [RGB | mask | others] (ResNet-18 layers 1-3), fused with f16; optional deep update.

    Input channels per object: 5 = RGB, the object's mask, the sum of the other objects' masks; 4 (no "others")
    when `single_object`. The stem applies max-pool before ReLU as the original does (the two commute).

    Args (forward):
        image: B×3×H×W normalised RGB; f16: B×1024×h×w of the same frame; hidden: B×N×C^h×h×w or None
        (no sensory memory); masks, others: B×N×H×W in [0, 1] (`others` ignored when single_object);
        is_deep_update: run the hidden reinforcer.
        The RGB and f16 parts of the first convolutions are convolved once per frame (module docstring).
    Returns:
        (value B×N×C^v×h×w, hidden B×N×C^h×h×w — updated if deep update, else the input unchanged).
    """

    def __init__(self, value_dim: int, hidden_dim: int, single_object: bool = False):
        super().__init__()
        self.single_object = single_object
        mask_channels = 1 if single_object else 2
        trunk = torchvision.models.resnet18(weights=None)
        self.conv1 = nn.Conv2d(
            IMAGE_CHANNELS + mask_channels, TRUNK_STEM_CHANNELS, kernel_size=7, stride=2, padding=3, bias=False
        )
        self.bn1 = trunk.bn1
        self.relu = trunk.relu
        self.maxpool = trunk.maxpool
        self.layer1 = trunk.layer1
        self.layer2 = trunk.layer2
        self.layer3 = trunk.layer3
        self.fuser = FeatureFusionBlock(KEY_ENCODER_F16_CHANNELS, VALUE_TRUNK_CHANNELS, value_dim, value_dim)
        self.hidden_reinforce = HiddenReinforcer(value_dim, hidden_dim) if hidden_dim > 0 else None

    def forward(
        self,
        image: torch.Tensor,
        f16: torch.Tensor,
        hidden: torch.Tensor | None,
        masks: torch.Tensor,
        others: torch.Tensor,
        *,
        is_deep_update: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch_size = masks.shape[0]
        per_object = masks.unsqueeze(2) if self.single_object else torch.stack([masks, others], dim=2)
        x = _fold_objects(_conv_of_broadcast_cat(self.conv1, image, per_object))
        x = self.relu(self.maxpool(self.bn1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        value = self.fuser(f16, _unfold_objects(x, batch_size))
        if is_deep_update and self.hidden_reinforce is not None:
            hidden = self.hidden_reinforce(value, hidden)
        return value, hidden


class Decoder(nn.Module):
    """Mask decoder: fuse [f16 | readout | hidden], upsample with f8 and f4 skips, predict one logit per object.

    Args (forward):
        f16: B×1024×h×w, f8: B×512×2h×2w, f4: B×256×4h×4w (query frame); hidden: B×N×C^h×h×w or None
        (no sensory memory); readout: B×N×C^v×h×w; update_hidden: compute the new sensory memory.
        The f16 part of the fuser's first convolutions is convolved once per frame (module docstring).
    Returns:
        (hidden B×N×C^h×h×w, or None when not updated or C^h = 0; logits B×N×H×W, one per object, before
        soft aggregation).
    """

    def __init__(self, value_dim: int, hidden_dim: int):
        super().__init__()
        self.fuser = FeatureFusionBlock(
            KEY_ENCODER_F16_CHANNELS, value_dim + hidden_dim, DECODER_CHANNELS_16, DECODER_CHANNELS_16
        )
        self.hidden_update = (
            HiddenUpdater(
                (DECODER_CHANNELS_16, DECODER_CHANNELS_8, DECODER_CHANNELS_4 + 1), SENSORY_UPDATE_CHANNELS, hidden_dim
            )
            if hidden_dim > 0
            else None
        )
        self.up_16_8 = UpsampleBlock(KEY_ENCODER_F8_CHANNELS, DECODER_CHANNELS_16, DECODER_CHANNELS_8)
        self.up_8_4 = UpsampleBlock(KEY_ENCODER_F4_CHANNELS, DECODER_CHANNELS_8, DECODER_CHANNELS_4)
        self.pred = nn.Conv2d(DECODER_CHANNELS_4, 1, kernel_size=3, padding=1)

    def forward(
        self,
        f16: torch.Tensor,
        f8: torch.Tensor,
        f4: torch.Tensor,
        hidden: torch.Tensor | None,
        readout: torch.Tensor,
        *,
        update_hidden: bool = True,
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        batch_size = readout.shape[0]
        group16 = readout if self.hidden_update is None else torch.cat([readout, hidden], dim=2)
        g16 = self.fuser(f16, group16)
        g8 = self.up_16_8(f8, g16)
        g4 = self.up_8_4(f4, g8)
        logits_4 = _unfold_objects(self.pred(F.relu(_fold_objects(g4))), batch_size)
        if update_hidden and self.hidden_update is not None:
            hidden = self.hidden_update(g16, g8, torch.cat([g4, logits_4], dim=2), hidden)
        else:
            hidden = None
        logits = _resize_groups(logits_4, LOGITS_STRIDE, "bilinear")
        return hidden, logits[:, :, 0]
