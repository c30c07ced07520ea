"""Optional, exact accelerations of a built network: channels-last memory format and `torch.compile`.

Neither changes what the network computes (only float rounding) nor its state_dict: parameters keep their names
and shapes (channels-last only changes their strides, and `nn.Module.compile` compiles a module's forward in place
without wrapping it), so a network prepared here still saves and loads released-format checkpoints.

Which helps depends on the machine. Channels-last (NHWC) lets oneDNN / cuDNN pick their NHWC kernels, usually a
gain on GPUs with tensor cores and on recent CPUs; `torch.compile` fuses the elementwise work between
convolutions (ReLU, additions, gates) and needs a C++ compiler on CPU (Triton on GPU). Its first call per input
shape and object count compiles for tens of seconds to minutes; later calls reuse the compiled code.

Example:

    >>> from model.network import XMem
    >>> network = optimize_network(XMem().eval(), channels_last=True)
    >>> network.decoder.pred.weight.is_contiguous(memory_format=torch.channels_last)
    True
"""
from __future__ import annotations

import torch
from torch import nn

from model.network import XMem

# The sub-networks whose forward does the convolution work; memory reading runs outside them.
COMPILED_SUBMODULES = ("key_encoder", "key_proj", "value_encoder", "decoder")


def optimize_network(network: XMem, *, channels_last: bool = False, compile: bool = False) -> XMem:
    """Prepare `network` for faster inference, in place; outputs stay equal to float rounding.

    Args:
        network: an XMem network (weights loaded, on its final device). Modified in place.
        channels_last: store 4-D parameters (convolution weights) as channels-last; the convolutions then
            produce channels-last features from ordinary B×3×H×W images, without the caller changing anything.
        compile: compile the forward of the key encoder, key projection, value encoder and decoder with
            `torch.compile` (in place: state_dict names unchanged). The first frame of each size and object
            count pays the compilation time.
    Returns:
        `network` itself, for chaining.
    Raises:
        TypeError: `network` is not an XMem network.
    """
    if not isinstance(network, XMem):
        raise TypeError(
            f"optimize_network expects an XMem network (model.network.XMem), got {type(network).__name__}; "
            "build one with model.load_network or XMem()"
        )
    if channels_last:
        network.to(memory_format=torch.channels_last)
    if compile:
        for name in COMPILED_SUBMODULES:
            submodule: nn.Module = getattr(network, name)
            submodule.compile()
    return network
