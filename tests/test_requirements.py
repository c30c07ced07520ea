"""requirements.txt admits no torch / torchvision release that lacks an API the code uses.

The table lists each version-sensitive torch API the code calls, a pattern that finds the call in the sources, and
the torch release that introduced it. The test fails when requirements.txt's lower bound is below the newest of
those releases, when torchvision's lower bound is not the release built for that torch, when a listed API is no
longer used (so the table cannot rot), or when a requirement caps a version from above without naming the break
that makes it necessary (a cap would make users with a newer torch downgrade several GB).

Mutations checked: the torch floor back at 2.3 fails the lower-bound test (torch.is_autocast_enabled(device_type)
needs 2.4); `torch<=2.14.1` fails the no-cap test.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE_FOLDERS = ("model", "inference", "dataset", "configs", "scripts")
TOP_LEVEL = ("train.py", "eval.py")

# (API, regex over the sources, torch version that introduced it)
TORCH_APIS = (
    ("torch.is_autocast_enabled(device_type)", r"torch\.is_autocast_enabled\([^)]", (2, 4)),
    ("fused AdamW on CPU", r"fused=_supports_fused_adamw", (2, 4)),
    ("torch.amp.GradScaler(device)", r"torch\.amp\.GradScaler\(", (2, 3)),
    ("nn.Module.compile", r"\.compile\(\)", (2, 2)),
    ("torch.device as a context manager (meta construction)", r"with torch\.device\(", (2, 0)),
    ("torch.compile", r"torch\.compile\b", (2, 0)),
    ("torch.load(weights_only=...)", r"torch\.load\([^)]*weights_only=True", (1, 13)),
    ("torch.autocast(device_type)", r"torch\.autocast\(", (1, 10)),
    ("torch.use_deterministic_algorithms(warn_only=...)", r"use_deterministic_algorithms\(True, warn_only", (1, 11)),
)
# torchvision release built for each torch minor release.
TORCHVISION_FOR_TORCH = {(2, 0): (0, 15), (2, 1): (0, 16), (2, 2): (0, 17), (2, 3): (0, 18), (2, 4): (0, 19),
                         (2, 5): (0, 20), (2, 6): (0, 21), (2, 7): (0, 22), (2, 8): (0, 23)}


def _source_text() -> str:
    paths = [path for folder in SOURCE_FOLDERS for path in sorted((ROOT / folder).rglob("*.py"))]
    paths += [ROOT / name for name in TOP_LEVEL]
    return "\n".join(path.read_text() for path in paths)


def _lower_bound(package: str) -> tuple[int, ...]:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        requirement = re.match(r"([A-Za-z0-9_.-]+)(.*)", line.split("#")[0].strip())
        bound = requirement and re.search(r">=\s*([\d.]+)", requirement[2])
        if requirement and requirement[1] == package and bound:
            return tuple(int(part) for part in bound[1].split("."))
    raise AssertionError(f"requirements.txt has no lower bound for {package}")


@pytest.mark.parametrize("api, pattern, version", TORCH_APIS, ids=[api for api, _, _ in TORCH_APIS])
def test_every_listed_api_is_used(api, pattern, version):
    assert re.search(pattern, _source_text()), f"{api} is no longer used: drop it from TORCH_APIS"


def test_no_requirement_caps_a_version_without_naming_the_break():
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        requirement, _, comment = line.partition("#")
        if re.search(r"<|~=|==", requirement):
            assert "breaks" in comment, f"requirements.txt: {line.strip()!r} caps a version; drop the cap or name " \
                                        f"the break beside it (# breaks: ...)"


def test_torch_lower_bound_admits_only_versions_with_every_api():
    newest_api, _, newest = max(TORCH_APIS, key=lambda entry: entry[2])
    lower = _lower_bound("torch")[:2]
    assert lower >= newest, f"requirements.txt admits torch {lower}, but {newest_api} needs {newest}"


def test_torchvision_lower_bound_matches_the_torch_lower_bound():
    assert _lower_bound("torchvision")[:2] == TORCHVISION_FOR_TORCH[_lower_bound("torch")[:2]]


def test_the_installed_torch_is_admitted():
    import torch
    import torchvision

    for package, module in (("torch", torch), ("torchvision", torchvision)):
        installed = tuple(int(part) for part in re.findall(r"\d+", module.__version__)[:2])
        assert installed >= _lower_bound(package)[:2]
