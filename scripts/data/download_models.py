"""Download the released XMem checkpoints (GitHub release v1.0 of hkchengrex/XMem) and, on request, torchvision's
ImageNet weights that training starts from; check that each loads.

Each file is streamed to a temporary file, its size checked where it is known, moved into place, and loaded (a
checkpoint with `model.checkpoint.load_network`, strict keys, weights only; the ImageNet files with
`model.checkpoint.load_imagenet_trunks`, as training reads them). Files already present and valid are kept.
Released checkpoints: XMem.pth (stages 0+3, the paper's model), XMem-s012.pth (with BL30K), XMem-s2.pth,
XMem-no-sensory.pth and XMem-s0.pth (static-image pre-training only: the start of a stage-3 run).

Usage:
    python scripts/data/download_models.py                      # XMem.pth into ./saves
    python scripts/data/download_models.py --models XMem.pth XMem-s0.pth --output saves
    python scripts/data/download_models.py --all --imagenet     # every checkpoint, and the ImageNet trunks
    python scripts/data/download_models.py --models --imagenet  # only resnet50 / resnet18 into the torch hub cache
"""
from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional, Sequence


import torch
from tqdm import tqdm

from configs.common import atomic_output, run_cli
from model.checkpoint import load_imagenet_trunks, load_network
from model.network import XMem

RELEASE_URL = "https://github.com/hkchengrex/XMem/releases/download/v1.0/{name}"
# Expected sizes in bytes; None where the release page is the only record (the file is still load-checked).
MODEL_SIZES: dict[str, Optional[int]] = {
    "XMem.pth": 249_026_057,
    "XMem-s012.pth": None,
    "XMem-s2.pth": None,
    "XMem-no-sensory.pth": None,
    "XMem-s0.pth": None,
}
# torchvision's ImageNet weights under their legacy names (what the original trained from).
IMAGENET_URL = "https://download.pytorch.org/models/{name}"
IMAGENET_FILES = ("resnet50-19c8e357.pth", "resnet18-5c106cde.pth")
DEFAULT_MODELS = ("XMem.pth",)
DEFAULT_OUTPUT = "./saves"
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 30


class DownloadError(OSError):
    """A checkpoint could not be fetched (offline, HTTP error) or arrived with the wrong size."""


def download(url: str, destination: Path, expected_size: Optional[int],
             opener: Callable = urllib.request.urlopen) -> Path:
    """Stream `url` to `destination` atomically and check its size.

    Raises:
        DownloadError: the URL cannot be reached, or the file's size is not `expected_size` (nothing is left).
    """
    with atomic_output(destination) as temporary:
        try:
            with opener(url, timeout=TIMEOUT_S) as response, open(temporary, "wb") as file:
                total = expected_size or int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=destination.name) as progress:
                    while chunk := response.read(CHUNK_BYTES):
                        file.write(chunk)
                        progress.update(len(chunk))
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise DownloadError(f"cannot download {url} ({reason}); are you offline? Download it by hand into "
                                f"{destination}") from None
        size = os.path.getsize(temporary)
        if expected_size is not None and size != expected_size:
            raise DownloadError(f"{url} gave {size:,} bytes, expected {expected_size:,}: an interrupted or changed "
                                f"download; run again")
    return destination


def fetch_model(name: str, output_dir: Path, opener: Callable = urllib.request.urlopen) -> Path:
    """Download one released checkpoint (unless a valid copy exists) and load it once as a check.

    Raises:
        KeyError: `name` is not a released checkpoint.
        DownloadError: see `download`.
        ValueError: the file does not load as an XMem checkpoint.
    """
    if name not in MODEL_SIZES:
        raise KeyError(f"unknown model {name!r}; released checkpoints: {', '.join(MODEL_SIZES)}")
    path = output_dir / name
    expected = MODEL_SIZES[name]
    if not path.is_file() or (expected is not None and path.stat().st_size != expected):
        download(RELEASE_URL.format(name=name), path, expected, opener)
    load_network(path, "cpu")
    return path


def imagenet_directory() -> Path:
    """Where training looks for the ImageNet weights: torchvision's cache, `torch.hub.get_dir()/checkpoints`."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def fetch_imagenet(directory: Path, opener: Callable = urllib.request.urlopen) -> list[Path]:
    """Download torchvision's ResNet-50 and ResNet-18 ImageNet weights into `directory` (unless present) and load
    them into a fresh network's trunks, as training does.

    Raises:
        DownloadError: see `download`.
        ValueError: a file is not a torchvision ResNet state_dict.
    """
    paths = []
    for name in IMAGENET_FILES:
        path = directory / name
        if not path.is_file():
            download(IMAGENET_URL.format(name=name), path, None, opener)
        paths.append(path)
    load_imagenet_trunks(XMem(), checkpoint_dir=directory)
    return paths


def main(argv: Optional[Sequence[str]] = None, opener: Callable = urllib.request.urlopen) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=list(DEFAULT_MODELS), choices=list(MODEL_SIZES),
                        help="released checkpoints to fetch (default XMem.pth; none with --models alone)")
    parser.add_argument("--all", action="store_true", help="every released checkpoint")
    parser.add_argument("--output", type=Path, default=Path(DEFAULT_OUTPUT), help="folder for the .pth files")
    parser.add_argument("--imagenet", action="store_true",
                        help="also fetch torchvision's ImageNet ResNet-50/18 weights into the torch hub cache, where "
                             "training (train.imagenet_init) looks for them")
    arguments = parser.parse_args(argv)
    try:
        for name in list(MODEL_SIZES) if arguments.all else arguments.models:
            print(f"{fetch_model(name, arguments.output, opener)}: ok")
        if arguments.imagenet:
            for path in fetch_imagenet(imagenet_directory(), opener):
                print(f"{path}: ok")
    except DownloadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
