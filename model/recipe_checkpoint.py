"""The recipe checkpoint of tests/fixtures/README.md: a deterministic XMem state_dict built from the key list alone.

The golden fixtures were recorded by the original implementation with exactly these weights, so anything that
compares against them builds this state_dict from the released checkpoint's key list (tests/fixtures/
xmem_state_dict.tsv in a checkout): the tests (`recipe_state_dict` / `recipe_network` fixtures of conftest.py),
scripts/cuda/check_cuda.py and scripts/speed/speed_compare.py. It lives in the package because scripts must not
import tests/.
"""
from __future__ import annotations

import ast
import math
import zlib
from pathlib import Path

import torch

RUNNING_MEAN_SCALE = 0.1
RUNNING_VAR_OFFSET = 0.5
BN_WEIGHT_SCALE = 0.1
BN_BIAS_SCALE = 0.1
BIAS_SCALE = 0.01
WEIGHT_GAINS = {"key_proj.key_proj.weight": 0.5, "key_proj.e_proj.weight": 0.5, "key_proj.d_proj.weight": 0.25}
DEFAULT_WEIGHT_GAIN = 1.0


def read_key_list(path: Path) -> list[tuple[str, tuple[int, ...], str]]:
    """The released state_dict's (key, shape, dtype name) entries, in order, from a key list file (one
    tab-separated `key  shape  dtype` line per entry, e.g. tests/fixtures/xmem_state_dict.tsv)."""
    entries = []
    for line in path.read_text().splitlines():
        key, shape, dtype = line.split("\t")
        entries.append((key, tuple(ast.literal_eval(shape)), dtype))
    return entries


def build_recipe_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Build the recipe checkpoint bit for bit from the key list at `path` (each expression evaluated left to right
    as tests/fixtures/README.md writes it)."""
    entries = read_key_list(path)
    batch_norms = {key[: -len(".running_mean")] for key, _, _ in entries if key.endswith(".running_mean")}
    state_dict = {}
    for key, shape, _ in entries:
        if key.endswith("num_batches_tracked"):
            state_dict[key] = torch.tensor(0, dtype=torch.int64)
            continue
        generator = torch.Generator().manual_seed(zlib.crc32(key.encode()))
        owner, _, leaf = key.rpartition(".")
        if leaf == "running_mean":
            tensor = RUNNING_MEAN_SCALE * torch.randn(shape, generator=generator)
        elif leaf == "running_var":
            tensor = RUNNING_VAR_OFFSET + torch.rand(shape, generator=generator)
        elif leaf == "weight" and owner in batch_norms:
            tensor = 1 + BN_WEIGHT_SCALE * torch.randn(shape, generator=generator)
        elif leaf == "bias" and owner in batch_norms:
            tensor = BN_BIAS_SCALE * torch.randn(shape, generator=generator)
        elif leaf == "bias":
            tensor = BIAS_SCALE * torch.randn(shape, generator=generator)
        else:
            fan_in = math.prod(shape[1:])
            gain = WEIGHT_GAINS.get(key, DEFAULT_WEIGHT_GAIN)
            tensor = gain * torch.randn(shape, generator=generator) / math.sqrt(fan_in)
        state_dict[key] = tensor
    return state_dict
