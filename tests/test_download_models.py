"""scripts/data/download_models.py with a fake opener: every released stage checkpoint (XMem-s0.pth included) and
torchvision's ImageNet weights into the torch hub cache, where training finds them; offline, one line."""
from __future__ import annotations

import io
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision

from model.checkpoint import load_imagenet_trunks
from model.network import XMem
from scripts.data import download_models

RELEASE = "https://github.com/hkchengrex/XMem/releases/download/v1.0/"
IMAGENET = "https://download.pytorch.org/models/"


class _BytesResponse(io.BytesIO):
    """What urlopen returns: a readable body with headers."""

    def __init__(self, payload: bytes):
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}


def _recording_opener(payloads: dict[str, bytes], requested: list[str]):
    def opener(url, timeout):
        requested.append(url)
        return _BytesResponse(payloads[url.rsplit("/", 1)[1]])

    return opener


def test_all_fetches_every_released_checkpoint_including_s0(tmp_path, monkeypatch):
    loaded = []
    monkeypatch.setattr(download_models, "load_network", lambda path, device: loaded.append(Path(path).name))
    requested: list[str] = []
    payloads = {name: b"weights of " + name.encode() for name in download_models.MODEL_SIZES}
    for name, payload in payloads.items():  # the real sizes are ~250 MB
        monkeypatch.setitem(download_models.MODEL_SIZES, name, len(payload))
    assert download_models.main(["--all", "--output", str(tmp_path)], opener=_recording_opener(payloads,
                                                                                               requested)) == 0
    expected = ["XMem.pth", "XMem-s012.pth", "XMem-s2.pth", "XMem-no-sensory.pth", "XMem-s0.pth"]
    assert requested == [RELEASE + name for name in expected]
    assert loaded == expected
    assert (tmp_path / "XMem-s0.pth").read_bytes() == b"weights of XMem-s0.pth"


def test_s0_is_a_released_model_that_a_stage_3_run_can_start_from(tmp_path, monkeypatch):
    monkeypatch.setattr(download_models, "load_network", lambda path, device: None)
    requested: list[str] = []
    opener = _recording_opener({"XMem-s0.pth": b"s0"}, requested)
    assert download_models.main(["--models", "XMem-s0.pth", "--output", str(tmp_path)], opener=opener) == 0
    assert requested == [RELEASE + "XMem-s0.pth"]


@pytest.fixture(scope="module")
def imagenet_payloads(tmp_path_factory) -> dict[str, bytes]:
    """torchvision ResNet-50 / ResNet-18 state_dicts (random weights, the released layout) as file bytes."""
    payloads = {}
    for name, build in (("resnet50-19c8e357.pth", torchvision.models.resnet50),
                        ("resnet18-5c106cde.pth", torchvision.models.resnet18)):
        buffer = io.BytesIO()
        torch.save(build(weights=None).state_dict(), buffer)
        payloads[name] = buffer.getvalue()
    return payloads


def test_imagenet_weights_go_where_training_looks(tmp_path, monkeypatch, imagenet_payloads, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    requested: list[str] = []
    opener = _recording_opener(imagenet_payloads, requested)
    assert download_models.main(["--models", "--imagenet", "--output", str(tmp_path / "saves")], opener=opener) == 0
    assert requested == [IMAGENET + "resnet50-19c8e357.pth", IMAGENET + "resnet18-5c106cde.pth"]
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    assert cache == tmp_path / "torch_home" / "hub" / "checkpoints"
    assert sorted(path.name for path in cache.iterdir()) == ["resnet18-5c106cde.pth", "resnet50-19c8e357.pth"]
    assert not (tmp_path / "saves").exists()  # `--models` alone fetches no checkpoint
    network = XMem()
    load_imagenet_trunks(network)  # training's default lookup finds them
    assert torch.equal(network.key_encoder.conv1.weight,
                       torch.load(cache / "resnet50-19c8e357.pth", weights_only=True)["conv1.weight"])
    assert capsys.readouterr().out.count(": ok") == 2
    # present files are kept
    assert download_models.main(["--models", "--imagenet"], opener=opener) == 0
    assert len(requested) == 2


def test_imagenet_offline_names_the_url_and_the_manual_route(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(url, timeout):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    assert download_models.main(["--models", "--imagenet"], opener=offline) == 1
    error = capsys.readouterr().err
    cache = tmp_path / "hub" / "checkpoints"
    assert error == (f"error: cannot download {IMAGENET}resnet50-19c8e357.pth ([Errno -3] Temporary failure in name "
                     f"resolution); are you offline? Download it by hand into {cache / 'resnet50-19c8e357.pth'}\n")
    assert not [path for path in tmp_path.rglob("*") if path.is_file()]
