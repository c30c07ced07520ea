"""The XMem network, its building blocks, memory-reading maths and checkpoint I/O (imports only torch/torchvision)."""
from model.acceleration import optimize_network
from model.aggregate import aggregate
from model.checkpoint import (
    NetworkDims,
    build_network_from_state_dict,
    infer_network_dims,
    load_imagenet_trunks,
    load_network,
    save_network,
)
from model.memory_util import (
    SIMILARITY_MODES,
    XMEM_READING,
    SimilarityMode,
    get_similarity,
    readout,
    softmax_affinity,
    top_k_readout,
)
from model.modules import (
    CBAM,
    Decoder,
    FeatureFusionBlock,
    GroupConv2d,
    GroupResBlock,
    HiddenReinforcer,
    HiddenUpdater,
    KeyEncoder,
    KeyProjection,
    UpsampleBlock,
    ValueEncoder,
    gru_sensory_update,
)
from model.network import KeyEncoding, Segmentation, XMem

__all__ = [
    "CBAM",
    "SIMILARITY_MODES",
    "Decoder",
    "FeatureFusionBlock",
    "GroupConv2d",
    "GroupResBlock",
    "HiddenReinforcer",
    "HiddenUpdater",
    "KeyEncoder",
    "KeyEncoding",
    "KeyProjection",
    "NetworkDims",
    "Segmentation",
    "SimilarityMode",
    "UpsampleBlock",
    "ValueEncoder",
    "XMEM_READING",
    "XMem",
    "aggregate",
    "build_network_from_state_dict",
    "get_similarity",
    "gru_sensory_update",
    "infer_network_dims",
    "load_imagenet_trunks",
    "load_network",
    "optimize_network",
    "readout",
    "save_network",
    "softmax_affinity",
    "top_k_readout",
]
