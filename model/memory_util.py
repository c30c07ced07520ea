"""Memory reading maths: similarity, softmax affinity, the top-k readout with usage, and the dense readout.

Legend (short maths functions use the paper's symbols): memory element i ∈ [0, N), query pixel j ∈ [0, M)
(M = h·w), key channel c ∈ [0, C^k). k_i memory key, s_i memory shrinkage (≥ 1), q_j query key, e_j query
selection (in (0, 1)). Affinities are B×N×M with every column (one query pixel) summing to 1; usage is how much
attention each memory element received, the sum of its affinity row.

Departures from the original, all exact up to float rounding: the top-k softmax subtracts each column's maximum
before exponentiating (the original does not, and turns every weight into 0/0 = NaN once all k similarities are
below about −100), and `top_k_readout` sums only the k selected values instead of multiplying by a dense affinity.
The straightforward computations (term-by-term similarity, dense top-k affinity) live in `model.reference_memory`
for tests and timing scripts.

Speed: `get_similarity` computes the whole similarity with one matrix product whose memory-side operand already
carries the shrinkage and 1/√C^k, so no elementwise pass touches the N×M result, and it lays that result out
query-major in memory (the B×N×M tensor is a transposed view of a contiguous B×M×N one), so that the softmax and
top-k over the memory dimension run along contiguous rows (top-k about 3× faster at N = 26,200, M = 1620).

Mixed precision (under `torch.autocast`): the similarity product may run in the autocast dtype (float16/bfloat16),
but its operands are built and the shrinkage applied in float32, and every softmax and the usage are float32; see
`_fused_similarity` for why the shrinkage cannot be folded into a half-precision product.
"""
from __future__ import annotations

import math
import typing
from typing import Sequence

import torch
import torch.nn.functional as F

from configs.schema import MemoryReading, SimilarityMode

SIMILARITY_MODES: tuple[str, ...] = typing.get_args(SimilarityMode)
XMEM_READING = MemoryReading()  # anisotropic L2 with shrinkage and selection, as XMem reads


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype softmaxes, scalings and usage run in: float32 for half-precision inputs, else the input's own."""
    return torch.promote_types(dtype, torch.float32)


def get_similarity(
    memory_key: torch.Tensor,
    memory_shrinkage: torch.Tensor | None,
    query_key: torch.Tensor,
    query_selection: torch.Tensor | None,
    *,
    reading: MemoryReading = XMEM_READING,
) -> torch.Tensor:
    """Similarity between every memory element and every query pixel (XMem's anisotropic L2 and its ablations).

    'l2' with shrinkage and selection (XMem):  S_ij = −s_i Σ_c e_cj (k_ci − q_cj)² / √C^k.
    'l2' without selection (STCN-like):        S_ij = [s_i] (2 k_iᵀq_j − ‖k_i‖²) / √C^k  (the ‖q_j‖² term is
                                               constant per query pixel and cancels in the softmax, so it is
                                               dropped, as in the original).
    'dot':                                      S_ij = [s_i] Σ_c [e_cj] k_ci q_cj / √C^k.
    Brackets mark factors that apply only when the term is switched on (`reading.use_shrinkage`,
    `reading.use_selection`). A term is used when its switch is True and its tensor is given; passing None is the
    same as switching it off (the original's convention).
    The l2 forms use the original's expansion −(k²)ᵀe + 2kᵀ(q⊙e) − Σ_c e q², folded into one matrix product
    (`model.reference_memory.term_by_term_similarity` evaluates it term by term as the original; same value up
    to float rounding).

    Args:
        memory_key: B×C^k×N float (trailing dims after C^k are flattened, e.g. B×C^k×T×h×w).
        memory_shrinkage: B×1×N float ≥ 1 (trailing dims flattened), or None.
        query_key: B×C^k×M float (trailing dims flattened, e.g. B×C^k×h×w).
        query_selection: B×C^k×M float in (0, 1), or None.
        reading: the reading switches (`configs.schema.MemoryReading`): `similarity` 'l2' (negative squared
            distance) or 'dot' (scaled dot product); `use_shrinkage` multiplies by the memory shrinkage s_i;
            `use_selection` weights the key channels by the query selection e_j.
    Returns:
        B×N×M similarity (≤ 0 for 'l2' with selection), a transposed view of a contiguous B×M×N tensor (memory
        elements contiguous for each query pixel); at least float32 (float64 for float64 keys).
    Raises:
        ValueError: unknown similarity mode.
    """
    mode = reading.similarity
    if mode not in SIMILARITY_MODES:
        raise ValueError(f"similarity mode {mode!r} is not one of {SIMILARITY_MODES}; use 'l2' (XMem) or 'dot'")
    dtype = accumulation_dtype(memory_key.dtype)
    mk = memory_key.flatten(start_dim=2).to(dtype)
    qk = query_key.flatten(start_dim=2).to(dtype)
    ms = (
        memory_shrinkage.flatten(start_dim=1).unsqueeze(2).to(dtype)
        if reading.use_shrinkage and memory_shrinkage is not None else None
    )
    qe = (
        query_selection.flatten(start_dim=2).to(dtype)
        if reading.use_selection and query_selection is not None else None
    )
    return _fused_similarity(mk, ms, qk, qe, l2=mode == "l2")


def _fused_similarity(
    mk: torch.Tensor, ms: torch.Tensor | None, qk: torch.Tensor, qe: torch.Tensor | None, *, l2: bool
) -> torch.Tensor:
    """`get_similarity` as one batched matrix product S = Aᵀ·Q, returned as a transposed view of (Q'ᵀ·A)ᵀ.

    Legend: mk B×C×N memory keys, ms B×N×1 shrinkage or None, qk / qe B×C×M query keys / selection (qe None =
    no selection), all float32 or float64. The memory side A (B×N×K) and query side Q (B×K×M) are, with K the
    stacked channels:
        l2 with selection:    A = [k², k, 1] / √C,  Q = [−e, 2 q⊙e, −Σ_c e q²]   (K = 2C + 1)
        l2 without selection: A = [k, −‖k‖²] / √C,  Q = [2q, 1]                   (K = C + 1)
        dot:                  A = k / √C,           Q = q⊙e or q                   (K = C)
    and S is multiplied by s_i. Only the small operands (N×K and K×M) are built, in float32 (so the selection and
    1/√C scalings run in float32).

    Outside autocast the product runs in float32 and s_i is folded into A, so the B×M×N product is the only pass
    over the result. Under autocast the product runs in the autocast dtype, and s_i is applied afterwards in
    float32: folded into a half-precision operand, s_i ≥ 1 (unbounded above) would scale every stacked term of
    the expansion, which cancel to the much smaller S, so a half-precision operand or product could overflow
    (float16 stops at 65504) and loses absolute precision in proportion to s_i. The 1/√C factor (< 1) is folded
    before the product: it only shrinks the operands, so the product stays within 1/s_i of |S| and cannot
    overflow where the float32 similarity does not.
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
    half_product = torch.is_autocast_enabled(mk.device.type)
    if half_product or ms is None:
        memory_side = memory_side * scale
    else:
        memory_side = memory_side * (ms * scale)
    product = torch.bmm(query_side.transpose(1, 2), memory_side.transpose(1, 2)).transpose(1, 2)
    if not half_product:
        return product
    similarity = product.to(mk.dtype)  # float32, same (query-major) layout
    return similarity.mul_(ms) if ms is not None else similarity


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
        affinity B×N×M (columns sum to 1), at least float32, or (affinity, usage) when `return_usage`.
    """
    affinity = F.softmax(similarity, dim=1, dtype=accumulation_dtype(similarity.dtype))
    return (affinity, _usage(affinity)) if return_usage else affinity


def top_k_weights(similarity: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The min(top_k, N) largest similarities of each column as softmax weights.

    Args:
        similarity: B×N×M or N×M float (the memory dimension is the second to last).
        top_k: k, the number of memory elements each query pixel reads (30 in XMem).
    Returns:
        (weights, indices), B×k×M (or k×M) each, k = min(top_k, N); weights at least float32, summing to 1 over k.
    Raises:
        ValueError: top_k < 1 or N == 0.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be a positive number of memory elements, got {top_k}")
    num_elements = similarity.shape[-2]
    if num_elements == 0:
        raise ValueError(
            f"cannot read an empty memory: similarity has 0 memory elements (shape {tuple(similarity.shape)})"
        )
    values, indices = torch.topk(similarity, k=min(top_k, num_elements), dim=-2)
    # topk sorts, so row 0 is each column's maximum; subtracting it keeps exp() finite for any similarity.
    values = values.to(accumulation_dtype(values.dtype))
    weights = torch.exp(values - values.narrow(-2, 0, 1))
    return weights / weights.sum(dim=-2, keepdim=True), indices


def top_k_readout(
    similarity: torch.Tensor, tables: Sequence[torch.Tensor], top_k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse top-k read of one query frame over one or several value tables, plus usage.

    The n memory rows of `similarity` are the rows of `tables` stacked in order (e.g. long-term then working
    memory), without concatenating the tables: one top-k over all n rows, then one `embedding_bag` per table
    summing only the selected rows that lie in it (the weights of rows in other tables are zeroed). Equal (to
    float rounding) to the dense top-k read `model.reference_memory.dense_top_k_read`, without building the n×M
    affinity or any k×D×M intermediate.

    Precision: weights and usage are float32 (float64 for float64 similarity); the weighted sum runs in each
    table's dtype (the weights are rounded to it, as a half-precision matrix product would).

    Args:
        similarity: n×M float.
        tables: element-major values, n_i×D each (one row per memory element, e.g. every object's C^v values side
            by side), Σ n_i = n.
        top_k: k, the number of memory elements each query pixel reads.
    Returns:
        (readout D×M in the tables' dtype, usage n) where usage_i = Σ_j affinity_ij of the equivalent dense
        affinity.
    Raises:
        ValueError: top_k < 1, n == 0, or the tables' rows do not add up to n.
    """
    num_elements = similarity.shape[0]
    if sum(table.shape[0] for table in tables) != num_elements:
        raise ValueError(
            f"the value tables hold {[table.shape[0] for table in tables]} rows, the similarity {num_elements}"
        )
    weights, indices = top_k_weights(similarity, top_k)  # k×M each
    memory_readout = None
    first_row = 0
    for table in tables:
        rows = table.shape[0]
        if rows == num_elements:
            bag_indices, bag_weights = indices, weights
        else:
            inside = (indices >= first_row) & (indices < first_row + rows)
            bag_indices, bag_weights = (indices - first_row).clamp(0, rows - 1), weights * inside
        bag = F.embedding_bag(
            bag_indices.t(),  # M×k: the bag of rows each query pixel reads
            table,
            per_sample_weights=bag_weights.to(table.dtype).t(),
            mode="sum",
        ).t()
        memory_readout = bag if memory_readout is None else memory_readout + bag
        first_row += rows
    usage = weights.new_zeros(num_elements).scatter_add_(0, indices.flatten(), weights.flatten())
    return memory_readout, usage


def readout(affinity: torch.Tensor, memory_value: torch.Tensor) -> torch.Tensor:
    """Weighted sum of memory values: memory_value @ affinity (the training read's dense readout).

    Args:
        affinity: B×N×M float, columns summing to 1.
        memory_value: B×C×N float (trailing dims after C are flattened, e.g. B×C^v×T×h×w); C may stack several
            objects' values that share one affinity (B×(N_obj·C^v)×N).
    Returns:
        B×C×M.
    """
    return memory_value.flatten(start_dim=2) @ affinity
