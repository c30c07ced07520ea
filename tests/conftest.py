"""Shared fixtures: the recipe checkpoint of tests/fixtures/README.md, as a state_dict, a network and a file."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.checkpoint import build_network_from_state_dict, save_network
from model.network import XMem
from model.recipe_checkpoint import build_recipe_state_dict

FIXTURES_DIR = Path(__file__).parent / "fixtures"
KEY_LIST_PATH = FIXTURES_DIR / "xmem_state_dict.tsv"  # the released checkpoint's keys, shapes and dtypes


@pytest.fixture(scope="session")
def _recipe_state_dict_cache() -> dict[str, torch.Tensor]:
    return build_recipe_state_dict(KEY_LIST_PATH)


@pytest.fixture
def recipe_state_dict(_recipe_state_dict_cache) -> dict[str, torch.Tensor]:
    """The recipe state_dict (412 entries). A fresh dict per test: replacing entries is safe, editing tensors
    in place is not (they are shared by the whole session)."""
    return dict(_recipe_state_dict_cache)


@pytest.fixture(scope="session")
def recipe_network(_recipe_state_dict_cache) -> XMem:
    """XMem with the recipe weights, eval mode, on CPU. Shared by the session: never modify its weights."""
    return build_network_from_state_dict(_recipe_state_dict_cache)


@pytest.fixture(scope="session")
def recipe_checkpoint_path(_recipe_state_dict_cache, tmp_path_factory, recipe_network) -> Path:
    """The recipe network saved once with `save_network` (a released-format .pth, about 250 MB)."""
    path = tmp_path_factory.mktemp("recipe") / "recipe_xmem.pth"
    save_network(recipe_network, path)
    return path


@pytest.fixture
def one_torch_thread():
    """Run the test with one intra-op thread. CPU results depend on the thread count in their last bits (the order
    of oneDNN's sums), and a near-tie pixel can flip with them: byte-for-byte comparisons of outputs run with one
    thread, as the recorded digests and the torchrun ranks (OMP_NUM_THREADS=1) do."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class UsageRecount:
    """What `usage_recount` found: reads checked and the worst relative error of a computed usage."""

    def __init__(self):
        self.reads = 0
        self.counter_updates = 0
        self.worst_usage_error = 0.0


@pytest.fixture
def usage_recount(monkeypatch) -> UsageRecount:
    """Spy on the memory manager's usage counting, so that a test checks the computed usage itself (its buffers are
    float32 whatever precision the usage was computed in).

    Every top-k read's usage is compared with a float64 recount from the same similarity (same top-k, float64
    softmax and sum): the worst error relative to the largest usage goes to `worst_usage_error` (float32 sums
    stay near 1e-7; a bfloat16 / float16 sum is off by 1e-3 / 1e-4). Every `add_usage` must add exactly the float32
    usage it was given to use_count and exactly 1 to life_count (asserted in place).
    """
    import inference.memory_manager as memory_manager
    from inference.memory_store import MemoryStore

    recount = UsageRecount()
    real_read, real_add_usage = memory_manager.top_k_readout, MemoryStore.add_usage

    def read(similarity, tables, top_k):
        memory_readout, usage = real_read(similarity, tables, top_k)
        values, indices = torch.topk(similarity, k=min(top_k, similarity.shape[0]), dim=0)
        weights = torch.softmax(values.double(), dim=0)
        expected = torch.zeros(similarity.shape[0], dtype=torch.float64).scatter_add_(
            0, indices.flatten(), weights.flatten())
        error = float((usage.double() - expected).abs().max() / expected.abs().max())
        recount.worst_usage_error = max(recount.worst_usage_error, error)
        recount.reads += 1
        return memory_readout, usage

    def add_usage(store, usage):
        use_before, life_before = store.use_count.clone(), store.life_count.clone()
        real_add_usage(store, usage)
        if store.count_usage:
            live = slice(0, store.size)
            assert torch.equal(store.use_count[live], use_before[live] + usage.float()), "use_count += usage"
            assert torch.equal(store.life_count[live], life_before[live] + 1), "life_count += 1"
            recount.counter_updates += 1

    monkeypatch.setattr(memory_manager, "top_k_readout", read)
    monkeypatch.setattr(MemoryStore, "add_usage", add_usage)
    return recount
