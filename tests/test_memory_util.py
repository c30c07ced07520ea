"""Memory-reading maths against brute-force formulas (similarity, top-k softmax, readout, usage, aggregation), the
fast path against the reference implementation (`model.reference_memory`), and its float32 parts under autocast."""
from __future__ import annotations

import math

import pytest
import torch

from configs.schema import MemoryReading
from model.aggregate import aggregate
from model.memory_util import get_similarity, readout, softmax_affinity, top_k_readout
from model.reference_memory import dense_top_k_read, dense_top_k_softmax, term_by_term_similarity

BATCH, KEY_DIM, VALUE_DIM = 2, 64, 32
NUM_ELEMENTS, NUM_QUERIES = 50, 21
TOP_K = 30
TOLERANCE = dict(rtol=1e-5, atol=1e-5)
# Fast path vs reference (float32): max |fast − reference| ≤ PATH_TOLERANCE · max(1, max |reference|), the
# project's ~1e-4 numerics contract (as tests/test_speed_paths.py for the network).
PATH_TOLERANCE = 1e-4


@pytest.fixture
def keys():
    """Memory keys B×C^k×N, shrinkage B×1×N (≥ 1), query keys B×C^k×M, selection B×C^k×M (in (0, 1)); float64
    so that the brute-force references are exact."""
    generator = torch.Generator().manual_seed(0)
    memory_key = torch.randn(BATCH, KEY_DIM, NUM_ELEMENTS, generator=generator, dtype=torch.float64)
    shrinkage = 1 + torch.rand(BATCH, 1, NUM_ELEMENTS, generator=generator, dtype=torch.float64) ** 2
    query_key = torch.randn(BATCH, KEY_DIM, NUM_QUERIES, generator=generator, dtype=torch.float64)
    selection = torch.rand(BATCH, KEY_DIM, NUM_QUERIES, generator=generator, dtype=torch.float64)
    return memory_key, shrinkage, query_key, selection


def _brute_force(memory_key, shrinkage, query_key, selection, *, mode="l2"):
    """S_ij evaluated element by element from the paper's formulas (1 = term switched off)."""
    result = torch.zeros(BATCH, NUM_ELEMENTS, NUM_QUERIES, dtype=torch.float64)
    for b in range(BATCH):
        for i in range(NUM_ELEMENTS):
            k = memory_key[b, :, i]
            s = 1.0 if shrinkage is None else float(shrinkage[b, 0, i])
            for j in range(NUM_QUERIES):
                q = query_key[b, :, j]
                e = torch.ones(KEY_DIM, dtype=torch.float64) if selection is None else selection[b, :, j]
                if mode == "dot":
                    value = (e * k * q).sum()
                elif selection is not None:
                    value = -(e * (k - q) ** 2).sum()
                else:
                    value = 2 * (k * q).sum() - (k * k).sum()
                result[b, i, j] = s * value / math.sqrt(KEY_DIM)
    return result


@pytest.mark.parametrize("mode", ["l2", "dot"])
@pytest.mark.parametrize("use_shrinkage", [True, False])
@pytest.mark.parametrize("use_selection", [True, False])
def test_similarity_equals_brute_force(keys, mode, use_shrinkage, use_selection):
    memory_key, shrinkage, query_key, selection = keys
    expected = _brute_force(
        memory_key, shrinkage if use_shrinkage else None, query_key, selection if use_selection else None, mode=mode
    )
    for similarity in (get_similarity, term_by_term_similarity):
        ours = similarity(
            memory_key, shrinkage, query_key, selection,
            reading=MemoryReading(similarity=mode, use_shrinkage=use_shrinkage, use_selection=use_selection),
        )
        torch.testing.assert_close(ours, expected, **TOLERANCE)


def test_similarity_none_equals_switch_off_and_accepts_spatial_layout(keys):
    memory_key, shrinkage, query_key, selection = keys
    switched_off = get_similarity(memory_key, shrinkage, query_key, selection,
                                  reading=MemoryReading(use_shrinkage=False, use_selection=False))
    given_none = get_similarity(memory_key, None, query_key, None)
    torch.testing.assert_close(switched_off, given_none, rtol=0, atol=0)
    # B×C^k×T×h×w memory and B×C^k×h×w query flatten to the same result.
    spatial = get_similarity(
        memory_key.view(BATCH, KEY_DIM, 2, 5, 5), shrinkage.view(BATCH, 1, 2, 5, 5),
        query_key.view(BATCH, KEY_DIM, 3, 7), selection.view(BATCH, KEY_DIM, 3, 7),
    )
    torch.testing.assert_close(spatial, get_similarity(memory_key, shrinkage, query_key, selection), rtol=0, atol=0)


@pytest.mark.parametrize("similarity", [get_similarity, term_by_term_similarity])
def test_similarity_rejects_unknown_mode(keys, similarity):
    with pytest.raises(ValueError, match=r"similarity mode 'cosine' is not one of \('l2', 'dot'\)"):
        similarity(*keys, reading=MemoryReading(similarity="cosine"))


@pytest.fixture
def similarity(keys):
    return get_similarity(*keys).float()


def _read_one(similarity, memory_value, top_k, split=None):
    """top_k_readout of every batch item: memory_value B×C×N as one element-major table, or split in two."""
    readouts, usages = [], []
    for item in range(similarity.shape[0]):
        table = memory_value[item].t().contiguous()
        tables = [table] if split is None else [table[:split], table[split:]]
        item_readout, item_usage = top_k_readout(similarity[item], tables, top_k)
        readouts.append(item_readout)
        usages.append(item_usage)
    return torch.stack(readouts), torch.stack(usages)


@pytest.mark.parametrize("top_k", [1, TOP_K, NUM_ELEMENTS, NUM_ELEMENTS + 7])
def test_top_k_softmax_keeps_min_k_per_query_and_normalises(similarity, top_k):
    affinity, usage = dense_top_k_softmax(similarity, top_k, return_usage=True)
    kept = min(top_k, NUM_ELEMENTS)
    assert torch.all(torch.count_nonzero(affinity, dim=1) == kept)
    torch.testing.assert_close(affinity.sum(dim=1), torch.ones(BATCH, NUM_QUERIES))
    # The kept entries are the k largest similarities of each column.
    threshold = similarity.topk(kept, dim=1).values[:, -1:]
    assert torch.all((affinity > 0) == (similarity >= threshold))
    torch.testing.assert_close(usage, affinity.sum(dim=2))


def test_top_k_softmax_equals_softmax_of_the_kept_similarities(similarity):
    affinity = dense_top_k_softmax(similarity, TOP_K)
    masked = similarity.masked_fill(affinity == 0, float("-inf"))
    torch.testing.assert_close(affinity, torch.softmax(masked, dim=1), **TOLERANCE)
    # With k ≥ N it is the full softmax.
    torch.testing.assert_close(dense_top_k_softmax(similarity, NUM_ELEMENTS), softmax_affinity(similarity), **TOLERANCE)


def test_top_k_softmax_finite_for_very_negative_similarities(similarity):
    shifted = similarity - 5000 - similarity.abs().max()
    assert float(shifted.max()) < -1000
    affinity = dense_top_k_softmax(shifted, TOP_K)
    assert torch.isfinite(affinity).all()
    torch.testing.assert_close(affinity.sum(dim=1), torch.ones(BATCH, NUM_QUERIES))
    readout_values, usage = _read_one(shifted, torch.ones(BATCH, VALUE_DIM, NUM_ELEMENTS), TOP_K)
    assert torch.isfinite(readout_values).all() and torch.isfinite(usage).all()


@pytest.mark.parametrize("top_k", [0, -3])
def test_top_k_rejects_non_positive_k(similarity, top_k):
    with pytest.raises(ValueError, match=f"top_k must be a positive number of memory elements, got {top_k}"):
        dense_top_k_softmax(similarity, top_k)
    with pytest.raises(ValueError, match=f"top_k must be a positive number of memory elements, got {top_k}"):
        top_k_readout(similarity[0], [torch.zeros(NUM_ELEMENTS, VALUE_DIM)], top_k)


def test_top_k_rejects_empty_memory_and_mismatched_tables():
    with pytest.raises(ValueError, match="cannot read an empty memory"):
        top_k_readout(torch.zeros(0, 5), [torch.zeros(0, VALUE_DIM)], TOP_K)
    with pytest.raises(ValueError, match=r"the value tables hold \[3, 4\] rows, the similarity 8"):
        top_k_readout(torch.zeros(8, 5), [torch.zeros(3, VALUE_DIM), torch.zeros(4, VALUE_DIM)], TOP_K)


def test_softmax_affinity_columns_sum_to_one_with_usage(similarity):
    affinity, usage = softmax_affinity(similarity, return_usage=True)
    torch.testing.assert_close(affinity, torch.softmax(similarity.double(), dim=1).float(), **TOLERANCE)
    torch.testing.assert_close(usage, affinity.sum(dim=2))
    assert float(usage.sum()) == pytest.approx(BATCH * NUM_QUERIES, rel=1e-5)


def test_readout_is_value_weighted_sum(similarity):
    generator = torch.Generator().manual_seed(1)
    memory_value = torch.randn(BATCH, VALUE_DIM, NUM_ELEMENTS, generator=generator)
    affinity = softmax_affinity(similarity)
    expected = torch.einsum("bcn,bnm->bcm", memory_value.double(), affinity.double()).float()
    torch.testing.assert_close(readout(affinity, memory_value), expected, **TOLERANCE)
    spatial = readout(affinity, memory_value.view(BATCH, VALUE_DIM, 2, 5, 5))
    torch.testing.assert_close(spatial, expected, **TOLERANCE)


@pytest.mark.parametrize("top_k", [1, TOP_K, NUM_ELEMENTS + 1])
def test_sparse_top_k_readout_equals_dense_for_one_and_two_tables(similarity, top_k):
    generator = torch.Generator().manual_seed(2)
    memory_value = torch.randn(BATCH, VALUE_DIM, NUM_ELEMENTS, generator=generator)
    dense_readout, dense_usage = dense_top_k_read(similarity, memory_value, top_k)
    one_table = _read_one(similarity, memory_value, top_k)
    torch.testing.assert_close(one_table[0], dense_readout, **TOLERANCE)
    torch.testing.assert_close(one_table[1], dense_usage, **TOLERANCE)
    # Two stores (e.g. long-term then working memory) read through the same function: the same weights and usage,
    # the readout split into two partial sums (float rounding only).
    two_tables = _read_one(similarity, memory_value, top_k, split=NUM_ELEMENTS // 3)
    torch.testing.assert_close(two_tables[0], one_table[0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(two_tables[1], one_table[1], rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------- fast vs reference
def _agree(fast: torch.Tensor, reference: torch.Tensor) -> bool:
    assert fast.shape == reference.shape
    scale = max(1.0, float(reference.abs().max()))
    return float((fast - reference).abs().max()) <= PATH_TOLERANCE * scale


@pytest.mark.parametrize("mode", ["l2", "dot"])
@pytest.mark.parametrize("use_shrinkage", [True, False])
@pytest.mark.parametrize("use_selection", [True, False])
def test_one_product_similarity_equals_term_by_term(mode, use_shrinkage, use_selection):
    generator = torch.Generator().manual_seed(4)
    memory_key = torch.randn(2, 64, 3, 4, 7, generator=generator)
    shrinkage = 1 + torch.rand(2, 1, 3, 4, 7, generator=generator) ** 2
    query_key = torch.randn(2, 64, 4, 7, generator=generator)
    selection = torch.rand(2, 64, 4, 7, generator=generator)
    reading = MemoryReading(similarity=mode, use_shrinkage=use_shrinkage, use_selection=use_selection)
    fast = get_similarity(memory_key, shrinkage, query_key, selection, reading=reading)
    reference = term_by_term_similarity(memory_key, shrinkage, query_key, selection, reading=reading)
    assert fast.shape == (2, 84, 28)
    assert _agree(fast, reference)


def test_gathered_read_equals_the_dense_reference_read():
    """The inference read at 480p-like proportions (k = 30 of 2,000 elements, 3 objects × 64 channels)."""
    generator = torch.Generator().manual_seed(5)
    memory_key = torch.randn(1, 64, 2000, generator=generator)
    shrinkage = 1 + torch.rand(1, 1, 2000, generator=generator) ** 2
    query_key = torch.randn(1, 64, 60, generator=generator)
    selection = torch.rand(1, 64, 60, generator=generator)
    values = torch.randn(2000, 3 * 64, generator=generator)
    similarity = term_by_term_similarity(memory_key, shrinkage, query_key, selection)
    reference_readout, reference_usage = dense_top_k_read(similarity, values.t()[None], TOP_K)
    fast_similarity = get_similarity(memory_key, shrinkage, query_key, selection)
    assert _agree(fast_similarity, similarity)
    # Same similarity in: the reads agree (a different similarity may choose a different k-th element on a tie).
    fast_readout, fast_usage = top_k_readout(similarity[0], [values[:1500], values[1500:]], TOP_K)
    assert _agree(fast_readout, reference_readout[0]) and _agree(fast_usage, reference_usage[0])


# ----------------------------------------------------------------------------------------------- autocast
AUTOCAST_DTYPES = [torch.bfloat16, torch.float16]


@pytest.mark.parametrize("dtype", AUTOCAST_DTYPES)
def test_under_autocast_scaling_softmax_and_usage_are_float32(keys, dtype):
    """Softmaxes and usage are float32 when fed the autocast dtype (as a half-precision similarity would be).

    Mutation checked: `top_k_weights` without its cast to `accumulation_dtype` (weights and usage in the input's
    half dtype) fails the dtype and recount checks."""
    memory_key, shrinkage, query_key, selection = (tensor.float() for tensor in keys)
    exact = get_similarity(memory_key, shrinkage, query_key, selection)
    with torch.autocast("cpu", dtype=dtype):
        similarity = get_similarity(memory_key.to(dtype), shrinkage.to(dtype), query_key.to(dtype), selection.to(dtype))
        assert similarity.dtype == torch.float32
        half_similarity = similarity[0].to(dtype)
        affinity = softmax_affinity(half_similarity[None])
        read, usage = top_k_readout(half_similarity, [torch.randn(NUM_ELEMENTS, VALUE_DIM).to(dtype)], TOP_K)
    assert affinity.dtype == torch.float32 and usage.dtype == torch.float32
    values, indices = torch.topk(half_similarity, TOP_K, dim=0)
    weights = torch.softmax(values.double(), dim=0)
    recount = torch.zeros(NUM_ELEMENTS, dtype=torch.float64).scatter_add_(0, indices.flatten(), weights.flatten())
    assert float((usage.double() - recount).abs().max()) < 1e-6 * float(recount.max())
    # Half-precision keys and products: relative error of the stacked terms (|k|², |q|² ~ C^k) ≈ 2^-8 (bfloat16).
    assert float((similarity - exact).abs().max()) < 2e-2 * float(exact.abs().max())


def test_large_shrinkage_does_not_overflow_a_float16_product():
    """Keys of magnitude 80 and shrinkage 100: folded into the memory-side operand, s·k²/√C^k = 8e4 is past
    float16's 65504; the shrinkage is applied in float32 after the product, so the similarity stays finite.
    (bfloat16 has float32's range: there the same run is finite either way.)"""
    generator = torch.Generator().manual_seed(6)
    memory_key = 80 + torch.randn(1, 64, 40, generator=generator)
    query_key = memory_key[:, :, :10] + 0.1 * torch.randn(1, 64, 10, generator=generator)
    shrinkage = torch.full((1, 1, 40), 100.0)
    selection = torch.full((1, 64, 10), 0.01)  # keeps the query side's Σ_c e q² (≈ 4e3) within float16
    folded = (memory_key.pow(2) * shrinkage / 8).to(torch.float16)  # what a folded float16 operand would hold
    assert not torch.isfinite(folded).all()
    with torch.autocast("cpu", dtype=torch.float16):
        similarity = get_similarity(
            memory_key.half(), shrinkage.half(), query_key.half(), selection.half()
        )
    assert similarity.dtype == torch.float32 and torch.isfinite(similarity).all()


# ----------------------------------------------------------------------------------------------- aggregation
def test_aggregate_matches_formula_and_sums_to_one():
    generator = torch.Generator().manual_seed(3)
    prob = torch.rand(2, 3, 4, 5, generator=generator, dtype=torch.float64)
    logits, aggregated = aggregate(prob, dim=1)
    background = torch.prod(1 - prob, dim=1, keepdim=True)
    q = torch.cat([background, prob], dim=1).clamp(1e-7, 1 - 1e-7)
    odds = q / (1 - q)
    torch.testing.assert_close(aggregated, odds / odds.sum(dim=1, keepdim=True))
    torch.testing.assert_close(logits, torch.log(odds))
    assert aggregated.shape == (2, 4, 4, 5)


def test_aggregate_sharpens_a_single_object():
    p = torch.tensor([[0.2, 0.5, 0.9]], dtype=torch.float64)
    _, aggregated = aggregate(p, dim=0)
    torch.testing.assert_close(aggregated[1], p[0] ** 2 / (p[0] ** 2 + (1 - p[0]) ** 2))
