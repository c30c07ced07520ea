"""Memory-reading maths against brute-force formulas: similarity, top-k softmax, readout, usage, aggregation."""
from __future__ import annotations

import math

import pytest
import torch

from model.aggregate import aggregate
from model.memory_util import (
    get_similarity,
    readout,
    softmax_affinity,
    top_k_readout,
    top_k_softmax,
)

BATCH, KEY_DIM, VALUE_DIM = 2, 64, 32
NUM_ELEMENTS, NUM_QUERIES = 50, 21
TOP_K = 30
TOLERANCE = dict(rtol=1e-5, atol=1e-5)


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
    ours = get_similarity(
        memory_key, shrinkage, query_key, selection, mode=mode, use_shrinkage=use_shrinkage,
        use_selection=use_selection,
    )
    expected = _brute_force(
        memory_key, shrinkage if use_shrinkage else None, query_key, selection if use_selection else None, mode=mode
    )
    torch.testing.assert_close(ours, expected, **TOLERANCE)


def test_similarity_none_equals_switch_off_and_accepts_spatial_layout(keys):
    memory_key, shrinkage, query_key, selection = keys
    switched_off = get_similarity(memory_key, shrinkage, query_key, selection, use_shrinkage=False, use_selection=False)
    given_none = get_similarity(memory_key, None, query_key, None)
    torch.testing.assert_close(switched_off, given_none, rtol=0, atol=0)
    # B×C^k×T×h×w memory and B×C^k×h×w query flatten to the same result.
    spatial = get_similarity(
        memory_key.view(BATCH, KEY_DIM, 2, 5, 5), shrinkage.view(BATCH, 1, 2, 5, 5),
        query_key.view(BATCH, KEY_DIM, 3, 7), selection.view(BATCH, KEY_DIM, 3, 7),
    )
    torch.testing.assert_close(spatial, get_similarity(memory_key, shrinkage, query_key, selection), rtol=0, atol=0)


def test_similarity_rejects_unknown_mode(keys):
    with pytest.raises(ValueError, match=r"similarity mode 'cosine' is not one of \('l2', 'dot'\)"):
        get_similarity(*keys, mode="cosine")


@pytest.fixture
def similarity(keys):
    return get_similarity(*keys).float()


@pytest.mark.parametrize("top_k", [1, TOP_K, NUM_ELEMENTS, NUM_ELEMENTS + 7])
def test_top_k_softmax_keeps_min_k_per_query_and_normalises(similarity, top_k):
    affinity, usage = top_k_softmax(similarity, top_k, return_usage=True)
    kept = min(top_k, NUM_ELEMENTS)
    assert torch.all(torch.count_nonzero(affinity, dim=1) == kept)
    torch.testing.assert_close(affinity.sum(dim=1), torch.ones(BATCH, NUM_QUERIES))
    # The kept entries are the k largest similarities of each column.
    threshold = similarity.topk(kept, dim=1).values[:, -1:]
    assert torch.all((affinity > 0) == (similarity >= threshold))
    torch.testing.assert_close(usage, affinity.sum(dim=2))


def test_top_k_softmax_equals_softmax_of_the_kept_similarities(similarity):
    affinity = top_k_softmax(similarity, TOP_K)
    masked = similarity.masked_fill(affinity == 0, float("-inf"))
    torch.testing.assert_close(affinity, torch.softmax(masked, dim=1), **TOLERANCE)
    # With k ≥ N it is the full softmax.
    torch.testing.assert_close(top_k_softmax(similarity, NUM_ELEMENTS), softmax_affinity(similarity), **TOLERANCE)


def test_top_k_softmax_finite_for_very_negative_similarities(similarity):
    shifted = similarity - 5000 - similarity.abs().max()
    assert float(shifted.max()) < -1000
    affinity = top_k_softmax(shifted, TOP_K)
    assert torch.isfinite(affinity).all()
    torch.testing.assert_close(affinity.sum(dim=1), torch.ones(BATCH, NUM_QUERIES))
    readout_values, usage = top_k_readout(shifted, torch.ones(BATCH, VALUE_DIM, NUM_ELEMENTS), TOP_K)
    assert torch.isfinite(readout_values).all() and torch.isfinite(usage).all()


@pytest.mark.parametrize("top_k", [0, -3])
def test_top_k_rejects_non_positive_k(similarity, top_k):
    with pytest.raises(ValueError, match=f"top_k must be a positive number of memory elements, got {top_k}"):
        top_k_softmax(similarity, top_k)


def test_top_k_rejects_empty_memory():
    with pytest.raises(ValueError, match="cannot read an empty memory"):
        top_k_readout(torch.zeros(1, 0, 5), torch.zeros(1, VALUE_DIM, 0), TOP_K)


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
def test_sparse_top_k_readout_equals_dense(similarity, top_k):
    generator = torch.Generator().manual_seed(2)
    memory_value = torch.randn(BATCH, VALUE_DIM, NUM_ELEMENTS, generator=generator)
    dense_affinity, dense_usage = top_k_softmax(similarity, top_k, return_usage=True)
    sparse_readout, sparse_usage = top_k_readout(similarity, memory_value, top_k)
    torch.testing.assert_close(sparse_readout, readout(dense_affinity, memory_value), **TOLERANCE)
    torch.testing.assert_close(sparse_usage, dense_usage, **TOLERANCE)
    element_major_readout, element_major_usage = top_k_readout(
        similarity, memory_value.transpose(1, 2).contiguous(), top_k, element_major=True
    )
    torch.testing.assert_close(element_major_readout, sparse_readout, rtol=0, atol=0)
    torch.testing.assert_close(element_major_usage, sparse_usage, rtol=0, atol=0)


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
