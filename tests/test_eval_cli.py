"""eval.py end to end on tiny synthetic benchmarks with the recipe checkpoint, and the download script."""
import sys
import urllib.error
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import download_models  # noqa: E402


class _FileResponse:
    """What urlopen returns, serving a local file."""

    def __init__(self, path: Path):
        self._file = open(path, "rb")
        self.headers = {"Content-Length": str(path.stat().st_size)}

    def read(self, size: int) -> bytes:
        return self._file.read(size)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._file.close()


def test_download_models_checks_size_and_loads(tmp_path, recipe_checkpoint_path, monkeypatch):
    size = recipe_checkpoint_path.stat().st_size
    monkeypatch.setitem(download_models.MODEL_SIZES, "XMem.pth", size)
    requested = []

    def opener(url, timeout):
        requested.append(url)
        return _FileResponse(recipe_checkpoint_path)

    assert download_models.main(["--output", str(tmp_path)], opener=opener) == 0
    assert requested == ["https://github.com/hkchengrex/XMem/releases/download/v1.0/XMem.pth"]
    assert (tmp_path / "XMem.pth").stat().st_size == size
    assert download_models.main(["--output", str(tmp_path)], opener=opener) == 0
    assert len(requested) == 1  # a valid copy is kept

    monkeypatch.setitem(download_models.MODEL_SIZES, "XMem-s2.pth", size + 1)
    with pytest.raises(download_models.DownloadError, match=f"gave {size:,} bytes, expected {size + 1:,}"):
        download_models.fetch_model("XMem-s2.pth", tmp_path, opener)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["XMem.pth"]  # nothing half-written left


def test_download_models_offline_says_so_in_one_line(tmp_path, capsys):
    def offline(url, timeout):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    assert download_models.main(["--output", str(tmp_path)], opener=offline) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert error.startswith("error: cannot download https://github.com/hkchengrex/XMem/releases/download/v1.0/"
                            "XMem.pth (") and "are you offline?" in error
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(KeyError, match="unknown model 'XMem-huge.pth'"):
        download_models.fetch_model("XMem-huge.pth", tmp_path)
