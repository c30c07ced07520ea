"""Shared fixtures: the recipe checkpoint of tests/fixtures/README.md, as a state_dict, a network and a file."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.checkpoint import build_network_from_state_dict, save_network
from model.network import XMem
from tests.recipe_checkpoint import build_recipe_state_dict

FIXTURES_DIR = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def _recipe_state_dict_cache() -> dict[str, torch.Tensor]:
    return build_recipe_state_dict()


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
