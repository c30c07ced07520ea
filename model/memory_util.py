"""Memory reading maths: similarity, (top-k) softmax affinity, usage and readout.

Legend (short maths functions use the paper's symbols): memory element i ∈ [0, N), query pixel j ∈ [0, M)
(M = h·w), key channel c ∈ [0, C^k). k_i memory key, s_i memory shrinkage (≥ 1), q_j query key, e_j query
selection (in (0, 1)). Affinities are B×N×M with every column (one query pixel) summing to 1; usage is how much
attention each memory element received, the sum of its affinity row, B×N.

Departures from the original, all exact up to float rounding: the top-k softmax subtracts each column's maximum
before exponentiating (the original does not, and turns every weight into 0/0 = NaN once all k similarities are
below about −100), and `top_k_readout` sums only the k selected values instead of multiplying by a dense affinity.

Speed (default path; `reference_compute=True` runs the original's expansion term by term): `get_similarity`
computes the whole similarity with one matrix product whose memory-side operand already carries the shrinkage and
1/√C^k, so no elementwise pass touches the N×M result, and it lays that result out query-major in memory (the
B×N×M tensor is a transposed view of a contiguous B×M×N one), so that the softmax and top-k over the memory
dimension run along contiguous rows (top-k about 3× faster at N = 26,200, M = 1620).
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

SimilarityMode = Literal["l2", "dot"]
SIMILARITY_MODES: tuple[str, ...] = ("l2", "dot")


def get_similarity(
    memory_key: torch.Tensor,
    memory_shrinkage: torch.Tensor | None,
    query_key: torch.Tensor,
    query_selection: torch.Tensor | None,
    *,
    mode: SimilarityMode = "l2",
    use_shrinkage: bool = True,
    use_selection: bool = True,
    reference_compute: bool = False,
) -> torch.Tensor:
    """Similarity between every memory element and every query pixel (XMem's anisotropic L2 and its ablations).

    'l2' with shrinkage and selection (XMem):  S_ij = −s_i Σ_c e_cj (k_ci − q_cj)² / √C^k.
    'l2' without selection (STCN-like):        S_ij = [s_i] (2 k_iᵀq_j − ‖k_i‖²) / √C^k  (the ‖q_j‖² term is
                                               constant per query pixel and cancels in the softmax, so it is
                                               dropped, as in the original).
    'dot':                                      S_ij = [s_i] Σ_c [e_cj] k_ci q_cj / √C^k.
    Brackets mark factors that apply only when the term is switched on. A term is used when its switch is True
    and its tensor is given; passing None is the same as switching it off (the original's convention).
    The l2 forms use the original's expansion −(k²)ᵀe + 2kᵀ(q⊙e) − Σ_c e q². The reference path evaluates it
    term by term as the original does (bit for bit); the default path folds every term and factor into one matrix
    product (same value up to float rounding, see the module docstring).

    Args:
        memory_key: B×C^k×N float (trailing dims after C^k are flattened, e.g. B×C^k×T×h×w).
        memory_shrinkage: B×1×N float ≥ 1 (trailing dims flattened), or None.
        query_key: B×C^k×M float (trailing dims flattened, e.g. B×C^k×h×w).
        query_selection: B×C^k×M float in (0, 1), or None.
        mode: 'l2' (negative squared distance) or 'dot' (scaled dot product).
        use_shrinkage: multiply by the memory shrinkage s_i.
        use_selection: weight the key channels by the query selection e_j.
        reference_compute: evaluate the original's expansion term by term (B×N×M contiguous result).
    Returns:
        B×N×M similarity, same dtype as the keys (≤ 0 for 'l2' with selection); by default a transposed view of
        a contiguous B×M×N tensor (memory elements contiguous for each query pixel).
    Raises:
        ValueError: unknown mode.
    """
    if mode not in SIMILARITY_MODES:
        raise ValueError(f"similarity mode {mode!r} is not one of {SIMILARITY_MODES}; use 'l2' (XMem) or 'dot'")
    key_dim = memory_key.shape[1]
    mk = memory_key.flatten(start_dim=2)
    qk = query_key.flatten(start_dim=2)
    ms = memory_shrinkage.flatten(start_dim=1).unsqueeze(2) if use_shrinkage and memory_shrinkage is not None else None
    qe = query_selection.flatten(start_dim=2) if use_selection and query_selection is not None else None
    if not reference_compute:
        return _fused_similarity(mk, ms, qk, qe, l2=mode == "l2")

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


def _fused_similarity(
    mk: torch.Tensor, ms: torch.Tensor | None, qk: torch.Tensor, qe: torch.Tensor | None, *, l2: bool
) -> torch.Tensor:
    """`get_similarity` as one batched matrix product S = Aᵀ·Q, returned as a transposed view of (Q'ᵀ·A)ᵀ.

    Legend: mk B×C×N memory keys, ms B×N×1 shrinkage or None, qk / qe B×C×M query keys / selection (qe None =
    no selection), w_i = s_i / √C (1 / √C without shrinkage). The memory side A (B×N×K) and query side Q (B×K×M)
    are, with K the stacked channels:
        l2 with selection:    A = w ⊙ [k², k, 1],  Q = [−e, 2 q⊙e, −Σ_c e q²]   (K = 2C + 1)
        l2 without selection: A = w ⊙ [k, −‖k‖²],  Q = [2q, 1]                   (K = C + 1)
        dot:                  A = w ⊙ k,           Q = q⊙e or q                   (K = C)
    Only the small operands (N×K and K×M) are built; the B×M×N product is the only pass over the result.
    """
    key_dim = mk.shape[1]
    mk_t = mk.transpose(1, 2)  # B×N×C
    if not l2:
        memory_side, query_side = mk_t, (qk if qe is None else qk * qe)
    elif qe is not None:
        memory_side = torch.cat([mk_t.pow(2), mk_t, torch.ones_like(mk_t[:, :, :1])], dim=2)
        query_side = torch.cat([-qe, 2 * qk * qe, -(qe * qk.pow(2)).sum(dim=1, keepdim=True)], dim=1)
    else:
        memory_side = torch.cat([mk_t, -mk_t.pow(2).sum(dim=2, keepdim=True)], dim=2)
        query_side = torch.cat([2 * qk, torch.ones_like(qk[:, :1])], dim=1)
    scale = 1 / math.sqrt(key_dim)
    memory_side = memory_side * (scale if ms is None else ms * scale)
    return torch.bmm(query_side.transpose(1, 2), memory_side.transpose(1, 2)).transpose(1, 2)


def _usage(affinity: torch.Tensor) -> torch.Tensor:
    return affinity.sum(dim=2)


def softmax_affinity(
    similarity: torch.Tensor, *, return_usage: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Full softmax over the memory dimension (training-style read; consolidation's potentiation).

    Args:
        similarity: B×N×M float.
        return_usage: also return the usage, B×N.
    Returns:
        affinity B×N×M (columns sum to 1), or (affinity, usage) when `return_usage`.
    """
    affinity = F.softmax(similarity, dim=1)
    return (affinity, _usage(affinity)) if return_usage else affinity


def _top_k_weights(similarity: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The min(top_k, N) largest similarities per query pixel as softmax weights: (weights, indices), B×k×M each."""
    if top_k < 1:
        raise ValueError(f"top_k must be a positive number of memory elements, got {top_k}")
    num_elements = similarity.shape[1]
    if num_elements == 0:
        raise ValueError("cannot read an empty memory: similarity has 0 memory elements (shape B×0×M)")
    values, indices = torch.topk(similarity, k=min(top_k, num_elements), dim=1)
    # topk sorts, so row 0 is each column's maximum; subtracting it keeps exp() finite for any similarity.
    weights = torch.exp(values - values[:, :1])
    weights = weights / weights.sum(dim=1, keepdim=True)
    return weights, indices


def top_k_softmax(
    similarity: torch.Tensor, top_k: int, *, return_usage: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Dense top-k softmax: per query pixel keep the min(top_k, N) largest similarities, softmax them, zero the rest.

    Equal to the original's `do_softmax(top_k=k)` but max-subtracted, so finite for any similarity.

    Args:
        similarity: B×N×M float.
        top_k: k, the number of memory elements each query pixel reads (30 in XMem).
        return_usage: also return the usage, B×N.
    Returns:
        affinity B×N×M with exactly min(top_k, N) non-zeros per column summing to 1 (fewer non-zeros only if
        weights underflow to 0), or (affinity, usage) when `return_usage`.
    Raises:
        ValueError: top_k < 1 or N == 0.
    """
    weights, indices = _top_k_weights(similarity, top_k)
    affinity = torch.zeros_like(similarity).scatter_(1, indices, weights)
    return (affinity, _usage(affinity)) if return_usage else affinity


def readout(affinity: torch.Tensor, memory_value: torch.Tensor) -> torch.Tensor:
    """Weighted sum of memory values: memory_value @ affinity.

    Args:
        affinity: B×N×M float, columns summing to 1.
        memory_value: B×C×N float (trailing dims after C are flattened, e.g. B×C^v×T×h×w); C may stack several
            objects' values that share one affinity (B×(N_obj·C^v)×N).
    Returns:
        B×C×M.
    """
    return memory_value.flatten(start_dim=2) @ affinity


def top_k_readout(
    similarity: torch.Tensor, memory_value: torch.Tensor, top_k: int, *, element_major: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse top-k read: gather each query pixel's k selected values and weight-sum them, plus usage.

    Equal (to float rounding) to `readout(top_k_softmax(similarity, top_k), memory_value)` and to that
    affinity's usage, without building the dense N×M affinity or any k×C×M intermediate: one
    `embedding_bag` per batch item over the element-major value table.

    Args:
        similarity: B×N×M float.
        memory_value: B×C×N float (trailing dims after C flattened), as for `readout`; or B×N×C when
            `element_major` (a store that keeps one row per element: no transposed copy of the values is made).
        top_k: k, the number of memory elements each query pixel reads.
        element_major: memory_value is laid out B×N×C.
    Returns:
        (readout B×C×M, usage B×N) where usage_i = Σ_j affinity_ij of the equivalent dense affinity.
    Raises:
        ValueError: top_k < 1 or N == 0.
    """
    weights, indices = _top_k_weights(similarity, top_k)
    tables = memory_value if element_major else memory_value.flatten(start_dim=2).transpose(1, 2)
    outputs = []
    for batch_index in range(similarity.shape[0]):
        table = tables[batch_index].contiguous()  # N×C: one row per memory element
        gathered = F.embedding_bag(
            indices[batch_index].t(),  # M×k: the bag of elements each query pixel reads
            table,
            per_sample_weights=weights[batch_index].t(),
            mode="sum",
        )
        outputs.append(gathered.t())
    usage = torch.zeros(similarity.shape[:2], dtype=weights.dtype, device=weights.device)
    usage.scatter_add_(1, indices.flatten(start_dim=1), weights.flatten(start_dim=1))
    return torch.stack(outputs), usage
