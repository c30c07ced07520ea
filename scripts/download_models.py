"""Download the released XMem checkpoints (GitHub release v1.0 of hkchengrex/XMem) and check that they load.

Each file is streamed to a temporary file, its size checked where it is known, moved into place, and loaded with
`model.checkpoint.load_network` (strict keys, weights only). Files already present and valid are kept.

Usage:
    python scripts/download_models.py                      # XMem.pth into ./saves
    python scripts/download_models.py --models XMem.pth XMem-s012.pth --output saves
"""
from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional, Sequence


from tqdm import tqdm

from configs.common import atomic_output
from model.checkpoint import load_network

RELEASE_URL = "https://github.com/hkchengrex/XMem/releases/download/v1.0/{name}"
# Expected sizes in bytes; None where the release page is the only record (the file is still load-checked).
MODEL_SIZES: dict[str, Optional[int]] = {
    "XMem.pth": 249_026_057,
    "XMem-s012.pth": None,
    "XMem-s2.pth": None,
    "XMem-no-sensory.pth": None,
}
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


def main(argv: Optional[Sequence[str]] = None, opener: Callable = urllib.request.urlopen) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), choices=list(MODEL_SIZES))
    parser.add_argument("--output", type=Path, default=Path(DEFAULT_OUTPUT), help="folder for the .pth files")
    arguments = parser.parse_args(argv)
    for name in arguments.models:
        try:
            path = fetch_model(name, arguments.output, opener)
        except DownloadError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"{path}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
