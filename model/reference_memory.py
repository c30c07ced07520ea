"""The straightforward memory-reading computations, as the original evaluates them, for checking the fast path.

`model.memory_util` is what the network and the inference memory use; this module is the yardstick tests and
`scripts/speed/speed_compare.py` hold it against (same values up to float rounding, ~1e-4 relative):
- `term_by_term_similarity`: the original's expansion −(k²)ᵀe + 2kᵀ(q⊙e) − Σ_c e q² evaluated term by term, then
  scaled by s_i / √C^k (bit for bit the original's `get_similarity`) — vs. the one-product `get_similarity`;
- `dense_top_k_softmax`: the dense B×N×M top-k affinity (the original's `do_softmax(top_k=k)`, max-subtracted);
- `dense_top_k_read`: that affinity times the values, with its usage — vs. the gathered `top_k_readout`.
Legend and shapes as in `model.memory_util`.
"""
from __future__ import annotations

import math

import torch

from configs.schema import MemoryReading
from model.memory_util import SIMILARITY_MODES, XMEM_READING, readout, top_k_weights


def term_by_term_similarity(
    memory_key: torch.Tensor,
    memory_shrinkage: torch.Tensor | None,
    query_key: torch.Tensor,
    query_selection: torch.Tensor | None,
    *,
    reading: MemoryReading = XMEM_READING,
) -> torch.Tensor:
    """`get_similarity` computed as the original does: each term of the expansion separately.

    Args and formulas: as `model.memory_util.get_similarity`.
    Returns:
        B×N×M similarity (contiguous), same dtype as the keys.
    Raises:
        ValueError: unknown similarity mode.
    """
    mode = reading.similarity
    if mode not in SIMILARITY_MODES:
        raise ValueError(f"similarity mode {mode!r} is not one of {SIMILARITY_MODES}; use 'l2' (XMem) or 'dot'")
    key_dim = memory_key.shape[1]
    mk = memory_key.flatten(start_dim=2)
    qk = query_key.flatten(start_dim=2)
    use_shrinkage = reading.use_shrinkage and memory_shrinkage is not None
    use_selection = reading.use_selection and query_selection is not None
    ms = memory_shrinkage.flatten(start_dim=1).unsqueeze(2) if use_shrinkage else None
    qe = query_selection.flatten(start_dim=2) if use_selection else None
    if mode == "dot":
        similarity = mk.transpose(1, 2) @ (qk if qe is None else qk * qe)
    elif qe is not None:
        mk_t = mk.transpose(1, 2)
        a_sq = mk_t.pow(2) @ qe
        two_ab = 2 * (mk_t @ (qk * qe))
        b_sq = (qe * qk.pow(2)).sum(dim=1, keepdim=True)
        similarity = -a_sq + two_ab - b_sq
    else:
        a_sq = mk.pow(2).sum(dim=1).unsqueeze(2)
        two_ab = 2 * (mk.transpose(1, 2) @ qk)
        similarity = -a_sq + two_ab
    if ms is not None:
        return similarity * ms / math.sqrt(key_dim)
    return similarity / math.sqrt(key_dim)


def dense_top_k_softmax(
    similarity: torch.Tensor, top_k: int, *, return_usage: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Dense top-k softmax: per query pixel keep the min(top_k, N) largest similarities, softmax them, zero the rest.

    Equal to the original's `do_softmax(top_k=k)` but max-subtracted, so finite for any similarity.

    Args:
        similarity: B×N×M float.
        top_k: k, the number of memory elements each query pixel reads (30 in XMem).
        return_usage: also return the usage, B×N.
    Returns:
        affinity B×N×M (at least float32) with exactly min(top_k, N) non-zeros per column summing to 1 (fewer
        non-zeros only if weights underflow to 0), or (affinity, usage) when `return_usage`.
    Raises:
        ValueError: top_k < 1 or N == 0.
    """
    weights, indices = top_k_weights(similarity, top_k)
    affinity = weights.new_zeros(similarity.shape).scatter_(1, indices, weights)
    return (affinity, affinity.sum(dim=2)) if return_usage else affinity


def dense_top_k_read(
    similarity: torch.Tensor, memory_value: torch.Tensor, top_k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The dense top-k read: `readout(dense_top_k_softmax(similarity), memory_value)` and its usage.

    Args:
        similarity: B×N×M float.
        memory_value: B×C×N float (trailing dims after C flattened).
        top_k: k.
    Returns:
        (readout B×C×M, usage B×N).
    """
    affinity, usage = dense_top_k_softmax(similarity, top_k, return_usage=True)
    return readout(affinity.to(memory_value.dtype), memory_value), usage
