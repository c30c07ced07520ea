"""The README's Python snippet runs as written (extracted from README.md), on a tiny synthetic video."""
import re
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from dataset.image_io import write_index_mask
from dataset.synthetic import PRESETS, SyntheticVideo

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Running XMem on your own video (Python)"
NUM_FRAMES = 4


def readme_snippet() -> str:
    text = README.read_text()
    section = text[text.index(SECTION):]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


def test_readme_python_snippet_runs_as_written(tmp_path, monkeypatch, recipe_checkpoint_path):
    video = SyntheticVideo(seed=3, height=64, width=112, num_frames=NUM_FRAMES, difficulty=PRESETS["easy"])
    writer = cv2.VideoWriter(str(tmp_path / "my_video.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (112, 64))
    for index in range(NUM_FRAMES):
        rgb, _ = video.frame(index)
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    first_mask = video.frame(0)[1]
    write_index_mask(tmp_path / "first_mask.png", first_mask)
    (tmp_path / "saves").mkdir()
    (tmp_path / "saves" / "XMem.pth").symlink_to(recipe_checkpoint_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    exec(compile(readme_snippet(), str(README), "exec"), {"__name__": "readme"})

    saved = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert saved == [f"{i:05d}.png" for i in range(NUM_FRAMES)] + [f"step_{i:05d}.png" for i in range(NUM_FRAMES)]
    with Image.open(tmp_path / "out" / "00000.png") as image:
        assert image.mode == "P" and bytes(image.getpalette()[:6]) == bytes([0, 0, 0, 128, 0, 0])
        assert set(np.unique(np.asarray(image))) == set(np.unique(first_mask))
